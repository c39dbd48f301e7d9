"""A tenant's voicemail as a service: the message stored at hang-up with its notice, the
list (per tenant or per number, newest first), one message, the WAV behind a play, marking
it listened, deleting it, and the retention purge. The call path
(softswitch/callpath/voicemail.py) finds the file a call left and calls `store_message`.

Files lie inside the Asterisk chroot at <spool>/<tenant_id>-<linkedid>.wav (settings
voicemail.spool; docker/asterisk/extensions.conf's [ss-act] voicemail label and FreeSWITCH's
`record` write them there). A message's file is found by its id in the database, never from
anything a client sends, and is served only from the spool under its own tenant's prefix.

Retention is counted in the tenant's local days (migration 0027's voicemail_expires_at): a
message is kept for `voicemail_retention_days` whole days after the day it came in and
deleted, row and file, at the local midnight that ends the last one."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
from pydantic import BaseModel, Field

from provisioning import audit as audit_log
from provisioning.engine import Ctx, Forbidden, NotFound
from provisioning.recordings import CALL_ID, Gone, host_path
from provisioning.roles import TENANT_WRITERS
from softswitch.core.metrics import Metrics

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------- files
def voicemail_file(spool: str, tenant_id: int, linkedid: str) -> str:
    """Where a call's message is recorded, inside the Asterisk chroot (both engines)."""
    if not CALL_ID.match(linkedid):
        raise ValueError(f"not a call id: {linkedid!r}")
    return f"{spool.rstrip('/')}/{tenant_id}-{linkedid}.wav"


@dataclass(frozen=True, slots=True)
class VoicemailSpool:
    """Where the messages are: the Asterisk chroot on the host and the spool inside it."""

    chroot: Path
    spool: str

    def host(self, inside: str) -> Path | None:
        return host_path(self.chroot, self.spool, inside)

    def file_of(self, row: Any) -> Path:
        """The file of a message, inside the spool and named for its own tenant."""
        own = f"{self.spool.rstrip('/')}/{row['tenant_id']}-"
        path = self.host(row["path"]) if row["path"].startswith(own) else None
        if path is None or not path.is_file():
            raise NotFound(f"the file of voicemail message {row['id']} is not on disk", "message_id")
        return path


# ---------------------------------------------------------------------------- storing
@dataclass(frozen=True, slots=True)
class NewMessage:
    tenant_id: int
    number: str
    caller: str
    called: str
    linkedid: str
    received_at: datetime
    duration_s: float
    size_bytes: int
    sha256: str
    path: str  # inside the chroot


async def store_message(conn: asyncpg.Connection, msg: NewMessage, now: datetime) -> int | None:
    """The message's row, the call record's link and the new_voicemail notice, in one
    transaction; None when the call's message was stored already (a repeated hang-up)."""
    async with conn.transaction():
        message_id: int | None = await conn.fetchval(
            "INSERT INTO voicemail_messages (tenant_id, number, caller, called, call_linkedid, received_at, "
            "duration_s, size_bytes, sha256, path, created_at) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) "
            "ON CONFLICT DO NOTHING RETURNING id",
            msg.tenant_id,
            msg.number,
            msg.caller,
            msg.called,
            msg.linkedid,
            msg.received_at,
            msg.duration_s,
            msg.size_bytes,
            msg.sha256,
            msg.path,
            now,
        )
        if message_id is None:
            return None
        await conn.execute(
            "UPDATE calls SET voicemail_id = $1, voicemail_outcome = 'stored' WHERE linkedid = $2",
            message_id,
            msg.linkedid,
        )
        await conn.execute(
            "INSERT INTO outbox (tenant_id, kind, dedupe_key, payload, created_at) "
            "VALUES ($1, 'new_voicemail', $2, jsonb_build_object('message_id', $3::bigint, "
            "'caller', $4::text, 'called', $5::text, 'at', $6::timestamptz, 'duration_s', $7::float8), $8) "
            "ON CONFLICT (kind, dedupe_key) DO NOTHING",
            msg.tenant_id,
            msg.linkedid,
            message_id,
            msg.caller,
            msg.number,
            msg.received_at,
            round(msg.duration_s, 1),
            now,
        )
    return message_id


async def note_no_message(conn: asyncpg.Connection, linkedid: str, outcome: str) -> None:
    """The call went to voicemail and left nothing to keep (empty | missing)."""
    await conn.execute(
        "UPDATE calls SET voicemail_outcome = $2 WHERE linkedid = $1 AND voicemail_id IS NULL",
        linkedid,
        outcome,
    )


