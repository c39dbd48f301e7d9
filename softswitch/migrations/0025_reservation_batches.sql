-- Issue 14, item 5: money operations in batches, one commit for many calls (group commit).
--
-- open_reservations() and settle_reservations() take arrays (element i is one call) and
-- apply them in order in one statement, so one round trip and one durable commit serve a
-- whole batch: the service's batcher (softswitch/callpath/money_batch.py) sends whatever
-- arrived while the previous batch was committing. A batch of one is exactly the single
-- call: provisioning/ledger.py sends every open and settlement through these functions.
--
-- Each function locks the batch's account rows once (in tenant order: two batches, two
-- service instances, never wait on each other in a cycle), decides every element in turn
-- on the locked rows' running state — the same arithmetic as one by one: billable_seconds
-- and rated_amount of migration 0011 — and then writes each account row once, and the
-- reservations, ledger entries and call records in one statement each. Writing a hot
-- account's row once per batch instead of once per call is what makes a batch cheap: its
-- row does not grow a chain of versions inside the transaction.
--
-- The statement that locks the accounts is the first of the function, and what is read
-- after it (open reservations of the batch's calls) is read by a later statement with
-- its own snapshot (READ COMMITTED): it sees every reservation committed by whoever held
-- the lock before us.

CREATE FUNCTION open_reservations(
    p_tenant BIGINT[], p_call TEXT[], p_channel TEXT[], p_slice INTEGER[], p_now TIMESTAMPTZ[],
    p_cap NUMERIC[]
) RETURNS TABLE (
    r_n INTEGER, r_id BIGINT, r_amount NUMERIC, r_included_s INTEGER, r_granted_s INTEGER,
    r_refusal TEXT
) LANGUAGE plpgsql AS $fn$
DECLARE
    n INTEGER := coalesce(array_length(p_call, 1), 0);
    ts BIGINT[]; bal NUMERIC[]; res NUMERIC[]; lim NUMERIC[]; cap INTEGER[]; inuse INTEGER[];
    inc_left INTEGER[]; inc_res INTEGER[]; rate NUMERIC[]; first_s INTEGER[]; step_s INTEGER[];
    sp_today NUMERIC[]; sp_day DATE[]; tz TEXT[]; changed INTEGER[];
    known TEXT[];
    k INTEGER; billable INTEGER; take INTEGER; amt NUMERIC; spent NUMERIC; why TEXT;
    o_why TEXT[] := '{}'; o_money NUMERIC[] := '{}'; o_take INTEGER[] := '{}';
    granted INTEGER[] := '{}';
    new_ids BIGINT[] := '{}'; new_calls TEXT[] := '{}';
BEGIN
    SELECT array_agg(x.tenant_id ORDER BY x.tenant_id), array_agg(x.balance ORDER BY x.tenant_id),
           array_agg(x.reserved ORDER BY x.tenant_id), array_agg(x.credit_limit ORDER BY x.tenant_id),
           array_agg(x.channel_cap ORDER BY x.tenant_id), array_agg(x.channels_in_use ORDER BY x.tenant_id),
           array_agg(x.included_seconds_left ORDER BY x.tenant_id),
           array_agg(x.included_reserved_s ORDER BY x.tenant_id),
           array_agg(x.rate_per_minute ORDER BY x.tenant_id), array_agg(x.first_increment_s ORDER BY x.tenant_id),
           array_agg(x.increment_s ORDER BY x.tenant_id), array_agg(x.spent_today ORDER BY x.tenant_id),
           array_agg(x.spent_day ORDER BY x.tenant_id), array_agg(x.timezone ORDER BY x.tenant_id),
           array_agg(0 ORDER BY x.tenant_id)
    INTO ts, bal, res, lim, cap, inuse, inc_left, inc_res, rate, first_s, step_s, sp_today, sp_day, tz, changed
    FROM (SELECT a.*, t.timezone FROM accounts a JOIN tenants t ON t.id = a.tenant_id
          WHERE a.tenant_id = ANY (p_tenant) ORDER BY a.tenant_id FOR UPDATE OF a) x;

    SELECT coalesce(array_agg(call_id), '{}') INTO known FROM reservations WHERE call_id = ANY (p_call);

    FOR i IN 1 .. n LOOP
        k := array_position(ts, p_tenant[i]);
        amt := NULL; take := NULL; why := NULL;
        IF k IS NULL THEN
            why := 'NO_ACCOUNT';
        ELSIF p_call[i] = ANY (known) THEN
            why := 'ALREADY_OPEN';
        ELSE
            billable := billable_seconds(p_slice[i], first_s[k], step_s[k]);
            take := LEAST(GREATEST(inc_left[k] - inc_res[k], 0), billable);
            amt := rated_amount(billable, take, rate[k]);
            spent := CASE WHEN sp_day[k] = (p_now[i] AT TIME ZONE tz[k])::date THEN sp_today[k] ELSE 0 END;
            IF inuse[k] >= cap[k] THEN
                why := 'CHANNEL_LIMIT';
            ELSIF bal[k] - res[k] - amt < -lim[k] THEN
                why := 'NO_BALANCE';
            ELSIF p_cap[i] IS NOT NULL AND spent + res[k] + amt > p_cap[i] THEN
                why := 'SPEND_CAP';
            ELSE
                res[k] := res[k] + amt;
                inuse[k] := inuse[k] + 1;
                inc_res[k] := inc_res[k] + take;
                changed[k] := changed[k] + 1;
                known := known || p_call[i];
                granted := granted || i;
            END IF;
        END IF;
        o_why[i] := why; o_money[i] := amt; o_take[i] := take;
    END LOOP;

    IF cardinality(granted) > 0 THEN
        UPDATE accounts a
        SET reserved = u.res, channels_in_use = u.inuse, included_reserved_s = u.inc_res,
            version = a.version + u.changed
        FROM unnest(ts, res, inuse, inc_res, changed) AS u(tenant_id, res, inuse, inc_res, changed)
        WHERE a.tenant_id = u.tenant_id AND u.changed > 0;

        WITH ins AS (
            INSERT INTO reservations (call_id, tenant_id, channel, amount, included_s, granted_s, opened_at)
            SELECT p_call[g], p_tenant[g], p_channel[g], o_money[g], o_take[g], p_slice[g], p_now[g]
            FROM unnest(granted) WITH ORDINALITY AS u(g, ord) ORDER BY ord
            RETURNING id, call_id
        )
        SELECT array_agg(ins.id), array_agg(ins.call_id) INTO new_ids, new_calls FROM ins;
    END IF;

    FOR i IN 1 .. n LOOP
        r_n := i;
        r_refusal := o_why[i];
        IF r_refusal IS NULL THEN
            r_id := new_ids[array_position(new_calls, p_call[i])];
            r_amount := o_money[i]; r_included_s := o_take[i]; r_granted_s := p_slice[i];
        ELSE
            r_id := NULL; r_amount := NULL; r_included_s := NULL; r_granted_s := NULL;
        END IF;
        RETURN NEXT;
    END LOOP;
END
$fn$;

-- The charge of each call is computed by the caller (rating/, from an unlocked read).
-- Each call is settled only if its reservation is still open (the first of the batch's
-- elements for it), so a duplicate or late hang-up does nothing: the account, an
-- append-only ledger entry (with the balance after it, in the order applied), the
-- reservation and the call record, together. Rows come back for the calls settled only.
CREATE FUNCTION settle_reservations(
    p_call TEXT[], p_now TIMESTAMPTZ[], p_charge NUMERIC[], p_billsec INTEGER[], p_reason TEXT[],
    p_included INTEGER[], p_memo TEXT[], p_charged_s INTEGER[], p_billable INTEGER[],
    p_minutes INTEGER[]
) RETURNS TABLE (r_n INTEGER, r_tenant BIGINT, r_balance NUMERIC) LANGUAGE plpgsql AS $fn$
DECLARE
    n INTEGER := coalesce(array_length(p_call, 1), 0);
    s_i INTEGER[]; s_tenant BIGINT[]; s_amount NUMERIC[]; s_inc INTEGER[];
    ts BIGINT[]; bal NUMERIC[]; res NUMERIC[]; inuse INTEGER[]; inc_left INTEGER[]; inc_res INTEGER[];
    sp_today NUMERIC[]; sp_day DATE[]; tz TEXT[]; changed INTEGER[];
    bal_after NUMERIC[] := '{}';
    ix INTEGER; k INTEGER; local_day DATE;
BEGIN
    WITH firsts AS (
        SELECT DISTINCT ON (p_call[g]) g FROM generate_series(1, n) AS g ORDER BY p_call[g], g
    ), closed AS (
        UPDATE reservations r
        SET state = 'settled', closed_at = p_now[f.g], charged = p_charge[f.g], billsec = p_billsec[f.g],
            close_reason = p_reason[f.g]
        FROM firsts f
        WHERE r.call_id = p_call[f.g] AND r.state = 'open'
        RETURNING f.g, r.tenant_id, r.amount, r.included_s
    )
    SELECT array_agg(g ORDER BY tenant_id, g), array_agg(tenant_id ORDER BY tenant_id, g),
           array_agg(amount ORDER BY tenant_id, g), array_agg(included_s ORDER BY tenant_id, g)
    INTO s_i, s_tenant, s_amount, s_inc FROM closed;
    IF s_i IS NULL THEN
        RETURN;
    END IF;

    SELECT array_agg(x.tenant_id ORDER BY x.tenant_id), array_agg(x.balance ORDER BY x.tenant_id),
           array_agg(x.reserved ORDER BY x.tenant_id), array_agg(x.channels_in_use ORDER BY x.tenant_id),
           array_agg(x.included_seconds_left ORDER BY x.tenant_id),
           array_agg(x.included_reserved_s ORDER BY x.tenant_id), array_agg(x.spent_today ORDER BY x.tenant_id),
           array_agg(x.spent_day ORDER BY x.tenant_id), array_agg(x.timezone ORDER BY x.tenant_id),
           array_agg(0 ORDER BY x.tenant_id)
    INTO ts, bal, res, inuse, inc_left, inc_res, sp_today, sp_day, tz, changed
    FROM (SELECT a.*, t.timezone FROM accounts a JOIN tenants t ON t.id = a.tenant_id
          WHERE a.tenant_id = ANY (s_tenant) ORDER BY a.tenant_id FOR UPDATE OF a) x;

    FOR j IN 1 .. cardinality(s_i) LOOP
        ix := s_i[j];
        k := array_position(ts, s_tenant[j]);
        local_day := (p_now[ix] AT TIME ZONE tz[k])::date;
        bal[k] := bal[k] - p_charge[ix];
        res[k] := res[k] - s_amount[j];
        inuse[k] := inuse[k] - 1;
        inc_left[k] := inc_left[k] - p_included[ix];
        inc_res[k] := inc_res[k] - s_inc[j];
        sp_today[k] := (CASE WHEN sp_day[k] = local_day THEN sp_today[k] ELSE 0 END) + p_charge[ix];
        sp_day[k] := local_day;
        changed[k] := changed[k] + 1;
        bal_after[j] := bal[k];
    END LOOP;

    UPDATE accounts a
    SET balance = u.bal, reserved = u.res, channels_in_use = u.inuse, included_seconds_left = u.inc_left,
        included_reserved_s = u.inc_res, spent_today = u.sp_today, spent_day = u.sp_day,
        version = a.version + u.changed
    FROM unnest(ts, bal, res, inuse, inc_left, inc_res, sp_today, sp_day, changed)
         AS u(tenant_id, bal, res, inuse, inc_left, inc_res, sp_today, sp_day, changed)
    WHERE a.tenant_id = u.tenant_id AND u.changed > 0;

    INSERT INTO ledger_entries
        (tenant_id, kind, amount, balance_after, reference, idempotency_key, actor_user_id, created_at)
    SELECT s_tenant[j], 'call', -p_charge[s_i[j]], bal_after[j], p_memo[s_i[j]], p_call[s_i[j]], NULL, p_now[s_i[j]]
    FROM generate_series(1, cardinality(s_i)) AS j ORDER BY j;

    UPDATE calls c
    SET billsec = p_charged_s[u.g], billable_s = p_billable[u.g], minutes = p_minutes[u.g],
        included_used_s = p_included[u.g], amount = p_charge[u.g], settled_at = p_now[u.g],
        final_reason = COALESCE(p_reason[u.g], c.final_reason)
    FROM unnest(s_i) AS u(g)
    WHERE c.linkedid = p_call[u.g];

    RETURN QUERY SELECT s_i[j], s_tenant[j], bal_after[j] FROM generate_series(1, cardinality(s_i)) AS j;
END
$fn$;
