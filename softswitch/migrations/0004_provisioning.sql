-- Provisioning: who may do what (users, tokens, roles), the enterprise's compliance data,
-- numbers with their life cycle, SIP extensions, packages as data, subscriptions, money
-- accounts, routing policies stored for the routing/IVR issues, trunks, and an audit log.

-- ------------------------------------------------------------------ users and API tokens
CREATE TABLE operator_users (
    id            BIGSERIAL PRIMARY KEY,
    username      TEXT NOT NULL UNIQUE CHECK (username ~ '^[a-z0-9_.@-]{3,64}$'),
    display_name  TEXT NOT NULL DEFAULT '',
    role          TEXT NOT NULL CHECK (role IN
                  ('platform_admin', 'operator_staff', 'tenant_admin', 'tenant_readonly')),
    tenant_id     BIGINT REFERENCES tenants (id),
    disabled      BOOLEAN NOT NULL DEFAULT false,
    version       INTEGER NOT NULL DEFAULT 1,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- tenant roles belong to exactly one tenant; operator roles to none
    CHECK ((role LIKE 'tenant\_%') = (tenant_id IS NOT NULL))
);

-- Tokens are shown once at creation; only their SHA-256 is kept.
CREATE TABLE api_tokens (
    id            BIGSERIAL PRIMARY KEY,
    user_id       BIGINT NOT NULL REFERENCES operator_users (id) ON DELETE CASCADE,
    name          TEXT NOT NULL DEFAULT '',
    token_sha256  TEXT NOT NULL UNIQUE,
    prefix        TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at    TIMESTAMPTZ,
    revoked_at    TIMESTAMPTZ,
    last_used_at  TIMESTAMPTZ
);

-- ------------------------------------------------------------------ tenants (enterprises)
ALTER TABLE tenants
    ADD COLUMN credit_code            TEXT,          -- unified social credit code (18 chars)
    ADD COLUMN entity_kind            TEXT NOT NULL DEFAULT 'company'
                                      CHECK (entity_kind IN ('company', 'sole_trader')),
    ADD COLUMN legal_person_name      TEXT NOT NULL DEFAULT '',
    ADD COLUMN legal_person_id_kind   TEXT NOT NULL DEFAULT 'resident_id'
                                      CHECK (legal_person_id_kind IN
                                      ('resident_id', 'passport', 'hk_macao_permit', 'taiwan_permit')),
    ADD COLUMN legal_person_id_number TEXT NOT NULL DEFAULT '',
    ADD COLUMN business_category      TEXT NOT NULL DEFAULT 'general',
    ADD COLUMN after_sales_line       BOOLEAN NOT NULL DEFAULT false,
    ADD COLUMN emergency_contact_name  TEXT NOT NULL DEFAULT '',
    ADD COLUMN emergency_contact_phone TEXT NOT NULL DEFAULT '',
    ADD COLUMN paid_at                TIMESTAMPTZ,
    ADD COLUMN suspended_at           TIMESTAMPTZ,
    ADD COLUMN terminated_at          TIMESTAMPTZ;
CREATE UNIQUE INDEX tenants_credit_code ON tenants (credit_code) WHERE credit_code IS NOT NULL;

-- Onboarding documents: due 7 days after payment, else the reserved number may be replaced.
CREATE TABLE tenant_documents (
    id            BIGSERIAL PRIMARY KEY,
    tenant_id     BIGINT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    kind          TEXT NOT NULL CHECK (kind IN (
                    'business_licence', 'legal_person_id', 'signed_contract',
                    'anti_fraud_commitment', 'phone_bill_proof', 'destination_real_name_commitment',
                    'holding_id_photo', 'industry_licence')),
    status        TEXT NOT NULL DEFAULT 'missing'
                  CHECK (status IN ('missing', 'submitted', 'approved', 'rejected')),
    due_at        TIMESTAMPTZ,
    reference     TEXT NOT NULL DEFAULT '',     -- where the scan is kept
    note          TEXT NOT NULL DEFAULT '',
    version       INTEGER NOT NULL DEFAULT 1,
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, kind)
);

-- ------------------------------------------------------------------ numbers
ALTER TABLE numbers
    ADD COLUMN approved_at      TIMESTAMPTZ,
    ADD COLUMN released_at      TIMESTAMPTZ,
    -- a released number is not handed out again before this (cool-down)
    ADD COLUMN available_after  TIMESTAMPTZ;

