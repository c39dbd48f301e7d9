-- The web portal (issue 16): users log in with a password (an argon2id hash, never the
-- password), are locked out for a while after repeated failures, and hold server-side
-- sessions whose cookie value is kept only as SHA-256, beside its CSRF token.
ALTER TABLE operator_users
    ADD COLUMN password_hash  TEXT,                 -- argon2id; NULL: no portal login
    ADD COLUMN failed_logins  INTEGER NOT NULL DEFAULT 0 CHECK (failed_logins >= 0),
    ADD COLUMN locked_until   TIMESTAMPTZ;

CREATE TABLE portal_sessions (
    id            BIGSERIAL PRIMARY KEY,
    token_sha256  TEXT NOT NULL UNIQUE,
    user_id       BIGINT NOT NULL REFERENCES operator_users (id) ON DELETE CASCADE,
    csrf_token    TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    expires_at    TIMESTAMPTZ NOT NULL,
    ended_at      TIMESTAMPTZ,                      -- logout, password change, disable
    CHECK (expires_at > created_at)
);
CREATE INDEX portal_sessions_user ON portal_sessions (user_id) WHERE ended_at IS NULL;
