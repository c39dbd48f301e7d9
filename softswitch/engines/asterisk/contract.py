"""Asterisk's side of a decision: the SS_* channel variables the dialplan acts on — the
contract documented at the top of docker/asterisk/extensions.conf — and the dial strings."""

from __future__ import annotations

from dialplan.distribution import DialStep
from dialplan.inbound import AskPin, Decision, Reject, Route, RunIvr
from dialplan.legs import CallerName
from dialplan.reasons import Reason
from softswitch.callpath.recorder import RecordingVars
from softswitch.callpath.routing import action_of


def dial_string(step: DialStep, default_trunk: str) -> str:
    parts = []
    for m in step.members:
        if m.kind == "extension":
            parts.append(f"PJSIP/{m.destination}")
        else:
            parts.append(f"PJSIP/{m.destination}@{m.via or default_trunk}")
    return "&".join(parts)


def asterisk_variables(
    decision: Decision,
    trunk: str,
    recording: RecordingVars | None = None,
    caller_name: CallerName = CallerName.KEEP,
    transfer: str = "",
) -> list[tuple[str, str]]:
    """The SS_* variables for a decision, SS_ACTION last, so that if they are ever set one by
    one, a session cut short leaves no SS_ACTION and the dialplan falls back instead of
    acting on half a decision. `recording` is how a routed call is recorded (None: not);
    `caller_name` whether the destinations see the caller's display name; `transfer` the
    Dial options saying which party may transfer by DTMF (dialplan.transfers)."""
    assert not isinstance(decision, AskPin), "a PIN step is a dialogue, not a decision"
    out = [("SS_REASON", decision.reason.code), ("SS_TENANT_ID", str(decision.tenant_id or ""))]
    if isinstance(decision, Route):
        out.append(("SS_TARGETS", str(len(decision.steps))))
        for i, step in enumerate(decision.steps, start=1):
            out.append((f"SS_DIAL_{i}", dial_string(step, trunk)))
            out.append((f"SS_TIMEOUT_{i}", str(step.timeout_s)))
        out += [
            ("SS_NEXT_ON", decision.next_on),
            ("SS_CALLERID", decision.caller_id),
            ("SS_CALLERID_NAME", caller_name.value),
            ("SS_GREETING", decision.greeting),
            ("SS_WHISPER", decision.whisper),
            ("SS_LIMIT", str(decision.limit_s)),
            ("SS_FINAL", decision.final_action),
            ("SS_FAIL_REASON", Reason.ALL_DESTINATIONS_FAILED.code),
            ("SS_FAIL_CAUSE", str(Reason.ALL_DESTINATIONS_FAILED.cause)),
            ("SS_TRANSFER", transfer),
        ]
        rec = recording or RecordingVars()
        out += [
            ("SS_RECORD", rec.file),
            ("SS_RECORD_ANNOUNCE", rec.announce),
            ("SS_RECORD_ON_DEMAND", "1" if rec.on_demand else ""),
        ]
        # the number's ringback tone: its music-on-hold class, for Dial's m option ('' = ring)
        out.append(("SS_RINGBACK", decision.ringback.moh_class if decision.ringback is not None else ""))
    elif isinstance(decision, Reject):
        out.append(("SS_CAUSE", str(decision.reason.cause)))
        out.append(("SS_ANNOUNCEMENT", decision.announcement))
    elif isinstance(decision, RunIvr):
        out.append(("SS_IVR_MENU", decision.menu))
    out.append(("SS_ACTION", action_of(decision)))
    return out
