-- Incoming-call analysis (来电分析, issue 16): figures by the caller's province and city, by
-- local hour and weekday, answered/missed, first-time/repeat and per number, read from
-- aggregates kept as call records end, never from a scan of `calls`
-- (provisioning/analysis.py documents the definitions).
--
-- A trigger on `calls` counts an inbound call to a tenant's number once its record has its
-- end (ended_at), whatever writes it (the call record writer, the engine audit completing
-- a record from the CDR, a test). What it counted is kept per call in
-- call_analysis_calls, so a later change of the record takes back exactly what was added
-- (no double count) and the tenant's time zone is the one of the time of the call.
-- Every aggregate write holds one transaction-level advisory lock, so concurrent writers
-- of call ends queue instead of deadlocking on the shared aggregate rows.
--
-- The caller's place is dialplan.region.region_of (phonenumbers' geocoder, the region
-- policy's lookup) — Python, so the database only caches its answers per caller number in
-- caller_places. A call whose caller is not there yet is counted at once everywhere, its
-- place as '?' ("not yet placed"), until provisioning.analysis.place_callers() looks the
-- new callers up and moves their calls to their province and city.

CREATE TABLE caller_places (
    caller    TEXT PRIMARY KEY,          -- as delivered in calls.caller
    province  TEXT NOT NULL,             -- region_of(caller).province; '' unknown
    city      TEXT NOT NULL,             -- region_of(caller).city; '' unknown
    placed_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- One row per counted call: what the aggregates hold for it.
CREATE TABLE call_analysis_calls (
    call_id      BIGINT PRIMARY KEY,     -- calls.id (no foreign key: calls are never deleted
                                         -- by the service, and a delete is handled below)
    tenant_id    BIGINT NOT NULL,
    number_id    BIGINT NOT NULL,
    caller       TEXT NOT NULL,
    decided_at   TIMESTAMPTZ NOT NULL,
    local_day    DATE NOT NULL,          -- decided_at in the tenant's zone at the time
    local_hour   SMALLINT NOT NULL CHECK (local_hour BETWEEN 0 AND 23),
    outcome      TEXT NOT NULL CHECK (outcome IN ('answered', 'missed', 'refused')),
    talk_seconds INTEGER NOT NULL CHECK (talk_seconds >= 0),
    province     TEXT,                   -- NULL: caller not placed yet
    city         TEXT,
    first_call   BOOLEAN NOT NULL        -- the caller's first counted call to the tenant
);
CREATE INDEX call_analysis_calls_caller ON call_analysis_calls (tenant_id, caller, decided_at, call_id);
CREATE INDEX call_analysis_calls_unplaced ON call_analysis_calls (tenant_id) WHERE province IS NULL;

CREATE TABLE call_analysis_hours (
    tenant_id    BIGINT NOT NULL,
    local_day    DATE NOT NULL,
    number_id    BIGINT NOT NULL,
    local_hour   SMALLINT NOT NULL,
    outcome      TEXT NOT NULL,
    calls        INTEGER NOT NULL,
    talk_seconds BIGINT NOT NULL,
    first_calls  INTEGER NOT NULL,       -- calls that were their caller's first
    PRIMARY KEY (tenant_id, local_day, number_id, local_hour, outcome)
);

CREATE TABLE call_analysis_places (
    tenant_id BIGINT NOT NULL,
    local_day DATE NOT NULL,
    number_id BIGINT NOT NULL,
    province  TEXT NOT NULL,             -- '?': not placed yet; '': unknown region
    city      TEXT NOT NULL,
    calls     INTEGER NOT NULL,
    answered  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, local_day, number_id, province, city)
);

CREATE FUNCTION call_analysis_lock() RETURNS void LANGUAGE sql AS
$$ SELECT pg_advisory_xact_lock(99711518) $$;

CREATE FUNCTION call_analysis_outcome(action TEXT, answered_at TIMESTAMPTZ) RETURNS TEXT
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN action = 'reject' THEN 'refused'
                WHEN answered_at IS NOT NULL THEN 'answered'
                ELSE 'missed' END
