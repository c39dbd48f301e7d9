-- Voicemail as a product (issue 17, item 6). A call that ends in voicemail (its target, an
-- IVR's choice, or a number's final action when nobody answers) leaves a WAV that the call
-- path picks up at hang-up (softswitch/callpath/voicemail.py): one row per message, a
-- new_voicemail notice in the outbox in the same transaction, the call record linked.
-- provisioning/voicemail.py serves the messages and deletes them past retention.

-- How long a tenant's messages are kept: whole local days after the day a message came in
-- (the tenant's time zone); deleted at the local midnight that ends the last of them.
ALTER TABLE tenants
    ADD COLUMN voicemail_retention_days INTEGER NOT NULL DEFAULT 30
        CHECK (voicemail_retention_days BETWEEN 1 AND 3650);

CREATE TABLE voicemail_messages (
    id            BIGSERIAL PRIMARY KEY,
    tenant_id     BIGINT NOT NULL REFERENCES tenants (id),
    number        TEXT NOT NULL CHECK (number ~ '^[0-9]{1,20}$'),  -- the number called
    caller        TEXT NOT NULL DEFAULT '',                        -- '' when withheld
    called        TEXT NOT NULL DEFAULT '',                        -- as the network sent it
    call_linkedid TEXT NOT NULL UNIQUE,
    received_at   TIMESTAMPTZ NOT NULL,                            -- when the call came in
    duration_s    DOUBLE PRECISION NOT NULL CHECK (duration_s > 0),
    size_bytes    BIGINT NOT NULL CHECK (size_bytes > 0),
    sha256        TEXT NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    path          TEXT NOT NULL UNIQUE,                            -- inside the Asterisk chroot
    created_at    TIMESTAMPTZ NOT NULL,
    listened_at   TIMESTAMPTZ,
    listened_by   TEXT,
    -- Deleted by a user: the file goes at once, the row (hidden from the API) at retention.
    deleted_at    TIMESTAMPTZ,
    deleted_by    TEXT
);
CREATE INDEX voicemail_messages_tenant_received ON voicemail_messages (tenant_id, received_at DESC, id DESC)
    WHERE deleted_at IS NULL;
CREATE INDEX voicemail_messages_number_received ON voicemail_messages (tenant_id, number, received_at DESC, id DESC)
    WHERE deleted_at IS NULL;
CREATE INDEX voicemail_messages_received ON voicemail_messages (received_at);

-- The instant a message expires: the start of the local day after `p_days` whole local days
-- following the day it came in, so a message is never kept less than its retention.
CREATE FUNCTION voicemail_expires_at(p_received TIMESTAMPTZ, p_timezone TEXT, p_days INTEGER)
RETURNS TIMESTAMPTZ LANGUAGE sql IMMUTABLE AS $fn$
    SELECT (date_trunc('day', p_received AT TIME ZONE p_timezone) + make_interval(days => p_days + 1))
           AT TIME ZONE p_timezone
$fn$;

-- The call record says the call went to voicemail and what it left: stored (a message),
-- empty (a file without audio, removed), missing (the caller left before the tone).
ALTER TABLE calls
    ADD COLUMN voicemail_id BIGINT REFERENCES voicemail_messages (id) ON DELETE SET NULL,
    ADD COLUMN voicemail_outcome TEXT CHECK (voicemail_outcome IN ('stored', 'empty', 'missing'));
