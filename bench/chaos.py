"""Chaos soak (issue 19, item 1): mixed traffic at a steady rate through Asterisk (and
FreeSWITCH when it runs) while a fault script kills the service with -9, restarts
Asterisk, FreeSWITCH and PostgreSQL (immediate mode) at seeded random moments; then the
money and the channel slots are checked on the database. Writes bench/results/chaos.json.

    .venv/bin/python bench/chaos.py                  # 10 minutes, 3 faults of each kind
    .venv/bin/python bench/chaos.py --minutes 2      # a development run, 1 of each

Traffic: long-running SIPp clients (-r rate, -l concurrency), one per stream: inbound
calls to unified numbers of prepaid tenants (a wide one, 4 s; a tight one whose money
runs out, 25 s calls renewed slice by slice), extension to extension (a registered SIPp
phone answers), outbound from an extension through the carrier trunk, and IVR calls keying
DTMF; every caller of the inbound streams is unique, so each SIPp call is matched with its
call record. Each SIPp writes its messages as short CSV (-trace_shortmsg): every call's
outcome is read from it with the time it failed, and counted in the fault window it fell in.

The end: traffic soft-stopped (SIGUSR1: running calls finish), a bounded wait until every
reservation is closed, every slot free and every call record ended, then the invariants
(pass/fail with numbers), per fault: SIPp's failures by kind and response code, the
service's decisions by reason, the records left without an end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import (  # noqa: E402
    DESTINATION,
    SERVICE_ENV,
    _admin_token,
    _api,
    _sql_tenant,
    _wait_reload,
    provision,
)
from dialplan.compliance import MONITOR_KINDS  # noqa: E402
from scripts.devstack.process import ServiceProcess  # noqa: E402
from scripts.devstack.sipp import SCENARIOS, SippUas, _read_stats, render_dtmf  # noqa: E402
from scripts.devstack.stack import PG_BIN, LocalStack, exclusive_use  # noqa: E402
from softswitch.core.settings import Settings  # noqa: E402

OUT = Path(__file__).parent / "results" / "chaos.json"
FAULT_KINDS = ("service_kill9", "asterisk_restart", "freeswitch_restart", "postgres_immediate")
# The soak's service: short slices (every call of more than 3 s renews: renewals meet the
# faults), the reconciler every second, and no scheduler (the billing cycle would charge the
# bench tenants' rent mid-run and break "ledger = calls").
CHAOS_ENV = {
    **SERVICE_ENV,
    "SOFTSWITCH_SCHEDULER__ENABLED": "false",
    "SOFTSWITCH_PREPAID__RECONCILE_INTERVAL_S": "1",
}
# A fault's window runs on this long after the service is ready again: the phones register
# again every 15 s, so calls to an extension fail until then after an engine restart.
TAIL_S = 20.0


# ============================================================================ pure parts
# ---------------------------------------------------------------------------- the plan
@dataclass(frozen=True)
class PlannedFault:
    at_s: float  # from the start of traffic
    kind: str


def plan_faults(
    seed: int,
    duration_s: float,
    kinds: Sequence[str],
    each: int,
    *,
    warmup_s: float = 20.0,
    cooldown_s: float = 30.0,
    min_gap_s: float = 20.0,
) -> list[PlannedFault]:
    """`each` faults of every kind at random moments of [warmup, duration - cooldown],
    at least `min_gap_s` apart, in a random order: the same seed, the same plan."""
    n = len(kinds) * each
    if n == 0:
        return []
    slack = duration_s - warmup_s - cooldown_s - (n - 1) * min_gap_s
    if slack < 0:
        raise ValueError(
            f"{n} faults {min_gap_s:g} s apart do not fit in {duration_s:g} s "
            f"(warm-up {warmup_s:g} s, cool-down {cooldown_s:g} s): fewer faults or a longer run"
        )
    rng = random.Random(seed)
    offsets = sorted(rng.uniform(0, slack) for _ in range(n))
    order = [k for k in kinds for _ in range(each)]
    rng.shuffle(order)
    return [
        PlannedFault(round(warmup_s + off + i * min_gap_s, 3), kind)
        for i, (off, kind) in enumerate(zip(offsets, order, strict=True))
    ]


# ---------------------------------------------------------------------------- SIPp traces
@dataclass
class CallTrace:
    """One SIPp call as its short-message trace tells it (epoch seconds)."""

    call_id: str
    invites: list[float] = field(default_factory=list)  # INVITEs sent (a challenge: two)
    finals: list[tuple[float, int]] = field(default_factory=list)  # final responses to INVITE
    bye_sent: list[float] = field(default_factory=list)
    bye_ok: float | None = None  # 200 to our BYE
    bye_received: float | None = None  # the network hung up
    last: float = 0.0


def parse_shortmsg(lines: Iterable[str]) -> dict[str, CallTrace]:
    """SIPp's -trace_shortmsg lines (date, time, epoch, S|R, Call-ID, 'CSeq:n METHOD',
    first line; tab-separated) by Call-ID. A torn last line is skipped."""
    calls: dict[str, CallTrace] = {}
    for line in lines:
        parts = line.rstrip("\n").split("\t")
        if len(parts) < 7:
            continue
        try:
            at = float(parts[2])
        except ValueError:
            continue
        way, call_id, cseq, first = parts[3], parts[4], parts[5], parts[6]
        method = cseq.split()[-1] if cseq.split() else ""
        t = calls.setdefault(call_id, CallTrace(call_id))
        t.last = max(t.last, at)
        is_response = first.startswith("SIP/2.0 ")
        if way == "S" and not is_response:
            if method == "INVITE":
                t.invites.append(at)
            elif method == "BYE":
                t.bye_sent.append(at)
        elif way == "R" and is_response:
            try:
                code = int(first.split()[1])
            except (IndexError, ValueError):
                continue
            if method == "INVITE" and code >= 200:
                t.finals.append((at, code))
            elif method == "BYE" and code == 200 and t.bye_ok is None:
                t.bye_ok = at
        elif way == "R" and first.startswith("BYE ") and t.bye_received is None:
            t.bye_received = at
    return calls


@dataclass(frozen=True)
class Outcome:
    """What became of one call, and when its failure began (or it ended)."""

    stream: str
    call_id: str
    started: float
    kind: str  # completed | network_bye | bye_timeout | aborted | refused_<code> | no_final
    at: float
    answered: bool
    talk_s: float | None = None

    @property
    def failed(self) -> bool:
        return self.kind != "completed"

    @property
    def call_number(self) -> int:
        """SIPp's call number ('12-3456@127.0.0.2' -> 12): the injection file's line."""
        return int(self.call_id.split("-", 1)[0])


def outcome_of(stream: str, t: CallTrace) -> Outcome | None:
    """A call's outcome. Answered: ended by the caller's BYE (completed), by the network's
    (network_bye: dropped, or cut for money), or its BYE unanswered (bye_timeout: the
    engine was gone) or never sent (aborted). Not answered: the first final response to
    the last INVITE (refused_<code>), or none (no_final)."""
    if not t.invites:
        return None
    started, last_invite = t.invites[0], t.invites[-1]
    finals = [f for f in t.finals if f[0] >= last_invite]
    answered_at = next((at for at, code in finals if code == 200), None)
    if answered_at is not None:
        if t.bye_received is not None:
            return Outcome(
                stream, t.call_id, started, "network_bye", t.bye_received, True, t.bye_received - answered_at
            )
        if t.bye_sent:
            kind = "completed" if t.bye_ok is not None else "bye_timeout"
            at = t.bye_ok if t.bye_ok is not None else t.bye_sent[0]
            return Outcome(stream, t.call_id, started, kind, at, True, t.bye_sent[0] - answered_at)
        return Outcome(stream, t.call_id, started, "aborted", t.last, True, t.last - answered_at)
    if finals:
        at, code = finals[0]
        return Outcome(stream, t.call_id, started, f"refused_{code}", at, False)
    return Outcome(stream, t.call_id, started, "no_final", last_invite, False)


@dataclass(frozen=True)
class Window:
    label: str
    start: float  # epoch seconds
    end: float


def window_of(at: float, windows: Sequence[Window]) -> str:
    """The first fault window holding `at`, else 'no_fault'."""
    return next((w.label for w in windows if w.start <= at <= w.end), "no_fault")


def count_by_window(outcomes: Iterable[Outcome], windows: Sequence[Window]) -> dict[str, dict[str, Any]]:
    """Per window (and 'no_fault'): calls offered (their first INVITE in it) and the
    failures that began in it, by kind and by stream."""
    out: dict[str, dict[str, Any]] = {
        w.label: {"offered": 0, "failed": Counter(), "failed_by_stream": Counter()}
        for w in [*windows, Window("no_fault", 0, 0)]
    }
    for o in outcomes:
        out[window_of(o.started, windows)]["offered"] += 1
        if o.failed:
            bucket = out[window_of(o.at, windows)]
            bucket["failed"][o.kind] += 1
            bucket["failed_by_stream"][o.stream] += 1
    return {
        label: {
            "offered": v["offered"],
            "failed": dict(sorted(v["failed"].items())),
            "failed_total": sum(v["failed"].values()),
            "failed_by_stream": dict(sorted(v["failed_by_stream"].items())),
        }
        for label, v in out.items()
    }


def count_records_by_window(rows: Iterable[Mapping[str, Any]], windows: Sequence[Window]) -> dict[str, Any]:
    """The service's call records by the window of their decision: reasons, final reasons
    (a cut, a reconciliation) and the records with no end."""
    out: dict[str, dict[str, Counter[str]]] = {}
    for r in rows:
        label = window_of(r["decided_at"].timestamp(), windows)
        b = out.setdefault(label, {"reason": Counter(), "final_reason": Counter(), "no_end": Counter()})
        b["reason"][r["reason"]] += 1
        if r["final_reason"]:
            b["final_reason"][r["final_reason"]] += 1
        if r["ended_at"] is None:
            b["no_end"][r["reason"]] += 1
    return {
        label: {k: dict(sorted(c.items())) for k, c in b.items()}
        for label, b in sorted(out.items(), key=lambda kv: (kv[0] == "no_fault", kv[0]))
    }


# ---------------------------------------------------------------------------- invariants
def ledger_check(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The ledger's running balance, entry by entry in id order per tenant (rows: tenant_id,
    id, amount, balance_after, credit_limit, prev_after — the previous entry's balance_after,
    from lag() over the tenant's entries): no balance_after below -credit_limit, and each
    entry's balance_after = the previous one + its amount (a broken chain is a lost or
    interleaved write)."""
    below, broken = [], []
    headroom: dict[int, Decimal] = {}
    for r in rows:
        t = r["tenant_id"]
        room = r["balance_after"] + r["credit_limit"]
        headroom[t] = min(headroom.get(t, room), room)
        if room < 0:
            below.append({"tenant_id": t, "entry": r["id"], "balance_after": str(r["balance_after"])})
        if r["prev_after"] is not None and r["prev_after"] + r["amount"] != r["balance_after"]:
            broken.append(
                {
                    "tenant_id": t,
                    "entry": r["id"],
                    "prev_after": str(r["prev_after"]),
                    "amount": str(r["amount"]),
                    "balance_after": str(r["balance_after"]),
                }
            )
    return {
        "pass": not below and not broken,
        "entries": len(rows),
        "below_credit_limit": below[:20],
        "broken_chain": broken[:20],
        "min_headroom_by_tenant": {str(t): str(v) for t, v in sorted(headroom.items())},
    }


