"""Seed 001: documents are due 7 days after payment; the console warns two days before."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from provisioning.rules import deadline_state, documents_due

PAID = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
DUE = documents_due(PAID)


def test_the_deadline_is_seven_days_after_payment() -> None:
    assert DUE == PAID + timedelta(days=7)


def test_states_along_the_week() -> None:
    assert deadline_state(DUE, 3, PAID + timedelta(days=1)) == "on_time"
    assert deadline_state(DUE, 3, DUE - timedelta(days=2, seconds=1)) == "on_time"
    assert deadline_state(DUE, 3, DUE - timedelta(days=2)) == "due_soon"
    assert deadline_state(DUE, 3, DUE - timedelta(seconds=1)) == "due_soon"
    assert deadline_state(DUE, 3, DUE) == "overdue"


def test_nothing_outstanding_is_complete_even_past_the_deadline() -> None:
    assert deadline_state(DUE, 0, DUE + timedelta(days=30)) == "complete"


def test_an_unpaid_tenant_has_no_clock_running() -> None:
    assert deadline_state(None, 6, PAID) == "unpaid"
