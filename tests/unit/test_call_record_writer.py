"""The call record writer keeps a batch the database could not take while it restarted
and writes it once it answers (found by the chaos soak, bench/chaos.py: a PostgreSQL
restart at a call's hang-up left the charged call recorded as never answered); a batch the
database refuses for itself is dropped and counted, so it cannot block the ones after it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import asyncpg

from softswitch.callpath.records import CallRecordWriter, DecisionRecord, EndRecord
from softswitch.core.metrics import Metrics

NOW = datetime(2026, 12, 4, 1, 57, 48, tzinfo=UTC)


def decision(linkedid: str) -> DecisionRecord:
    return DecisionRecord(
        linkedid, linkedid, 1, 2, "13999100125", "4001234567", "dial", "ROUTED", (), NOW, 90
    )


class FlakyDatabase:
    """Stands in for CallRecordWriter._write: refuses `failures` batches, then takes them."""

    def __init__(self, failures: list[Exception]) -> None:
        self.failures = failures
        self.written: list[list[DecisionRecord | EndRecord]] = []

    async def write(self, items: list[DecisionRecord | EndRecord]) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.written.append(list(items))


async def run(db: FlakyDatabase, *records: DecisionRecord | EndRecord) -> Metrics:
    metrics = Metrics()
    writer = CallRecordWriter(None, metrics)
    writer._write = db.write  # type: ignore[method-assign]
    await writer.start()
    for r in records:
        writer._queue.put_nowait(r)
    await asyncio.wait_for(writer._queue.join(), 5)
    await writer.stop()
    return metrics


async def test_a_batch_is_written_again_once_the_database_is_back() -> None:
    end = EndRecord("c1", NOW, NOW, 16)
    db = FlakyDatabase(
        [
            asyncpg.CannotConnectNowError("the database system is starting up"),
            ConnectionResetError(104, "Connection reset by peer"),
            asyncpg.InterfaceError("the underlying connection is closed"),
        ]
    )
    metrics = await run(db, decision("c1"), end)
    assert db.written == [[decision("c1"), end]]
    assert metrics.call_record_errors._value.get() == 3


async def test_a_batch_the_database_refuses_is_dropped_and_the_next_written() -> None:
    db = FlakyDatabase([asyncpg.DataError("invalid input for query argument $3")])
    writer_metrics = Metrics()
    writer = CallRecordWriter(None, writer_metrics)
    writer._write = db.write  # type: ignore[method-assign]
    await writer.start()
    writer._queue.put_nowait(decision("bad"))
    await asyncio.wait_for(writer._queue.join(), 5)
    writer._queue.put_nowait(decision("good"))
    await asyncio.wait_for(writer._queue.join(), 5)
    await writer.stop()
    assert db.written == [[decision("good")]]
    assert writer_metrics.call_record_errors._value.get() == 1