def settlement_check(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Every call that took a reservation (rows: linkedid, tenant_id, state, has_record,
    answered (the record's answered_at), engine_billsec (the engine's answered legs),
    entries (ledger 'call' entries under its id), ledger_amount, call_amount, settled_at):
    closed; an answered one settled by exactly one entry equal to the record's amount; none
    released for free that the engine says was answered; none charged whose record is
    missing or says it was never answered."""
    problems: dict[str, list[str]] = {
        "open": [],
        "double_settled": [],
        "answered_not_settled": [],
        "released_but_engine_answered": [],
        "entry_without_settled_reservation": [],
        "amount_mismatch": [],
        "charged_without_record": [],
        "charged_but_recorded_unanswered": [],
    }
    answered = settled = 0
    for r in rows:
        cid = r["linkedid"]
        engine_answered = (r["engine_billsec"] or 0) > 0
        is_answered = bool(r["answered"]) or engine_answered
        answered += is_answered
        settled += r["state"] == "settled"
        if r["state"] == "open":
            problems["open"].append(cid)
        if r["entries"] > 1:
            problems["double_settled"].append(cid)
        if is_answered and r["state"] != "open" and r["entries"] == 0:
            problems["answered_not_settled"].append(cid)
        if r["state"] == "released" and engine_answered:
            problems["released_but_engine_answered"].append(cid)
        if r["entries"] >= 1 and r["state"] != "settled":
            problems["entry_without_settled_reservation"].append(cid)
        if r["entries"] == 1 and -r["ledger_amount"] != (r["call_amount"] or Decimal(0)):
            problems["amount_mismatch"].append(cid)
        if r["ledger_amount"] < 0 and not r["has_record"]:
            problems["charged_without_record"].append(cid)
        elif r["ledger_amount"] < 0 and not r["answered"]:
            problems["charged_but_recorded_unanswered"].append(cid)
    return {
        "pass": not any(problems.values()),
        "reservations": len(rows),
        "answered": answered,
        "settled": settled,
        **{k: {"count": len(v), "examples": v[:10]} for k, v in problems.items()},
    }


def tenant_sums_check(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Per tenant (rows: tenant_id, ledger_calls — the sum of its 'call' entries, charges —
    the sum of its settled calls' amounts, spent — initial minus final balance, other — the
    sum of its other entries in the run): -ledger = charges = what left the balance."""
    per = {}
    ok = True
    for r in rows:
        agree = -r["ledger_calls"] == r["charges"] and r["spent"] == r["charges"] - r["other"]
        ok &= agree
        per[str(r["tenant_id"])] = {
            "ledger_call_entries": str(r["ledger_calls"]),
            "call_charges": str(r["charges"]),
            "balance_spent": str(r["spent"]),
            "other_entries": str(r["other"]),
            "agree": agree,
        }
    return {"pass": ok, "tenants": per}


def sipp_vs_records(
    outcomes: Sequence[Outcome],
    callers: Mapping[str, Sequence[str]],
    records: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any]:
    """Each answered SIPp call of an inbound stream (unique callers: callers[stream][n-1]
    is call n's) against its call record: talked over 1.5 s but charged nothing (money
    lost), or billed more than 2 s beyond what SIPp talked (overcharged)."""
    matched = missing = 0
    not_charged, overcharged = [], []
    for o in outcomes:
        if o.stream not in callers or not o.answered or o.talk_s is None:
            continue
        lines = callers[o.stream]
        caller = lines[(o.call_number - 1) % len(lines)]
        rec = records.get(caller)
        if rec is None:
            missing += 1
            continue
        matched += 1
        amount = rec["amount"] or Decimal(0)
        if o.talk_s > 1.5 and amount <= 0:
            not_charged.append({"stream": o.stream, "call": o.call_id, "talk_s": round(o.talk_s, 1)})
        if rec["billsec"] is not None and rec["billsec"] > o.talk_s + 2:
            overcharged.append(
                {
                    "stream": o.stream,
                    "call": o.call_id,
                    "talk_s": round(o.talk_s, 1),
                    "billsec": rec["billsec"],
                }
            )
    return {
        "pass": not not_charged and not overcharged,
        "answered_matched": matched,
        "answered_without_record": missing,
        "talked_but_not_charged": {"count": len(not_charged), "examples": not_charged[:10]},
        "billed_beyond_talk": {"count": len(overcharged), "examples": overcharged[:10]},
    }


# ============================================================================ edges
# ---------------------------------------------------------------------------- provisioning
@dataclass
class Bench:
    tenants: dict[str, int]  # role -> tenant id
    wide_number: str
    tight_number: str
    ivr_number: str
    phones: dict[str, tuple[dict[str, Any], str]]  # role -> (extension row, password)
    initial_balance: dict[int, Decimal] = field(default_factory=dict)


async def _bench_sql(settings: Settings, p: Any, minutes: float) -> tuple[dict[str, int], str]:
    conn = await asyncpg.connect(settings.database.dsn())
    try:
        wide = await conn.fetchval("SELECT tenant_id FROM numbers WHERE number = $1", p.wide_number)
        exhaust = await conn.fetchval("SELECT tenant_id FROM numbers WHERE number = $1", p.exhaust_number)
        async with conn.transaction():
            # Money for about (minutes / 4 + 0.5) CNY of 25 s calls at 0.12/min in 6 s steps
            # (0.06 each): it runs out mid-soak, then its calls are refused NO_BALANCE.
            tight, tight_number = await _sql_tenant(
                conn,
                f"bench chaos {secrets.token_hex(3)} tight",
                str(Decimal("0.25") * Decimal(str(minutes))),
                8,
                credit_limit="0.50",
                rate_per_minute="0.12",
                first_increment_s=6,
                increment_s=6,
            )
            # The 8-channel tenant carries the extensions, the outbound calls and the IVR.
            await conn.execute("UPDATE accounts SET channel_cap = 60 WHERE tenant_id = $1", p.cap8_tenant)
        tenants = {"wide": wide, "calling": p.cap8_tenant, "exhaust": exhaust, "tight": tight}
        # The outbound gates of the bench tenants open (calling hours, one callee called
        # often), their monitors off: the soak measures faults, not compliance.
        for t in tenants.values():
            for kind, params in (
                ("calling_hours", {"start": "00:00", "end": "24:00"}),
                ("callee_frequency", {"windows": [[60, 100000]]}),
            ):
                await conn.execute(
                    "INSERT INTO compliance_rules (tenant_id, kind, params) VALUES ($1, $2, $3::text::jsonb) "
                    "ON CONFLICT (tenant_id, kind) DO UPDATE SET params = EXCLUDED.params",
                    t,
                    kind,
                    json.dumps(params),
                )
            # The platform's monitor rows, copied switched off (params as the platform's).
            await conn.execute(
                "INSERT INTO compliance_rules (tenant_id, kind, params, warning, critical, action, enabled) "
                "SELECT $1, kind, params, warning, critical, action, false FROM compliance_rules "
                "WHERE tenant_id IS NULL AND kind = ANY($2) ON CONFLICT (tenant_id, kind) DO NOTHING",
                t,
                list(MONITOR_KINDS),
            )
        return tenants, tight_number
    finally:
        await conn.close()


def provision_bench(service: ServiceProcess, settings: Settings, tmp: Path, minutes: float) -> Bench:
    p = provision(service, settings, tmp, storm_accounts=0)
    generation = service.metric("softswitch_snapshot_generation")
    tenants, tight_number = asyncio.run(_bench_sql(settings, p, minutes))
    _wait_reload(service, generation)  # the tight tenant and the rules live before any call
    phones = {"ast_a": (p.ext_a, p.ext_a_password), "ast_b": (p.ext_b, p.ext_b_password)}
    for role, ext in (("fs_a", "811"), ("fs_b", "812")):
        pw = secrets.token_hex(8)
        row = _api(
            service,
            "POST",
            f"/v1/tenants/{p.cap8_tenant}/extensions",
            201,
            json={"extension": ext, "password": pw},
        )
        phones[role] = (row, pw)
    return Bench(tenants, p.wide_number, tight_number, p.ivr_number, phones)


async def _balances(settings: Settings, tenants: Iterable[int]) -> dict[int, Decimal]:
    conn = await asyncpg.connect(settings.database.dsn())
    try:
        rows = await conn.fetch(
            "SELECT tenant_id, balance FROM accounts WHERE tenant_id = ANY($1)", list(tenants)
        )
        return {r["tenant_id"]: r["balance"] for r in rows}
    finally:
        await conn.close()


# ---------------------------------------------------------------------------- traffic
@dataclass(frozen=True)
class StreamSpec:
    name: str
    engine: str  # asterisk | freeswitch
    what: str
    scenario: Path
    local_ip: str
    local_port: int
    target: str
    called: str
    rate: float  # calls per second
    limit: int
    hold_ms: int
    args: tuple[str, ...] = ()
    unique_callers: bool = False


class SippStream:
    """One long-running SIPp client: -r/-l for the whole soak, soft-stopped by SIGUSR1."""

    def __init__(self, spec: StreamSpec, workdir: Path, duration_s: float) -> None:
        self.spec = spec
        self.dir = workdir / spec.name
        self.dir.mkdir(parents=True)
        self.callers: list[str] = []
        scenario = spec.scenario
        extra: list[str] = []
        if spec.unique_callers:
            # Every call its own caller ([field0] of a SEQUENTIAL injection file: call n
            # reads line n), so the call record of each SIPp call can be found.
            tag = f"{random.randrange(100):02d}{random.randrange(10)}"
            self.callers = [f"139{tag}{i:05d}" for i in range(int(spec.rate * duration_s * 1.2) + 50)]
            (self.dir / "callers.csv").write_text("SEQUENTIAL\n" + "\n".join(self.callers) + "\n")
            scenario = self.dir / "scenario.xml"
            scenario.write_text(spec.scenario.read_text().replace("[caller]", "[field0]"))
            extra += ["-inf", str(self.dir / "callers.csv")]
        max_calls = int(spec.rate * duration_s) + 1
        self.cmd = [
            "sipp",
            "-sf",
            str(scenario),
            "-i",
            spec.local_ip,
            "-p",
            str(spec.local_port),
            "-s",
            spec.called,
            "-d",
            str(spec.hold_ms),
            "-r",
            f"{spec.rate:g}",
            "-l",
            str(spec.limit),
            "-m",
            str(max_calls),
            "-nostdin",
            "-recv_timeout",
            "30000",
            # a SIPp left behind by a crash of this script stops by itself
            "-timeout",
            f"{int(duration_s + 900)}s",
            "-trace_shortmsg",
            "-shortmessage_file",
            str(self.dir / "short.log"),
            "-trace_stat",
            "-stf",
            str(self.dir / "stats.csv"),
            "-fd",
            "5",
            *extra,
            *spec.args,
            spec.target,
        ]
        self.proc: subprocess.Popen[bytes] | None = None
        self.killed = False

    def start(self) -> None:
        with open(self.dir / "stderr.log", "wb") as err:
            self.proc = subprocess.Popen(
                self.cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                cwd=self.dir,
                start_new_session=True,
            )

    def soft_stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGUSR1)

    def wait(self, deadline: float) -> None:
        if self.proc is None:
            return
        try:
            self.proc.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            self.killed = True
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.killed = True
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def outcomes(self) -> list[Outcome]:
        path = self.dir / "short.log"
        if not path.exists():
            return []
        with open(path, errors="replace") as f:
            traces = parse_shortmsg(f)
        found = (outcome_of(self.spec.name, t) for t in traces.values())
        return sorted((o for o in found if o is not None), key=lambda o: o.started)

    def summary(self, outcomes: Sequence[Outcome]) -> dict[str, Any]:
        stats = _read_stats(self.dir / "stats.csv")
        return {
            "engine": self.spec.engine,
            "what": self.spec.what,
            "rate_cps": self.spec.rate,
            "limit": self.spec.limit,
            "hold_ms": self.spec.hold_ms,
            "offered": len(outcomes),
            "answered": sum(o.answered for o in outcomes),
            "outcomes": dict(sorted(Counter(o.kind for o in outcomes).items())),
            "sipp_stats": {
                k: stats.get(k)
                for k in (
                    "TotalCallCreated",
                    "SuccessfulCall(C)",
                    "FailedCall(C)",
                    "FailedMaxUDPRetrans(C)",
                    "FailedTimeoutOnRecv(C)",
                    "FailedUnexpectedMessage(C)",
                )
            },
            "exit_code": self.proc.returncode if self.proc is not None else None,
            "killed_at_end": self.killed,
        }


