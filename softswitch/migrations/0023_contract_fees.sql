-- Contract fees (provisioning/billing_cycle.py, provisioning/orders_api.py; issue 17 item 5):
-- each fee of the contracts is its own ledger kind, so the statement lists it by name.
--   platform_fee       seed 000: the platform's 1000 CNY a contract year
--   prestored          seed 003: the 12000 CNY paid on signing, credited as call credit
--   annual_minimum     seed 003: a contract year's usage topped up to 2000 CNY
--   early_termination  seed 001: monthly rent x remaining term months (not after month 7)
--   one_off            seed 001: debugging, gateway installation, SIP phones, tone production
--   expiry             seed 000: call credit left unused when the contract ends
ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_kind_check;
ALTER TABLE ledger_entries ADD CONSTRAINT ledger_entries_kind_check CHECK (kind IN
    ('recharge', 'call', 'rent', 'minimum', 'late_fee', 'adjustment', 'fee',
     'platform_fee', 'prestored', 'annual_minimum', 'early_termination', 'one_off', 'expiry'));

-- Seed 000 §3.10: "合同期结束剩余通话时间将清零" — what is left unused at the contract's end
-- is forfeited. A term of the package, as data.
ALTER TABLE packages ADD COLUMN unused_expire_at_end BOOLEAN NOT NULL DEFAULT false;
UPDATE packages SET unused_expire_at_end = true WHERE code = 'P000-PLATFORM';

-- Seed 001's one-off fees (the registration form's price list), priced per unit.
CREATE TABLE one_off_items (
    code        TEXT PRIMARY KEY CHECK (code ~ '^[a-z_]{2,40}$'),
    name        TEXT NOT NULL,
    unit        TEXT NOT NULL,                       -- what one of quantity is
    unit_price  NUMERIC(12, 2) NOT NULL CHECK (unit_price >= 0),
    note        TEXT NOT NULL DEFAULT ''
);
INSERT INTO one_off_items (code, name, unit, unit_price, note) VALUES
 ('debugging',       'Debugging (standard SIP account)', 'time', 99,
  'seed 001: 调测费 99 元/次, no on-site or customer hardware debugging'),
 ('gateway_port',    'Voice gateway installation',       'port', 199,
  'seed 001: 安装费 语音网关 199 元/路, no fax'),
 ('sip_phone',       'SIP phone installation',           'unit', 299,
  'seed 001: 安装费 SIP 话机 299 元/台, fax-capable'),
 ('tone_production', 'Ringback tone production',         'time', 99,
  'seed 001: 铃音制作费 99 元/次, each new tone is charged again');

-- One order of a one-off item: charged at once, one ledger entry (kind 'one_off').
CREATE TABLE one_off_orders (
    id               BIGSERIAL PRIMARY KEY,
    tenant_id        BIGINT NOT NULL REFERENCES tenants (id),
    item_code        TEXT NOT NULL REFERENCES one_off_items (code),
    quantity         INTEGER NOT NULL CHECK (quantity BETWEEN 1 AND 1000),
    unit_price       NUMERIC(12, 2) NOT NULL,
    amount           NUMERIC(14, 2) NOT NULL,
    reference        TEXT NOT NULL DEFAULT '',
    idempotency_key  TEXT NOT NULL,
    ledger_entry_id  BIGINT NOT NULL UNIQUE REFERENCES ledger_entries (id),
    actor_user_id    BIGINT,
    created_at       TIMESTAMPTZ NOT NULL,
    UNIQUE (tenant_id, idempotency_key)
);
CREATE INDEX one_off_orders_tenant ON one_off_orders (tenant_id, id);
