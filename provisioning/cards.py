"""Recharge cards: operators generate them in batches; a tenant (through the API, or the
phone self-service line) redeems one into its prepaid account.

A card number is 16 digits: 15 random digits (never sequential) and a Luhn check digit,
so a mistyped number is refused before the database is asked. The 8-digit PIN is
returned once, by ``generate_batch``, and kept only as a salted SHA-256
(``provisioning.rules.hash_pin``).

``redeem_card`` is one transaction: the account row is locked (ordering every money
operation of the tenant), then the card row; the card is checked (PIN in constant time,
state, expiry), marked redeemed with its redeem key, the account credited and an
append-only ledger entry of kind 'recharge' written with the Idempotency-Key. The same
key again returns the first entry; the card can never be redeemed twice, however many
requests race for it. A refusal carries a reason (``unknown_card``, ``wrong_pin``,
``expired``, ``already_used``, ``void``) for the audit log and the service log; tenants
are only ever told "card invalid or already used"."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg

from provisioning import audit as audit_log
from provisioning import ledger
from provisioning.engine import (
    Conflict,
    Ctx,
    Forbidden,
    Invalid,
    NotFound,
    ProvisioningError,
    audit,
    db_error,
)
from provisioning.roles import OPERATORS, TENANT_WRITERS
from provisioning.rules import hash_pin, pin_matches
from provisioning.schemas import CardBatchRead, LedgerRead
from rating.money import CENT

log = logging.getLogger(__name__)

CARD_DIGITS = 16
PIN_DIGITS = 8
MAX_BATCH = 10_000
MAX_FACE_VALUE = Decimal("100000")
GENERIC_REFUSAL = "card invalid or already used"
REASONS = ("unknown_card", "wrong_pin", "expired", "already_used", "void")
# Checked against when the card does not exist, so an unknown card costs what a real one does.
_DUMMY_PIN_HASH = hash_pin("00000000", "0000000000000000")


class CardRefused(ProvisioningError):
    """The card cannot be redeemed. ``reason`` is for the audit log and operators only."""

    status, kind = 422, "card_refused"

    def __init__(self, reason: str, message: str = GENERIC_REFUSAL) -> None:
        assert reason in REASONS, reason
        super().__init__(message, "card_number")
        self.reason = reason


# ---------------------------------------------------------------------------- numbers and PINs
def luhn_digit(body: str) -> str:
    """The check digit that makes ``body + digit`` pass the Luhn test."""
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def luhn_ok(number: str) -> bool:
    return (
        len(number) >= 2 and number.isdigit() and number.isascii() and luhn_digit(number[:-1]) == number[-1]
    )


def new_card_number() -> str:
    body = str(10 ** (CARD_DIGITS - 2) + secrets.randbelow(9 * 10 ** (CARD_DIGITS - 2)))  # no leading 0
    return body + luhn_digit(body)


def new_pin() -> str:
    return f"{secrets.randbelow(10**PIN_DIGITS):0{PIN_DIGITS}d}"


def mask_card(number: str) -> str:
    return "*" * (len(number) - 4) + number[-4:]


# ---------------------------------------------------------------------------- batches
async def generate_batch(
    ctx: Ctx, count: int, face_value: Decimal, expires_at: datetime, note: str = ""
) -> tuple[CardBatchRead, list[tuple[str, str]]]:
    """Make ``count`` cards of ``face_value`` valid until ``expires_at``. Returns the batch
    and [(card_number, pin)] — the only time the PINs exist in plain text."""
    if not ctx.actor.may(OPERATORS):
        raise Forbidden("only operators generate recharge cards")
    if not 1 <= count <= MAX_BATCH:
        raise Invalid(f"count must be 1..{MAX_BATCH}", "count")
    if not (face_value.is_finite() and 0 < face_value <= MAX_FACE_VALUE) or face_value != face_value.quantize(
        CENT
    ):
        raise Invalid(
            f"face_value must be a positive amount in cents, at most {MAX_FACE_VALUE}", "face_value"
        )
    if expires_at.tzinfo is None:
        raise Invalid("expires_at needs a UTC offset", "expires_at")
    now = ctx.clock.now()
    if expires_at <= now:
        raise Invalid("expires_at must be in the future", "expires_at")
    try:
        async with ctx.conn.transaction():
            batch = await ctx.conn.fetchrow(
                "INSERT INTO recharge_card_batches (created_at, created_by, created_by_user_id, count, "
                "face_value, expires_at, note) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING *",
                now,
                ctx.actor.name,
                ctx.actor.user_id,
                count,
                face_value,
                expires_at,
                note,
            )
            assert batch is not None
            cards: dict[str, str] = {}
            while len(cards) < count:
                fresh: dict[str, str] = {}
                while len(fresh) < count - len(cards):
                    number = new_card_number()
                    if number not in cards:
                        fresh[number] = new_pin()
                # A number some earlier batch already holds is skipped and drawn again.
                inserted = await ctx.conn.fetch(
                    "INSERT INTO recharge_cards (batch_id, card_number, pin_sha256, face_value, expires_at) "
                    "SELECT $1, n, h, $4, $5 FROM unnest($2::text[], $3::text[]) AS u(n, h) "
                    "ON CONFLICT (card_number) DO NOTHING RETURNING card_number",
                    batch["id"],
                    list(fresh),
                    [hash_pin(p) for p in fresh.values()],
                    face_value,
                    expires_at,
                )
                for r in inserted:
                    cards[r["card_number"]] = fresh[r["card_number"]]
            out = CardBatchRead.model_validate({**dict(batch), "unused": count})
            await audit(ctx, "recharge_card_batches", batch["id"], "create", None, out, tenant_id=None)
    except asyncpg.PostgresError as exc:
        raise db_error(exc) from exc
    log.info("recharge card batch %s: %d cards of %s by %s", out.id, count, face_value, ctx.actor.name)
    return out, list(cards.items())


_BATCH_COLUMNS = """
    b.*,
    (SELECT count(*) FROM recharge_cards c WHERE c.batch_id = b.id AND c.state = 'unused') AS unused,
    (SELECT count(*) FROM recharge_cards c WHERE c.batch_id = b.id AND c.state = 'redeemed') AS redeemed,
    (SELECT count(*) FROM recharge_cards c WHERE c.batch_id = b.id AND c.state = 'void') AS void
