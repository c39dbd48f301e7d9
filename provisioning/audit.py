"""The one writer of the audit log: who did what to which entity, with the state before
and after as JSON. What is written is what the caller hands over: callers pass the read
models (``engine.present``), whose masks hide secrets (ID numbers, card numbers; PINs and
passwords are never in them), or mappings they masked themselves."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import asyncpg
from pydantic import BaseModel

Snapshot = BaseModel | Mapping[str, Any] | None

# Passed as text and cast in SQL, so the JSON is stored as an object whether or not the
# connection has a jsonb codec (one would encode the string again, as a JSON string).
_WRITE = (
    "INSERT INTO audit_log (at, actor_user_id, actor, tenant_id, entity, entity_id, action, "
    "before, after) VALUES ($1, $2, $3, $4, $5, $6, $7, $8::text::jsonb, $9::text::jsonb)"
)


def _json(value: Snapshot) -> str | None:
    if value is None:
        return None
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    return json.dumps(dict(value), default=str)


async def record(
    conn: asyncpg.Connection,
    *,
    at: datetime,
    actor: str,
    entity: str,
    entity_id: object,
    action: str,
    tenant_id: int | None = None,
    actor_user_id: int | None = None,
    before: Snapshot = None,
    after: Snapshot = None,
) -> None:
    """Append one audit entry (inside the caller's transaction, when it has one)."""
    await conn.execute(
        _WRITE,
        at,
        actor_user_id,
        actor,
        tenant_id,
        entity,
        str(entity_id),
        action,
        _json(before),
        _json(after),
    )
