-- Notices that reach people (issue 17.7): each tenant's notification endpoints (e-mail
-- addresses and signed webhooks) and the delivery log, one row per notice x endpoint.
-- A notice written to the outbox fans out, in the writer's own transaction, to every
-- enabled endpoint of its tenant that wants its kind, and wakes the delivery workers
-- (NOTIFY notice_delivery); the workers also poll. softswitch/notify/ delivers.

CREATE TABLE notice_endpoints (
    id           BIGSERIAL PRIMARY KEY,
    tenant_id    BIGINT NOT NULL REFERENCES tenants (id),
    channel      TEXT NOT NULL CHECK (channel IN ('email', 'webhook')),
    -- an e-mail address, or the webhook's http(s) URL
    address      TEXT NOT NULL CHECK (length(address) BETWEEN 3 AND 500),
    -- the webhook's HMAC-SHA256 key, generated; shown once, when it is made (e-mail: NULL)
    secret       TEXT,
    -- the notice kinds it wants; empty: every kind
    kinds        TEXT[] NOT NULL DEFAULT '{}',
    language     TEXT NOT NULL DEFAULT 'zh' CHECK (language IN ('zh', 'en')),
    enabled      BOOLEAN NOT NULL DEFAULT true,
    -- one attempt's deadline (connect, send, answer): a slow endpoint costs this at most
    timeout_s    DOUBLE PRECISION NOT NULL DEFAULT 5 CHECK (timeout_s >= 0.5 AND timeout_s <= 30),
    description  TEXT NOT NULL DEFAULT '' CHECK (length(description) <= 200),
    version      INTEGER NOT NULL DEFAULT 1,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- removed endpoints are kept for the delivery log; they get no new deliveries
    deleted_at   TIMESTAMPTZ,
    CHECK ((channel = 'webhook') = (secret IS NOT NULL))
);
CREATE INDEX notice_endpoints_tenant ON notice_endpoints (tenant_id) WHERE deleted_at IS NULL;

CREATE TABLE notice_deliveries (
    id               BIGSERIAL PRIMARY KEY,
    notice_id        BIGINT NOT NULL REFERENCES outbox (id) ON DELETE CASCADE,
    endpoint_id      BIGINT NOT NULL REFERENCES notice_endpoints (id),
    tenant_id        BIGINT NOT NULL REFERENCES tenants (id),
    -- pending: not tried yet; failed: tried, will be retried at next_attempt_at;
    -- delivered; dead: given up (attempts exhausted, a permanent refusal, the endpoint
    -- disabled or removed)
    state            TEXT NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'delivered', 'failed', 'dead')),
    attempts         INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    -- due from here; while an attempt is in flight, the end of its claim (a lease)
    next_attempt_at  TIMESTAMPTZ NOT NULL,
    last_attempt_at  TIMESTAMPTZ,
    last_status      INTEGER,  -- the HTTP status or the SMTP reply code of the last attempt
    last_reason      TEXT NOT NULL DEFAULT '',  -- a reason code: HTTP_STATUS, TIMEOUT, ...
    last_error       TEXT NOT NULL DEFAULT '',
    delivered_at     TIMESTAMPTZ,
    created_at       TIMESTAMPTZ NOT NULL,
    UNIQUE (notice_id, endpoint_id)
);
CREATE INDEX notice_deliveries_due ON notice_deliveries (next_attempt_at, id)
    WHERE state IN ('pending', 'failed');
CREATE INDEX notice_deliveries_tenant ON notice_deliveries (tenant_id, id);
CREATE INDEX notice_deliveries_endpoint ON notice_deliveries (endpoint_id, id);

-- outbox.delivered_at: when the last of the notice's deliveries was delivered; NULL while
-- any is not (or it had none).
CREATE FUNCTION outbox_fan_out() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.tenant_id IS NULL THEN
        RETURN NULL;
    END IF;
    INSERT INTO notice_deliveries (notice_id, endpoint_id, tenant_id, next_attempt_at, created_at)
    SELECT NEW.id, e.id, NEW.tenant_id, NEW.created_at, NEW.created_at
    FROM notice_endpoints e
    WHERE e.tenant_id = NEW.tenant_id AND e.enabled AND e.deleted_at IS NULL
      AND (cardinality(e.kinds) = 0 OR NEW.kind = ANY (e.kinds));
    IF FOUND THEN
        PERFORM pg_notify('notice_delivery', '');
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER outbox_fan_out AFTER INSERT ON outbox FOR EACH ROW EXECUTE FUNCTION outbox_fan_out();
