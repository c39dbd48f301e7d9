-- The phone self-service line (seed 001): an enterprise's account is its tenant id; the
-- line's password is kept hashed (salted SHA-256, like number PINs), and the account is
-- locked after repeated wrong passwords until an operator unlocks it.
ALTER TABLE tenants
    ADD COLUMN selfservice_password_hash TEXT,
    ADD COLUMN selfservice_locked_at TIMESTAMPTZ;