$$;

CREATE FUNCTION call_analysis_talk(answered_at TIMESTAMPTZ, ended_at TIMESTAMPTZ) RETURNS INTEGER
LANGUAGE sql IMMUTABLE AS $$
    SELECT COALESCE(GREATEST(0, floor(extract(epoch FROM ended_at - answered_at)))::integer, 0)
$$;

-- Add (sign 1) or take back (sign -1) one counted call's share of the aggregates.
CREATE FUNCTION call_analysis_apply(r call_analysis_calls, sign INTEGER) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    talk INTEGER := CASE WHEN r.outcome = 'answered' THEN r.talk_seconds ELSE 0 END;
BEGIN
    INSERT INTO call_analysis_hours AS h
    VALUES (r.tenant_id, r.local_day, r.number_id, r.local_hour, r.outcome, sign, sign * talk,
            CASE WHEN r.first_call THEN sign ELSE 0 END)
    ON CONFLICT (tenant_id, local_day, number_id, local_hour, outcome) DO UPDATE
        SET calls = h.calls + EXCLUDED.calls, talk_seconds = h.talk_seconds + EXCLUDED.talk_seconds,
            first_calls = h.first_calls + EXCLUDED.first_calls;
    INSERT INTO call_analysis_places AS p
    VALUES (r.tenant_id, r.local_day, r.number_id, COALESCE(r.province, '?'), COALESCE(r.city, '?'),
            sign, CASE WHEN r.outcome = 'answered' THEN sign ELSE 0 END)
    ON CONFLICT (tenant_id, local_day, number_id, province, city) DO UPDATE
        SET calls = p.calls + EXCLUDED.calls, answered = p.answered + EXCLUDED.answered;
    IF sign < 0 THEN
        DELETE FROM call_analysis_hours
        WHERE (tenant_id, local_day, number_id, local_hour, outcome)
              = (r.tenant_id, r.local_day, r.number_id, r.local_hour, r.outcome) AND calls = 0;
        DELETE FROM call_analysis_places
        WHERE (tenant_id, local_day, number_id, province, city)
              = (r.tenant_id, r.local_day, r.number_id, COALESCE(r.province, '?'), COALESCE(r.city, '?'))
          AND calls = 0;
    END IF;
END $$;

-- A call's first-call mark moves (a call of the caller that started earlier ended later,
-- or the first one is no longer counted).
CREATE FUNCTION call_analysis_mark_first(r call_analysis_calls, first BOOLEAN) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE call_analysis_calls SET first_call = first WHERE call_id = r.call_id;
    UPDATE call_analysis_hours SET first_calls = first_calls + CASE WHEN first THEN 1 ELSE -1 END
    WHERE (tenant_id, local_day, number_id, local_hour, outcome)
          = (r.tenant_id, r.local_day, r.number_id, r.local_hour, r.outcome);
END $$;

CREATE FUNCTION call_analysis_remove(id BIGINT) RETURNS call_analysis_calls
LANGUAGE plpgsql AS $$
DECLARE
    r call_analysis_calls;
    nxt call_analysis_calls;
BEGIN
    DELETE FROM call_analysis_calls WHERE call_id = id RETURNING * INTO r;
    IF r.call_id IS NULL THEN
        RETURN NULL;
    END IF;
    PERFORM call_analysis_apply(r, -1);
    IF r.first_call THEN
        SELECT * INTO nxt FROM call_analysis_calls
        WHERE tenant_id = r.tenant_id AND caller = r.caller
        ORDER BY decided_at, call_id LIMIT 1;
        IF nxt.call_id IS NOT NULL THEN
            PERFORM call_analysis_mark_first(nxt, true);
        END IF;
    END IF;
    RETURN r;
END $$;

