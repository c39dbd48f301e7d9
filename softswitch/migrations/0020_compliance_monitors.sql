-- The compliance monitors' state (issue 15.2; provisioning/compliance/watch.py).
--
-- When the phone's side first rang (or answered): the one-ring monitor counts the
-- outbound calls the caller abandoned within a few seconds of ringing.
ALTER TABLE calls ADD COLUMN alerted_at TIMESTAMPTZ;
-- The monitors read one tenant's outbound calls of a window.
CREATE INDEX calls_outbound_tenant ON calls (tenant_id, decided_at) WHERE direction = 'outbound';

-- Each monitor's current level per tenant and subject ('' the tenant as a whole, or a
-- caller number): the monitors record an event only when a level changes, and every
-- service instance exports these rows as softswitch_compliance_level.
CREATE TABLE compliance_levels (
    tenant_id   BIGINT NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    rule        TEXT NOT NULL,
    subject     TEXT NOT NULL DEFAULT '',
    level       TEXT NOT NULL CHECK (level IN ('ok', 'warning', 'critical')),
    value       NUMERIC(14, 4),
    since       TIMESTAMPTZ NOT NULL,
    checked_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant_id, rule, subject)
);

-- An operator's lift of a suspension or throttle: the monitors then count only what
-- happened after it, so the calls that tripped the rule do not trip it again at once.
ALTER TABLE tenant_compliance
    ADD COLUMN lifted_at TIMESTAMPTZ,
    ADD COLUMN lifted_by TEXT;
