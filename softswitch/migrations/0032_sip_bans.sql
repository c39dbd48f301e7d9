-- Bans at the SIP edge (issue 18, item 6): the control plane's record of every ban the
-- edge (docker/kamailio/kamailio.cfg) has made — a source address flooding or failing
-- digest authentication, an account locked out after failures from anywhere — read from
-- the edge's htables by softswitch/edge/bans.py, listed and lifted through the API
-- (GET/DELETE /v1/sip-bans). One row per ban: the edge's own start time is part of the
-- key, so every instance reading the same ban writes it once.
CREATE TABLE sip_bans (
    id          BIGSERIAL PRIMARY KEY,
    kind        TEXT NOT NULL CHECK (kind IN ('address', 'account')),
    subject     TEXT NOT NULL,                  -- the source address, or the SIP account
    reason      TEXT NOT NULL CHECK (reason IN ('flood', 'auth_failures')),
    banned_at   TIMESTAMPTZ NOT NULL,           -- when the edge banned it
    expires_at  TIMESTAMPTZ NOT NULL,           -- when the edge lets it in again by itself
    lifted_at   TIMESTAMPTZ,                    -- lifted earlier, through the API
    lifted_by   TEXT,
    UNIQUE (kind, subject, banned_at)
);
CREATE INDEX sip_bans_recent ON sip_bans (banned_at DESC);
