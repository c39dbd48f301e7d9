"""The migration files themselves, without a database."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

import softswitch.migrations
from softswitch.core.migrate import available_migrations

MIGRATIONS_DIR = Path(softswitch.migrations.__file__).parent
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


def test_versions_strictly_increase_from_one_without_gaps() -> None:
    versions = [m.version for m in available_migrations()]
    assert versions, "no migrations found"
    assert versions == list(range(1, len(versions) + 1))


def test_names_match_the_files() -> None:
    on_disk = sorted(p.name for p in MIGRATIONS_DIR.glob("*.sql"))
    assert all(_FILE.match(n) for n in on_disk), on_disk  # no .sql file silently skipped
    assert [f"{m.version:04d}_{m.name}.sql" for m in available_migrations()] == on_disk
    assert [m.name for m in available_migrations()][:3] == ["core", "asterisk_realtime", "asterisk_cdr"]


def test_sql_is_the_file_content_and_checksums_are_stable() -> None:
    first = available_migrations()
    second = available_migrations()
    assert [m.checksum for m in first] == [m.checksum for m in second]
    for mig in first:
        path = MIGRATIONS_DIR / f"{mig.version:04d}_{mig.name}.sql"
        assert mig.sql == path.read_text()
        assert mig.checksum == hashlib.sha256(path.read_text().encode()).hexdigest()
        assert re.fullmatch(r"[0-9a-f]{64}", mig.checksum)
    assert len({m.checksum for m in first}) == len(first)


def test_migrations_are_not_empty() -> None:
    for mig in available_migrations():
        sql = mig.sql.upper()
        ddl_kinds = ("CREATE TABLE", "ALTER TABLE", "CREATE FUNCTION", "CREATE INDEX")
        assert any(ddl in sql for ddl in ddl_kinds), mig.name


# --- 0002: Asterisk 22 realtime PJSIP tables ----------------------------------------------


def realtime_tables() -> dict[str, set[str]]:
    mig = next(m for m in available_migrations() if m.name == "asterisk_realtime")
    sql = re.sub(r"--[^\n]*", "", mig.sql)
    tables: dict[str, set[str]] = {}
    for name, body in re.findall(r"CREATE TABLE\s+(\w+)\s*\((.*?)\n\);", sql, re.S | re.I):
        columns = set()
        for line in body.splitlines():
            col = re.match(r'\s*"?([A-Za-z0-9_]+)"?\s+(?:VARCHAR|TEXT)', line)
            if col:
                columns.add(col.group(1))
        tables[name] = columns
    return tables


def test_realtime_migration_is_version_two() -> None:
    assert [m.version for m in available_migrations() if m.name == "asterisk_realtime"] == [2]


@pytest.mark.parametrize(
    ("table", "required"),
    [
        (
            "ps_endpoints",
            {
                "id",
                "transport",
                "aors",
                "auth",
                "context",
                "disallow",
                "allow",
                "direct_media",
                "mailboxes",
                "100rel",
                "outbound_auth",
                "identify_by",
                "dtmf_mode",
                "rtp_symmetric",
                "force_rport",
                "rewrite_contact",
                "callerid",
                "from_user",
                "from_domain",
            },
        ),
        ("ps_auths", {"id", "auth_type", "username", "password", "md5_cred", "realm"}),
        (
            "ps_aors",
            {
                "id",
                "contact",
                "max_contacts",
                "remove_existing",
                "qualify_frequency",
                "qualify_timeout",
                "qualify_2xx_only",
                "default_expiration",
            },
        ),
        ("ps_contacts", {"id", "uri", "endpoint", "expiration_time", "qualify_2xx_only", "prune_on_boot"}),
    ],
)
def test_realtime_tables_have_the_columns_asterisk_writes(table: str, required: set[str]) -> None:
    tables = realtime_tables()
    assert table in tables
    assert required <= tables[table], sorted(required - tables[table])


def test_qualify_2xx_only_belongs_to_aors_and_contacts_not_endpoints_or_auths() -> None:
    tables = realtime_tables()
    assert "qualify_2xx_only" in tables["ps_aors"]
    assert "qualify_2xx_only" in tables["ps_contacts"]
    assert "qualify_2xx_only" not in tables["ps_endpoints"]
    assert "qualify_2xx_only" not in tables["ps_auths"]


def test_realtime_ids_are_primary_keys_and_option_columns_are_text() -> None:
    mig = next(m for m in available_migrations() if m.name == "asterisk_realtime")
    for name, body in re.findall(r"CREATE TABLE\s+(\w+)\s*\((.*?)\n\);", mig.sql, re.S):
        lines = [ln.strip().rstrip(",") for ln in body.strip().splitlines() if ln.strip()]
        assert lines[0] == "id VARCHAR(255) PRIMARY KEY", name
        for line in lines[1:]:
            assert re.fullmatch(r'"[a-z0-9_]+" TEXT', line), (name, line)


def test_realtime_columns_are_not_duplicated() -> None:
    mig = next(m for m in available_migrations() if m.name == "asterisk_realtime")
    for name, body in re.findall(r"CREATE TABLE\s+(\w+)\s*\((.*?)\n\);", mig.sql, re.S):
        cols = re.findall(r'^\s*"?([A-Za-z0-9_]+)"?\s+(?:VARCHAR|TEXT)', body, re.M)
        assert len(cols) == len(set(cols)), name
