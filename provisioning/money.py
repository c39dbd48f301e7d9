"""Prepaid accounts: the balance changes only together with an append-only ledger entry,
and a recharge is idempotent on its Idempotency-Key (a retried request charges once)."""

from __future__ import annotations

from decimal import Decimal

from provisioning.engine import Conflict, Ctx, Forbidden, NotFound, audit
from provisioning.roles import OPERATORS
from provisioning.schemas import AccountRead, LedgerRead, RechargeCreate

CENT = Decimal("0.01")


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
    async with ctx.conn.transaction():
        # The account row lock orders concurrent money operations on one tenant.
        acct = await ctx.conn.fetchrow(
            "SELECT * FROM accounts WHERE tenant_id = $1 FOR UPDATE", ctx.tenant_id
        )
        if acct is None:
            raise NotFound(f"tenant {ctx.tenant_id} not found", "tenant_id")
        prior = await ctx.conn.fetchrow(
            "SELECT * FROM ledger_entries WHERE tenant_id = $1 AND kind = 'recharge' "
            "AND idempotency_key = $2",
            ctx.tenant_id,
            idempotency_key,
        )
        if prior is not None:
            # One Idempotency-Key names one recharge of the tenant, by an operator or a card.
            by_card = await ctx.conn.fetchval(
                "SELECT 1 FROM recharge_cards WHERE ledger_entry_id = $1", prior["id"]
            )
            if by_card:
                raise Conflict(
                    f"Idempotency-Key {idempotency_key!r} was used for a recharge card", "Idempotency-Key"
                )
            if prior["amount"] != amount:
                raise Conflict(
                    f"Idempotency-Key {idempotency_key!r} was used for {prior['amount']}", "Idempotency-Key"
                )
            return LedgerRead.model_validate(dict(prior)), False
        balance = await ctx.conn.fetchval(
            "UPDATE accounts SET balance = balance + $2, version = version + 1 WHERE tenant_id = $1 "
            "RETURNING balance",
            ctx.tenant_id,
            amount,
        )
        row = await ctx.conn.fetchrow(
            "INSERT INTO ledger_entries (tenant_id, kind, amount, balance_after, reference, "
            "idempotency_key, actor_user_id, created_at) VALUES ($1, 'recharge', $2, $3, $4, $5, $6, $7) "
            "RETURNING *",
            ctx.tenant_id,
            amount,
            balance,
            data.reference,
            idempotency_key,
            ctx.actor.user_id,
            ctx.clock.now(),
        )
        out = LedgerRead.model_validate(dict(row))
        await audit(ctx, "accounts", ctx.tenant_id, "recharge", None, out)
        return out, True
