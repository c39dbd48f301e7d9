"""The engine audit against an engine whose channel list lags its events (FreeSWITCH's
`show channels` reads its core database): a channel the list does not show yet is not
judged dead until it has been known for the lag — an answered call was once ended, and
its reservation released unbilled, because of it."""

from __future__ import annotations

from datetime import UTC, datetime

from softswitch.callpath.audit import EngineAudit
from softswitch.callpath.registry import CallRegistry, LiveCall, LiveChannel
from softswitch.core.clock import FixedClock
from softswitch.core.metrics import Metrics


class Engine:
    def __init__(self) -> None:
        self.listing: list[LiveChannel] = []

    async def live_channels(self) -> list[LiveChannel]:
        return list(self.listing)

    async def extend_hard_stop(self, channel: str, seconds: int) -> None: ...

    async def warn(self, channel: str) -> None: ...


class Money:
    async def reconcile(self, live: set[str]) -> tuple[int, int]:
        return 0, 0


class Audit(EngineAudit):
    async def complete_records(self, live: set[str], now: datetime) -> int:
        return 0


def _audit(lag: float) -> tuple[Audit, CallRegistry, Engine, list[float], list[LiveCall]]:
    registry = CallRegistry(FixedClock(datetime(2026, 12, 2, tzinfo=UTC)))
    ended: list[LiveCall] = []
    registry.add_end_listener(ended.append)
    engine, now = Engine(), [100.0]
    audit = Audit(
        engine,
        registry,
        Money(),  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        FixedClock(datetime(2026, 12, 2, tzinfo=UTC)),
        Metrics(),
        2.0,
        list_lag_s=lag,
        monotonic=lambda: now[0],
    )
    return audit, registry, engine, now, ended


async def test_a_channel_the_lagging_list_lacks_is_judged_only_after_the_lag() -> None:
    audit, registry, engine, now, ended = _audit(lag=3.0)
    registry.channel_created("a-uuid", "a-uuid", "freeswitch/a-uuid", "139", "400")
    await audit.check()  # the list does not show it yet: nothing is old enough to judge
    now[0] += 2.0
    await audit.check()
    assert ended == [] and registry.is_live("a-uuid")
    now[0] += 2.0  # known 4 s now: a list that still lacks it means it is gone
    await audit.check()
    assert [c.linkedid for c in ended] == ["a-uuid"] and not ended[0].end_observed


async def test_a_channel_the_list_shows_is_kept_and_without_lag_judged_at_once() -> None:
    audit, registry, engine, now, ended = _audit(lag=3.0)
    registry.channel_created("a-uuid", "a-uuid", "freeswitch/a-uuid", "139", "400")
    engine.listing = [LiveChannel("a-uuid", "a-uuid", "freeswitch/a-uuid", up=True)]
    for _ in range(4):
        now[0] += 2.0
        await audit.check()
    assert ended == []

    asterisk, registry2, _engine2, _now2, ended2 = _audit(lag=0.0)
    registry2.channel_created("1.1", "1.1", "PJSIP/x-1", "139", "400")
    await asterisk.check()
    assert [c.linkedid for c in ended2] == ["1.1"]
