"""The delivery worker's Prometheus metrics, on the service's registry (conventions of
softswitch/core/metrics.py: prefix softswitch_, _total counters, bounded labels)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

CHANNELS = ("email", "webhook")
# delivered; failed: will be retried; dead: given up
OUTCOMES = ("delivered", "failed", "dead")


class NoticeMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.deliveries = Counter(
            "softswitch_notice_deliveries",
            "Attempts to deliver a notice to an endpoint, by channel and outcome",
            ["channel", "outcome"],
            registry=registry,
        )
        self.pending = Gauge(
            "softswitch_notice_deliveries_pending",
            "Deliveries not delivered yet and not given up (every instance's, from the log)",
            ["channel"],
            registry=registry,
        )
        for channel in CHANNELS:  # every series from the start: rate() sees the first one
            self.pending.labels(channel).set(0)
            for outcome in OUTCOMES:
                self.deliveries.labels(channel, outcome)
