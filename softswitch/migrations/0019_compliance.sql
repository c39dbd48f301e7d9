-- Compliance and anti-fraud (issue 15; ../shared/MISSION.md, "Compliance duties").
--
-- Rules are data: one row per kind for the platform (tenant_id NULL, the defaults) and
-- optionally one per tenant, which replaces the platform's row of that kind for that
-- tenant. The call path reads them from its snapshot (dialplan.compliance.rules_for);
-- the monitors (provisioning.compliance) read the same rows.
--
-- Gates, checked on every outbound call before it may ring:
--   callee_frequency  params {"windows": [[seconds, max_calls], ...]}  calls let through
--                     to one callee per window (counted in outbound_attempts)
--   calling_hours     params {"start": "HH:MM", "end": "HH:MM"}  in the tenant's time zone
--   daily_spend_cap   params {"amount": "500.00"}  every call charge of the tenant's local
--                     day plus the money reserved for its live calls (accounts.spent_today)
-- Monitors, evaluated over call records on sliding windows, each with a warning and a
-- critical level and the action taken at critical:
--   robocall, one_ring, failed_rate, avg_duration, call_frequency, numbers_in_use, complaints
CREATE TABLE compliance_rules (
    id          BIGSERIAL PRIMARY KEY,
    tenant_id   BIGINT REFERENCES tenants (id) ON DELETE CASCADE,
    kind        TEXT NOT NULL CHECK (kind IN (
                    'callee_frequency', 'calling_hours', 'daily_spend_cap',
                    'robocall', 'one_ring', 'failed_rate', 'avg_duration', 'call_frequency',
                    'numbers_in_use', 'complaints')),
    params      JSONB NOT NULL DEFAULT '{}',
    warning     NUMERIC(14, 4),
    critical    NUMERIC(14, 4),
    action      TEXT NOT NULL DEFAULT 'notice'
                CHECK (action IN ('notice', 'alert', 'throttle', 'suspend')),
    enabled     BOOLEAN NOT NULL DEFAULT true,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    version     INTEGER NOT NULL DEFAULT 1,
    UNIQUE NULLS NOT DISTINCT (tenant_id, kind)
);
CREATE TRIGGER compliance_rules_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON compliance_rules FOR EACH STATEMENT EXECUTE FUNCTION notify_config_changed();

-- The platform's defaults: the shapes Chinese cloud voice platforms publish.
INSERT INTO compliance_rules (tenant_id, kind, params, warning, critical, action) VALUES
    (NULL, 'callee_frequency', '{"windows": [[60, 1], [3600, 5], [86400, 20]]}', NULL, NULL, 'notice'),
    (NULL, 'calling_hours', '{"start": "08:00", "end": "21:00"}', NULL, NULL, 'notice'),
    (NULL, 'daily_spend_cap', '{"amount": "5000.00"}', NULL, NULL, 'notice'),
    -- distinct callees in the window, counted when the calls look automated (answer rate
    -- below max_answer_rate or average talk below max_avg_talk_s)
    (NULL, 'robocall', '{"window_s": 600, "max_answer_rate": 0.3, "max_avg_talk_s": 10, "min_calls": 20}',
        100, 200, 'suspend'),
    -- share of outbound calls abandoned by the caller within ring_s of ringing
    (NULL, 'one_ring', '{"window_s": 3600, "ring_s": 4, "min_calls": 20}', 0.3, 0.5, 'suspend'),
    -- share of outbound calls not answered
    (NULL, 'failed_rate', '{"window_s": 3600, "min_calls": 50}', 0.7, 0.85, 'notice'),
    -- average talk time of answered outbound calls: the level is reached BELOW the threshold
    (NULL, 'avg_duration', '{"window_s": 3600, "min_calls": 50, "below": true}', 15, 8, 'notice'),
    -- outbound calls per caller number in the window
    (NULL, 'call_frequency', '{"window_s": 3600}', 300, 600, 'throttle'),
    -- distinct caller numbers in use in the window (per tenant)
    (NULL, 'numbers_in_use', '{"window_s": 86400}', 20, 50, 'alert'),
    -- complaints registered against the tenant in the window
    (NULL, 'complaints', '{"window_s": 2592000}', 3, 5, 'suspend');