# ---------------------------------------------------------------------------- reading
class VoicemailRead(BaseModel):
    id: int
    tenant_id: int
    number: str = Field(description="the number the caller called")
    caller: str = Field(description="the caller's number; empty when withheld")
    call_id: str
    received_at: datetime
    duration_s: float
    size_bytes: int
    sha256: str
    listened: bool
    listened_at: datetime | None
    listened_by: str | None
    expires_at: datetime


_SELECT = """
SELECT m.id, m.tenant_id, m.number, m.caller, m.call_linkedid AS call_id, m.received_at, m.duration_s,
       m.size_bytes, m.sha256, m.listened_at IS NOT NULL AS listened, m.listened_at, m.listened_by,
       voicemail_expires_at(m.received_at, t.timezone, t.voicemail_retention_days) AS expires_at,
       m.path, m.deleted_at
FROM voicemail_messages m JOIN tenants t ON t.id = m.tenant_id
"""


def _present(row: Any) -> VoicemailRead:
    return VoicemailRead.model_validate({k: row[k] for k in VoicemailRead.model_fields})


def _tenant(ctx: Ctx) -> int:
    assert ctx.tenant_id is not None, "voicemail is read within a tenant"
    return ctx.tenant_id


async def _one(ctx: Ctx, message_id: int, lock: bool = False) -> Any:
    row = await ctx.conn.fetchrow(
        _SELECT + " WHERE m.id = $1 AND m.tenant_id = $2" + (" FOR UPDATE OF m" if lock else ""),
        message_id,
        _tenant(ctx),
    )
    if row is None:
        raise NotFound(f"voicemail message {message_id} not found", "message_id")
    if row["deleted_at"] is not None:
        raise Gone(f"voicemail message {message_id} was deleted", "message_id")
    return row


async def list_messages(
    ctx: Ctx, number: str | None, listened: bool | None, limit: int, before: int | None
) -> tuple[list[VoicemailRead], int | None]:
    """A page of the tenant's messages, newest first (by when the call came in), with the
    `before` of the next (older) page: the last message's id."""
    where = ["m.tenant_id = $1", "m.deleted_at IS NULL"]
    params: list[Any] = [_tenant(ctx)]
    if number is not None:
        params.append(number)
        where.append(f"m.number = ${len(params)}")
    if listened is not None:
        where.append("m.listened_at IS NOT NULL" if listened else "m.listened_at IS NULL")
    if before is not None:
        params.append(before)
        n = len(params)
        # keyset on (received_at, id): the cursor message's place, even if deleted since
        where.append(
            f"(m.received_at, m.id) < (SELECT c.received_at, c.id FROM voicemail_messages c "
            f"WHERE c.id = ${n} AND c.tenant_id = $1)"
        )
    params.append(limit + 1)
    rows = await ctx.conn.fetch(
        f"{_SELECT} WHERE {' AND '.join(where)} ORDER BY m.received_at DESC, m.id DESC LIMIT ${len(params)}",
        *params,
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return [_present(r) for r in rows], rows[-1]["id"] if more else None


async def get_message(ctx: Ctx, message_id: int) -> VoicemailRead:
    return _present(await _one(ctx, message_id))


async def audio_for_play(ctx: Ctx, files: VoicemailSpool, message_id: int) -> tuple[Path, str]:
    """The message's file and its call id; the play is audited (who heard which call)."""
    async with ctx.conn.transaction():
        row = await _one(ctx, message_id)
        path = files.file_of(row)
        await audit(ctx, message_id, "play", None, None)
    return path, row["call_id"]


async def set_listened(ctx: Ctx, message_id: int, listened: bool) -> VoicemailRead:
    """Mark a message listened (the first time is kept) or not listened again; operators
    and the tenant's admin only, as every change of a tenant's recordings."""
    who = ctx.actor
    if not who.may(TENANT_WRITERS):
        raise Forbidden(f"role {who.role.value} may not change voicemail messages")
    async with ctx.conn.transaction():
        before = _present(await _one(ctx, message_id, lock=True))
        if listened != before.listened:
            await ctx.conn.execute(
                "UPDATE voicemail_messages SET listened_at = $2, listened_by = $3 WHERE id = $1",
                message_id,
                ctx.clock.now() if listened else None,
                who.name if listened else None,
            )
        after = _present(await _one(ctx, message_id))
        if listened != before.listened:
            await audit(ctx, message_id, "listened" if listened else "unlistened", before, after)
    return after


async def delete_message(ctx: Ctx, files: VoicemailSpool, message_id: int) -> None:
    """Delete a message: its file at once, its row hidden (removed at retention); audited."""
    who = ctx.actor
    if not who.may(TENANT_WRITERS):
        raise Forbidden(f"role {who.role.value} may not delete voicemail messages")
    async with ctx.conn.transaction():
        row = await _one(ctx, message_id, lock=True)
        before = _present(row)
        await ctx.conn.execute(
            "UPDATE voicemail_messages SET deleted_at = $2, deleted_by = $3 WHERE id = $1",
            message_id,
            ctx.clock.now(),
            who.name,
        )
        await audit(ctx, message_id, "delete", before, None)
        path = files.host(row["path"])
        if path is not None:  # inside the transaction: a file that cannot go keeps its row
            path.unlink(missing_ok=True)


async def audit(ctx: Ctx, message_id: int, action: str, before: Any, after: Any) -> None:
    await audit_log.record(
        ctx.conn,
        at=ctx.clock.now(),
        actor=ctx.actor.name,
        actor_user_id=ctx.actor.user_id,
        tenant_id=ctx.tenant_id,
        entity="voicemail_messages",
        entity_id=message_id,
        action=action,
        before=before,
        after=after,
    )


# ---------------------------------------------------------------------------- retention
@dataclass
class VoicemailPurge:
    at: datetime
    deleted: int = 0  # rows deleted
    files: int = 0  # files deleted
    already_gone: int = 0  # rows whose file was no longer there (deleted by a user, by hand)
    errors: list[str] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "deleted": self.deleted,
            "files": self.files,
            "already_gone": self.already_gone,
            "errors": self.errors,
            "ids": self.ids[:1000],
        }


