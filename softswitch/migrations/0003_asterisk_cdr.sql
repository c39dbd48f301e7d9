-- Asterisk's own CDRs, written by cdr_pgsql: the raw engine record kept beside the
-- control plane's `calls`, so rating can be re-run from what the switch saw.
CREATE TABLE cdr (
    id           BIGSERIAL PRIMARY KEY,
    calldate     TIMESTAMPTZ NOT NULL DEFAULT now(),
    clid         TEXT NOT NULL DEFAULT '',
    src          TEXT NOT NULL DEFAULT '',
    dst          TEXT NOT NULL DEFAULT '',
    dcontext     TEXT NOT NULL DEFAULT '',
    channel      TEXT NOT NULL DEFAULT '',
    dstchannel   TEXT NOT NULL DEFAULT '',
    lastapp      TEXT NOT NULL DEFAULT '',
    lastdata     TEXT NOT NULL DEFAULT '',
    start        TIMESTAMPTZ,
    answer       TIMESTAMPTZ,
    "end"        TIMESTAMPTZ,
    duration     INTEGER NOT NULL DEFAULT 0,
    billsec      INTEGER NOT NULL DEFAULT 0,
    disposition  TEXT NOT NULL DEFAULT '',
    amaflags     INTEGER NOT NULL DEFAULT 0,
    accountcode  TEXT NOT NULL DEFAULT '',
    uniqueid     TEXT NOT NULL DEFAULT '',
    userfield    TEXT NOT NULL DEFAULT '',
    peeraccount  TEXT NOT NULL DEFAULT '',
    linkedid     TEXT NOT NULL DEFAULT '',
    sequence     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX cdr_linkedid ON cdr (linkedid);
CREATE INDEX cdr_calldate ON cdr (calldate);