-- Count call c; `frozen` is what was counted for it before (its local day and hour stay
-- those of the zone at the time while its start and tenant are unchanged).
CREATE FUNCTION call_analysis_add(c calls, frozen call_analysis_calls) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    r call_analysis_calls;
    prev call_analysis_calls;
    zone TEXT;
    lt TIMESTAMP;
BEGIN
    r.call_id := c.id;
    r.tenant_id := c.tenant_id;
    r.number_id := c.number_id;
    r.caller := c.caller;
    r.decided_at := c.decided_at;
    IF frozen.call_id IS NOT NULL AND frozen.tenant_id = c.tenant_id AND frozen.decided_at = c.decided_at THEN
        r.local_day := frozen.local_day;
        r.local_hour := frozen.local_hour;
    ELSE
        SELECT timezone INTO zone FROM tenants WHERE tenants.id = c.tenant_id;
        lt := c.decided_at AT TIME ZONE COALESCE(zone, 'Asia/Shanghai');
        r.local_day := lt::date;
        r.local_hour := extract(hour FROM lt);
    END IF;
    r.outcome := call_analysis_outcome(c.action, c.answered_at);
    r.talk_seconds := CASE WHEN r.outcome = 'answered' THEN call_analysis_talk(c.answered_at, c.ended_at) ELSE 0 END;
    SELECT province, city INTO r.province, r.city FROM caller_places WHERE caller = c.caller;
    SELECT * INTO prev FROM call_analysis_calls
    WHERE tenant_id = c.tenant_id AND caller = c.caller
    ORDER BY decided_at, call_id LIMIT 1;
    r.first_call := prev.call_id IS NULL OR (c.decided_at, c.id) < (prev.decided_at, prev.call_id);
    IF r.first_call AND prev.call_id IS NOT NULL THEN
        PERFORM call_analysis_mark_first(prev, false);
    END IF;
    INSERT INTO call_analysis_calls SELECT r.*;
    PERFORM call_analysis_apply(r, 1);
END $$;

CREATE FUNCTION calls_analysis() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    was call_analysis_calls;
BEGIN
    PERFORM call_analysis_lock();
    IF TG_OP <> 'INSERT' THEN
        was := call_analysis_remove(OLD.id);
    END IF;
    IF TG_OP <> 'DELETE' AND NEW.ended_at IS NOT NULL AND NEW.direction = 'inbound'
       AND NEW.tenant_id IS NOT NULL AND NEW.number_id IS NOT NULL THEN
        PERFORM call_analysis_add(NEW, was);
    END IF;
    RETURN NULL;
END $$;

-- Decisions are inserted without an end: the WHEN clauses keep those (and every update
-- that changes nothing counted) out of PL/pgSQL.
CREATE TRIGGER calls_analysis_insert AFTER INSERT ON calls FOR EACH ROW
    WHEN (NEW.ended_at IS NOT NULL AND NEW.direction = 'inbound'
          AND NEW.tenant_id IS NOT NULL AND NEW.number_id IS NOT NULL)
    EXECUTE FUNCTION calls_analysis();
CREATE TRIGGER calls_analysis_update
    AFTER UPDATE OF ended_at, answered_at, decided_at, tenant_id, number_id, caller, direction, action
    ON calls FOR EACH ROW
    WHEN ((OLD.ended_at IS NOT NULL OR NEW.ended_at IS NOT NULL)
          AND (OLD.ended_at, OLD.answered_at, OLD.decided_at, OLD.tenant_id, OLD.number_id, OLD.caller,
               OLD.direction, OLD.action)
              IS DISTINCT FROM
              (NEW.ended_at, NEW.answered_at, NEW.decided_at, NEW.tenant_id, NEW.number_id, NEW.caller,
               NEW.direction, NEW.action))
    EXECUTE FUNCTION calls_analysis();
CREATE TRIGGER calls_analysis_delete AFTER DELETE ON calls FOR EACH ROW
    WHEN (OLD.ended_at IS NOT NULL)
    EXECUTE FUNCTION calls_analysis();

