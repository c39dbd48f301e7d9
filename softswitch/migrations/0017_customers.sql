-- Customers (CRM with click-to-dial, seed 001; issue 16 items 2 and 3): an enterprise's
-- contacts, their notes, and the click-to-dial calls its users placed to them
-- (provisioning/customers.py, provisioning/click_to_dial.py).
--
-- Phone numbers are kept E.164 ("+8613800138000"), normalised by the service layer with
-- phonenumbers (default region CN); the CHECK only guards the shape. They are personal
-- data: the service's logs show them masked (softswitch.core.masking).
--
-- Notes are rows of their own, not a JSON list in the customer's row: a note is written
-- once with its author and time and never edited, two users adding notes at the same
-- moment must not refuse each other with the customer's If-Match version, each note is
-- its own audit entry, and a long history does not make every read and update of the
-- customer carry it.

CREATE TABLE customers (
    id          BIGSERIAL PRIMARY KEY,
    tenant_id   BIGINT NOT NULL REFERENCES tenants (id),
    name        TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    company     TEXT NOT NULL DEFAULT '' CHECK (length(company) <= 200),
    phones      TEXT[] NOT NULL DEFAULT '{}'
                CHECK (cardinality(phones) <= 10
                       AND array_to_string(phones, ',') ~ '^(\+[1-9][0-9]{5,16}(,|$))*$'),
    email       TEXT NOT NULL DEFAULT '' CHECK (length(email) <= 254),
    tags        TEXT[] NOT NULL DEFAULT '{}' CHECK (cardinality(tags) <= 20),
    version     INTEGER NOT NULL DEFAULT 1,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX customers_tenant_name ON customers (tenant_id, lower(name), id);
-- "which customer is this number" (search by digits, a caller's number)
CREATE INDEX customers_phones ON customers USING gin (phones);
CREATE INDEX customers_tags ON customers USING gin (tags);

CREATE TABLE customer_notes (
    id           BIGSERIAL PRIMARY KEY,
    tenant_id    BIGINT NOT NULL REFERENCES tenants (id),
    customer_id  BIGINT NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    body         TEXT NOT NULL CHECK (length(body) BETWEEN 1 AND 2000),
    author       TEXT NOT NULL,                 -- the principal's name (username)
    author_user_id BIGINT,                      -- operator_users.id, when a user wrote it
    version      INTEGER NOT NULL DEFAULT 1,    -- the engine's convention; notes are not edited
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX customer_notes_customer ON customer_notes (customer_id, id);

-- One row per click-to-dial request Asterisk accepted: who asked, which extension rang
-- first, which number the second leg dials. `call_id` is the Originate's ChannelId, so
-- the call's linkedid: the call record (calls.linkedid), the reservation and the CDR of
-- the call carry it, and a tenant's status request is checked against this row.
CREATE TABLE click_to_dial_calls (
    id            BIGSERIAL PRIMARY KEY,
    tenant_id     BIGINT NOT NULL REFERENCES tenants (id),
    call_id       TEXT NOT NULL UNIQUE,
    customer_id   BIGINT REFERENCES customers (id) ON DELETE SET NULL,
    extension     TEXT NOT NULL,
    endpoint_id   TEXT NOT NULL,
    number        TEXT NOT NULL,               -- E.164
    dialled       TEXT NOT NULL,               -- the digits the outbound path dials
    requested_by  TEXT NOT NULL,
    requested_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX click_to_dial_calls_tenant ON click_to_dial_calls (tenant_id, id);

-- The extension a portal or API user places click-to-dial calls from ("my phone"), when
-- the request names none: chosen by the user, one per user.
CREATE TABLE agent_extensions (
    user_id     BIGINT PRIMARY KEY REFERENCES operator_users (id) ON DELETE CASCADE,
    tenant_id   BIGINT NOT NULL REFERENCES tenants (id),
    extension   TEXT NOT NULL CHECK (extension ~ '^[0-9]{2,6}$'),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
