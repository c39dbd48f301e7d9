"""Prometheus metrics of the service, on a registry of its own (no global state).
Conventions: prefix softswitch_, base units (seconds), _total counters, bounded labels."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Decisions take tens of microseconds to a few milliseconds; buckets resolve that range.
DECISION_BUCKETS = (
    0.00005,
    0.0001,
    0.00015,
    0.0002,
    0.0003,
    0.0004,
    0.0005,
    0.00075,
    0.001,
    0.0015,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    1.0,
)

# How late the event loop wakes a task that sleeps 20 ms (softswitch/core/loop_lag.py):
# 0.1 ms (below uvloop's 1 ms timer resolution) to 1 s.
LOOP_LAG_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.00075,
    0.001,
    0.0015,
    0.002,
    0.003,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.02,
    0.03,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    1.0,
)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.decisions = Counter(
            "softswitch_call_decisions",
            "Routing decisions by action and reason code",
            ["action", "reason"],
            registry=r,
        )
        self.decision_seconds = Histogram(
            "softswitch_decision_seconds",
            "Time from the AGI environment read to the decision's variables sent",
            buckets=DECISION_BUCKETS,
            registry=r,
        )
        self.event_loop_lag = Histogram(
            "softswitch_event_loop_lag_seconds",
            "How late the event loop woke a task sleeping a fixed 20 ms interval",
            buckets=LOOP_LAG_BUCKETS,
            registry=r,
        )
        self.event_loop_lag_max = Gauge(
            "softswitch_event_loop_lag_max_seconds",
            "Largest event loop lag of the current and the previous 30 s window",
            registry=r,
        )
        self.agi_sessions = Counter(
            "softswitch_agi_sessions", "FastAGI sessions by outcome", ["outcome"], registry=r
        )
        self.agi_protocol_errors = Counter(
            "softswitch_agi_protocol_errors",
            "Malformed FastAGI input by kind",
            ["kind"],
            registry=r,
        )
        self.agi_active = Gauge("softswitch_agi_sessions_active", "FastAGI sessions in progress", registry=r)
        self.ami_connected = Gauge(
            "softswitch_ami_connected", "1 while logged in to Asterisk's AMI", registry=r
        )
        self.ami_reconnects = Counter("softswitch_ami_reconnects", "AMI logins after the first", registry=r)
        self.esl_connected = Gauge(
            "softswitch_esl_connected", "1 while subscribed to FreeSWITCH's Event Socket", registry=r
        )
        self.esl_reconnects = Counter(
            "softswitch_esl_reconnects", "Event Socket sessions with FreeSWITCH after the first", registry=r
        )
        self.esl_sessions = Counter(
            "softswitch_esl_sessions",
            "Calls FreeSWITCH handed over on the outbound Event Socket, by outcome",
            ["outcome"],
            registry=r,
        )
        self.calls_active = Gauge(
            "softswitch_calls_active", "Calls (by linkedid) with a live channel", registry=r
        )
        self.calls_ended = Counter(
            "softswitch_calls_ended",
            "Calls ended, by whether they were answered",
            ["answered"],
            registry=r,
        )
        self.snapshot_reloads = Counter(
            "softswitch_snapshot_reloads",
            "Config snapshot reloads by result",
            ["result"],
            registry=r,
        )
        self.snapshot_generation = Gauge(
            "softswitch_snapshot_generation",
            "Generation of the config snapshot in use",
            registry=r,
        )
        self.reservations = Counter(
            "softswitch_prepaid_reservations",
            "Prepaid reservation attempts by result",
            ["result"],
            registry=r,
        )
        self.settlements = Counter(
            "softswitch_prepaid_settlements", "Calls settled (charged once)", registry=r
        )
        self.settlement_overrun_seconds = Counter(
            "softswitch_prepaid_overrun_seconds",
            "Talk time past the reserved time (the switch's stop came late), not charged",
            registry=r,
        )
        self.reconciled = Counter(
            "softswitch_prepaid_reconciled",
            "Orphaned reservations closed by reconciliation",
            ["action"],
            registry=r,
        )
        self.engine_audit = Counter(
            "softswitch_engine_audit_corrections",
            "What the continuous check against the engine's live channels corrected",
            ["kind"],  # call_ended, channel_adopted, record_completed
            registry=r,
        )
        self.open_reservations = Gauge(
            "softswitch_prepaid_open_reservations", "Reservations of calls in progress", registry=r
        )
        self.money_batch_size = Histogram(
            "softswitch_money_batch_size",
            "Calls per group-committed batch of reservations opened or settled (one commit each)",
            ["kind"],  # open, settle
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
            registry=r,
        )
        self.reserved_amount = Gauge(
            "softswitch_prepaid_reserved_cny", "Money held by open reservations (CNY)", registry=r
        )
        self.talk_seconds = Histogram(
            "softswitch_call_talk_seconds",
            "Talk time of answered calls (answer to hang-up)",
            buckets=(5, 15, 30, 60, 120, 300, 600, 1800, 3600),
            registry=r,
        )
        self.calls_ended_by_cause = Counter(
            "softswitch_calls_ended_by_cause",
            "Calls ended, by class of Q.850 hang-up cause",
            ["cause_class"],
            registry=r,
        )
        self.post_dial_delay = Histogram(
            "softswitch_post_dial_delay_seconds",
            "From the caller's channel created to the first ringing or answer of another channel",
            buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10),
            registry=r,
        )
        # Born at 0: rate() and increase() miss the first increment of a series that appears
        # inside their window, and the NOC ratios of docs/metrics.md divide these two.
        for answered in ("yes", "no"):
            self.calls_ended.labels(answered)
        for cause in ("answered", "user_busy", "no_answer", "rejected", "normal", "network"):
            self.calls_ended_by_cause.labels(cause)
        self.database_up = Gauge(
            "softswitch_database_up",
            "1 while PostgreSQL answered the last check (every 5 s)",
            registry=r,
        )
        self.call_record_errors = Counter(
            "softswitch_call_record_write_errors",
            "Call record batches that failed to write",
            registry=r,
        )
        # Call recording and retention (softswitch/callpath/recorder.py)
        self.recording_disk_bytes = Gauge(
            "softswitch_recording_disk_bytes",
            "Bytes of recordings on disk, by tenant",
            ["tenant"],
            registry=r,
        )
        self.transfers = Counter(
            "softswitch_transfers",
            "Transfers (DTMF blind #1 / attended *2, SIP REFER) by kind and the reason code of "
            "their decision (ROUTED, or why the target was refused)",
            ["kind", "reason"],
            registry=r,
        )
        self.recordings = Counter(
            "softswitch_recordings",
            "Recordings by result: stored, missing (no file), empty (no audio), "
            "stopped_high_water (not started: storage past its high-water mark)",
            ["result"],
            registry=r,
        )
        self.recording_purge_runs = Counter(
            "softswitch_recording_purge_runs",
            "Retention purge runs by result",
            ["result"],
            registry=r,
        )
        self.recordings_purged = Counter(
            "softswitch_recordings_purged", "Recordings whose file the retention purge removed", registry=r
        )
        # Voicemail (softswitch/callpath/voicemail.py, provisioning/voicemail.py)
        self.voicemail_messages = Counter(
            "softswitch_voicemail_messages",
            "Calls that went to voicemail, by what they left: stored (a message), empty (no "
            "audio, removed), missing (no file: the caller left before the tone), error",
            ["outcome"],
            registry=r,
        )
        self.voicemail_purge_runs = Counter(
            "softswitch_voicemail_purge_runs", "Voicemail retention runs by result", ["result"], registry=r
        )
        self.voicemail_purged = Counter(
            "softswitch_voicemail_purged", "Voicemail messages the retention deleted", registry=r
        )
        # Compliance (issue 15). Refusals are counted by softswitch_call_decisions_total by
        # their reason code like every other; these are the monitors' findings and actions.
        self.compliance_level = Gauge(
            "softswitch_compliance_level",
            "A monitor's current level per tenant and rule: 1 warning, 2 critical "
            "(a series exists only while the tenant is past the warning level)",
            ["tenant", "rule"],
            registry=r,
        )
        self.compliance_actions = Counter(
            "softswitch_compliance_actions",
            "Actions taken by the compliance monitors (notice, alert, throttle, suspend) "
            "and by operators (lift)",
            ["rule", "action"],
            registry=r,
        )
        self.complaints = Gauge(
            "softswitch_complaints_30d",
            "Complaints against the platform's enterprises of the last 30 days, by category "
            "(every instance exports the shared table's count)",
            ["category"],
            registry=r,
        )
        # The SIP edge's bans (softswitch/edge/bans.py), as the control plane records them.
        self.sip_bans = Counter(
            "softswitch_sip_bans",
            "Bans made at the SIP edge, recorded: kind address or account, reason flood or auth_failures",
            ["kind", "reason"],
            registry=r,
        )
        self.sip_bans_lifted = Counter(
            "softswitch_sip_bans_lifted",
            "Bans at the SIP edge lifted through the API before they expired, by kind",
            ["kind"],
            registry=r,
        )
        self.auth_refusals = Counter(
            "softswitch_auth_refusals",
            "HTTP requests refused for their credentials: kind token (Authorization) or login "
            "(a portal sign-in), result rejected (401) or rate_limited (429, too many failures)",
            ["kind", "result"],
            registry=r,
        )
        self.spend_cap_cuts = Counter(
            "softswitch_spend_cap_cuts",
            "Live calls cut because their tenant reached its daily spend cap",
            registry=r,
        )
        # The scheduler inside the service (issue 15.6).
        self.scheduler_runs = Counter(
            "softswitch_scheduler_runs",
            "Runs of the periodic jobs by job and outcome (ok, failed, skipped: another "
            "instance holds the job's lock)",
            ["job", "outcome"],
            registry=r,
        )
        self.scheduler_last_success = Gauge(
            "softswitch_scheduler_last_success_timestamp_seconds",
            "Unix time of each job's last successful run in this instance",
            ["job"],
            registry=r,
        )
