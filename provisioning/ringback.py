"""Personalised ringback tones (个性化彩铃; seed 001; migration 0028): a tenant's tones, and
their application to the tenant's numbers.

A tone is made once, from an upload or from text (provisioning/prompts.py converts it to
8 kHz mono), and its audio never changes: seed 001 charges "更换铃音需要重新收费" — a new
tone is a new one, under a new name. A tone produced by the provider ("专业制作",
``production='professional'``, operators only) costs the one-off tone production fee
(99 CNY, ``one_off_items.tone_production``) when it is made; the tenant's own is free
("免费版不收费").

Applying a tone to a number takes effect on the first day of the next month in the
tenant's time zone ("当月申请，次月生效"; dialplan.ringback.effective_from). The number's
first application opens its RBT subscription (6 CNY a month from that day, no minimum
term), which the billing cycle charges like any rent, the number named on the statement;
applying another tone later keeps that subscription. Removing the tone stops it at once
and ends the subscription: the month under way has been charged, no later one is."""

from __future__ import annotations

import asyncio
import wave
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

import asyncpg

from dialplan.ringback import RingbackTone, ToneApplication, effective_from, tone_at
from provisioning.engine import Conflict, Ctx, Forbidden, Invalid, NotFound, audit
from provisioning.orders_api import OrderCreate, place_order
from provisioning.prompts import PromptError, PromptStore, text_digest, upload_digest
from provisioning.roles import OPERATORS, TENANT_WRITERS

Production = Literal["self", "professional"]
PACKAGE = "RBT"
PRODUCTION_ITEM = "tone_production"


@dataclass(frozen=True)
class ToneSource:
    """What a tone is made from: text to render (``voice``: an espeak-ng voice) or the
    bytes of an upload (any format sox reads)."""

    text: str | None = None
    voice: str = "cmn"
    audio: bytes | None = None

    @property
    def kind(self) -> str:
        return "text" if self.text is not None else "upload"

    @property
    def digest(self) -> str:
        if self.text is not None:
            return text_digest(self.text, self.voice)
        return upload_digest(self.audio or b"")


def prompt_name(name: str) -> str:
    """The tone's prompt in its tenant's scope: ringback/<name>."""
    return f"ringback/{name}"


def _tenant(ctx: Ctx) -> int:
    if ctx.tenant_id is None or not ctx.actor.sees_tenant(ctx.tenant_id):
        raise NotFound(f"tenant {ctx.tenant_id} not found", "tenant_id")
    return ctx.tenant_id


def _writer(ctx: Ctx) -> int:
    tid = _tenant(ctx)
    if not ctx.actor.may(TENANT_WRITERS):
        raise Forbidden(f"role {ctx.actor.role.value} may not change ringback tones")
    return tid


async def _timezone(conn: asyncpg.Connection, tenant_id: int) -> str:
    tz = await conn.fetchval("SELECT timezone FROM tenants WHERE id = $1", tenant_id)
    if tz is None:
        raise NotFound(f"tenant {tenant_id} not found", "tenant_id")
    return str(tz)


# ---------------------------------------------------------------------------- tones
_TONE_COLUMNS = (
    "id, tenant_id, name, source, text, voice, prompt, sha256, seconds, production, "
    "production_order_id, created_at"
)


