-- The hot path's snapshot is patched, not rebuilt, after an edit: each change NOTIFYs
-- config_changed with what it touched (JSON), read from the statement's transition tables:
--   {"tenants": [ids]}            re-read those tenants' part (tenant, numbers, extensions, menus)
--   {"numbers": ["4008..."]}      re-read those numbers (the ones no tenant holds)
--   {"blacklist": [[tenant|null, "pattern"]]}   re-read those patterns of that scope
--   {"blacklist_scopes": [tenant|null]}         re-read whole scopes
--   {"trunks": true} / {"compliance": true}     re-read the platform's routes / the rules
--   {"full": true}                 rebuild everything (TRUNCATE, or too much to name)
-- A statement that changed no row sends nothing.

CREATE FUNCTION snapshot_notify(p_tenants BIGINT[], p_numbers TEXT[], p_blacklist JSONB, p_part TEXT)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    payload JSONB := '{}';
    scopes  JSONB;
BEGIN
    IF cardinality(p_tenants) > 0 THEN
        payload := payload || jsonb_build_object('tenants', to_jsonb(p_tenants));
    END IF;
    IF cardinality(p_numbers) > 0 THEN
        payload := payload || jsonb_build_object('numbers', to_jsonb(p_numbers));
    END IF;
    IF jsonb_array_length(coalesce(p_blacklist, '[]')) > 100 THEN
        SELECT jsonb_agg(DISTINCT k -> 0) INTO scopes FROM jsonb_array_elements(p_blacklist) k;
        payload := payload || jsonb_build_object('blacklist_scopes', scopes);
    ELSIF jsonb_array_length(coalesce(p_blacklist, '[]')) > 0 THEN
        payload := payload || jsonb_build_object('blacklist', p_blacklist);
    END IF;
    IF p_part IS NOT NULL THEN
        payload := payload || jsonb_build_object(p_part, true);
    END IF;
    IF payload = '{}' THEN
        RETURN;
    END IF;
    IF cardinality(p_tenants) > 200 OR cardinality(p_numbers) > 200
       OR jsonb_array_length(coalesce(payload -> 'blacklist_scopes', '[]')) > 100
       OR octet_length(payload::text) > 7000 THEN
        payload := '{"full": true}';
    END IF;
    PERFORM pg_notify('config_changed', payload::text);
END $$;

-- TG_ARGV[0] says what a row names: 'tenant' (its column TG_ARGV[1] holds the tenant id),
-- 'number' (a numbers row), 'number_id' (a row of one number: destination_bindings,
-- number_pins), 'blacklist', or 'part' (TG_ARGV[1]: trunks | compliance).
CREATE FUNCTION snapshot_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    src       TEXT;
    v_tenants BIGINT[];
    v_numbers TEXT[];
    v_keys    JSONB;
    v_rows    BIGINT;
BEGIN
    src := CASE TG_OP
        WHEN 'INSERT' THEN 'SELECT * FROM new_rows'
        WHEN 'DELETE' THEN 'SELECT * FROM old_rows'
        ELSE 'SELECT * FROM old_rows UNION ALL SELECT * FROM new_rows' END;
    IF TG_ARGV[0] = 'tenant' THEN
        EXECUTE format('SELECT array_agg(DISTINCT %I) FROM (%s) c WHERE %I IS NOT NULL',
                       TG_ARGV[1], src, TG_ARGV[1]) INTO v_tenants;
        PERFORM snapshot_notify(v_tenants, NULL, NULL, NULL);
    ELSIF TG_ARGV[0] = 'number' THEN
        EXECUTE format('SELECT array_agg(DISTINCT tenant_id) FILTER (WHERE tenant_id IS NOT NULL), '
                       'array_agg(DISTINCT number) FILTER (WHERE tenant_id IS NULL) FROM (%s) c', src)
            INTO v_tenants, v_numbers;
        PERFORM snapshot_notify(v_tenants, v_numbers, NULL, NULL);
    ELSIF TG_ARGV[0] = 'number_id' THEN
        EXECUTE format('SELECT array_agg(DISTINCT n.tenant_id) FILTER (WHERE n.tenant_id IS NOT NULL), '
                       'array_agg(DISTINCT n.number) FILTER (WHERE n.tenant_id IS NULL) '
                       'FROM numbers n WHERE n.id IN (SELECT number_id FROM (%s) c)', src)
            INTO v_tenants, v_numbers;
        PERFORM snapshot_notify(v_tenants, v_numbers, NULL, NULL);
    ELSIF TG_ARGV[0] = 'blacklist' THEN
        EXECUTE format('SELECT jsonb_agg(DISTINCT jsonb_build_array(tenant_id, pattern)) FROM (%s) c', src)
            INTO v_keys;
        PERFORM snapshot_notify(NULL, NULL, v_keys, NULL);
    ELSE
        EXECUTE format('SELECT count(*) FROM (%s) c', src) INTO v_rows;
        IF v_rows > 0 THEN
            PERFORM snapshot_notify(NULL, NULL, NULL, TG_ARGV[1]);
        END IF;
    END IF;
    RETURN NULL;
END $$;

CREATE FUNCTION snapshot_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('config_changed', '{"full": true}');
    RETURN NULL;
END $$;

-- Replace each routing table's statement trigger (which named only the table) by one
-- trigger per event, with the event's transition tables.
DO $$
DECLARE
    t RECORD;
BEGIN
    FOR t IN SELECT * FROM (VALUES
        ('tenants', 'tenant', 'id'),
        ('numbers', 'number', ''),
        ('destination_bindings', 'number_id', ''),
        ('number_pins', 'number_id', ''),
        ('time_policies', 'tenant', 'tenant_id'),
        ('region_policies', 'tenant', 'tenant_id'),
        ('sip_extensions', 'tenant', 'tenant_id'),
        ('ivr_menus', 'tenant', 'tenant_id'),
        ('blacklist_entries', 'blacklist', ''),
        ('trunks', 'part', 'trunks'),
        ('trunk_routes', 'part', 'trunks'),
        ('compliance_rules', 'part', 'compliance')
    ) AS v(tbl, kind, arg) LOOP
        EXECUTE format('DROP TRIGGER IF EXISTS %I ON %I', t.tbl || '_changed', t.tbl);
        EXECUTE format('CREATE TRIGGER %I AFTER INSERT ON %I REFERENCING NEW TABLE AS new_rows '
                       'FOR EACH STATEMENT EXECUTE FUNCTION snapshot_changed(%L, %L)',
                       t.tbl || '_inserted', t.tbl, t.kind, t.arg);
        EXECUTE format('CREATE TRIGGER %I AFTER UPDATE ON %I REFERENCING OLD TABLE AS old_rows '
                       'NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION snapshot_changed(%L, %L)',
                       t.tbl || '_updated', t.tbl, t.kind, t.arg);
        EXECUTE format('CREATE TRIGGER %I AFTER DELETE ON %I REFERENCING OLD TABLE AS old_rows '
                       'FOR EACH STATEMENT EXECUTE FUNCTION snapshot_changed(%L, %L)',
                       t.tbl || '_deleted', t.tbl, t.kind, t.arg);
        EXECUTE format('CREATE TRIGGER %I AFTER TRUNCATE ON %I '
                       'FOR EACH STATEMENT EXECUTE FUNCTION snapshot_truncated()',
                       t.tbl || '_truncated', t.tbl);
    END LOOP;
END $$;
