-- Transfers during a call (issue 17, item 2): DTMF blind (#1) and attended (*2) transfers
-- and SIP REFER. Each transfer is decided by the control plane like a call of its own
-- (dialplan/transfers.py); this is its record, one row per decision, next to the call's
-- own record (calls, one row per linkedid). A leg the tenant pays for has a reservation
-- under leg_call_id (<linkedid>~x<n>), settled when that leg ends: the ledger entry and
-- the reservation carry the same key.
CREATE TABLE call_transfers (
    id           BIGSERIAL PRIMARY KEY,
    linkedid     TEXT NOT NULL,                   -- the call (calls.linkedid)
    leg_call_id  TEXT NOT NULL UNIQUE,            -- the new leg (reservations.call_id)
    tenant_id    BIGINT REFERENCES tenants (id),
    kind         TEXT NOT NULL CHECK (kind IN ('blind', 'attended', 'refer')),
    transferor   TEXT NOT NULL DEFAULT '',        -- the transferring party's SIP endpoint
    target       TEXT NOT NULL,                   -- what was keyed (or the Refer-To user)
    action       TEXT NOT NULL CHECK (action IN ('dial', 'reject')),
    reason       TEXT NOT NULL,                   -- the reason code (dialplan/reasons.py)
    direction    TEXT NOT NULL,                   -- inbound | outbound | internal
    billable     BOOLEAN NOT NULL,                -- the tenant's package pays for the leg
    destinations TEXT[] NOT NULL DEFAULT '{}',
    decided_at   TIMESTAMPTZ NOT NULL
);
CREATE INDEX call_transfers_call ON call_transfers (linkedid);
CREATE INDEX call_transfers_tenant ON call_transfers (tenant_id, decided_at DESC);
