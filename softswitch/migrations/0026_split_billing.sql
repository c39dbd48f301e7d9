-- Issue 17, item 4: split billing (分摊付费) of 400/4008 numbers (rating/split.py reads the
-- clause). The caller pays the local access to their own carrier; the enterprise pays the
-- forwarded leg, from a bound destination's answer to the end, at its package's rate.
-- Time the caller spends with the platform alone (a greeting, an IVR menu, a PIN, ringing
-- after the platform answered) is not the enterprise's.

-- Seed 003 §2.1: "400 电话是一种主被叫分摊业务，即主叫承担市话接入费，被叫承担所有来电接听费用".
-- (P002-400-2400, seed 002 §3.5, was loaded with split billing by migration 0004.)
UPDATE packages SET split_billing = true WHERE code = 'P003-PRESTORED' AND note LIKE 'seed 003%';

-- The call record keeps both parts: the caller's (answered_at .. ended_at) and the
-- enterprise's, which starts when a bound destination answered (forwarded_answered_at);
-- billed_leg says which of the two the settlement charged (billsec, amount).
ALTER TABLE calls
    ADD COLUMN forwarded_answered_at TIMESTAMPTZ,
    ADD COLUMN billed_leg TEXT CHECK (billed_leg IN ('call', 'forwarded'));

-- Whether a tenant's calls to a unified 400/4008 number are split-billed at p_now: one of
-- its subscriptions running that day (in its time zone) is to a split-billing package.
CREATE FUNCTION tenant_split_billing(p_tenant BIGINT, p_now TIMESTAMPTZ) RETURNS BOOLEAN
LANGUAGE sql STABLE AS $fn$
    SELECT EXISTS (
        SELECT 1
        FROM subscriptions s
        JOIN packages p ON p.id = s.package_id
        JOIN tenants t ON t.id = s.tenant_id
        WHERE s.tenant_id = p_tenant AND p.split_billing AND s.state = 'active'
          AND s.starts_on <= (p_now AT TIME ZONE t.timezone)::date
          AND (s.ends_on IS NULL OR s.ends_on >= (p_now AT TIME ZONE t.timezone)::date)
    )
$fn$;

-- Which part of a call the enterprise pays, settled at p_at: 'forwarded' for an inbound
-- call to a unified_400 number of a split-billing tenant, else 'call' (rating/split.py).
-- The call path asks it when the choice matters (softswitch/callpath/prepaid.py); the
-- settlement's own transaction writes it on the record (the trigger below), at the same
-- instant (the settlement's time, calls.settled_at).
CREATE FUNCTION call_billed_leg(p_tenant BIGINT, p_direction TEXT, p_number BIGINT, p_at TIMESTAMPTZ)
RETURNS TEXT LANGUAGE sql STABLE AS $fn$
    SELECT CASE
        WHEN p_direction = 'inbound' AND p_tenant IS NOT NULL
             AND (SELECT n.kind FROM numbers n WHERE n.id = p_number) = 'unified_400'
             AND tenant_split_billing(p_tenant, p_at)
        THEN 'forwarded' ELSE 'call' END
$fn$;

CREATE FUNCTION calls_billed_leg() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    NEW.billed_leg := call_billed_leg(NEW.tenant_id, NEW.direction, NEW.number_id, NEW.settled_at);
    RETURN NEW;
END
$fn$;

CREATE TRIGGER calls_billed_leg BEFORE UPDATE OF settled_at ON calls
FOR EACH ROW WHEN (OLD.settled_at IS NULL AND NEW.settled_at IS NOT NULL)
EXECUTE FUNCTION calls_billed_leg();

-- Both engines' call records by leg, for settling a call whose times the platform did not
-- see exactly: FreeSWITCH records the dialled leg by itself (uuid <> call_uuid: forwarded),
-- Asterisk one record per dialled pair with the caller's answer (legs_recorded false).
CREATE VIEW engine_cdr_legs AS
SELECT linkedid, answer, "end", billsec, disposition, false AS forwarded, false AS legs_recorded
FROM cdr
UNION ALL
SELECT COALESCE(call_uuid, uuid),
       CASE WHEN answer_epoch > 0 THEN to_timestamp(answer_epoch) END,
       to_timestamp(end_epoch),
       COALESCE(billsec, 0),
       CASE WHEN answer_epoch > 0 THEN 'ANSWERED' ELSE 'NO ANSWER' END,
       call_uuid IS NOT NULL AND uuid <> call_uuid,
       true
FROM freeswitch_cdr;
