-- Call recording and retention. A tenant's recording policy (all | inbound | outbound |
-- none | on_demand), overridable per number and per SIP extension (NULL = the tenant's);
-- whether the caller hears that the call is recorded; how long recordings are kept
-- (seed 003: one month). The hot path reads the policies from its snapshot.
ALTER TABLE tenants
    ADD COLUMN recording_policy TEXT NOT NULL DEFAULT 'none'
        CHECK (recording_policy IN ('all', 'inbound', 'outbound', 'none', 'on_demand')),
    ADD COLUMN recording_announce BOOLEAN NOT NULL DEFAULT true,
    ADD COLUMN recording_retention_days INTEGER NOT NULL DEFAULT 30
        CHECK (recording_retention_days BETWEEN 1 AND 3650);
ALTER TABLE numbers
    ADD COLUMN recording_policy TEXT
        CHECK (recording_policy IN ('all', 'inbound', 'outbound', 'none', 'on_demand'));
ALTER TABLE sip_extensions
    ADD COLUMN recording_policy TEXT
        CHECK (recording_policy IN ('all', 'inbound', 'outbound', 'none', 'on_demand'));

-- One row per recorded file, written at hang-up (off the hot path). A file that should
-- exist but does not, or holds no audio, is kept as a row with status missing|empty: it is
-- reported and counted, never hidden. Purging deletes the file and keeps this row, with
-- purged_at set (the metadata and sha256 stay as evidence of what existed).
CREATE TABLE recordings (
    id             BIGSERIAL PRIMARY KEY,
    tenant_id      BIGINT NOT NULL REFERENCES tenants (id),
    call_linkedid  TEXT NOT NULL,
    segment        INTEGER NOT NULL DEFAULT 0,   -- on-demand: each start/stop is a segment
    mode           TEXT NOT NULL CHECK (mode IN ('record', 'on_demand')),
    path           TEXT NOT NULL UNIQUE,         -- inside the Asterisk chroot
    status         TEXT NOT NULL CHECK (status IN ('stored', 'missing', 'empty')),
    size_bytes     BIGINT NOT NULL DEFAULT 0 CHECK (size_bytes >= 0),
    duration_s     DOUBLE PRECISION NOT NULL DEFAULT 0 CHECK (duration_s >= 0),
    sha256         TEXT CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    caller         TEXT NOT NULL DEFAULT '',
    called         TEXT NOT NULL DEFAULT '',
    direction      TEXT NOT NULL DEFAULT 'inbound',
    started_at     TIMESTAMPTZ NOT NULL,         -- when the call was answered (or created)
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    legal_hold     BOOLEAN NOT NULL DEFAULT false,
    legal_hold_reason TEXT NOT NULL DEFAULT '',
    legal_hold_by  TEXT,
    legal_hold_at  TIMESTAMPTZ,
    purged_at      TIMESTAMPTZ,
    UNIQUE (call_linkedid, segment)
);
CREATE INDEX recordings_tenant_started ON recordings (tenant_id, started_at DESC);
CREATE INDEX recordings_purgeable ON recordings (started_at) WHERE purged_at IS NULL AND NOT legal_hold;

ALTER TABLE calls ADD COLUMN recording_id BIGINT REFERENCES recordings (id);