def stream_specs(b: Bench, s: Settings, with_fs: bool, scale: float, ivr: Path) -> list[StreamSpec]:
    ast = f"{s.asterisk.sip_host}:{s.asterisk.sip_port}"
    fs_carrier = f"{s.freeswitch.sip_host}:{s.freeswitch.carrier_port}"
    fs_phones = f"{s.freeswitch.sip_host}:{s.freeswitch.phones_port}"
    carrier_ip = s.asterisk.carrier_in_host
    inbound, ext = SCENARIOS / "uac_inbound.xml", SCENARIOS / "uac_extension.xml"

    def phone_args(role: str) -> tuple[str, ...]:
        row, pw = b.phones[role]
        eid = row["endpoint_id"]
        return ("-key", "ext", eid, "-key", "caller", eid, "-au", eid, "-ap", pw)

    def per_engine(engine: str, carrier: str, phones: str, port0: int, f: float) -> list[StreamSpec]:
        a, callee = ("ast_a", "ast_b") if engine == "asterisk" else ("fs_a", "fs_b")
        pre = "ast" if engine == "asterisk" else "fs"
        return [
            StreamSpec(
                f"{pre}_inbound",
                engine,
                "to the wide tenant's 400 number, 4 s",
                inbound,
                carrier_ip,
                port0,
                carrier,
                b.wide_number,
                1.5 * f,
                40,
                4000,
                unique_callers=True,
            ),
            StreamSpec(
                f"{pre}_inbound_long",
                engine,
                "to the tight tenant's number, 25 s (renewals; its money runs out)",
                inbound,
                carrier_ip,
                port0 + 1,
                carrier,
                b.tight_number,
                0.1 * f,
                8,
                25000,
                unique_callers=True,
            ),
            StreamSpec(
                f"{pre}_extension",
                engine,
                "extension to a registered extension, 3 s",
                ext,
                "127.0.0.5",
                port0 + 2,
                phones,
                b.phones[callee][0]["extension"],
                0.5 * f,
                20,
                3000,
                phone_args(a),
            ),
            StreamSpec(
                f"{pre}_outbound",
                engine,
                "extension to 13800138000 via the carrier trunk, 3 s",
                ext,
                "127.0.0.5",
                port0 + 3,
                phones,
                DESTINATION,
                0.7 * f,
                20,
                3000,
                phone_args(a),
            ),
            StreamSpec(
                f"{pre}_ivr",
                engine,
                "IVR: keys 1 then 2 (RFC 2833) to the sales group, 6 s",
                ivr,
                carrier_ip,
                port0 + 4,
                carrier,
                b.ivr_number,
                0.2 * f,
                10,
                6000,
                ("-key", "caller", "13911110000"),
            ),
        ]

    specs = per_engine("asterisk", ast, ast, 5061, scale)
    if with_fs:
        specs += per_engine("freeswitch", fs_carrier, fs_phones, 5081, scale * 0.6)
    return specs


