-- A reservation covers exactly what settlement can charge for the time it granted.
--
-- Before: each slice reserved "slice seconds x rate / 60" rounded up, while settlement
-- charges whole started increments: with a slice shorter than the increment (a 20 s slice
-- of a 60/60 tariff) two slices reserved 0.08 for a call settled at 0.12 — an overdraft.
-- Now a reservation is cumulative: after granting G seconds of talk it holds
--     rated_amount(billable_seconds(G), included seconds it holds, rate)
-- which is rating.rate.rate_call(G, tariff, included).amount — the same rule, written
-- once more in SQL so that the one statement that locks the account can apply it; a
-- property test (tests/db/test_exact_reservations.py) holds the two equal. The charge is
-- monotonic in billsec and settlement never charges past the granted time, so what is
-- reserved always covers what is charged.

-- rating.tariff.billable_seconds
CREATE FUNCTION billable_seconds(talk_s INTEGER, first_s INTEGER, step_s INTEGER)
RETURNS INTEGER LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE
        WHEN talk_s <= 0 THEN 0
        WHEN talk_s <= first_s THEN first_s
        ELSE first_s + ((talk_s - first_s + step_s - 1) / step_s) * step_s
    END
$$;

-- rating.rate.rate_call(...).amount: the bundle first, overage at the rate, rounded once
-- half up to the cent (ROUND on a non-negative NUMERIC rounds half away from zero).
CREATE FUNCTION rated_amount(billable_s INTEGER, included_s INTEGER, rate NUMERIC)
RETURNS NUMERIC LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT ROUND(GREATEST(billable_s - included_s, 0) * rate / 60, 2)
$$;
