"""What one item of the SIP edge's ban tables says (softswitch/edge/bans.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from softswitch.edge.bans import EdgeBan, parse_item


def test_an_item_of_each_table_is_a_ban_of_its_kind_with_the_edge_s_reason_and_time() -> None:
    at = datetime(2026, 12, 4, 14, 0, tzinfo=UTC)
    epoch = str(int(at.timestamp()))
    assert parse_item("ban", "127.0.0.11", f"flood:{epoch}") == EdgeBan("address", "127.0.0.11", "flood", at)
    assert parse_item("lockedout", "t5x801", f"auth_failures:{epoch}") == EdgeBan(
        "account", "t5x801", "auth_failures", at
    )


def test_what_is_not_a_ban_is_none() -> None:
    assert parse_item("authfail", "a:127.0.0.1", 3) is None  # the counters' table
    assert parse_item("ban", "127.0.0.11", 1) is None  # an integer: the form before reasons
    assert parse_item("ban", "127.0.0.11", "scanner:1796000000") is None  # an unknown reason
    assert parse_item("ban", "127.0.0.11", "flood:soon") is None
    assert parse_item("ban", "", "flood:1796000000") is None