"""


async def list_batches(ctx: Ctx, limit: int, after: int | None) -> tuple[list[CardBatchRead], int | None]:
    if not ctx.actor.may(OPERATORS):
        raise Forbidden(f"role {ctx.actor.role.value} may not read recharge card batches")
    rows = await ctx.conn.fetch(
        f"SELECT {_BATCH_COLUMNS} FROM recharge_card_batches b WHERE b.id > $1 ORDER BY b.id LIMIT $2",
        after or 0,
        limit + 1,
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return [CardBatchRead.model_validate(dict(r)) for r in rows], (rows[-1]["id"] if more and rows else None)


# ---------------------------------------------------------------------------- redemption
@dataclass(frozen=True, slots=True)
class Card:
    """A recharge card as redemption reads it (its row locked)."""

    id: int
    batch_id: int
    pin_sha256: str
    state: str  # 'unused' | 'redeemed' | 'void'
    expires_at: datetime
    face_value: Decimal

    @classmethod
    def of(cls, row: asyncpg.Record) -> Card:
        return cls(
            row["id"], row["batch_id"], row["pin_sha256"], row["state"], row["expires_at"], row["face_value"]
        )


@dataclass(frozen=True, slots=True)
class Redeemer:
    """Who redeems, and when: the audit entries and the ledger entry name them."""

    actor: str
    actor_user_id: int | None
    now: datetime


def refusal_of(card: Card, pin: str, now: datetime) -> str | None:
    """Why ``card`` cannot be redeemed with ``pin`` at ``now`` (PIN first), or None."""
    if not pin_matches(pin, card.pin_sha256):
        return "wrong_pin"
    if card.state == "redeemed":
        return "already_used"
    if card.state == "void":
        return "void"
    if card.expires_at <= now:
        return "expired"
    return None


async def _audit_card(
    conn: asyncpg.Connection,
    who: Redeemer,
    tenant_id: int,
    entity_id: object,
    action: str,
    after: dict[str, Any],
) -> None:
    await audit_log.record(
        conn,
        at=who.now,
        actor=who.actor,
        actor_user_id=who.actor_user_id,
        tenant_id=tenant_id,
        entity="recharge_cards",
        entity_id=entity_id,
        action=action,
        after=after,
    )


async def _replayed(
    conn: asyncpg.Connection, prior: ledger.Entry, card_number: str, pin: str, idempotency_key: str
) -> LedgerRead:
    """The first redemption under this key, if it was of this card (and the PIN is right)."""
    used = await conn.fetchrow(
        "SELECT card_number, pin_sha256 FROM recharge_cards WHERE ledger_entry_id = $1", prior.id
    )
    if used is None or not secrets.compare_digest(used["card_number"], card_number):
        raise Conflict(
            f"Idempotency-Key {idempotency_key!r} was used for another recharge", "Idempotency-Key"
        )
    if not pin_matches(pin, used["pin_sha256"]):
        raise CardRefused("wrong_pin")
    return LedgerRead.model_validate(prior)


async def _redeemable_card(conn: asyncpg.Connection, card_number: str, pin: str, now: datetime) -> Card:
    """The card, locked, if it may be redeemed now; CardRefused otherwise."""
    if len(card_number) != CARD_DIGITS or not luhn_ok(card_number):
        raise CardRefused("unknown_card")
    row = await conn.fetchrow("SELECT * FROM recharge_cards WHERE card_number = $1 FOR UPDATE", card_number)
    if row is None:
        pin_matches(pin, _DUMMY_PIN_HASH)
        raise CardRefused("unknown_card")
    card = Card.of(row)
    reason = refusal_of(card, pin, now)
    if reason is not None:
        raise CardRefused(reason)
    return card


async def _credit(
    conn: asyncpg.Connection,
    tenant_id: int,
    card: Card,
    card_number: str,
    idempotency_key: str,
    who: Redeemer,
) -> ledger.Entry:
    """Credit the card's face value, mark the card redeemed by that entry, audit it."""
    done = await ledger.post(
        conn,
        tenant_id,
        ledger.Kind.RECHARGE,
        card.face_value,
        idempotency_key,
        f"card {mask_card(card_number)} batch {card.batch_id}",
        who.now,
        actor_user_id=who.actor_user_id,
    )
    # No entry under the key was there, with the account row locked: this one is new.
    assert isinstance(done, ledger.Posted), done
    await conn.execute(
        "UPDATE recharge_cards SET state = 'redeemed', redeemed_at = $2, redeemed_by_tenant_id = $3, "
        "redeem_key = $4, ledger_entry_id = $5 WHERE id = $1",
        card.id,
        who.now,
        tenant_id,
        f"{tenant_id}:{idempotency_key}",
        done.entry.id,
    )
    after = {
        "card": mask_card(card_number),
        "batch_id": card.batch_id,
        "amount": str(card.face_value),
        "ledger_entry_id": done.entry.id,
    }
    await _audit_card(conn, who, tenant_id, card.id, "redeem", after)
    return done.entry