def _ivr_scenario(workdir: Path) -> Path:
    pcaps = workdir / "dtmf"
    pcaps.mkdir()
    path = workdir / "ivr.xml"
    path.write_text(render_dtmf("12", hold_ms=6000, gap_ms=1500, pcap_dir=pcaps))
    return path


def phone(b: Bench, role: str, local_ip: str, target: str, trace: Path) -> SippUas:
    """A SIP phone registered as an extension: one REGISTER (digest) every 15 s for the
    whole soak, so it is registered again soon after its engine restarts; answers calls.
    Its messages go to `trace` (short form): registered() reads it."""
    row, pw = b.phones[role]
    eid = row["endpoint_id"]
    return SippUas(
        "uas_phone.xml",
        local_ip=local_ip,
        port=5070,
        ring_ms=10,
        extra=(
            "-oocsf",
            str(SCENARIOS / "uas_answer.xml"),
            *("-s", eid, "-au", eid, "-ap", pw),
            *("-r", "1", "-rp", "15000", "-recv_timeout", "120000"),
            *("-trace_shortmsg", "-shortmessage_file", str(trace)),
            target,
        ),
    )


def registered(trace: Path) -> bool:
    """Whether the phone's trace holds a 200 to its (authenticated) REGISTER."""
    try:
        text = trace.read_text(errors="replace")
    except OSError:
        return False
    return any(
        "\tR\t" in line and "REGISTER" in line and "\tSIP/2.0 200" in line for line in text.splitlines()
    )


