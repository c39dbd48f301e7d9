"""Customers (CRM, seed 001 "CRM with click-to-dial"): an enterprise's contacts — name,
company, phone numbers (E.164, normalised by the schemas with phonenumbers, default region
CN), email, tags — and their notes, each written once with its author and time.

Both are catalog resources (catalog.CUSTOMERS, catalog.CUSTOMER_NOTES): the REST API, the
CLI and the portal create, read and change them through provisioning.engine, with the
tenant scope and the roles of every tenant resource (read-only users read, admins write)
and an audit entry per change. Notes are a table of their own (migration 0017 says why).
Phone numbers are personal data: whatever this module logs shows them masked."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from provisioning import schemas as s
from provisioning.engine import Ctx, Invalid, Resource, Values, authorize, present


async def _prepare_customer(ctx: Ctx, values: Values, before: Mapping[str, Any] | None) -> Values:
    now = ctx.clock.now()
    if before is None:
        values["created_at"] = now
    values["updated_at"] = now
    return values


async def _prepare_note(ctx: Ctx, values: Values, before: Mapping[str, Any] | None) -> Values:
    """A note belongs to one of the tenant's customers; its author and time are the
    request's, never the client's."""
    ok = await ctx.conn.fetchval(
        "SELECT 1 FROM customers WHERE id = $1 AND tenant_id = $2", values.get("customer_id"), ctx.tenant_id
    )
    if not ok:
        raise Invalid(f"customer {values.get('customer_id')} does not belong to this tenant", "customer_id")
    values["author"] = ctx.actor.name
    values["author_user_id"] = ctx.actor.user_id
    values["created_at"] = ctx.clock.now()
    return values


CUSTOMERS = Resource(
    "customers",
    "customers",
    s.CustomerRead,
    s.CustomerCreate,
    s.CustomerUpdate,
    prepare=_prepare_customer,
)
CUSTOMER_NOTES = Resource(
    "customer-notes",
    "customer_notes",
    s.CustomerNoteRead,
    s.CustomerNoteCreate,
    None,
    deletable=False,  # the history of what was said to a customer is kept
    filters=("customer_id",),
    prepare=_prepare_note,
)

_LIKE_SPECIAL = re.compile(r"([\\%_])")


async def search(
    ctx: Ctx, query: str = "", limit: int = 50, after: int | None = None
) -> tuple[list[Any], int | None]:
    """The tenant's customers whose name, company, email or a tag contains `query`
    (case-insensitive), or one of whose numbers contains its digits (3 or more); all of
    them for an empty query. Paged by id (`after`: the previous page's next_after)."""
    await authorize(ctx, CUSTOMERS, write=False)
    where: list[str] = ["tenant_id = $1"]
    params: list[Any] = [ctx.tenant_id]
    text = query.strip()[:100]
    if text:
        params.append("%" + _LIKE_SPECIAL.sub(r"\\\1", text) + "%")
        p = f"${len(params)}"
        cond = (
            f"name ILIKE {p} OR company ILIKE {p} OR email ILIKE {p} "
            f"OR EXISTS (SELECT 1 FROM unnest(tags) AS t WHERE t ILIKE {p})"
        )
        digits = re.sub(r"\D", "", text)
        if digits.startswith("0"):  # a national trunk prefix ("010 …") is not in E.164
            digits = digits[1:]
        if len(digits) >= 3:
            params.append(f"%{digits}%")
            cond += f" OR array_to_string(phones, ',') LIKE ${len(params)}"
        where.append(f"({cond})")
    if after is not None:
        params.append(after)
        where.append(f"id > ${len(params)}")
    params.append(limit + 1)
    rows = await ctx.conn.fetch(
        f"SELECT * FROM customers WHERE {' AND '.join(where)} ORDER BY id LIMIT ${len(params)}", *params
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return [present(CUSTOMERS, r) for r in rows], (rows[-1]["id"] if more and rows else None)


async def notes_of(ctx: Ctx, customer_id: int) -> list[Any]:
    """A customer's notes, newest first."""
    await authorize(ctx, CUSTOMER_NOTES, write=False)
    rows = await ctx.conn.fetch(
        "SELECT * FROM customer_notes WHERE tenant_id = $1 AND customer_id = $2 ORDER BY id DESC",
        ctx.tenant_id,
        customer_id,
    )
    return [present(CUSTOMER_NOTES, r) for r in rows]