async def _refused(
    conn: asyncpg.Connection, who: Redeemer, tenant_id: int, card_number: str, exc: CardRefused
) -> None:
    """The transaction is rolled back; the refusal is kept, for spotting PIN guessing."""
    masked = mask_card(card_number)
    log.warning("recharge card %s refused for tenant %s by %s: %s", masked, tenant_id, who.actor, exc.reason)
    await _audit_card(conn, who, tenant_id, masked, "redeem_refused", {"card": masked, "reason": exc.reason})


async def redeem_card(
    conn: asyncpg.Connection,
    tenant_id: int,
    card_number: str,
    pin: str,
    idempotency_key: str,
    *,
    actor: str,
    now: datetime,
    actor_user_id: int | None = None,
) -> tuple[LedgerRead, bool]:
    """Redeem a card into the tenant's account. Returns (ledger entry, created now?).

    The same ``idempotency_key`` with the same card returns the first entry (False); with
    another card, or a key the tenant used for an operator recharge, it is a Conflict.
    Refusals raise CardRefused (its ``reason`` is audited, its message generic). Whoever
    calls this has already decided that ``actor`` may act for ``tenant_id``."""
    who = Redeemer(actor, actor_user_id, now)
    try:
        async with conn.transaction():
            # The account row lock orders concurrent money operations on one tenant.
            if not await conn.fetchval("SELECT 1 FROM accounts WHERE tenant_id = $1 FOR UPDATE", tenant_id):
                raise NotFound(f"tenant {tenant_id} not found", "tenant_id")
            prior = await ledger.posted_under(conn, tenant_id, ledger.Kind.RECHARGE, idempotency_key)
            if prior is not None:
                return await _replayed(conn, prior, card_number, pin, idempotency_key), False
            card = await _redeemable_card(conn, card_number, pin, now)
            entry = await _credit(conn, tenant_id, card, card_number, idempotency_key, who)
    except CardRefused as exc:
        await _refused(conn, who, tenant_id, card_number, exc)
        raise
    except asyncpg.PostgresError as exc:
        raise db_error(exc) from exc
    log.info(
        "recharge card %s redeemed into tenant %s: %s", mask_card(card_number), tenant_id, card.face_value
    )
    return LedgerRead.model_validate(entry), True


async def redeem_for(ctx: Ctx, card_number: str, pin: str, idempotency_key: str) -> tuple[LedgerRead, bool]:
    """The API's redemption: tenant scoping and roles, then ``redeem_card``. Tenants hear
    only the generic refusal; operators also get the reason."""
    if not ctx.actor.sees_tenant(ctx.tenant_id):
        raise NotFound(f"tenant {ctx.tenant_id} not found", "tenant_id")
    if not ctx.actor.may(TENANT_WRITERS):
        raise Forbidden(f"role {ctx.actor.role.value} may not redeem recharge cards")
    assert ctx.tenant_id is not None
    try:
        return await redeem_card(
            ctx.conn,
            ctx.tenant_id,
            card_number,
            pin,
            idempotency_key,
            actor=ctx.actor.name,
            actor_user_id=ctx.actor.user_id,
            now=ctx.clock.now(),
        )
    except CardRefused as exc:
        if ctx.actor.is_operator:
            raise CardRefused(exc.reason, f"{GENERIC_REFUSAL} ({exc.reason})") from None
        raise