-- Real-name registration of every bound destination (目的码实名制).
ALTER TABLE destination_bindings
    ADD COLUMN tenant_id        BIGINT REFERENCES tenants (id),
    ADD COLUMN kind             TEXT NOT NULL DEFAULT 'mobile'
                                CHECK (kind IN ('mobile', 'fixed', 'extension')),
    ADD COLUMN owner_name       TEXT NOT NULL DEFAULT '',
    ADD COLUMN owner_id_number  TEXT NOT NULL DEFAULT '',
    ADD COLUMN version          INTEGER NOT NULL DEFAULT 1;
UPDATE destination_bindings b SET tenant_id = n.tenant_id FROM numbers n WHERE n.id = b.number_id;
CREATE INDEX destination_bindings_tenant ON destination_bindings (tenant_id);

-- ------------------------------------------------------------------ SIP extensions
-- The PJSIP objects Asterisk reads (ps_endpoints/ps_auths/ps_aors, id = endpoint_id)
-- are written in the same transaction; the password itself is never stored, only
-- md5(username:realm:password), which is all Asterisk needs for digest auth.
CREATE TABLE sip_extensions (
    id            BIGSERIAL PRIMARY KEY,
    tenant_id     BIGINT NOT NULL REFERENCES tenants (id),
    extension     TEXT NOT NULL CHECK (extension ~ '^[0-9]{2,6}$'),
    display_name  TEXT NOT NULL DEFAULT '',
    site          TEXT NOT NULL DEFAULT 'main',
    device_kind   TEXT NOT NULL DEFAULT 'phone' CHECK (device_kind IN ('phone', 'gateway')),
    fax_allowed   BOOLEAN NOT NULL DEFAULT false,
    endpoint_id   TEXT NOT NULL UNIQUE,
    md5_cred      TEXT NOT NULL,
    realm         TEXT NOT NULL,
    version       INTEGER NOT NULL DEFAULT 1,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, extension),
    -- voice gateways carry no fax (seed 001)
    CHECK (NOT (device_kind = 'gateway' AND fax_allowed))
);

-- ------------------------------------------------------------------ packages and money
CREATE TABLE packages (
    id                 BIGSERIAL PRIMARY KEY,
    code               TEXT NOT NULL UNIQUE,
    name               TEXT NOT NULL,
    kind               TEXT NOT NULL CHECK (kind IN
                       ('line', 'extension_module', 'combined', 'trunk', 'platform',
                        'prestored', 'unified_400', 'addon')),
    monthly_rent       NUMERIC(12, 2) NOT NULL DEFAULT 0,
    caller_id_numbers  INTEGER NOT NULL DEFAULT 0,
    channels           INTEGER NOT NULL DEFAULT 0,
    extensions         INTEGER NOT NULL DEFAULT 0,
    included_minutes   INTEGER NOT NULL DEFAULT 0,
    overage_rate       NUMERIC(10, 4) NOT NULL DEFAULT 0,    -- CNY per minute
    first_increment_s  INTEGER NOT NULL DEFAULT 60 CHECK (first_increment_s > 0),
    increment_s        INTEGER NOT NULL DEFAULT 60 CHECK (increment_s > 0),
    split_billing      BOOLEAN NOT NULL DEFAULT false,       -- 400: caller pays local access
    min_term_months    INTEGER NOT NULL DEFAULT 0,
    period_months      INTEGER NOT NULL DEFAULT 1,
    package_total      NUMERIC(12, 2),                        -- seed 002: total over the period
    annual_fee         NUMERIC(12, 2),                        -- seed 000: platform fee per year
    prestored_amount   NUMERIC(12, 2),                        -- seed 003: prepaid on signing
    annual_minimum     NUMERIC(12, 2),                        -- seed 003: minimum per year
    active             BOOLEAN NOT NULL DEFAULT true,
    note               TEXT NOT NULL DEFAULT '',
    version            INTEGER NOT NULL DEFAULT 1
);

