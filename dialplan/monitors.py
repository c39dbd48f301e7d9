"""The compliance monitors (issue 15.2; MISSION.md "Compliance duties"): what an
enterprise's recent outbound calls look like against each rule, as pure functions of
(rule, figures) and (previous level, finding).

Figures are counted over one rule's sliding window (`params.window_s`) from the call
records (provisioning.compliance.watch reads them):

  robocall        distinct callees in the window, when the calls look automated (answer
                  rate below `max_answer_rate` or average talk below `max_avg_talk_s`) and
                  there are at least `min_calls`; 0 otherwise. 群呼.
  one_ring        the share of outbound calls the caller abandoned within `ring_s` of the
                  callee's phone ringing (rang, never answered, ended that soon). 一声响.
  failed_rate     the share of outbound calls not answered.
  avg_duration    the average talk time of the answered calls; `below: true`: the level
                  is reached when the value falls to the threshold or under it.
  call_frequency  outbound calls per caller number (one finding per number).
  numbers_in_use  distinct caller numbers shown.
  complaints      complaints registered against the tenant in the window.

A rule with `min_calls` gives no finding (level ok, value None) below that many calls: a
tenant's first two calls are not "100% failed".

Levels are ok < warning < critical. A change of level is an event; reaching critical takes
the rule's action (notice, alert, throttle, suspend); reaching warning sends a notice."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from dialplan.compliance import MONITOR_KINDS, Rule

LEVELS = ("ok", "warning", "critical")
RATE = Decimal("0.0001")


@dataclass(frozen=True, slots=True)
class Figures:
    """A tenant's outbound calls over one window (or one caller number's, for
    call_frequency). Calls are those the platform let through (refusals are not the
    tenant's dialling pattern) whose record has ended."""

    calls: int = 0
    answered: int = 0
    talk_s: int = 0  # summed over the answered calls
    distinct_callees: int = 0
    one_ring: int = 0  # rang, not answered, ended within ring_s of ringing
    caller_numbers: int = 0
    complaints: int = 0

    @property
    def answer_rate(self) -> Decimal:
        return ratio(self.answered, self.calls)

    @property
    def avg_talk_s(self) -> Decimal:
        return ratio(self.talk_s, self.answered)


def ratio(a: int, b: int) -> Decimal:
    """a / b to four places (0 when b is 0): every share and average of the monitors."""
    return (Decimal(a) / Decimal(b)).quantize(RATE, ROUND_HALF_UP) if b else Decimal(0)


@dataclass(frozen=True, slots=True)
class Finding:
    rule: str
    subject: str  # '' the tenant, else the caller number
    level: str
    value: Decimal | None  # None: too few calls to judge
    threshold: Decimal | None  # the level's threshold (warning or critical), None at ok


def window_s(rule: Rule) -> int:
    return int(rule.params.get("window_s", 3600))


def measure(rule: Rule, f: Figures) -> Decimal | None:
    """The rule's value for these figures, or None when there is not enough to judge."""
    p = rule.params
    min_calls = int(p.get("min_calls", 0))
    if rule.kind == "robocall":
        if f.calls < min_calls:
            return None
        automated = f.answer_rate < Decimal(str(p.get("max_answer_rate", 1))) or f.avg_talk_s < Decimal(
            str(p.get("max_avg_talk_s", 0))
        )
        return Decimal(f.distinct_callees) if automated else Decimal(0)
    if rule.kind == "one_ring":
        return None if f.calls < min_calls else ratio(f.one_ring, f.calls)
    if rule.kind == "failed_rate":
        return None if f.calls < min_calls else ratio(f.calls - f.answered, f.calls)
    if rule.kind == "avg_duration":
        return None if f.answered < max(min_calls, 1) else f.avg_talk_s
    if rule.kind == "call_frequency":
        return Decimal(f.calls)
    if rule.kind == "numbers_in_use":
        return Decimal(f.caller_numbers)
    if rule.kind == "complaints":
        return Decimal(f.complaints)
    raise ValueError(f"not a monitor: {rule.kind}")


def level_of(rule: Rule, value: Decimal | None) -> tuple[str, Decimal | None]:
    """(level, the threshold reached) of a value; `below` rules are reached from above."""
    if value is None:
        return "ok", None
    below = bool(rule.params.get("below", False))
    for level, threshold in (("critical", rule.critical), ("warning", rule.warning)):
        if threshold is None:
            continue
        if (value <= threshold) if below else (value >= threshold):
            return level, threshold
    return "ok", None


def evaluate(rule: Rule, f: Figures, subject: str = "") -> Finding:
    value = measure(rule, f)
    level, threshold = level_of(rule, value)
    return Finding(rule.kind, subject, level, value, threshold)


@dataclass(frozen=True, slots=True)
class Step:
    """What a finding changes: an event to record (the level moved) and the action."""

    event: bool
    action: str  # 'none', 'notice', 'alert', 'throttle', 'suspend'


NO_STEP = Step(False, "none")


def step(previous: str | None, finding: Finding, rule: Rule) -> Step:
    """A level change is recorded; reaching critical takes the rule's action, reaching
    warning (from ok) sends a notice; falling back is recorded with no action (an
    operator lifts a suspension or throttle: the monitors never lift one themselves)."""
    before = previous or "ok"
    if finding.level == before:
        return NO_STEP
    if LEVELS.index(finding.level) < LEVELS.index(before):
        return Step(True, "none")
    if finding.level == "critical":
        return Step(True, rule.action)
    return Step(True, "notice")


def throttle_of(rule: Rule) -> int:
    """Calls a minute a throttle allows: the rule's `throttle_per_min`, else 10."""
    pace = rule.params.get("throttle_per_min")
    return 10 if pace is None else int(pace)


def monitors(rules: Mapping[str, Rule]) -> list[Rule]:
    """The tenant's monitor rules in a stable order (the gates are not monitors)."""
    return [rules[k] for k in MONITOR_KINDS if k in rules]