async def save_tone(
    ctx: Ctx, store: PromptStore, name: str, source: ToneSource, production: Production = "self"
) -> tuple[dict[str, Any], bool]:
    """Make tone ``name`` of the tenant from ``source``. Returns (the tone, made now?): the
    same content again answers the tone as it is; other content under a taken name is a
    conflict (a tone's audio never changes)."""
    tid = _writer(ctx)
    if production == "professional" and not ctx.actor.may(OPERATORS):
        raise Forbidden("only operators upload a professionally produced tone (it is charged)")
    conn = ctx.conn
    await _timezone(conn, tid)  # the tenant exists
    digest = source.digest
    held = await conn.fetchrow(
        f"SELECT {_TONE_COLUMNS} FROM ringback_tones WHERE tenant_id = $1 AND name = $2", tid, name
    )
    if held is not None:
        return _same_tone(held, digest, production), False
    scope = f"t{tid}"
    now = ctx.clock.now()
    async with conn.transaction():
        # The row first: a second request for the name waits on its unique index and then
        # finds this tone, so it never writes over the file this one publishes.
        try:
            tone_id = await conn.fetchval(
                "INSERT INTO ringback_tones (tenant_id, name, source, text, voice, prompt, sha256, seconds, "
                "production, production_order_id, created_at, updated_at) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, 1, 'self', NULL, $8, $8) RETURNING id",
                tid,
                name,
                source.kind,
                source.text,
                source.voice if source.text is not None else None,
                store.playable(scope, prompt_name(name)),
                digest,
                now,
            )
        except asyncpg.UniqueViolationError:
            raise Conflict(f"tone {name!r} is being made by another request", "name") from None
        seconds = await _publish(store, scope, name, source)
        order_id = None
        if production == "professional":
            order, _ = await place_order(
                ctx,
                OrderCreate(item=PRODUCTION_ITEM, quantity=1, reference=f"ringback tone {name}"),
                f"ringback-tone:{name}",
            )
            order_id = order.id
        row = await conn.fetchrow(
            f"UPDATE ringback_tones SET seconds = $2, production = $3, production_order_id = $4 "
            f"WHERE id = $1 RETURNING {_TONE_COLUMNS}",
            tone_id,
            seconds,
            production,
            order_id,
        )
        assert row is not None
        out = dict(row)
        await audit(ctx, "ringback_tones", tone_id, "create", None, _audited(out))
    return out, True


def _same_tone(held: asyncpg.Record, digest: str, production: Production) -> dict[str, Any]:
    if held["sha256"] != digest:
        raise Conflict(
            f"tone {held['name']!r} exists with other audio; a tone never changes: make a new one "
            "and apply it (seed 001: a new tone is charged again)",
            "name",
        )
    if held["production"] != production:
        raise Conflict(f"tone {held['name']!r} exists, made as {held['production']}", "production")
    return dict(held)


async def _publish(store: PromptStore, scope: str, name: str, source: ToneSource) -> float:
    """Render or convert the audio into the tone's file (sox and espeak-ng, off the event
    loop); returns its length in seconds."""
    try:
        if source.text is not None:
            await asyncio.to_thread(store.render_text, scope, prompt_name(name), source.text, source.voice)
        else:
            await asyncio.to_thread(store.store_upload, scope, prompt_name(name), source.audio or b"")
    except PromptError as exc:
        raise Invalid(str(exc), "text" if source.text is not None else "body") from None
    return _seconds(store.path(scope, prompt_name(name)))


def _seconds(path: Path) -> float:
    with wave.open(str(path)) as w:
        frames: int = w.getnframes()
        rate: int = w.getframerate()
    return round(frames / rate, 2)


def _audited(tone: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in tone.items() if k != "text"} | {"text_chars": len(tone.get("text") or "")}


async def list_tones(ctx: Ctx) -> list[dict[str, Any]]:
    tid = _tenant(ctx)
    await _timezone(ctx.conn, tid)  # the tenant exists
    rows = await ctx.conn.fetch(
        f"SELECT {_TONE_COLUMNS} FROM ringback_tones WHERE tenant_id = $1 ORDER BY name", tid
    )
    return [dict(r) for r in rows]


async def get_tone(ctx: Ctx, name: str) -> dict[str, Any]:
    tid = _tenant(ctx)
    row = await ctx.conn.fetchrow(
        f"SELECT {_TONE_COLUMNS} FROM ringback_tones WHERE tenant_id = $1 AND name = $2", tid, name
    )
    if row is None:
        raise NotFound(f"tone {name!r} not found", "name")
    return dict(row)