CREATE TABLE subscriptions (
    id            BIGSERIAL PRIMARY KEY,
    tenant_id     BIGINT NOT NULL REFERENCES tenants (id),
    package_id    BIGINT NOT NULL REFERENCES packages (id),
    starts_on     DATE NOT NULL,
    ends_on       DATE,
    state         TEXT NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'suspended', 'ended')),
    version       INTEGER NOT NULL DEFAULT 1,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (ends_on IS NULL OR ends_on >= starts_on)
);
CREATE INDEX subscriptions_tenant ON subscriptions (tenant_id);

-- One prepaid account per tenant. The balance only changes with a ledger entry.
CREATE TABLE accounts (
    tenant_id     BIGINT PRIMARY KEY REFERENCES tenants (id),
    balance       NUMERIC(14, 4) NOT NULL DEFAULT 0,
    credit_limit  NUMERIC(14, 4) NOT NULL DEFAULT 0 CHECK (credit_limit >= 0),
    currency      TEXT NOT NULL DEFAULT 'CNY',
    version       INTEGER NOT NULL DEFAULT 1
);

-- Append-only: no UPDATE or DELETE (enforced by trigger below).
CREATE TABLE ledger_entries (
    id               BIGSERIAL PRIMARY KEY,
    tenant_id        BIGINT NOT NULL REFERENCES tenants (id),
    kind             TEXT NOT NULL CHECK (kind IN
                     ('recharge', 'call', 'rent', 'minimum', 'late_fee', 'adjustment', 'fee')),
    amount           NUMERIC(14, 4) NOT NULL,    -- + credit, - debit
    balance_after    NUMERIC(14, 4) NOT NULL,
    reference        TEXT NOT NULL DEFAULT '',
    idempotency_key  TEXT,
    actor_user_id    BIGINT,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, kind, idempotency_key)
);
CREATE INDEX ledger_tenant_time ON ledger_entries (tenant_id, created_at);

CREATE FUNCTION ledger_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger_entries is append-only';
END $$;
CREATE TRIGGER ledger_append_only BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_is_append_only();

-- ------------------------------------------------------------------ routing policies (data)
CREATE TABLE time_policies (
    id          BIGSERIAL PRIMARY KEY,
    tenant_id   BIGINT NOT NULL REFERENCES tenants (id),
    name        TEXT NOT NULL,
    enabled     BOOLEAN NOT NULL DEFAULT true,
    definition  JSONB NOT NULL,        -- weekly rules, holidays, make-up days, exceptions
    version     INTEGER NOT NULL DEFAULT 1,
    UNIQUE (tenant_id, name)
);

CREATE TABLE region_policies (
    id          BIGSERIAL PRIMARY KEY,
    tenant_id   BIGINT NOT NULL REFERENCES tenants (id),
    name        TEXT NOT NULL,
    enabled     BOOLEAN NOT NULL DEFAULT true,
    definition  JSONB NOT NULL,        -- allow/deny/route by province and city
    version     INTEGER NOT NULL DEFAULT 1,
    UNIQUE (tenant_id, name)
);

