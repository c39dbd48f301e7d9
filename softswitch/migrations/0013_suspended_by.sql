-- Who suspended a tenant is data of the tenant, not something to read back from the audit
-- log: the billing cycle resumes (and after the grace terminates) only the tenants it
-- suspended itself, and leaves an operator's suspension to the operator.
--   'system:billing'  the billing cycle (it writes this right after suspending)
--   'operator'        any other suspension (the API, the CLI, SQL by hand)
--   NULL              the tenant is not suspended
ALTER TABLE tenants ADD COLUMN IF NOT EXISTS suspended_by TEXT;

-- A change of state in or out of 'suspended' that does not say who records 'operator' on
-- the way in and clears the column on the way out, so a stale 'system:billing' can never
-- outlive the suspension it was written for.
CREATE FUNCTION tenants_suspended_by() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.state IS DISTINCT FROM OLD.state THEN
        IF NEW.state <> 'suspended' THEN
            NEW.suspended_by := NULL;
        ELSIF NEW.suspended_by IS NOT DISTINCT FROM OLD.suspended_by THEN
            NEW.suspended_by := 'operator';
        END IF;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER tenants_suspended_by BEFORE UPDATE OF state ON tenants
    FOR EACH ROW EXECUTE FUNCTION tenants_suspended_by();

-- Tenants suspended before this column existed: the latest 'suspend' in the audit log says
-- who, as the billing cycle used to read it.
UPDATE tenants t
SET suspended_by = CASE
        WHEN (SELECT a.actor FROM audit_log a
              WHERE a.tenant_id = t.id AND a.entity = 'tenants' AND a.action = 'suspend'
              ORDER BY a.id DESC LIMIT 1) = 'system:billing' THEN 'system:billing'
        ELSE 'operator' END
WHERE t.state = 'suspended';
