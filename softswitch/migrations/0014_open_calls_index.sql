-- Call records still open (no end yet): the engine audit looks for them every
-- reconcile_interval_s and the live-call list reads them. Few rows at any time, so a
-- partial index keeps both from scanning the whole call history.
CREATE INDEX calls_open ON calls (decided_at) WHERE ended_at IS NULL;