-- Move a tenant's calls whose callers caller_places now knows from '?' to their place.
CREATE FUNCTION call_analysis_place(tenant BIGINT) RETURNS INTEGER LANGUAGE plpgsql AS $$
DECLARE
    moved INTEGER;
BEGIN
    PERFORM call_analysis_lock();
    CREATE TEMP TABLE IF NOT EXISTS call_analysis_moved (
        number_id BIGINT, local_day DATE, province TEXT, city TEXT, answered BOOLEAN
    ) ON COMMIT DELETE ROWS;
    TRUNCATE call_analysis_moved;
    WITH m AS (
        UPDATE call_analysis_calls l SET province = p.province, city = p.city
        FROM caller_places p
        WHERE l.tenant_id = tenant AND l.province IS NULL AND p.caller = l.caller
        RETURNING l.number_id, l.local_day, l.province, l.city, l.outcome = 'answered' AS answered
    )
    INSERT INTO call_analysis_moved SELECT * FROM m;
    GET DIAGNOSTICS moved = ROW_COUNT;
    IF moved = 0 THEN
        RETURN 0;
    END IF;
    UPDATE call_analysis_places a SET calls = a.calls - m.calls, answered = a.answered - m.answered
    FROM (SELECT number_id, local_day, count(*) AS calls, count(*) FILTER (WHERE answered) AS answered
          FROM call_analysis_moved GROUP BY 1, 2) m
    WHERE a.tenant_id = tenant AND a.local_day = m.local_day AND a.number_id = m.number_id
      AND a.province = '?' AND a.city = '?';
    DELETE FROM call_analysis_places WHERE tenant_id = tenant AND province = '?' AND calls = 0;
    INSERT INTO call_analysis_places AS a
    SELECT tenant, local_day, number_id, province, city, count(*), count(*) FILTER (WHERE answered)
    FROM call_analysis_moved GROUP BY local_day, number_id, province, city
    ON CONFLICT (tenant_id, local_day, number_id, province, city) DO UPDATE
        SET calls = a.calls + EXCLUDED.calls, answered = a.answered + EXCLUDED.answered;
    RETURN moved;
END $$;

-- Backfill: every call record that already has its end, local days in each tenant's
-- present zone, places '?' until the first analysis (or `python -m provisioning.analysis
-- place`) looks the callers up.
INSERT INTO call_analysis_calls
SELECT c.id, c.tenant_id, c.number_id, c.caller, c.decided_at,
       (c.decided_at AT TIME ZONE t.timezone)::date,
       extract(hour FROM c.decided_at AT TIME ZONE t.timezone),
       call_analysis_outcome(c.action, c.answered_at),
       CASE WHEN call_analysis_outcome(c.action, c.answered_at) = 'answered'
            THEN call_analysis_talk(c.answered_at, c.ended_at) ELSE 0 END,
       NULL, NULL,
       row_number() OVER (PARTITION BY c.tenant_id, c.caller ORDER BY c.decided_at, c.id) = 1
FROM calls c JOIN tenants t ON t.id = c.tenant_id
WHERE c.ended_at IS NOT NULL AND c.direction = 'inbound' AND c.number_id IS NOT NULL;

INSERT INTO call_analysis_hours
SELECT tenant_id, local_day, number_id, local_hour, outcome, count(*), sum(talk_seconds),
       count(*) FILTER (WHERE first_call)
FROM call_analysis_calls GROUP BY 1, 2, 3, 4, 5;

INSERT INTO call_analysis_places
SELECT tenant_id, local_day, number_id, '?', '?', count(*), count(*) FILTER (WHERE outcome = 'answered')
FROM call_analysis_calls GROUP BY 1, 2, 3;

CREATE FUNCTION calls_analysis_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE call_analysis_calls, call_analysis_hours, call_analysis_places;
    RETURN NULL;
END $$;
CREATE TRIGGER calls_analysis_truncate AFTER TRUNCATE ON calls
    FOR EACH STATEMENT EXECUTE FUNCTION calls_analysis_truncate();