async def wait_registered(traces: Sequence[Path], budget_s: float = 30.0) -> float:
    """Seconds until every phone is registered (the calls to extensions would hear 480
    before); fails past the budget."""
    started = time.monotonic()
    while not all(registered(t) for t in traces):
        if time.monotonic() - started > budget_s:
            raise RuntimeError(f"the phones did not register within {budget_s:g} s: {traces}")
        await asyncio.sleep(0.2)
    return round(time.monotonic() - started, 2)


# ---------------------------------------------------------------------------- faults
@dataclass
class FaultRecord:
    kind: str
    planned_at_s: float
    started_at_s: float
    started_epoch: float
    component_back_s: float | None = None  # the restarted component answers (from the start)
    ready_s: float | None = None  # the service's /readyz is 200 again (from the start)
    error: str | None = None
    service_restarted: bool = False  # the service had died and was started again


def _ready(service: ServiceProcess) -> bool:
    try:
        return httpx.get(service.base_url + "/readyz", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def pg_restart_immediate(stack: LocalStack) -> None:
    """pg_ctl restart -m immediate: no checkpoint, crash recovery at start (the options
    of the last start are kept in postmaster.opts)."""
    res = subprocess.run(
        [
            "runuser", "-u", "postgres", "--", str(PG_BIN / "pg_ctl"), "-D", str(stack.pg_data),
            "-l", str(stack.log_dir / "postgresql.log"), "-m", "immediate", "-w", "-t", "60", "restart",
        ],
        capture_output=True, text=True, cwd="/", check=False, timeout=90,
    )  # fmt: skip
    if res.returncode != 0:
        raise RuntimeError(f"pg_ctl restart failed: {res.stdout}{res.stderr}")


def inject(kind: str, stack: LocalStack, service: ServiceProcess) -> None:
    if kind == "service_kill9":
        service.stop(signal.SIGKILL)
        service.start(timeout=60)
    elif kind == "asterisk_restart":
        stack.asterisk_down()
        stack.asterisk_up()
    elif kind == "freeswitch_restart":
        stack.fs_down()
        stack.fs_up()
    elif kind == "postgres_immediate":
        pg_restart_immediate(stack)
    else:
        raise ValueError(f"unknown fault {kind!r}")


async def run_faults(
    plan: Sequence[PlannedFault], stack: LocalStack, service: ServiceProcess, t0: float, quiet_s: float = 5.0
) -> list[FaultRecord]:
    """Each planned fault at its moment (or, if the previous one is not over, `quiet_s`
    after the service was ready again), one at a time."""
    records: list[FaultRecord] = []
    not_before = t0
    for f in plan:
        await asyncio.sleep(max(t0 + f.at_s, not_before) - time.monotonic())
        start = time.monotonic()
        rec = FaultRecord(f.kind, f.at_s, round(start - t0, 3), time.time())
        print(f"chaos: {rec.started_at_s:7.1f} s {f.kind}", file=sys.stderr, flush=True)
        try:
            await asyncio.to_thread(inject, f.kind, stack, service)
            rec.component_back_s = round(time.monotonic() - start, 3)
        except Exception as exc:  # noqa: BLE001 - recorded; the soak goes on
            rec.error = f"{type(exc).__name__}: {exc}"
        deadline = time.monotonic() + 120
        while not await asyncio.to_thread(_ready, service):
            if service.proc is None or service.proc.poll() is not None:
                rec.service_restarted = True  # it died: a finding; started again to go on
                try:
                    await asyncio.to_thread(service.start, 60)
                except RuntimeError as exc:
                    rec.error = (rec.error or "") + f" restart: {exc}"
            if time.monotonic() > deadline:
                rec.error = (rec.error or "") + " not ready within 120 s"
                break
            await asyncio.sleep(0.1)
        else:
            rec.ready_s = round(time.monotonic() - start, 3)
        print(f"chaos:          ready after {rec.ready_s} s {rec.error or ''}", file=sys.stderr, flush=True)
        records.append(rec)
        not_before = time.monotonic() + quiet_s
    return records


# ---------------------------------------------------------------------------- the sampler
@dataclass
class Sampled:
    samples: int = 0
    unavailable: int = 0  # the database did not answer (restarting)
    violations: list[dict[str, Any]] = field(default_factory=list)
    min_headroom: dict[int, Decimal] = field(default_factory=dict)  # balance - reserved + limit
    max_channels: dict[int, int] = field(default_factory=dict)


async def sample_accounts(settings: Settings, tenants: Sequence[int], stop: asyncio.Event) -> Sampled:
    """Every second: each bench account's money net of its reservations against its credit
    limit, and its channels against its cap, as the database has them at that moment."""
    out = Sampled()
    conn: asyncpg.Connection | None = None
    while not stop.is_set():
        try:
            if conn is None or conn.is_closed():
                conn = await asyncpg.connect(settings.database.dsn(), timeout=2)
            rows = await conn.fetch(
                "SELECT tenant_id, balance, reserved, credit_limit, channels_in_use, channel_cap "
                "FROM accounts WHERE tenant_id = ANY($1)",
                list(tenants),
                timeout=2,
            )
            out.samples += 1
            for r in rows:
                t, room = r["tenant_id"], r["balance"] - r["reserved"] + r["credit_limit"]
                out.min_headroom[t] = min(out.min_headroom.get(t, room), room)
                out.max_channels[t] = max(out.max_channels.get(t, 0), r["channels_in_use"])
                if room < 0 or r["channels_in_use"] > r["channel_cap"]:
                    out.violations.append(
                        {"tenant_id": t, "at": time.time(), **{k: str(v) for k, v in r.items()}}
                    )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
            out.unavailable += 1
            conn = None
        try:
            await asyncio.wait_for(stop.wait(), 1.0)
        except TimeoutError:
            pass
    if conn is not None:
        await conn.close()
    return out


# ---------------------------------------------------------------------------- the end
async def wait_settled(
    settings: Settings, tenants: Sequence[int], since: datetime, budget_s: float
) -> dict[str, Any]:
    """Poll until no reservation is open, no slot held and no call record without an end
    (bounded); when each condition first held."""
    started = time.monotonic()
    first: dict[str, float | None] = {"reservations_closed": None, "slots_free": None, "records_ended": None}
    last: dict[str, int] = {}
    while True:
        try:
            conn = await asyncpg.connect(settings.database.dsn(), timeout=5)
            try:
                last = {
                    "open_reservations": await conn.fetchval(
                        "SELECT count(*) FROM reservations WHERE tenant_id = ANY($1) AND state = 'open'",
                        tenants,
                    ),
                    "channels_in_use": await conn.fetchval(
                        "SELECT COALESCE(sum(channels_in_use), 0) FROM accounts WHERE tenant_id = ANY($1)",
                        tenants,
                    ),
                    "records_without_end": await conn.fetchval(
                        "SELECT count(*) FROM calls WHERE tenant_id = ANY($1) AND decided_at >= $2 "
                        "AND ended_at IS NULL",
                        tenants,
                        since,
                    ),
                }
            finally:
                await conn.close()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
            last = {}
        elapsed = round(time.monotonic() - started, 1)
        if last:
            for key, metric in (
                ("reservations_closed", "open_reservations"),
                ("slots_free", "channels_in_use"),
                ("records_ended", "records_without_end"),
            ):
                if last[metric] == 0 and first[key] is None:
                    first[key] = elapsed
                elif last[metric] != 0:
                    first[key] = None
            if all(v is not None for v in first.values()):
                break
        if elapsed > budget_s:
            break
        await asyncio.sleep(1.0)
    return {"waited_s": round(time.monotonic() - started, 1), "first_held_after_s": first, "last": last}


_RESERVED_CALLS = """
SELECT r.call_id AS linkedid, r.tenant_id, r.state, c.linkedid IS NOT NULL AS has_record,
       c.answered_at IS NOT NULL AS answered,
       c.amount AS call_amount, c.settled_at,
       (SELECT max(d.billsec) FROM engine_cdr d WHERE d.linkedid = r.call_id AND d.disposition = 'ANSWERED')
           AS engine_billsec,
       (SELECT count(*) FROM ledger_entries l WHERE l.tenant_id = r.tenant_id AND l.kind = 'call'
           AND l.idempotency_key = r.call_id) AS entries,
       (SELECT COALESCE(sum(l.amount), 0) FROM ledger_entries l WHERE l.tenant_id = r.tenant_id
           AND l.kind = 'call' AND l.idempotency_key = r.call_id) AS ledger_amount
FROM reservations r LEFT JOIN calls c ON c.linkedid = r.call_id
WHERE r.tenant_id = ANY($1)
"""
_LEDGER = """
SELECT l.tenant_id, l.id, l.amount, l.balance_after, a.credit_limit,
       lag(l.balance_after) OVER (PARTITION BY l.tenant_id ORDER BY l.id) AS prev_after
FROM ledger_entries l JOIN accounts a ON a.tenant_id = l.tenant_id
WHERE l.tenant_id = ANY($1) ORDER BY l.tenant_id, l.id
"""
_SUMS = """
SELECT a.tenant_id, a.balance,
       (SELECT COALESCE(sum(amount), 0) FROM ledger_entries l WHERE l.tenant_id = a.tenant_id
            AND l.kind = 'call') AS ledger_calls,
       (SELECT COALESCE(sum(amount), 0) FROM ledger_entries l WHERE l.tenant_id = a.tenant_id
            AND l.kind <> 'call' AND l.created_at >= $2) AS other,
       (SELECT COALESCE(sum(amount), 0) FROM calls c WHERE c.tenant_id = a.tenant_id
            AND c.settled_at IS NOT NULL) AS charges
FROM accounts a WHERE a.tenant_id = ANY($1)
"""


async def check_database(
    settings: Settings,
    b: Bench,
    since: datetime,
    outcomes: Sequence[Outcome],
    callers: Mapping[str, list[str]],
) -> tuple[dict[str, Any], list[asyncpg.Record]]:
    tenants = list(b.tenants.values())
    conn = await asyncpg.connect(settings.database.dsn())
    try:
        accounts = await conn.fetch(
            "SELECT tenant_id, balance, reserved, channels_in_use, channel_cap, credit_limit "
            "FROM accounts WHERE tenant_id = ANY($1) ORDER BY tenant_id",
            tenants,
        )
        reserved = await conn.fetch(_RESERVED_CALLS, tenants)
        ledger = await conn.fetch(_LEDGER, tenants)
        sums = await conn.fetch(_SUMS, tenants, since)
        records = await conn.fetch(
            "SELECT caller, reason, final_reason, decided_at, answered_at, ended_at, billsec, amount "
            "FROM calls WHERE tenant_id = ANY($1) AND decided_at >= $2",
            tenants,
            since,
        )
    finally:
        await conn.close()
    by_caller = {r["caller"][-11:]: r for r in records}
    sum_rows = [
        {**dict(r), "spent": b.initial_balance.get(r["tenant_id"], r["balance"]) - r["balance"]} for r in sums
    ]
    slots = {str(r["tenant_id"]): r["channels_in_use"] for r in accounts}
    open_res = sum(r["state"] == "open" for r in reserved)
    invariants = {
        "channel_slots_held": {"pass": sum(slots.values()) == 0, "by_tenant": slots},
        "reservations_open": {
            "pass": open_res == 0 and all(r["reserved"] == 0 for r in accounts),
            "open": open_res,
            "reserved_amount_by_tenant": {str(r["tenant_id"]): str(r["reserved"]) for r in accounts},
        },
        "answered_calls_settled_exactly_once": settlement_check(reserved),
        "ledger_equals_call_charges_per_tenant": tenant_sums_check(sum_rows),
        "never_below_credit_limit_ledger": ledger_check(ledger),
        "sipp_answered_vs_call_records": sipp_vs_records(outcomes, callers, by_caller),
    }
    return invariants, list(records)


# ---------------------------------------------------------------------------- the run
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="minutes of traffic")
    ap.add_argument("--seed", type=int, default=19)
    ap.add_argument(
        "--faults-each", type=int, default=None, help="faults of each kind (10 min: 3, shorter: 1)"
    )
    ap.add_argument("--faults", default=",".join(FAULT_KINDS), help="kinds, comma-separated")
    ap.add_argument("--min-gap-s", type=float, default=20.0, help="between two faults' planned moments")
    ap.add_argument("--scale", type=float, default=1.0, help="multiplies every stream's rate")
    ap.add_argument("--settle-timeout-s", type=float, default=420.0)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    settings = Settings()
    # A SIGTERM unwinds like Ctrl-C: the service, SIPp and the phones are stopped on the way.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with exclusive_use(settings):
        result = asyncio.run(_soak(args, settings))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False, default=str) + "\n")
    print_summary(result)
    return 0 if result["all_pass"] else 1


