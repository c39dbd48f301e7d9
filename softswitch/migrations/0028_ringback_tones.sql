-- Personalised ringback tones (个性化彩铃; seed 001, issue 17 item 1; provisioning/ringback.py).
-- A tenant's tone is a file the engines play to the caller as early media while the
-- destinations ring, instead of the default ring. Its audio is a prompt of the tenant's
-- (provisioning/prompts.py: uploaded, or rendered from text), kept as
-- softswitch/t<tenant>/ringback/<name>.wav in Asterisk's sounds.
--
-- Seed 001's tariff: "商企云通彩铃费 6 元/月 固话和分机号码都可以使用，无协议期，当月申请，次月生效"
-- (6 CNY a month, no minimum term, applied this month, in effect from the next) and
-- "商企云通铃音制作费 99 元/次 专业制作满意后上传使用，更换铃音需要重新收费，免费版不收费" (a tone
-- produced professionally costs 99 each time, a new one again; the free version is free).
CREATE TABLE ringback_tones (
    id          BIGSERIAL PRIMARY KEY,
    tenant_id   BIGINT NOT NULL REFERENCES tenants (id),
    name        TEXT NOT NULL CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,60}$'),
    source      TEXT NOT NULL CHECK (source IN ('upload', 'text')),
    text        TEXT,                                  -- source 'text': what was rendered
    voice       TEXT,
    -- what the engines play (no extension, relative to Asterisk's sounds directory)
    prompt      TEXT NOT NULL CHECK (prompt ~ '^softswitch/t[0-9]+/ringback/[a-z0-9][a-z0-9_-]{0,60}$'),
    sha256      TEXT NOT NULL,                         -- of the content the file was made from
    seconds     NUMERIC(7, 2) NOT NULL CHECK (seconds > 0),
    -- 'professional': produced by the provider, the production fee charged when the tone is
    -- made (one_off_orders, item tone_production); 'self': the tenant's own, free. A tone's
    -- audio never changes: another one is a new tone (更换铃音需要重新收费).
    production  TEXT NOT NULL DEFAULT 'self' CHECK (production IN ('self', 'professional')),
    production_order_id BIGINT REFERENCES one_off_orders (id),
    version     INTEGER NOT NULL DEFAULT 1,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    UNIQUE (tenant_id, name),
    CHECK ((source = 'text') = (text IS NOT NULL)),
    CHECK ((production = 'professional') = (production_order_id IS NOT NULL))
);

-- A per-number add-on names what it serves: the rent entry of an RBT subscription says
-- which number it is for (provisioning/billing_cycle.py).
ALTER TABLE subscriptions ADD COLUMN subject TEXT NOT NULL DEFAULT '';

-- The application of a tone to a number. It takes effect on the first day of the month
-- after it was made, in the tenant's time zone (当月申请，次月生效); until then the number
-- keeps what it had (the default ring, or the tone applied before). Each number with a
-- tone has one RBT subscription (6 CNY/month from that first day), shared by the later
-- applications of other tones to it while it runs. Removing the tone ends it at once.
CREATE TABLE ringback_assignments (
    id               BIGSERIAL PRIMARY KEY,
    tenant_id        BIGINT NOT NULL REFERENCES tenants (id),
    number_id        BIGINT NOT NULL REFERENCES numbers (id) ON DELETE CASCADE,
    tone_id          BIGINT NOT NULL REFERENCES ringback_tones (id),
    applied_at       TIMESTAMPTZ NOT NULL,
    effective_on     DATE NOT NULL CHECK (extract(day FROM effective_on) = 1),
    subscription_id  BIGINT NOT NULL REFERENCES subscriptions (id),
    removed_at       TIMESTAMPTZ,                    -- replaced before it took effect, or removed
    actor_user_id    BIGINT
);
-- One application per number and month: a second one before the month begins replaces it.
CREATE UNIQUE INDEX ringback_assignments_number ON ringback_assignments (number_id, effective_on)
    WHERE removed_at IS NULL;
CREATE INDEX ringback_assignments_tone ON ringback_assignments (tone_id) WHERE removed_at IS NULL;

-- The routing snapshot reads a number's assignments with the number (snapshots.py): an
-- edit re-reads the number's tenant, as for its bindings (migration 0024).
CREATE TRIGGER ringback_assignments_inserted AFTER INSERT ON ringback_assignments
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION snapshot_changed('number_id', '');
CREATE TRIGGER ringback_assignments_updated AFTER UPDATE ON ringback_assignments
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION snapshot_changed('number_id', '');
CREATE TRIGGER ringback_assignments_deleted AFTER DELETE ON ringback_assignments
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION snapshot_changed('number_id', '');
CREATE TRIGGER ringback_assignments_truncated AFTER TRUNCATE ON ringback_assignments
    FOR EACH STATEMENT EXECUTE FUNCTION snapshot_truncated();

-- Asterisk plays a tone with Dial's m(class) option: each tone is a music-on-hold class
-- "ss-rbt-<tone id>" of one playlist entry, the tone's file, read by res_musiconhold from
-- PostgreSQL when a call asks for it (extconfig.conf: musiconhold, musiconhold_entry).
-- Playlist entries are absolute paths inside Asterisk's file system without an extension;
-- /usr/share/asterisk/sounds is Asterisk's sounds directory (AsteriskSettings.sounds_dir).
CREATE VIEW asterisk_moh_classes AS
    SELECT 'ss-rbt-' || t.id AS name, 'playlist'::text AS mode FROM ringback_tones t;
CREATE VIEW asterisk_moh_entries AS
    SELECT 'ss-rbt-' || t.id AS name, 0 AS position, '/usr/share/asterisk/sounds/' || t.prompt AS entry
    FROM ringback_tones t;