# ---------------------------------------------------------------------------- applications
_APPLICATIONS = """
SELECT a.id, a.number_id, n.number, t.name AS tone, a.tone_id, t.prompt, a.applied_at, a.effective_on,
       a.subscription_id, a.removed_at
FROM ringback_assignments a
JOIN numbers n ON n.id = a.number_id
JOIN ringback_tones t ON t.id = a.tone_id
"""


async def _number(conn: asyncpg.Connection, tenant_id: int, number_id: int, lock: bool) -> asyncpg.Record:
    row = await conn.fetchrow(
        "SELECT id, number, state FROM numbers WHERE id = $1 AND tenant_id = $2"
        + (" FOR UPDATE" if lock else ""),
        number_id,
        tenant_id,
    )
    if row is None:
        raise NotFound(f"number {number_id} not found", "number_id")
    return row


async def _in_force(conn: asyncpg.Connection, number_id: int) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            _APPLICATIONS + "WHERE a.number_id = $1 AND a.removed_at IS NULL ORDER BY a.effective_on",
            number_id,
        )
    )


async def apply_tone(ctx: Ctx, number_id: int, tone_name: str) -> tuple[dict[str, Any], bool]:
    """Apply tone ``tone_name`` to the number from the first day of the next month.
    Returns (the number's ringback, applied now?); the tone the number already has or is
    about to have is answered as it is."""
    tid = _writer(ctx)
    conn = ctx.conn
    async with conn.transaction():
        number = await _number(conn, tid, number_id, lock=True)  # one application at a time
        if number["state"] == "released":
            raise Invalid(f"number {number['number']} is released", "number_id")
        tone = await conn.fetchrow(
            "SELECT id FROM ringback_tones WHERE tenant_id = $1 AND name = $2", tid, tone_name
        )
        if tone is None:
            raise Invalid(f"the tenant has no tone {tone_name!r}", "tone")
        now = ctx.clock.now()
        tz = await _timezone(conn, tid)
        starts = effective_from(now, tz)
        held = await _in_force(conn, number_id)
        if held and held[-1]["tone_id"] == tone["id"]:
            return await _ringback(conn, tid, number, tz, now), False
        sub_id = await _subscription(ctx, tid, number, held, starts)
        replaced = [a["id"] for a in held if a["effective_on"] >= starts]
        if replaced:  # applied again before the month began: the latest application stands
            await conn.execute(
                "UPDATE ringback_assignments SET removed_at = $2 WHERE id = ANY($1::bigint[])", replaced, now
            )
        applied = await conn.fetchrow(
            "INSERT INTO ringback_assignments (tenant_id, number_id, tone_id, applied_at, effective_on, "
            "subscription_id, actor_user_id) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            tid,
            number_id,
            tone["id"],
            now,
            starts,
            sub_id,
            ctx.actor.user_id,
        )
        assert applied is not None
        after = {"number_id": number_id, "tone": tone_name, "effective_on": starts, "replaced": replaced}
        await audit(ctx, "ringback_assignments", applied["id"], "create", None, after)
        return await _ringback(conn, tid, number, tz, now), True


async def _subscription(
    ctx: Ctx, tenant_id: int, number: asyncpg.Record, held: list[asyncpg.Record], starts: date
) -> int:
    """The number's running RBT subscription, or a new one from ``starts``."""
    conn = ctx.conn
    for a in reversed(held):
        running = await conn.fetchval(
            "SELECT id FROM subscriptions WHERE id = $1 AND state = 'active' AND ends_on IS NULL",
            a["subscription_id"],
        )
        if running is not None:
            return int(running)
    row = await conn.fetchrow(
        "INSERT INTO subscriptions (tenant_id, package_id, starts_on, subject, created_at) "
        "SELECT $1, id, $2, $3, $4 FROM packages WHERE code = $5 "
        "RETURNING id, tenant_id, package_id, starts_on, ends_on, state, subject",
        tenant_id,
        starts,
        f"ringback tone on {number['number']}",
        ctx.clock.now(),
        PACKAGE,
    )
    if row is None:
        raise Conflict(f"the catalogue has no package {PACKAGE}", "tone")
    await audit(ctx, "subscriptions", row["id"], "create", None, dict(row))
    return int(row["id"])