-- tenant_id NULL: platform-wide.
CREATE TABLE blacklist_entries (
    id          BIGSERIAL PRIMARY KEY,
    tenant_id   BIGINT REFERENCES tenants (id),
    pattern     TEXT NOT NULL CHECK (pattern ~ '^[0-9]{1,20}$' OR pattern = 'anonymous'),
    match_kind  TEXT NOT NULL DEFAULT 'exact' CHECK (match_kind IN ('exact', 'prefix')),
    direction   TEXT NOT NULL DEFAULT 'inbound' CHECK (direction IN ('inbound', 'outbound', 'both')),
    note        TEXT NOT NULL DEFAULT '',
    version     INTEGER NOT NULL DEFAULT 1,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX blacklist_unique ON blacklist_entries
    (COALESCE(tenant_id, 0), pattern, match_kind, direction);

-- PIN protection of a number: callers enter the PIN before they are connected.
CREATE TABLE number_pins (
    id            BIGSERIAL PRIMARY KEY,
    number_id     BIGINT NOT NULL UNIQUE REFERENCES numbers (id) ON DELETE CASCADE,
    tenant_id     BIGINT NOT NULL REFERENCES tenants (id),
    enabled       BOOLEAN NOT NULL DEFAULT true,
    pin_sha256    TEXT NOT NULL,
    max_attempts  INTEGER NOT NULL DEFAULT 3 CHECK (max_attempts BETWEEN 1 AND 10),
    version       INTEGER NOT NULL DEFAULT 1
);

CREATE TABLE ivr_menus (
    id          BIGSERIAL PRIMARY KEY,
    tenant_id   BIGINT NOT NULL REFERENCES tenants (id),
    name        TEXT NOT NULL,
    definition  JSONB NOT NULL,
    version     INTEGER NOT NULL DEFAULT 1,
    UNIQUE (tenant_id, name)
);

-- ------------------------------------------------------------------ trunks and gateways
-- tenant_id NULL: a carrier trunk of the platform; set: a trunk module to a customer PBX.
CREATE TABLE trunks (
    id          BIGSERIAL PRIMARY KEY,
    tenant_id   BIGINT REFERENCES tenants (id),
    name        TEXT NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9_-]{2,40}$'),
    kind        TEXT NOT NULL DEFAULT 'carrier' CHECK (kind IN ('carrier', 'customer_pbx')),
    host        TEXT NOT NULL,
    port        INTEGER NOT NULL DEFAULT 5060 CHECK (port BETWEEN 1 AND 65535),
    channels    INTEGER NOT NULL DEFAULT 30 CHECK (channels > 0),
    enabled     BOOLEAN NOT NULL DEFAULT true,
    version     INTEGER NOT NULL DEFAULT 1
);

CREATE TABLE trunk_routes (
    id          BIGSERIAL PRIMARY KEY,
    trunk_id    BIGINT NOT NULL REFERENCES trunks (id) ON DELETE CASCADE,
    prefix      TEXT NOT NULL DEFAULT '' CHECK (prefix ~ '^[0-9]{0,20}$'),
    priority    INTEGER NOT NULL DEFAULT 100,
    weight      INTEGER NOT NULL DEFAULT 100 CHECK (weight > 0),
    version     INTEGER NOT NULL DEFAULT 1
);

-- ------------------------------------------------------------------ audit
CREATE TABLE audit_log (
    id             BIGSERIAL PRIMARY KEY,
    at             TIMESTAMPTZ NOT NULL DEFAULT now(),
    actor_user_id  BIGINT,
    actor          TEXT NOT NULL,           -- username, or 'cli:<os user>' / 'system'
    tenant_id      BIGINT,
    entity         TEXT NOT NULL,
    entity_id      TEXT NOT NULL,
    action         TEXT NOT NULL,
    before         JSONB,
    after          JSONB
);
CREATE INDEX audit_tenant_time ON audit_log (tenant_id, at);

-- The hot path reloads when anything it reads changes.
CREATE TRIGGER sip_extensions_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON sip_extensions FOR EACH STATEMENT EXECUTE FUNCTION notify_config_changed();
CREATE TRIGGER blacklist_entries_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON blacklist_entries FOR EACH STATEMENT EXECUTE FUNCTION notify_config_changed();
CREATE TRIGGER time_policies_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON time_policies FOR EACH STATEMENT EXECUTE FUNCTION notify_config_changed();
CREATE TRIGGER region_policies_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON region_policies FOR EACH STATEMENT EXECUTE FUNCTION notify_config_changed();
CREATE TRIGGER number_pins_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON number_pins FOR EACH STATEMENT EXECUTE FUNCTION notify_config_changed();
CREATE TRIGGER ivr_menus_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON ivr_menus FOR EACH STATEMENT EXECUTE FUNCTION notify_config_changed();
CREATE TRIGGER trunks_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON trunks FOR EACH STATEMENT EXECUTE FUNCTION notify_config_changed();
CREATE TRIGGER trunk_routes_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON trunk_routes FOR EACH STATEMENT EXECUTE FUNCTION notify_config_changed();

