-- Which month the account's included allowance belongs to. A billing run for an earlier
-- month (a catch-up, a re-run) posts that month's rent but must not replace a later
-- month's allowance: apply_package only sets an allowance for this month or a later one.
ALTER TABLE accounts ADD COLUMN IF NOT EXISTS allowance_month DATE;
