"""Prepaid accounts: the balance changes only together with an append-only ledger entry,
and a recharge is idempotent on its Idempotency-Key (a retried request charges once)."""

from __future__ import annotations

from decimal import Decimal

from provisioning import ledger
from provisioning.engine import Conflict, Ctx, Forbidden, NotFound, audit
from provisioning.roles import OPERATORS
from provisioning.schemas import AccountRead, LedgerRead, RechargeCreate
from rating.money import CENT


async def get_account(ctx: Ctx) -> AccountRead:
    if not ctx.actor.sees_tenant(ctx.tenant_id):
        raise NotFound(f"tenant {ctx.tenant_id} not found", "tenant_id")
    row = await ctx.conn.fetchrow("SELECT * FROM accounts WHERE tenant_id = $1", ctx.tenant_id)
    if row is None:
        raise NotFound(f"tenant {ctx.tenant_id} not found", "tenant_id")
    return AccountRead.model_validate(dict(row))


async def recharge(ctx: Ctx, data: RechargeCreate, idempotency_key: str) -> tuple[LedgerRead, bool]:
    """Credit the account. Returns (ledger entry, created now?). The same key with the same
    amount returns the first entry; with a different amount it is a conflict."""
    if not ctx.actor.sees_tenant(ctx.tenant_id):
        raise NotFound(f"tenant {ctx.tenant_id} not found", "tenant_id")
    if not ctx.actor.may(OPERATORS):
        raise Forbidden("only operators credit accounts (tenants recharge with recharge cards)")
    amount = data.amount.quantize(CENT)
    tenant_id = ctx.tenant_id
    if tenant_id is None:
        raise NotFound("tenant None not found", "tenant_id")
    async with ctx.conn.transaction():
        # The account row lock orders concurrent money operations on one tenant.
        if not await ctx.conn.fetchval(
            "SELECT 1 FROM accounts WHERE tenant_id = $1 FOR UPDATE", ctx.tenant_id
        ):
            raise NotFound(f"tenant {ctx.tenant_id} not found", "tenant_id")
        done = await ledger.post(
            ctx.conn,
            tenant_id,
            ledger.Kind.RECHARGE,
            amount,
            idempotency_key,
            data.reference,
            ctx.clock.now(),
            actor_user_id=ctx.actor.user_id,
        )
        if isinstance(done, ledger.AlreadyPosted):
            return await _replayed(ctx, done.entry, amount, idempotency_key), False
        out = LedgerRead.model_validate(done.entry)
        await audit(ctx, "accounts", ctx.tenant_id, "recharge", None, out)
        return out, True


async def _replayed(ctx: Ctx, prior: ledger.Entry, amount: Decimal, idempotency_key: str) -> LedgerRead:
    """The first recharge under this key, if it was this one. One Idempotency-Key names
    one recharge of the tenant, by an operator or a card."""
    if await ctx.conn.fetchval("SELECT 1 FROM recharge_cards WHERE ledger_entry_id = $1", prior.id):
        raise Conflict(f"Idempotency-Key {idempotency_key!r} was used for a recharge card", "Idempotency-Key")
    if prior.amount != amount:
        raise Conflict(f"Idempotency-Key {idempotency_key!r} was used for {prior.amount}", "Idempotency-Key")
    return LedgerRead.model_validate(prior)