async def remove_tone(ctx: Ctx, number_id: int) -> None:
    """The number goes back to the default ring now; its RBT subscription ends (today, or
    before it began if it had not: nothing more is charged)."""
    tid = _writer(ctx)
    conn = ctx.conn
    async with conn.transaction():
        number = await _number(conn, tid, number_id, lock=True)
        held = await _in_force(conn, number_id)
        if not held:
            raise NotFound(f"number {number['number']} has no ringback tone", "number_id")
        now = ctx.clock.now()
        today = now.astimezone(ZoneInfo(await _timezone(conn, tid))).date()
        await conn.execute(
            "UPDATE ringback_assignments SET removed_at = $2 WHERE id = ANY($1::bigint[])",
            [a["id"] for a in held],
            now,
        )
        for sub_id in sorted({a["subscription_id"] for a in held}):
            ended = await conn.fetchrow(
                "UPDATE subscriptions SET "
                "state = CASE WHEN starts_on > $2 THEN 'ended' ELSE state END, "
                "ends_on = CASE WHEN starts_on > $2 THEN starts_on ELSE $2 END, version = version + 1 "
                "WHERE id = $1 AND ends_on IS NULL RETURNING id, starts_on, ends_on, state",
                sub_id,
                today,
            )
            if ended is not None:
                await audit(ctx, "subscriptions", sub_id, "update", None, dict(ended))
        await audit(
            ctx,
            "ringback_assignments",
            number_id,
            "delete",
            {"number_id": number_id, "removed": len(held)},
            None,
        )


async def number_ringback(ctx: Ctx, number_id: int) -> dict[str, Any]:
    tid = _tenant(ctx)
    conn = ctx.conn
    number = await _number(conn, tid, number_id, lock=False)
    return await _ringback(conn, tid, number, await _timezone(conn, tid), ctx.clock.now())


async def _ringback(
    conn: asyncpg.Connection, tenant_id: int, number: asyncpg.Record, tz: str, now: datetime
) -> dict[str, Any]:
    """A number's applications in force and what its callers hear now (the decision the
    call path takes: dialplan.ringback.tone_at)."""
    held = await _in_force(conn, number["id"])
    playing = tone_at(
        [ToneApplication(a["effective_on"], RingbackTone(a["tone_id"], a["prompt"])) for a in held], tz, now
    )
    names = {a["tone_id"]: a["tone"] for a in held}
    return {
        "number_id": number["id"],
        "number": number["number"],
        "playing": names[playing.tone_id] if playing is not None else None,
        "applications": [_application(a) for a in held],
    }


def _application(a: asyncpg.Record) -> dict[str, Any]:
    return {
        "id": a["id"],
        "tone": a["tone"],
        "applied_at": a["applied_at"],
        "effective_on": a["effective_on"],
        "subscription_id": a["subscription_id"],
    }


async def list_ringbacks(ctx: Ctx) -> list[dict[str, Any]]:
    """Every number of the tenant with a tone in force, and what its callers hear now."""
    tid = _tenant(ctx)
    conn = ctx.conn
    tz = await _timezone(conn, tid)
    rows = await conn.fetch(
        "SELECT DISTINCT n.id, n.number, n.state FROM numbers n JOIN ringback_assignments a "
        "ON a.number_id = n.id AND a.removed_at IS NULL WHERE n.tenant_id = $1 ORDER BY n.id",
        tid,
    )
    now = ctx.clock.now()
    return [await _ringback(conn, tid, r, tz, now) for r in rows]
