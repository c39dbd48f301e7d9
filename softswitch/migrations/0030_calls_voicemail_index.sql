-- calls.voicemail_id (migration 0027) references voicemail_messages ON DELETE SET NULL:
-- without an index every message the retention job deletes scans all of calls.
CREATE INDEX calls_voicemail ON calls (voicemail_id) WHERE voicemail_id IS NOT NULL;
