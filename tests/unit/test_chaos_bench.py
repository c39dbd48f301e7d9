"""The chaos soak's pure parts (bench/chaos.py): the fault plan, SIPp's short-message
traces read into call outcomes, the fault windows, and the money checks on hand-made rows."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from bench.chaos import (
    FAULT_KINDS,
    Outcome,
    Window,
    count_by_window,
    count_records_by_window,
    ledger_check,
    outcome_of,
    parse_shortmsg,
    plan_faults,
    registered,
    settlement_check,
    sipp_vs_records,
    tenant_sums_check,
)


# ---------------------------------------------------------------------------- the plan
def test_the_plan_is_seeded_spaced_and_holds_each_kind_the_given_times() -> None:
    plan = plan_faults(7, 600, FAULT_KINDS, 3, warmup_s=20, cooldown_s=30, min_gap_s=20)
    assert plan == plan_faults(7, 600, FAULT_KINDS, 3, warmup_s=20, cooldown_s=30, min_gap_s=20)
    assert plan != plan_faults(8, 600, FAULT_KINDS, 3, warmup_s=20, cooldown_s=30, min_gap_s=20)
    ats = [f.at_s for f in plan]
    assert ats == sorted(ats) and ats[0] >= 20 and ats[-1] <= 570
    assert all(b - a >= 20 - 1e-6 for a, b in zip(ats, ats[1:], strict=False))
    assert sorted(f.kind for f in plan) == sorted(FAULT_KINDS * 3)


def test_a_plan_that_does_not_fit_says_so() -> None:
    with pytest.raises(ValueError, match="do not fit"):
        plan_faults(1, 120, FAULT_KINDS, 3)
    assert plan_faults(1, 120, FAULT_KINDS, 0) == []


# ---------------------------------------------------------------------------- traces
def _line(at: float, way: str, call: str, cseq: str, first: str) -> str:
    return f"2026-12-04\t01:46:12.801104\t{at}\t{way}\t{call}\tCSeq:{cseq}\t{first}\n"


def trace(*lines: tuple[float, str, str, str]) -> str:
    return "".join(_line(at, way, "1-99@127.0.0.2", cseq, first) for at, way, cseq, first in lines)


def one(text: str) -> Outcome:
    [t] = parse_shortmsg(text.splitlines(keepends=True)).values()
    o = outcome_of("s", t)
    assert o is not None
    return o


def test_a_completed_call() -> None:
    o = one(
        trace(
            (10.0, "S", "1 INVITE", "INVITE sip:4001@127.0.0.1:5060 SIP/2.0"),
            (10.1, "R", "1 INVITE", "SIP/2.0 180 Ringing"),
            (10.2, "R", "1 INVITE", "SIP/2.0 200 OK"),
            (10.2, "S", "1 ACK", "ACK sip:x SIP/2.0"),
            (14.2, "S", "2 BYE", "BYE sip:x SIP/2.0"),
            (14.3, "R", "2 BYE", "SIP/2.0 200 OK"),
        )
    )
    assert (o.kind, o.answered, o.started, o.at) == ("completed", True, 10.0, 14.3)
    assert o.talk_s == pytest.approx(4.0) and not o.failed and o.call_number == 1


def test_a_challenged_extension_call_refused_busy() -> None:
    o = one(
        trace(
            (10.0, "S", "1 INVITE", "INVITE sip:802@127.0.0.1 SIP/2.0"),
            (10.01, "R", "1 INVITE", "SIP/2.0 401 Unauthorized"),
            (10.02, "S", "2 INVITE", "INVITE sip:802@127.0.0.1 SIP/2.0"),
            (10.05, "R", "2 INVITE", "SIP/2.0 486 Busy Here"),
        )
    )
    assert (o.kind, o.at, o.answered) == ("refused_486", 10.05, False)


def test_a_challenge_then_silence_is_no_final_answer() -> None:
    o = one(
        trace(
            (10.0, "S", "1 INVITE", "INVITE sip:802@127.0.0.1 SIP/2.0"),
            (10.01, "R", "1 INVITE", "SIP/2.0 401 Unauthorized"),
            (10.02, "S", "2 INVITE", "INVITE sip:802@127.0.0.1 SIP/2.0"),
            (10.52, "S", "2 INVITE", "INVITE sip:802@127.0.0.1 SIP/2.0"),
        )
    )
    assert (o.kind, o.at) == ("no_final", 10.52)


def test_dropped_calls_by_the_network_or_an_engine_gone() -> None:
    answered = [
        (10.0, "S", "1 INVITE", "INVITE sip:4001@127.0.0.1 SIP/2.0"),
        (10.2, "R", "1 INVITE", "SIP/2.0 200 OK"),
    ]
    bye = one(
        trace(*answered, (12.0, "R", "1 BYE", "BYE sip:x SIP/2.0"), (12.0, "S", "1 BYE", "SIP/2.0 200 OK"))
    )
    assert (bye.kind, bye.at) == ("network_bye", 12.0) and bye.talk_s == pytest.approx(1.8)
    gone = one(
        trace(*answered, (14.2, "S", "2 BYE", "BYE sip:x SIP/2.0"), (14.7, "S", "2 BYE", "BYE sip:x SIP/2.0"))
    )
    assert (gone.kind, gone.at) == ("bye_timeout", 14.2)
    assert one(trace(*answered)).kind == "aborted"


def test_a_torn_last_line_is_skipped() -> None:
    text = trace((10.0, "S", "1 INVITE", "INVITE sip:4001@127.0.0.1 SIP/2.0")) + "2026-12-04\t01:46"
    assert len(parse_shortmsg(text.splitlines(keepends=True))) == 1


# ---------------------------------------------------------------------------- windows
def _o(started: float, kind: str, at: float, stream: str = "ast_inbound") -> Outcome:
    return Outcome(stream, "1-1@x", started, kind, at, kind == "completed")


def test_failures_are_counted_in_the_window_they_began_in() -> None:
    windows = [Window("1:service_kill9", 100.0, 110.0), Window("2:postgres_immediate", 200.0, 205.0)]
    counts = count_by_window(
        [
            _o(95.0, "bye_timeout", 101.0),  # up before the fault, dropped in it
            _o(104.0, "refused_503", 104.1),
            _o(104.5, "completed", 109.0),
            _o(150.0, "refused_486", 150.1, "ast_inbound_long"),  # no fault at that moment
            _o(201.0, "no_final", 201.0),
        ],
        windows,
    )
    assert counts["1:service_kill9"]["failed"] == {"bye_timeout": 1, "refused_503": 1}
    assert counts["1:service_kill9"]["offered"] == 2
    assert counts["2:postgres_immediate"]["failed_total"] == 1
    assert counts["no_fault"]["failed_by_stream"] == {"ast_inbound_long": 1}
    assert counts["no_fault"]["offered"] == 2


def test_records_by_window_count_reasons_and_records_without_end() -> None:
    def at(s: float) -> datetime:
        return datetime.fromtimestamp(s, UTC)

    rows = [
        {"decided_at": at(101), "reason": "BILLING_UNAVAILABLE", "final_reason": None, "ended_at": at(101)},
        {"decided_at": at(102), "reason": "ROUTED", "final_reason": "BALANCE_EXHAUSTED", "ended_at": None},
        {"decided_at": at(300), "reason": "ROUTED", "final_reason": None, "ended_at": at(305)},
    ]
    out = count_records_by_window(rows, [Window("1:x", 100, 110)])
    assert out["1:x"] == {
        "reason": {"BILLING_UNAVAILABLE": 1, "ROUTED": 1},
        "final_reason": {"BALANCE_EXHAUSTED": 1},
        "no_end": {"ROUTED": 1},
    }
    assert out["no_fault"]["reason"] == {"ROUTED": 1}


# ---------------------------------------------------------------------------- money
D = Decimal


def _entry(id_: int, amount: str, after: str, prev: str | None, limit: str = "0") -> dict[str, object]:
    return {
        "tenant_id": 1,
        "id": id_,
        "amount": D(amount),
        "balance_after": D(after),
        "credit_limit": D(limit),
        "prev_after": None if prev is None else D(prev),
    }


def test_the_ledger_running_balance_never_below_the_limit_and_chained() -> None:
    rows = [_entry(1, "-0.12", "0.88", None), _entry(5, "-0.12", "0.76", "0.88")]
    ok = ledger_check(rows)
    assert ok["pass"] and ok["min_headroom_by_tenant"] == {"1": "0.76"}
    bad = ledger_check([*rows, _entry(6, "-1.36", "-0.60", "0.76", limit="0.50")])
    assert not bad["pass"] and bad["below_credit_limit"][0]["entry"] == 6 and not bad["broken_chain"]
    within = ledger_check([*rows, _entry(6, "-1.16", "-0.40", "0.76", limit="0.50")])
    assert within["pass"]
    broken = ledger_check([rows[0], _entry(5, "-0.12", "0.70", "0.88")])
    assert not broken["pass"] and broken["broken_chain"][0]["entry"] == 5


def _res(**kw: object) -> dict[str, object]:
    row: dict[str, object] = {
        "linkedid": "c1",
        "tenant_id": 1,
        "state": "settled",
        "has_record": True,
        "answered": True,
        "engine_billsec": 4,
        "entries": 1,
        "ledger_amount": D("-0.12"),
        "call_amount": D("0.12"),
        "settled_at": datetime(2026, 12, 4, tzinfo=UTC),
    }
    return {**row, **kw}


def test_settlement_check_finds_each_way_money_goes_wrong() -> None:
    unanswered = _res(linkedid="c2", state="released", answered=False, engine_billsec=None, entries=0,
                      ledger_amount=D(0), call_amount=None)  # fmt: skip
    assert settlement_check([_res(), unanswered])["pass"]
    cases = {
        "open": _res(state="open", entries=0, ledger_amount=D(0)),
        "double_settled": _res(entries=2, ledger_amount=D("-0.24")),
        "answered_not_settled": _res(state="released", answered=True, engine_billsec=None, entries=0),
        "released_but_engine_answered": _res(state="released", answered=False, entries=0),
        "entry_without_settled_reservation": _res(state="released", engine_billsec=None),
        "amount_mismatch": _res(call_amount=D("0.24")),
        "charged_without_record": _res(has_record=False, answered=False, call_amount=None),
        "charged_but_recorded_unanswered": _res(answered=False),
    }
    for problem, row in cases.items():
        out = settlement_check([row])
        assert not out["pass"] and out[problem]["count"] == 1, problem


def test_tenant_sums_agree_or_not() -> None:
    row = {
        "tenant_id": 3,
        "ledger_calls": D("-1.20"),
        "charges": D("1.20"),
        "spent": D("1.20"),
        "other": D(0),
    }
    assert tenant_sums_check([row])["pass"]
    assert not tenant_sums_check([{**row, "spent": D("1.32")}])["pass"]
    assert not tenant_sums_check([{**row, "charges": D("1.08")}])["pass"]


def test_sipp_calls_against_their_records() -> None:
    talked = Outcome("ast_inbound", "2-7@127.0.0.2", 10.0, "completed", 14.0, True, 4.0)
    callers = {"ast_inbound": ["13900000001", "13900000002"]}
    charged = {"13900000002": {"amount": D("0.12"), "billsec": 4}}
    assert sipp_vs_records([talked], callers, charged)["pass"]
    free = sipp_vs_records([talked], callers, {"13900000002": {"amount": None, "billsec": None}})
    assert free["talked_but_not_charged"]["count"] == 1 and not free["pass"]
    over = sipp_vs_records([talked], callers, {"13900000002": {"amount": D("0.12"), "billsec": 9}})
    assert over["billed_beyond_talk"]["count"] == 1
    assert sipp_vs_records([talked], callers, {})["answered_without_record"] == 1


def test_a_phone_is_registered_once_its_trace_holds_a_200_to_register(tmp_path: Path) -> None:
    trace_file = tmp_path / "phone.log"
    assert not registered(trace_file)
    trace_file.write_text(
        _line(1.0, "S", "1-1@x", "1 REGISTER", "REGISTER sip:127.0.0.1:5060 SIP/2.0")
        + _line(1.1, "R", "1-1@x", "1 REGISTER", "SIP/2.0 401 Unauthorized")
    )
    assert not registered(trace_file)
    with open(trace_file, "a") as f:
        f.write(_line(1.2, "R", "1-1@x", "2 REGISTER", "SIP/2.0 200 OK"))
    assert registered(trace_file)
