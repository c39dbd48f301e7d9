"""asterisk_variables(decision, trunk): the SS_* variables handed to the dialplan, checked
against what docker/asterisk/extensions.conf actually reads."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dialplan.distribution import DialStep, Member
from dialplan.inbound import Reject, Route, RunIvr, Voicemail
from dialplan.reasons import Reason
from softswitch.callpath.recorder import RecordingVars
from softswitch.engines.asterisk.contract import asterisk_variables, dial_string

EXTENSIONS_CONF = Path(__file__).resolve().parents[2] / "docker" / "asterisk" / "extensions.conf"
TRUNK = "carrier-out"

A, B = Member("13800138000", 20), Member("02112345678", 45)
TWO_STEPS = Route((DialStep((A,), 20), DialStep((B,), 45)), tenant_id=1, number_id=10)
RING_ALL = Route((DialStep((A, B), 45),), tenant_id=1, number_id=10)
REJECTS = [Reject(r, 1, 10) for r in Reason if r is not Reason.ROUTED]
ALL_DECISIONS = [
    TWO_STEPS,
    RING_ALL,
    Route((DialStep((Member("t1x8001", kind="extension"),), 30),), 1, None, caller_id="8001"),
    Route(
        (DialStep((Member("13900000000", via="trunk-a", kind="external"),), 60),),
        1,
        None,
        next_on="congestion",
    ),
    Voicemail(1, 10),
    RunIvr("main", 1, 10),
    *REJECTS,
]


def names(decision) -> list[str]:  # type: ignore[no-untyped-def]
    return [name for name, _ in asterisk_variables(decision, TRUNK)]


@pytest.mark.parametrize("decision", ALL_DECISIONS, ids=lambda d: f"{type(d).__name__}-{d.reason.code}")
def test_ss_action_is_the_last_variable_and_set_once(decision) -> None:  # type: ignore[no-untyped-def]
    out = asterisk_variables(decision, TRUNK)
    assert out[-1][0] == "SS_ACTION"
    assert names(decision).count("SS_ACTION") == 1
    assert len({n for n, _ in out}) == len(out)
    # MSet takes name=value pairs separated by commas: no value may contain one.
    assert all(isinstance(v, str) and "," not in v for _, v in out)


def test_route_with_two_steps() -> None:
    assert asterisk_variables(TWO_STEPS, TRUNK) == [
        ("SS_REASON", "ROUTED"),
        ("SS_TENANT_ID", "1"),
        ("SS_TARGETS", "2"),
        ("SS_DIAL_1", "PJSIP/13800138000@carrier-out"),
        ("SS_TIMEOUT_1", "20"),
        ("SS_DIAL_2", "PJSIP/02112345678@carrier-out"),
        ("SS_TIMEOUT_2", "45"),
        ("SS_NEXT_ON", "any"),
        ("SS_CALLERID", ""),
        ("SS_CALLERID_NAME", "keep"),
        ("SS_GREETING", ""),
        ("SS_WHISPER", ""),
        ("SS_LIMIT", "0"),
        ("SS_FINAL", "missed_call"),
        ("SS_FAIL_REASON", "ALL_DESTINATIONS_FAILED"),
        ("SS_FAIL_CAUSE", "19"),
        ("SS_TRANSFER", ""),
        ("SS_RECORD", ""),
        ("SS_RECORD_ANNOUNCE", ""),
        ("SS_RECORD_ON_DEMAND", ""),
        ("SS_RINGBACK", ""),
        ("SS_ACTION", "dial"),
    ]


def test_a_recorded_route_names_its_file_and_announcement() -> None:
    rec = RecordingVars("/var/spool/asterisk/monitor/softswitch/1/1700000000.5", "softswitch/system/x")
    out = dict(asterisk_variables(TWO_STEPS, TRUNK, rec))
    assert out["SS_RECORD"] == rec.file and out["SS_RECORD_ANNOUNCE"] == rec.announce
    assert out["SS_RECORD_ON_DEMAND"] == ""
    on_demand = dict(asterisk_variables(TWO_STEPS, TRUNK, RecordingVars(on_demand=True)))
    assert on_demand["SS_RECORD"] == "" and on_demand["SS_RECORD_ON_DEMAND"] == "1"


def test_dial_strings() -> None:
    assert (
        dial_string(RING_ALL.steps[0], TRUNK) == "PJSIP/13800138000@carrier-out&PJSIP/02112345678@carrier-out"
    )
    assert dial_string(DialStep((Member("t1x8001", kind="extension"),), 30), TRUNK) == "PJSIP/t1x8001"
    assert dial_string(DialStep((Member("139", via="trunk-b"),), 30), TRUNK) == "PJSIP/139@trunk-b"


@pytest.mark.parametrize(
    ("reason", "cause", "announcement"),
    [
        (Reason.UNKNOWN_NUMBER, "1", "ss-noservice"),
        (Reason.NUMBER_NOT_ACTIVE, "1", "ss-noservice"),
        (Reason.TENANT_SUSPENDED, "21", "ss-noservice"),
        (Reason.NO_DESTINATION, "3", "cannot-complete-as-dialed"),
        (Reason.BLACKLISTED, "21", "ss-noservice"),
        (Reason.CALLER_ID_NOT_OWNED, "21", "ss-noservice"),
    ],
    ids=lambda v: v.code if isinstance(v, Reason) else None,
)
def test_reject_carries_cause_and_announcement(reason: Reason, cause: str, announcement: str) -> None:
    assert asterisk_variables(Reject(reason), TRUNK) == [
        ("SS_REASON", reason.code),
        ("SS_TENANT_ID", ""),
        ("SS_CAUSE", cause),
        ("SS_ANNOUNCEMENT", announcement),
        ("SS_ACTION", "reject"),
    ]


def test_a_configured_announcement_overrides_the_reasons_prompt() -> None:
    out = dict(asterisk_variables(Reject(Reason.CLOSED, 1, 2, prompt="softswitch/closed"), TRUNK))
    assert out["SS_ANNOUNCEMENT"] == "softswitch/closed"


# --- golden: Python side vs. the dialplan file ----------------------------------------

# Set by the dialplan itself ([globals] and Set(...)), never by the AGI script.
# SS_XFER_*: the call's tenant and number, inherited by its channels for [ss-transfer].
SET_BY_DIALPLAN = {"SS_AGI_URL", "SS_AGI_STANDBY", "SS_CALLED", "SS_OPTS", "SS_XFER_TENANT", "SS_XFER_NUMBER"}
_READ = re.compile(r"\$\{(SS_[A-Z0-9_]+)")
_LABEL = re.compile(r"^\s*(?:exten\s*=>\s*[^,]+,|same\s*=>)\s*[^,(]+\((\w+)\)")
_ACTION_BRANCH = re.compile(r'"\$\{SS_ACTION\}"\s*=\s*"(\w+)"\]\?(\w+)')
ACTIONS = {"dial", "reject", "voicemail", "ivr"}


def dialplan_reads() -> dict[str, set[str]]:
    """SS_* names read in [ss-act], by the SS_ACTION branch (label) they are read in."""
    text = EXTENSIONS_CONF.read_text()
    context = re.search(r"^\[ss-act\]\n(.*?)(?=^\[|\Z)", text, re.M | re.S)
    assert context, "no [ss-act] context in extensions.conf"
    lines = [ln for ln in context.group(1).splitlines() if ln.strip() and not ln.lstrip().startswith(";")]
    label_of_action = {label: action for action, label in _ACTION_BRANCH.findall(context.group(1))}
    assert set(label_of_action.values()) == ACTIONS, label_of_action
    reads: dict[str, set[str]] = {"*": set(), **{a: set() for a in ACTIONS}}
    section = "*"
    for line in lines:
        label = _LABEL.match(line)
        if label and label.group(1) in label_of_action:
            section = label_of_action[label.group(1)]
        elif label and label.group(1) == "unavailable":
            section = "unavailable"
            reads.setdefault(section, set())
        reads[section].update(n for n in _READ.findall(line) if n not in SET_BY_DIALPLAN)
    # a failed dial may fall through to voicemail: it needs what voicemail reads too
    reads["dial"] |= reads["voicemail"]
    return reads


def satisfied(read: str, produced: list[str]) -> bool:
    if read.endswith("_"):  # SS_DIAL_${i}: the family must be present
        return any(re.fullmatch(re.escape(read) + r"\d+", p) for p in produced)
    return read in produced


def test_dialplan_parser_finds_the_contract() -> None:
    reads = dialplan_reads()
    assert reads["*"] == {"SS_ACTION"}
    assert {"SS_REASON", "SS_CAUSE", "SS_ANNOUNCEMENT"} <= reads["reject"]
    assert {"SS_TARGETS", "SS_DIAL_", "SS_TIMEOUT_", "SS_NEXT_ON", "SS_FINAL", "SS_WHISPER"} <= reads["dial"]
    assert {"SS_RECORD", "SS_RECORD_ANNOUNCE", "SS_RECORD_ON_DEMAND"} <= reads["dial"]
    assert "SS_TENANT_ID" in reads["voicemail"] and "SS_IVR_MENU" in reads["ivr"]


EXAMPLES = {
    "dial": [TWO_STEPS, RING_ALL, ALL_DECISIONS[2], ALL_DECISIONS[3]],
    "reject": REJECTS,
    "voicemail": [Voicemail(1, 10)],
    "ivr": [RunIvr("main", 1, 10)],
}


@pytest.mark.parametrize(
    ("action", "read"),
    [(a, n) for a in sorted(ACTIONS) for n in sorted(dialplan_reads()[a] | {"SS_ACTION"})],
)
def test_every_variable_the_dialplan_reads_is_produced(action: str, read: str) -> None:
    for decision in EXAMPLES[action]:
        produced = names(decision)
        assert satisfied(read, produced), f"{read} read by the {action} branch, not in {produced}"


def test_every_variable_read_is_documented_in_the_header() -> None:
    text = EXTENSIONS_CONF.read_text()
    header = text.split("[general]")[0]
    all_reads = set().union(*dialplan_reads().values())
    for name in all_reads:
        assert name.rstrip("_") in header, f"{name} is read but not documented in the SS_* header"