-- ------------------------------------------------------------------ the tariff tables as data
-- Seed 001 (商企云通): monthly rent -> caller-ID numbers, channels, included minutes;
-- beyond the package 0.12 CNY/min; minimum term 6 months.
INSERT INTO packages (code, name, kind, monthly_rent, caller_id_numbers, channels, extensions,
                      included_minutes, overage_rate, min_term_months, note) VALUES
 ('A39',    'A39 line package',           'line',     39,  1, 1, 0,   99, 0.12, 6, 'seed 001'),
 ('A59',    'A59 line package',           'line',     59,  1, 1, 0,  299, 0.12, 6, 'seed 001'),
 ('A4-269', 'A4-269 four-line package',   'line',    269,  4, 4, 0, 2399, 0.12, 6, 'seed 001'),
 ('A4-439', 'A4-439 four-line package',   'line',    439,  4, 4, 0, 4399, 0.12, 6, 'seed 001'),
 ('A8-569', 'A8-569 eight-line package',  'line',    569,  8, 8, 0, 5699, 0.12, 6, 'seed 001'),
 ('A8-869', 'A8-869 eight-line package',  'line',    869,  8, 8, 0, 9369, 0.12, 6, 'seed 001'),
 ('EXT-1',   'Switchboard module, 1 extension',    'extension_module',  19, 0, 0,   1, 0, 0.12, 6, 'seed 001'),
 ('EXT-4',   'Switchboard module, 4 extensions',   'extension_module',  49, 0, 0,   4, 0, 0.12, 6, 'seed 001'),
 ('EXT-8',   'Switchboard module, 8 extensions',   'extension_module',  89, 0, 0,   8, 0, 0.12, 6, 'seed 001'),
 ('EXT-16',  'Switchboard module, 16 extensions',  'extension_module', 159, 0, 0,  16, 0, 0.12, 6, 'seed 001'),
 ('EXT-32',  'Switchboard module, 32 extensions',  'extension_module', 289, 0, 0,  32, 0, 0.12, 6, 'seed 001'),
 ('EXT-64',  'Switchboard module, 64 extensions',  'extension_module', 519, 0, 0,  64, 0, 0.12, 6, 'seed 001'),
 ('EXT-128', 'Switchboard module, 128 extensions', 'extension_module', 899, 0, 0, 128, 0, 0.12, 6, 'seed 001'),
 ('C1-4',   '1 line + 4 extensions',   'combined',  69, 1, 1,  4,  199, 0.12, 6, 'seed 001'),
 ('C2-8',   '2 lines + 8 extensions',  'combined', 159, 1, 2,  8,  599, 0.12, 6, 'seed 001'),
 ('C4-16',  '4 lines + 16 extensions', 'combined', 369, 2, 4, 16, 1899, 0.12, 6,
            'seed 001; the tariff table says 18 extensions'),
 ('C8-32',  '8 lines + 32 extensions', 'combined', 699, 4, 8, 32, 3599, 0.12, 6, 'seed 001'),
 ('TRUNK',  'Trunk module',            'trunk',     29, 0, 1,  0,   89, 0.12, 6, 'seed 001'),
 ('RBT',    'Personalised ringback tone', 'addon',   6, 0, 0,  0,    0, 0,    0,
            'seed 001; charged from the next month'),
 ('CRM',    'CRM seat',                'addon',      9, 0, 0,  0,    0, 0,    0,
            'seed 001; prorated by day');

-- Seed 000: platform fee 1000 CNY/year, 0.10 CNY/min national; 12-month term.
INSERT INTO packages (code, name, kind, annual_fee, overage_rate, min_term_months, period_months, note)
VALUES ('P000-PLATFORM', 'Unified number platform (annual fee)', 'platform', 1000, 0.10, 12, 12,
        'seed 000; unused minutes expire at contract end');
-- Seed 002: a 400 package of a total over a period; monthly minimum = total / period,
-- waived the first month. Example: 2400 CNY over 12 months at 0.10 CNY/min, split billing.
INSERT INTO packages (code, name, kind, package_total, period_months, overage_rate,
                      split_billing, min_term_months, note)
VALUES ('P002-400-2400', '400 package 2400 CNY / 12 months', 'unified_400', 2400, 12, 0.10,
        true, 12, 'seed 002; monthly minimum 200 CNY from month two');
-- Seed 003: prestored 12000 CNY, minimum 2000 CNY/year at 0.12 CNY/min.
INSERT INTO packages (code, name, kind, prestored_amount, annual_minimum, overage_rate,
                      period_months, min_term_months, note)
VALUES ('P003-PRESTORED', 'Prestored 12000 CNY', 'prestored', 12000, 2000, 0.12, 12, 12,
        'seed 003; recordings kept one month');
