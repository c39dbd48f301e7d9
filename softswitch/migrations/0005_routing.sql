-- Routing settings: how each unified number distributes, which policies it follows, what
-- the destination sees and hears, and what happens when nobody answers. Destinations are
-- grouped (time and region policies choose a group). Extensions may call out with a
-- caller ID the tenant owns. Notices (missed calls, low balance ...) go to an outbox.

ALTER TABLE numbers
    ADD COLUMN distribution TEXT NOT NULL DEFAULT 'sequential'
        CHECK (distribution IN ('sequential', 'simultaneous', 'round_robin', 'longest_idle', 'weighted')),
    ADD COLUMN time_policy_id BIGINT REFERENCES time_policies (id) ON DELETE SET NULL,
    ADD COLUMN region_policy_id BIGINT REFERENCES region_policies (id) ON DELETE SET NULL,
    -- played to the caller (call answered) before the destinations ring
    ADD COLUMN greeting_prompt TEXT NOT NULL DEFAULT '' CHECK (greeting_prompt ~ '^[a-z0-9/_-]{0,80}$'),
    -- what the destination sees: the caller's number, or the unified number itself
    ADD COLUMN caller_id_mode TEXT NOT NULL DEFAULT 'caller' CHECK (caller_id_mode IN ('caller', 'unified')),
    -- say the dialled unified number to the answering party before connecting
    ADD COLUMN whisper BOOLEAN NOT NULL DEFAULT false,
    ADD COLUMN final_action TEXT NOT NULL DEFAULT 'missed_call'
        CHECK (final_action IN ('hangup', 'voicemail', 'missed_call'));

ALTER TABLE destination_bindings
    ADD COLUMN group_name TEXT NOT NULL DEFAULT 'default' CHECK (group_name ~ '^[a-z0-9_-]{1,40}$'),
    ADD COLUMN weight INTEGER NOT NULL DEFAULT 1 CHECK (weight BETWEEN 1 AND 1000);

-- An extension calling out with a caller ID the tenant does not own: replace it with the
-- tenant's own number, or refuse the call.
ALTER TABLE tenants
    ADD COLUMN outbound_cli_policy TEXT NOT NULL DEFAULT 'replace'
        CHECK (outbound_cli_policy IN ('replace', 'refuse'));

ALTER TABLE sip_extensions
    ADD COLUMN outbound_caller_id TEXT NOT NULL DEFAULT '' CHECK (outbound_caller_id ~ '^[0-9]{0,20}$');

CREATE TABLE outbox (
    id            BIGSERIAL PRIMARY KEY,
    tenant_id     BIGINT REFERENCES tenants (id),
    kind          TEXT NOT NULL,
    dedupe_key    TEXT,
    payload       JSONB NOT NULL DEFAULT '{}',
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    delivered_at  TIMESTAMPTZ,
    UNIQUE (kind, dedupe_key)
);
CREATE INDEX outbox_tenant_time ON outbox (tenant_id, created_at);

-- Routing settings live on numbers and tenants, which already notify; trunks too.

-- The call record keeps how the decision was reached and what it chose.
ALTER TABLE calls
    ADD COLUMN why TEXT NOT NULL DEFAULT '',
    ADD COLUMN group_name TEXT NOT NULL DEFAULT '',
    ADD COLUMN final_action TEXT NOT NULL DEFAULT '',
    ADD COLUMN direction TEXT NOT NULL DEFAULT 'inbound' CHECK (direction IN ('inbound', 'internal', 'outbound')),
    ADD COLUMN caller_id_shown TEXT NOT NULL DEFAULT '';