-- Every outbound call let through, per callee: the per-callee windows count these, taken
-- under the account's row lock in the same transaction as the call's reservation, so two
-- service instances never each let the same call through. Rows older than the longest
-- window are purged by the scheduler.
CREATE TABLE outbound_attempts (
    id          BIGSERIAL PRIMARY KEY,
    tenant_id   BIGINT NOT NULL REFERENCES tenants (id),
    callee      TEXT NOT NULL,
    caller_id   TEXT NOT NULL DEFAULT '',
    call_id     TEXT NOT NULL,
    at          TIMESTAMPTZ NOT NULL
);
CREATE INDEX outbound_attempts_callee ON outbound_attempts (tenant_id, callee, at);
CREATE INDEX outbound_attempts_tenant ON outbound_attempts (tenant_id, at);

-- The daily spend: charges settled on the tenant's local day (spent_day). Kept by the
-- settlement statement; the reservation statement refuses a call whose money would take
-- spent_today + reserved past the day's cap.
ALTER TABLE accounts
    ADD COLUMN spent_day DATE,
    ADD COLUMN spent_today NUMERIC(14, 4) NOT NULL DEFAULT 0 CHECK (spent_today >= 0);

-- A tenant's outbound state set by the monitors' actions (or an operator): suspended
-- outbound calls or a throttle (calls per minute). Lifted by an operator through the API
-- (audited). Read by the call path under the account lock, not from the snapshot, so
-- every instance sees a suspension at once.
CREATE TABLE tenant_compliance (
    tenant_id               BIGINT PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    outbound_suspended_at   TIMESTAMPTZ,
    suspended_rule          TEXT,
    throttle_per_min        INTEGER CHECK (throttle_per_min IS NULL OR throttle_per_min >= 0),
    throttled_at            TIMESTAMPTZ,
    throttled_rule          TEXT,
    updated_at              TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Complaints against an enterprise's outbound calls (registered through the API).
CREATE TABLE complaints (
    id          BIGSERIAL PRIMARY KEY,
    tenant_id   BIGINT NOT NULL REFERENCES tenants (id),
    number      TEXT NOT NULL,               -- the enterprise's caller number complained of
    callee      TEXT NOT NULL,               -- who complained (the called party)
    category    TEXT NOT NULL CHECK (category IN ('harassment', 'robocall', 'one_ring', 'fraud',
                                                  'caller_id', 'other')),
    occurred_at TIMESTAMPTZ NOT NULL,        -- when the complained-of call was made
    note        TEXT NOT NULL DEFAULT '',
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    created_by  BIGINT
);
CREATE INDEX complaints_tenant_time ON complaints (tenant_id, occurred_at);

-- What the monitors found and what was done: one row per (tenant, rule, subject) level
-- change. subject is '' for the tenant as a whole or the caller number.
CREATE TABLE compliance_events (
    id          BIGSERIAL PRIMARY KEY,
    tenant_id   BIGINT NOT NULL REFERENCES tenants (id),
    rule        TEXT NOT NULL,
    subject     TEXT NOT NULL DEFAULT '',
    level       TEXT NOT NULL CHECK (level IN ('ok', 'warning', 'critical')),
    value       NUMERIC(14, 4),
    threshold   NUMERIC(14, 4),
    action      TEXT NOT NULL CHECK (action IN ('none', 'notice', 'alert', 'throttle', 'suspend', 'lift')),
    detail      JSONB NOT NULL DEFAULT '{}',
    at          TIMESTAMPTZ NOT NULL,
    actor       TEXT NOT NULL DEFAULT 'monitor'
);
CREATE INDEX compliance_events_tenant_time ON compliance_events (tenant_id, at);

-- ---------------------------------------------------------------- scheduler (issue 15.6)
-- One row per run of a periodic job: which instance ran it, when, and how it ended.
CREATE TABLE scheduler_runs (
    id          BIGSERIAL PRIMARY KEY,
    job         TEXT NOT NULL,
    instance    TEXT NOT NULL,
    started_at  TIMESTAMPTZ NOT NULL,
    finished_at TIMESTAMPTZ,
    outcome     TEXT NOT NULL DEFAULT 'running' CHECK (outcome IN ('running', 'ok', 'failed', 'skipped')),
    detail      JSONB NOT NULL DEFAULT '{}'
);
CREATE INDEX scheduler_runs_job_time ON scheduler_runs (job, started_at DESC);
