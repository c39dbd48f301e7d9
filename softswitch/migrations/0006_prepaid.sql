-- Real-time prepaid: reservations taken at call set-up, renewed by slices, settled once.
--
-- Invariants, held by single atomic statements on the account row (so they hold across
-- any number of service instances sharing the database):
--   balance - reserved >= -credit_limit         (money)
--   channels_in_use <= channel_cap              (the package's 1/4/8 channels)
--   included_reserved_s <= included_seconds_left
-- The account carries the tariff of its current package (set when the subscription
-- starts or changes): derived data, regenerable from subscriptions + packages.

ALTER TABLE accounts
    ADD COLUMN reserved             NUMERIC(14, 4) NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    ADD COLUMN channel_cap          INTEGER NOT NULL DEFAULT 1 CHECK (channel_cap >= 0),
    ADD COLUMN channels_in_use      INTEGER NOT NULL DEFAULT 0 CHECK (channels_in_use >= 0),
    ADD COLUMN included_seconds_left INTEGER NOT NULL DEFAULT 0 CHECK (included_seconds_left >= 0),
    ADD COLUMN included_reserved_s  INTEGER NOT NULL DEFAULT 0 CHECK (included_reserved_s >= 0),
    ADD COLUMN rate_per_minute      NUMERIC(10, 4) NOT NULL DEFAULT 0.12 CHECK (rate_per_minute >= 0),
    ADD COLUMN first_increment_s    INTEGER NOT NULL DEFAULT 60 CHECK (first_increment_s > 0),
    ADD COLUMN increment_s          INTEGER NOT NULL DEFAULT 60 CHECK (increment_s > 0),
    ADD CONSTRAINT accounts_money CHECK (balance - reserved >= -credit_limit),
    ADD CONSTRAINT accounts_channels CHECK (channels_in_use <= channel_cap),
    ADD CONSTRAINT accounts_included CHECK (included_reserved_s <= included_seconds_left);

CREATE TABLE reservations (
    id              BIGSERIAL PRIMARY KEY,
    call_id         TEXT NOT NULL UNIQUE,          -- Asterisk's linkedid
    tenant_id       BIGINT NOT NULL REFERENCES tenants (id),
    channel         TEXT NOT NULL DEFAULT '',      -- the caller's channel (hard stop target)
    state           TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'settled', 'released')),
    amount          NUMERIC(14, 4) NOT NULL DEFAULT 0 CHECK (amount >= 0),
    included_s      INTEGER NOT NULL DEFAULT 0 CHECK (included_s >= 0),
    granted_s       INTEGER NOT NULL DEFAULT 0,    -- seconds of talk covered so far
    slices          INTEGER NOT NULL DEFAULT 1,
    opened_at       TIMESTAMPTZ NOT NULL,
    renewed_at      TIMESTAMPTZ,
    closed_at       TIMESTAMPTZ,
    charged         NUMERIC(14, 4),
    billsec         INTEGER,
    close_reason    TEXT
);
CREATE INDEX reservations_open ON reservations (tenant_id) WHERE state = 'open';

-- The call record's money.
ALTER TABLE calls
    ADD COLUMN billsec          INTEGER,
    ADD COLUMN billable_s       INTEGER,
    ADD COLUMN minutes          INTEGER,
    ADD COLUMN included_used_s  INTEGER,
    ADD COLUMN amount           NUMERIC(14, 4),
    ADD COLUMN settled_at       TIMESTAMPTZ;