async def _wait_address_free(service: ServiceProcess, budget_s: float) -> None:
    """A service run without the stack's lock (someone's test) may hold the HTTP address:
    wait for it to stop rather than fail."""
    deadline = time.monotonic() + budget_s
    while True:
        try:
            async with httpx.AsyncClient(timeout=0.5) as client:
                await client.get(service.base_url + "/healthz")
        except httpx.HTTPError:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"another service still answers on {service.base_url} after {budget_s:g} s")
        print(f"chaos: another service answers on {service.base_url}; waiting", file=sys.stderr, flush=True)
        await asyncio.sleep(10)


async def _soak(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    stack = LocalStack(settings)
    await asyncio.to_thread(stack.up)
    with_fs = stack.fs_pid() is not None
    kinds = [k for k in args.faults.split(",") if k and (with_fs or k != "freeswitch_restart")]
    duration = args.minutes * 60
    each = args.faults_each if args.faults_each is not None else (3 if args.minutes >= 10 else 1)
    plan = plan_faults(args.seed, duration, kinds, each, min_gap_s=args.min_gap_s)
    token = await _admin_token(settings)
    service = ServiceProcess(
        settings, env=CHAOS_ENV, token=token, log_path=Path("/tmp/softswitch-chaos-service.log")
    )
    service.log_path.write_bytes(b"")
    await _wait_address_free(service, 1200)
    await asyncio.to_thread(service.start)
    result: dict[str, Any] = {
        "benchmark": "chaos",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "command": " ".join(["bench/chaos.py", *sys.argv[1:]]),
        "minutes": args.minutes,
        "seed": args.seed,
        "freeswitch": with_fs,
        "service_env": CHAOS_ENV,
        "plan": [asdict(f) for f in plan],
    }
    try:
        with tempfile.TemporaryDirectory(prefix="bench-chaos-") as tmpdir:
            tmp = Path(tmpdir)
            b = await asyncio.to_thread(provision_bench, service, settings, tmp, args.minutes)
            b.initial_balance = await _balances(settings, b.tenants.values())
            result["tenants"] = b.tenants
            specs = stream_specs(b, settings, with_fs, args.scale, _ivr_scenario(tmp))
            result.update(await _traffic(args, settings, stack, service, b, specs, plan, duration, tmp))
    finally:
        await asyncio.to_thread(service.stop)
        await asyncio.to_thread(stack.up)  # whatever a fault left, the stack is up at the end
        result["stack_at_end"] = {c.name: c.running for c in stack.status()}
    return result


async def _traffic(
    args: argparse.Namespace,
    settings: Settings,
    stack: LocalStack,
    service: ServiceProcess,
    b: Bench,
    specs: Sequence[StreamSpec],
    plan: Sequence[PlannedFault],
    duration: float,
    tmp: Path,
) -> dict[str, Any]:
    a, fs = settings.asterisk, settings.freeswitch
    uas = SippUas("uas_answer.xml", ring_ms=10, extra=("-recv_timeout", "120000"))
    traces = [tmp / "phone-ast.log"]
    phones = [phone(b, "ast_b", "127.0.0.6", f"{a.sip_host}:{a.sip_port}", traces[0])]
    if any(s.engine == "freeswitch" for s in specs):
        traces.append(tmp / "phone-fs.log")
        phones.append(phone(b, "fs_b", "127.0.0.7", f"{fs.sip_host}:{fs.phones_port}", traces[1]))
    streams = [SippStream(s, tmp / "streams", duration) for s in specs]
    since = datetime.now(UTC)
    tenants = list(b.tenants.values())
    stop_sampling = asyncio.Event()
    with uas:
        try:
            for p in phones:
                p.start()
            phones_registered_s = await wait_registered(traces)
            t0, t0_epoch = time.monotonic(), time.time()
            for st in streams:
                st.start()
            sampler = asyncio.create_task(sample_accounts(settings, tenants, stop_sampling))
            faults_task = asyncio.create_task(run_faults(plan, stack, service, t0))
            await asyncio.sleep(duration)
            faults = await faults_task  # a fault running late ends before the traffic stops
            stopped_at = time.monotonic()
            for st in streams:
                st.soft_stop()
            deadline = time.monotonic() + max(s.hold_ms for s in specs) / 1000 + 90
            for st in streams:
                await asyncio.to_thread(st.wait, deadline)
            drained_s = round(time.monotonic() - stopped_at, 1)
            settled = await wait_settled(settings, tenants, since, args.settle_timeout_s)
            stop_sampling.set()
            sampled = await sampler
        finally:
            for st in streams:  # nothing of ours left running, whatever happened
                st.kill()
            for p in phones:
                p.stop()
    windows = [
        Window(
            f"{i + 1}:{f.kind}@{f.started_at_s:.0f}s",
            f.started_epoch,
            f.started_epoch + (f.ready_s if f.ready_s is not None else 120.0) + TAIL_S,
        )
        for i, f in enumerate(faults)
    ]
    outcomes = [o for st in streams for o in st.outcomes()]
    callers = {st.spec.name: st.callers for st in streams if st.callers}
    invariants, records = await check_database(settings, b, since, outcomes, callers)
    invariants["never_below_credit_limit_sampled"] = {
        "pass": not sampled.violations,
        "samples": sampled.samples,
        "database_unavailable_samples": sampled.unavailable,
        "violations": sampled.violations[:10],
        "min_headroom_by_tenant": {str(k): str(v) for k, v in sorted(sampled.min_headroom.items())},
        "max_channels_by_tenant": {str(k): v for k, v in sorted(sampled.max_channels.items())},
    }
    invariants["settled_in_time"] = {
        "pass": all(v is not None for v in settled["first_held_after_s"].values()),
        **settled,
    }
    by_window = count_by_window(outcomes, windows)
    by_records = count_records_by_window(records, windows)
    fault_rows = []
    for f, w in zip(faults, windows, strict=True):
        fault_rows.append(
            {
                **asdict(f),
                "window": w.label,
                "window_s": round(w.end - w.start, 1),
                "sipp": by_window[w.label],
                "service_records": by_records.get(w.label, {}),
            }
        )
    failed_calls = [
        {
            "stream": o.stream,
            "kind": o.kind,
            "started_s": round(o.started - t0_epoch, 2),
            "failed_at_s": round(o.at - t0_epoch, 2),
            "window": window_of(o.at, windows),
        }
        for o in sorted(outcomes, key=lambda o: o.at)
        if o.failed
    ]
    totals = {
        "offered": len(outcomes),
        "answered": sum(o.answered for o in outcomes),
        "completed": sum(o.kind == "completed" for o in outcomes),
        "failed": sum(o.failed for o in outcomes),
        "failed_by_kind": dict(sorted(Counter(o.kind for o in outcomes if o.failed).items())),
        "failed_outside_fault_windows": by_window["no_fault"]["failed_total"],
        "call_records": len(records),
        "records_by_reason": dict(sorted(Counter(r["reason"] for r in records).items())),
    }
    return {
        "traffic_s": round(duration, 1),
        "phones_registered_s": phones_registered_s,
        "drain_s": drained_s,
        "t0": datetime.fromtimestamp(t0_epoch, UTC).isoformat(timespec="milliseconds"),
        "streams": {st.spec.name: st.summary(o) for st in streams for o in [st.outcomes()]},
        "faults": fault_rows,
        "outside_fault_windows": {
            "sipp": by_window["no_fault"],
            "service_records": by_records.get("no_fault", {}),
        },
        "totals": totals,
        "invariants": invariants,
        "failed_calls": failed_calls[:3000],
        "all_pass": all(v["pass"] for v in invariants.values()),
    }


def print_summary(r: dict[str, Any]) -> None:
    print(
        f"chaos soak: {r['minutes']} min, seed {r['seed']}, FreeSWITCH {'on' if r['freeswitch'] else 'off'}"
    )
    t = r.get("totals", {})
    print(
        f"  calls offered {t.get('offered')}, answered {t.get('answered')}, completed {t.get('completed')}, "
        f"failed {t.get('failed')} {t.get('failed_by_kind')}; outside fault windows "
        f"{t.get('failed_outside_fault_windows')}"
    )
    for f in r.get("faults", []):
        print(
            f"  {f['window']:<32} ready after {f['ready_s']} s: SIPp failed {f['sipp']['failed_total']} "
            f"{f['sipp']['failed']}; service {f['service_records'].get('reason', {})}"
            + (f" ERROR {f['error']}" if f["error"] else "")
        )
    for name, inv in r.get("invariants", {}).items():
        print(f"  {'PASS' if inv['pass'] else 'FAIL'} {name}")
    print(f"  all pass: {r.get('all_pass')}; stack at end: {r.get('stack_at_end')}")


if __name__ == "__main__":
    raise SystemExit(main())
