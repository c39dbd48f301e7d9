"""asterisk_variables(decision, trunk): the SS_* variables handed to the dialplan, checked
against what docker/asterisk/extensions.conf actually reads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dialplan.inbound import Reject, Route
from dialplan.reasons import Reason
from dialplan.snapshot import BoundDestination
from softswitch.routing_agi import asterisk_variables

EXTENSIONS_CONF = Path(__file__).resolve().parents[2] / "docker" / "asterisk" / "extensions.conf"
TRUNK = "carrier-out"

TWO_DESTS = Route(
    (BoundDestination("13800138000", 20), BoundDestination("02112345678", 45)),
    tenant_id=1,
    number_id=10,
)
REJECTS = [Reject(r, 1, 10) for r in Reason if r is not Reason.ROUTED]
ALL_DECISIONS = [
    TWO_DESTS,
    Route((BoundDestination("8001"),), 1, 10),
    Route((), 1, 10),
    *REJECTS,
]


def names(decision: Route | Reject) -> list[str]:
    return [name for name, _ in asterisk_variables(decision, TRUNK)]


@pytest.mark.parametrize("decision", ALL_DECISIONS, ids=lambda d: d.reason.code)
def test_ss_action_is_the_last_variable_and_set_once(decision: Route | Reject) -> None:
    out = asterisk_variables(decision, TRUNK)
    assert out[-1][0] == "SS_ACTION"
    assert names(decision).count("SS_ACTION") == 1
    assert out[-1][1] == ("dial" if isinstance(decision, Route) else "reject")


@pytest.mark.parametrize("decision", ALL_DECISIONS, ids=lambda d: d.reason.code)
def test_no_variable_is_set_twice_and_values_are_strings(decision: Route | Reject) -> None:
    out = asterisk_variables(decision, TRUNK)
    assert len({n for n, _ in out}) == len(out)
    assert all(isinstance(v, str) for _, v in out)


def test_route_with_two_destinations() -> None:
    assert asterisk_variables(TWO_DESTS, TRUNK) == [
        ("SS_REASON", "ROUTED"),
        ("SS_TARGETS", "2"),
        ("SS_DIAL_1", "PJSIP/13800138000@carrier-out"),
        ("SS_TIMEOUT_1", "20"),
        ("SS_DIAL_2", "PJSIP/02112345678@carrier-out"),
        ("SS_TIMEOUT_2", "45"),
        ("SS_FAIL_REASON", "ALL_DESTINATIONS_FAILED"),
        ("SS_FAIL_CAUSE", "19"),
        ("SS_ACTION", "dial"),
    ]


def test_trunk_name_goes_into_the_dial_string() -> None:
    out = dict(asterisk_variables(Route((BoundDestination("8001", 5),), 1, 1), "other-trunk"))
    assert out["SS_DIAL_1"] == "PJSIP/8001@other-trunk"
    assert out["SS_TIMEOUT_1"] == "5"
    assert out["SS_TARGETS"] == "1"


@pytest.mark.parametrize(
    ("reason", "cause", "announcement"),
    [
        (Reason.UNKNOWN_NUMBER, "1", "ss-noservice"),
        (Reason.NUMBER_NOT_ACTIVE, "1", "ss-noservice"),
        (Reason.TENANT_SUSPENDED, "21", "ss-noservice"),
        (Reason.NO_DESTINATION, "3", "cannot-complete-as-dialed"),
        (Reason.ALL_DESTINATIONS_FAILED, "19", ""),
    ],
    ids=lambda v: v.code if isinstance(v, Reason) else None,
)
def test_reject_carries_cause_and_announcement(reason: Reason, cause: str, announcement: str) -> None:
    assert asterisk_variables(Reject(reason), TRUNK) == [
        ("SS_REASON", reason.code),
        ("SS_CAUSE", cause),
        ("SS_ANNOUNCEMENT", announcement),
        ("SS_ACTION", "reject"),
    ]


# --- golden: Python side vs. the dialplan file ----------------------------------------

# Set by the dialplan itself ([globals] and Set(SS_CALLED=...)), never by the AGI script.
SET_BY_DIALPLAN = {"SS_AGI_URL", "SS_CALLED"}
_READ = re.compile(r"\$\{(SS_[A-Z0-9_]+)")
_LABEL = re.compile(r"^\s*(?:exten\s*=>\s*[^,]+,|same\s*=>)\s*[^,(]+\((\w+)\)")
_ACTION_BRANCH = re.compile(r'"\$\{SS_ACTION\}"\s*=\s*"(\w+)"\]\?(\w+)')


def dialplan_reads() -> dict[str, set[str]]:
    """SS_* names read in [ss-route], grouped by the SS_ACTION branch they are read in
    ("*" = read before branching, so needed by every action). Names ending in "_" are
    families read as SS_DIAL_${i}."""
    text = EXTENSIONS_CONF.read_text()
    context = re.search(r"^\[ss-route\]\n(.*?)(?=^\[|\Z)", text, re.M | re.S)
    assert context, "no [ss-route] context in extensions.conf"
    lines = [ln for ln in context.group(1).splitlines() if ln.strip() and not ln.lstrip().startswith(";")]
    label_of_action = {label: action for action, label in _ACTION_BRANCH.findall(context.group(1))}
    assert set(label_of_action.values()) == {"dial", "reject"}, label_of_action
    reads: dict[str, set[str]] = {"*": set(), "dial": set(), "reject": set()}
    section = "*"
    for line in lines:
        label = _LABEL.match(line)
        if label and label.group(1) in label_of_action:
            section = label_of_action[label.group(1)]
        reads[section].update(n for n in _READ.findall(line) if n not in SET_BY_DIALPLAN)
    return reads


def satisfied(read: str, produced: list[str]) -> bool:
    if read.endswith("_"):  # SS_DIAL_${i}: the family must be present
        return any(re.fullmatch(re.escape(read) + r"\d+", p) for p in produced)
    return read in produced


def test_dialplan_parser_finds_the_contract() -> None:
    reads = dialplan_reads()
    assert reads["*"] == {"SS_ACTION"}
    assert {"SS_REASON", "SS_CAUSE", "SS_ANNOUNCEMENT"} <= reads["reject"]
    assert {"SS_REASON", "SS_TARGETS", "SS_DIAL_", "SS_TIMEOUT_", "SS_FAIL_REASON", "SS_FAIL_CAUSE"} <= reads[
        "dial"
    ]


def _golden_params() -> list[object]:
    reads = dialplan_reads()
    return [
        pytest.param(action, name, id=f"{action}-{name}")
        for action in ("dial", "reject")
        for name in sorted(reads["*"] | reads[action])
    ]


@pytest.mark.parametrize(("action", "read"), _golden_params())
def test_every_variable_the_dialplan_reads_is_produced(action: str, read: str) -> None:
    decisions = [TWO_DESTS] if action == "dial" else REJECTS
    for decision in decisions:
        produced = names(decision)
        assert satisfied(read, produced), f"{read} read by the {action} branch, not in {produced}"


def test_python_sets_nothing_the_dialplan_does_not_know() -> None:
    reads = dialplan_reads()
    known = set().union(*reads.values())
    for decision in [TWO_DESTS, *REJECTS]:
        for produced in names(decision):
            assert any(satisfied(k, [produced]) for k in known), f"{produced} is never read"


def test_contract_header_lists_every_variable_read() -> None:
    header = "\n".join(
        ln for ln in EXTENSIONS_CONF.read_text().splitlines() if ln.startswith(";") and "SS_" in ln
    )
    documented = set(re.findall(r"SS_[A-Z_]+", header))
    for name in set().union(*dialplan_reads().values()):
        assert name in documented, name
