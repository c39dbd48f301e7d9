-- Billing cycle (softswitch/billing_cycle.py): what the contracts charge by the calendar —
-- monthly rent, monthly minimum consumption, penalties for unanswered calls, late fees —
-- is owed whether or not money is left, so posting it may take the balance below
-- -credit_limit (a debt; the tenant is then suspended, and late fees accrue on it).
--
-- The CHECK "balance - reserved >= -credit_limit" of 0006 would refuse such a debt. What
-- real-time prepaid needs of it is narrower: a reservation never takes money that is not
-- there. That rule stays enforced by the database, as a trigger that checks it whenever
-- `reserved` grows (open/renew a reservation). Settlement (charge <= what was reserved),
-- recharges and billing-cycle debits do not grow `reserved`.

ALTER TABLE accounts DROP CONSTRAINT accounts_money;

CREATE FUNCTION accounts_reserve_within_money() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.reserved > OLD.reserved AND NEW.balance - NEW.reserved < -NEW.credit_limit THEN
        RAISE EXCEPTION 'a reservation may not exceed the money available (balance % - reserved % < -credit_limit %)',
            NEW.balance, NEW.reserved, NEW.credit_limit
            USING ERRCODE = 'check_violation', CONSTRAINT = 'accounts_money', TABLE = 'accounts';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER accounts_money BEFORE UPDATE ON accounts
    FOR EACH ROW EXECUTE FUNCTION accounts_reserve_within_money();
