"""The FastAGI `route` script: call facts from the AGI environment, a pure decision from
dialplan/, and the decision handed back to Asterisk as SS_* channel variables (the
contract is documented at the top of docker/asterisk/extensions.conf)."""

from __future__ import annotations

import logging
import time

from dialplan.inbound import Decision, InboundCall, Route, decide_inbound
from dialplan.reasons import Reason
from softswitch.agi.server import AgiSession
from softswitch.call_records import CallRecordWriter, DecisionRecord
from softswitch.clock import Clock
from softswitch.masking import mask_number
from softswitch.metrics import Metrics
from softswitch.snapshot_store import SnapshotStore

log = logging.getLogger(__name__)


def asterisk_variables(decision: Decision, trunk: str) -> list[tuple[str, str]]:
    """The SS_* variables for a decision, SS_ACTION last, so that if they are ever set one by
    one, a session cut short leaves no SS_ACTION and the dialplan falls back instead of
    acting on half a decision."""
    out = [("SS_REASON", decision.reason.code)]
    if isinstance(decision, Route):
        out.append(("SS_TARGETS", str(len(decision.destinations))))
        for i, dest in enumerate(decision.destinations, start=1):
            out.append((f"SS_DIAL_{i}", f"PJSIP/{dest.destination}@{trunk}"))
            out.append((f"SS_TIMEOUT_{i}", str(dest.ring_timeout_s)))
        out.append(("SS_FAIL_REASON", Reason.ALL_DESTINATIONS_FAILED.code))
        out.append(("SS_FAIL_CAUSE", str(Reason.ALL_DESTINATIONS_FAILED.cause)))
        out.append(("SS_ACTION", "dial"))
    else:
        out.append(("SS_CAUSE", str(decision.reason.cause)))
        out.append(("SS_ANNOUNCEMENT", decision.reason.prompt))
        out.append(("SS_ACTION", "reject"))
    return out


class InboundRouting:
    def __init__(
        self,
        snapshots: SnapshotStore,
        clock: Clock,
        metrics: Metrics,
        records: CallRecordWriter,
        trunk: str = "carrier-out",
    ) -> None:
        self._snapshots = snapshots
        self._clock = clock
        self._metrics = metrics
        self._records = records
        self._trunk = trunk

    async def __call__(self, session: AgiSession) -> None:
        started = time.perf_counter()
        env = session.env
        # Arguments from the dialplan: AGI(agi://…/route,${CHANNEL(linkedid)},${SS_CALLED})
        linkedid = env.args[0] if env.args and env.args[0] else env.uniqueid
        called = env.args[1] if len(env.args) > 1 and env.args[1] else env.extension
        caller = env.callerid if env.callerid not in ("", "unknown") else ""
        call = InboundCall(caller=caller, called=called, linkedid=linkedid)
        now = self._clock.now()
        decision = decide_inbound(self._snapshots.current, call, now)
        # One round trip for the whole decision. MSet expands ${...} in what it is given, so
        # only values the control plane owns go here (reason codes, digits checked by the
        # schema, dial strings built from them), never caller-supplied text.
        await session.exec(
            "MSet", *(f"{name}={value}" for name, value in asterisk_variables(decision, self._trunk))
        )
        elapsed = time.perf_counter() - started
        action = "dial" if isinstance(decision, Route) else "reject"
        self._metrics.decision_seconds.observe(elapsed)
        self._metrics.decisions.labels(action, decision.reason.code).inc()
        dests = tuple(d.destination for d in decision.destinations) if isinstance(decision, Route) else ()
        self._records.decided(
            DecisionRecord(
                linkedid,
                env.uniqueid,
                decision.tenant_id,
                decision.number_id,
                caller,
                called,
                action,
                decision.reason.code,
                dests,
                now,
                int(elapsed * 1_000_000),
            )
        )
        log.info(
            "call %s %s -> %s: %s %s",
            linkedid,
            mask_number(caller),
            mask_number(called),
            action,
            decision.reason.code,
        )
