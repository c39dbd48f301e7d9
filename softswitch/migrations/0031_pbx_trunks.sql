-- Customer PBX trunks (issue 20): an enterprise's own PBX attaches as a SIP account of
-- device_kind 'pbx' (its realtime PJSIP endpoint like any extension's, several contacts),
-- owning a range of extensions (range_first..range_last, digits of one length) and the
-- numbers bound to it (destination kind 'pbx', destination = the account's extension),
-- with its own channel cap taken from the tenant's trunk modules.
ALTER TABLE sip_extensions DROP CONSTRAINT sip_extensions_device_kind_check;
ALTER TABLE sip_extensions
    ADD CONSTRAINT sip_extensions_device_kind_check CHECK (device_kind IN ('phone', 'gateway', 'pbx')),
    ADD COLUMN range_first TEXT CHECK (range_first ~ '^[0-9]{2,6}$'),
    ADD COLUMN range_last  TEXT CHECK (range_last ~ '^[0-9]{2,6}$'),
    ADD COLUMN channels    INTEGER NOT NULL DEFAULT 0 CHECK (channels >= 0),
    -- a PBX owns a range and at least one channel; a phone or gateway owns neither
    ADD CONSTRAINT sip_extensions_pbx_range CHECK (
        CASE WHEN device_kind = 'pbx'
             THEN range_first IS NOT NULL AND range_last IS NOT NULL
                  AND length(range_first) = length(range_last) AND range_first <= range_last
                  AND channels >= 1
             ELSE range_first IS NULL AND range_last IS NULL AND channels = 0 END);

ALTER TABLE destination_bindings DROP CONSTRAINT destination_bindings_kind_check;
ALTER TABLE destination_bindings
    ADD CONSTRAINT destination_bindings_kind_check CHECK (kind IN ('mobile', 'fixed', 'extension', 'pbx'));