_EXPIRED = """
SELECT m.id, m.path FROM voicemail_messages m JOIN tenants t ON t.id = m.tenant_id
WHERE voicemail_expires_at(m.received_at, t.timezone, t.voicemail_retention_days) <= $1
  AND ($2::bigint[] IS NULL OR m.tenant_id = ANY($2))
  AND NOT (m.id = ANY($3::bigint[]))
ORDER BY m.id LIMIT $4
FOR UPDATE OF m SKIP LOCKED
"""


async def purge_voicemail(
    conn: asyncpg.Connection,
    now: datetime,
    files: VoicemailSpool,
    *,
    batch: int = 500,
    tenant_ids: Iterable[int] | None = None,
    actor: str = "system:voicemail-purge",
    metrics: Metrics | None = None,
) -> VoicemailPurge:
    """Delete the messages past their tenant's retention as of `now`, file and row, in
    batches of `batch` per transaction; a file already gone is fine, one that cannot be
    deleted keeps its row for the next run. Idempotent; one audit entry per run."""
    tenants = list(tenant_ids) if tenant_ids is not None else None
    report = VoicemailPurge(now)
    failed: list[int] = []
    try:
        while True:
            async with conn.transaction():
                rows = await conn.fetch(_EXPIRED, now, tenants, failed, batch)
                done = _delete_files(rows, files, report, failed)
                if done:
                    await conn.execute("DELETE FROM voicemail_messages WHERE id = ANY($1::bigint[])", done)
                report.ids += done
                report.deleted += len(done)
            if len(rows) < batch:
                break
        await audit_log.record(
            conn,
            at=now,
            actor=actor,
            entity="voicemail_messages",
            entity_id="retention",
            action="purge",
            after=report.as_dict(),
        )
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        if metrics is not None:
            metrics.voicemail_purge_runs.labels("error").inc()
        log.error("voicemail purge failed: %s", exc)
        raise
    if metrics is not None:
        metrics.voicemail_purge_runs.labels("error" if report.errors else "ok").inc()
        metrics.voicemail_purged.inc(report.deleted)
    if report.errors:
        log.error("voicemail purge: %d file(s) not deleted: %s", len(report.errors), report.errors[:5])
    log.info(
        "voicemail purge as of %s: %d messages deleted (%d files, %d already gone)",
        now.isoformat(),
        report.deleted,
        report.files,
        report.already_gone,
    )
    return report


def _delete_files(
    rows: list[Any], files: VoicemailSpool, report: VoicemailPurge, failed: list[int]
) -> list[int]:
    done = []
    for r in rows:
        path = files.host(r["path"])
        if path is None:
            report.errors.append(f"voicemail message {r['id']}: path {r['path']!r} outside the spool")
            failed.append(r["id"])
            continue
        try:
            path.unlink()
            report.files += 1
        except FileNotFoundError:
            report.already_gone += 1
        except OSError as exc:
            report.errors.append(f"voicemail message {r['id']}: {exc}")
            failed.append(r["id"])
            continue
        done.append(r["id"])
    return done
