-- Core routing data: tenants, their numbers, the destinations a number rings, and the
-- control plane's own call records. The provisioning issue extends these tables.

CREATE TABLE tenants (
    id          BIGSERIAL PRIMARY KEY,
    name        TEXT NOT NULL,
    state       TEXT NOT NULL DEFAULT 'active'
                CHECK (state IN ('active', 'suspended', 'terminated')),
    timezone    TEXT NOT NULL DEFAULT 'Asia/Shanghai',
    version     INTEGER NOT NULL DEFAULT 1,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- A number as the network delivers it: 400/4008/95xxx unified numbers or a local DID.
CREATE TABLE numbers (
    id          BIGSERIAL PRIMARY KEY,
    number      TEXT NOT NULL UNIQUE CHECK (number ~ '^[0-9]{3,20}$'),
    kind        TEXT NOT NULL CHECK (kind IN ('unified_400', 'unified_95', 'did', 'caller_id')),
    tenant_id   BIGINT REFERENCES tenants (id),
    -- Unusable until approved: reserved -> pending_approval -> active -> suspended -> released.
    state       TEXT NOT NULL DEFAULT 'reserved'
                CHECK (state IN ('reserved', 'pending_approval', 'active', 'suspended', 'released')),
    version     INTEGER NOT NULL DEFAULT 1,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX numbers_tenant ON numbers (tenant_id);

-- Destinations a unified number rings (mobiles, fixed lines, extensions), in order.
CREATE TABLE destination_bindings (
    id              BIGSERIAL PRIMARY KEY,
    number_id       BIGINT NOT NULL REFERENCES numbers (id) ON DELETE CASCADE,
    destination     TEXT NOT NULL CHECK (destination ~ '^[0-9]{2,20}$'),
    position        INTEGER NOT NULL DEFAULT 0,
    ring_timeout_s  INTEGER NOT NULL DEFAULT 30 CHECK (ring_timeout_s BETWEEN 5 AND 300),
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (number_id, destination)
);

-- One row per call the control plane decided on, keyed by Asterisk's linkedid; the
-- decision is written at once, the life cycle (answer, end) when AMI reports it.
CREATE TABLE calls (
    id            BIGSERIAL PRIMARY KEY,
    linkedid      TEXT NOT NULL UNIQUE,
    uniqueid      TEXT NOT NULL,
    tenant_id     BIGINT,
    number_id     BIGINT,
    caller        TEXT NOT NULL,
    called        TEXT NOT NULL,
    action        TEXT NOT NULL,
    reason        TEXT NOT NULL,
    destinations  TEXT[] NOT NULL DEFAULT '{}',
    decided_at    TIMESTAMPTZ NOT NULL,
    decision_us   INTEGER,
    answered_at   TIMESTAMPTZ,
    ended_at      TIMESTAMPTZ,
    hangup_cause  INTEGER,
    final_reason  TEXT
);
CREATE INDEX calls_tenant_decided ON calls (tenant_id, decided_at DESC);

-- The hot path reads an in-memory snapshot; any change to routing data tells it to reload.
CREATE FUNCTION notify_config_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('config_changed', TG_TABLE_NAME);
    RETURN NULL;
END $$;

CREATE TRIGGER tenants_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON tenants
    FOR EACH STATEMENT EXECUTE FUNCTION notify_config_changed();
CREATE TRIGGER numbers_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON numbers
    FOR EACH STATEMENT EXECUTE FUNCTION notify_config_changed();
CREATE TRIGGER destination_bindings_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON destination_bindings FOR EACH STATEMENT EXECUTE FUNCTION notify_config_changed();
