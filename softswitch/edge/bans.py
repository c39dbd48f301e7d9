"""The edge's bans, with the control plane as their record (migration 0032).

The edge (docker/kamailio/kamailio.cfg) bans on its own, at once: a source address that
floods or fails digest authentication (htable ``ban``), an account whose authentication
fails from anywhere (htable ``lockedout``), each item "<reason>:<epoch>" and expiring by
itself after ``edge.ban_s``. ``EdgeBans.sync`` reads both tables over the edge's JSON-RPC
and writes each ban it has not seen into ``sip_bans`` once (its start time is part of the
key, so several instances syncing write it once), audited and counted; ``lift`` removes a
ban from the edge and records who lifted it.

``parse_item`` is pure: what one htable item says."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx

from provisioning import audit
from softswitch.core.clock import Clock
from softswitch.core.metrics import Metrics

log = logging.getLogger(__name__)

TABLES = {"ban": "address", "lockedout": "account"}  # the edge's htable -> sip_bans.kind
KIND_TABLE = {kind: table for table, kind in TABLES.items()}
REASONS = frozenset({"flood", "auth_failures"})


class EdgeUnavailable(RuntimeError):
    """The edge's JSON-RPC did not answer (the single-node layout has no edge)."""


@dataclass(frozen=True, slots=True)
class EdgeBan:
    kind: str  # address | account
    subject: str
    reason: str  # flood | auth_failures
    banned_at: datetime


def parse_item(table: str, name: str, value: object) -> EdgeBan | None:
    """One htable item as a ban; None for what is not one (a foreign table, a value in
    another form)."""
    kind = TABLES.get(table)
    if kind is None or not isinstance(value, str) or not name:
        return None
    reason, _, epoch = value.partition(":")
    if reason not in REASONS or not epoch.isdigit():
        return None
    return EdgeBan(kind, name, reason, datetime.fromtimestamp(int(epoch), UTC))


class EdgeRpc:
    """Kamailio's JSON-RPC over HTTP (jsonrpcs, transport http), one request per call."""

    def __init__(self, url: str, timeout: float = 2.0) -> None:
        self._url = url
        self._timeout = timeout
        self._id = 0

    async def call(self, method: str, *params: str) -> Any:
        self._id += 1
        body = {"jsonrpc": "2.0", "method": method, "params": list(params), "id": self._id}
        try:
            async with httpx.AsyncClient(timeout=self._timeout) as client:
                resp = await client.post(self._url, json=body)
            answer = resp.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise EdgeUnavailable(f"{method}: {exc}") from exc
        if "error" in answer:
            raise EdgeUnavailable(f"{method}: {answer['error']}")
        return answer.get("result")

    async def items(self, table: str) -> list[tuple[str, object]]:
        result = await self.call("htable.dump", table) or []
        out = []
        for entry in result:
            for item in entry.get("slot", []):
                out.append((str(item.get("name", "")), item.get("value")))
        return out


class EdgeBans:
    def __init__(self, rpc: EdgeRpc, ban_s: int, clock: Clock, metrics: Metrics) -> None:
        self._rpc = rpc
        self._ban = timedelta(seconds=ban_s)
        self._clock = clock
        self._metrics = metrics

    async def sync(self, conn: asyncpg.Connection) -> int:
        """Write the edge's bans not recorded yet; returns how many were new."""
        bans = []
        for table in TABLES:
            for name, value in await self._rpc.items(table):
                ban = parse_item(table, name, value)
                if ban is not None:
                    bans.append(ban)
        new = 0
        for ban in bans:
            async with conn.transaction():
                row = await conn.fetchrow(
                    "INSERT INTO sip_bans (kind, subject, reason, banned_at, expires_at) "
                    "VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING *",
                    ban.kind,
                    ban.subject,
                    ban.reason,
                    ban.banned_at,
                    ban.banned_at + self._ban,
                )
                if row is None:
                    continue
                await audit.record(
                    conn,
                    at=self._clock.now(),
                    actor="edge",
                    entity="sip_ban",
                    entity_id=row["id"],
                    action="ban",
                    after=dict(row),
                )
            new += 1
            self._metrics.sip_bans.labels(ban.kind, ban.reason).inc()
            log.warning("edge ban recorded: %s %s (%s)", ban.kind, ban.subject, ban.reason)
        return new

    async def lift(self, conn: asyncpg.Connection, ban_id: int, actor: str) -> asyncpg.Record | None:
        """Let the banned address or account in again now; None if there is no such ban
        in force."""
        now = self._clock.now()
        async with conn.transaction():
            row = await conn.fetchrow(
                "SELECT * FROM sip_bans WHERE id = $1 AND lifted_at IS NULL AND expires_at > $2 FOR UPDATE",
                ban_id,
                now,
            )
            if row is None:
                return None
            await self._rpc.call("htable.delete", KIND_TABLE[row["kind"]], row["subject"])
            lifted = await conn.fetchrow(
                "UPDATE sip_bans SET lifted_at = $2, lifted_by = $3 WHERE id = $1 RETURNING *",
                ban_id,
                now,
                actor,
            )
            await audit.record(
                conn,
                at=now,
                actor=actor,
                entity="sip_ban",
                entity_id=ban_id,
                action="lift",
                before=dict(row),
                after=dict(lifted),
            )
        self._metrics.sip_bans_lifted.labels(row["kind"]).inc()
        return lifted
