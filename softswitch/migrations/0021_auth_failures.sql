-- Failed API-token and portal-login attempts (provisioning/auth_limits.py), one row per key:
-- 'src:<address>', 'tok:<token display prefix>', 'user:<username>'. Shared by every
-- instance, so the limit holds however requests are spread over them.
CREATE TABLE auth_failures (
    key           TEXT PRIMARY KEY,
    window_start  TIMESTAMPTZ NOT NULL,
    failures      INTEGER NOT NULL CHECK (failures >= 0),
    locked_until  TIMESTAMPTZ
);
CREATE INDEX auth_failures_window ON auth_failures (window_start);
