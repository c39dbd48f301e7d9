-- FreeSWITCH's own call records, written by mod_cdr_pg_csv for every leg at its hang-up
-- (docker/freeswitch/cdr_pg_csv.conf.xml): the engine's account of the call, beside
-- Asterisk's cdr, read by the control plane after a crash as Asterisk's is. Times are
-- FreeSWITCH's epoch seconds (0 = never), so no time zone is guessed at insert.
CREATE TABLE freeswitch_cdr (
    id                 BIGSERIAL PRIMARY KEY,
    uuid               TEXT NOT NULL,
    call_uuid          TEXT,            -- the call's id across its legs (the caller's uuid)
    caller_id_number   TEXT,
    destination_number TEXT,
    context            TEXT,
    start_epoch        BIGINT,
    answer_epoch       BIGINT,
    end_epoch          BIGINT,
    duration           INTEGER,
    billsec            INTEGER,
    hangup_cause       TEXT,
    ss_reason          TEXT,            -- the reason code the control plane set
    last_app           TEXT,
    inserted_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX freeswitch_cdr_call ON freeswitch_cdr (COALESCE(call_uuid, uuid));

-- Both engines' records in the shape the control plane reads (linkedid, answer, end,
-- billsec, disposition): prepaid settlement and the audit ask this, not one engine.
CREATE VIEW engine_cdr AS
SELECT linkedid, answer, "end", billsec, disposition, userfield
FROM cdr
UNION ALL
SELECT COALESCE(call_uuid, uuid),
       CASE WHEN answer_epoch > 0 THEN to_timestamp(answer_epoch) END,
       to_timestamp(end_epoch),
       COALESCE(billsec, 0),
       CASE WHEN answer_epoch > 0 THEN 'ANSWERED' ELSE 'NO ANSWER' END,
       COALESCE(ss_reason, '')
FROM freeswitch_cdr;
