"""The notification endpoints' service functions on the real PostgreSQL (the API and the
CLI call these): who may, the webhook's key answered once and found in no audit entry,
disabling or removing an endpoint giving up its open deliveries, and a dead delivery sent
again. (Through HTTP: tests/e2e/test_notices_delivery.py.)"""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import pytest

from provisioning.engine import Conflict, Ctx, Forbidden, Invalid, NotFound, PreconditionFailed
from provisioning.notify import endpoints
from provisioning.notify.schemas import EndpointCreate, EndpointUpdate
from provisioning.roles import Principal, Role
from softswitch.core.clock import FixedClock
from tests.db.conftest import new_tenant

AT = datetime(2100, 1, 1, tzinfo=UTC)  # the deliveries are due only then: no service takes them


def ctx(conn: asyncpg.Connection, tenant: int, role: Role = Role.TENANT_ADMIN, of: int | None = None) -> Ctx:
    who = Principal(1, f"test-{role.value}", role, tenant_id=of if of is not None else tenant)
    return Ctx(conn, who, FixedClock(AT), tenant)


async def notice(conn: asyncpg.Connection, tenant: int) -> int:
    return int(
        await conn.fetchval(
            "INSERT INTO outbox (tenant_id, kind, payload, created_at) VALUES ($1, 'low_balance', '{}', $2) "
            "RETURNING id",
            tenant,
            AT,
        )
    )


async def test_the_tenants_admin_adds_a_webhook_whose_key_is_answered_once_and_never_audited(
    pool: asyncpg.Pool,
) -> None:
    async with pool.acquire() as conn:
        tenant = await new_tenant(conn)
        made = await endpoints.create_endpoint(
            ctx(conn, tenant), EndpointCreate(channel="webhook", address="https://crm.example.com/hook")
        )
        assert made.secret is not None and made.secret.startswith("whsec_")
        assert "secret" not in (await endpoints.get_endpoint(ctx(conn, tenant), made.id)).model_dump()
        rotated = await endpoints.rotate_secret(ctx(conn, tenant), made.id)
        assert rotated.secret not in (None, made.secret) and rotated.version == 2
        logged = await conn.fetch(
            "SELECT after::text AS a, before::text AS b FROM audit_log WHERE tenant_id = $1", tenant
        )
        assert len(logged) == 2
        for entry in logged:
            assert (
                made.secret not in f"{entry['a']}{entry['b']}" and str(rotated.secret) not in f"{entry['a']}"
            )
        with pytest.raises(Invalid) as email_key:
            mail = await endpoints.create_endpoint(
                ctx(conn, tenant), EndpointCreate(channel="email", address="ops@example.com")
            )
            await endpoints.rotate_secret(ctx(conn, tenant), mail.id)
        assert email_key.value.field == "channel"


async def test_who_may(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn:
        tenant, other = await new_tenant(conn), await new_tenant(conn)
        data = EndpointCreate(channel="email", address="ops@example.com")
        with pytest.raises(Forbidden):
            await endpoints.create_endpoint(ctx(conn, tenant, Role.TENANT_READONLY), data)
        with pytest.raises(Forbidden):
            await endpoints.list_endpoints(ctx(conn, tenant, Role.TENANT_READONLY), 10, None)
        with pytest.raises(NotFound):  # another tenant's admin: as if it did not exist
            await endpoints.create_endpoint(ctx(conn, tenant, Role.TENANT_ADMIN, of=other), data)
        made = await endpoints.create_endpoint(ctx(conn, tenant, Role.OPERATOR_STAFF, of=0), data)
        items, _ = await endpoints.list_endpoints(ctx(conn, tenant), 10, None)
        assert [e.id for e in items] == [made.id]
        with pytest.raises(NotFound):
            await endpoints.get_endpoint(ctx(conn, other), made.id)


async def test_disabling_gives_up_the_open_deliveries_and_a_dead_one_is_sent_again(
    pool: asyncpg.Pool,
) -> None:
    async with pool.acquire() as conn:
        tenant = await new_tenant(conn)
        c = ctx(conn, tenant)
        made = await endpoints.create_endpoint(c, EndpointCreate(channel="email", address="ops@example.com"))
        n = await notice(conn, tenant)
        (pending,) = (await endpoints.notice_deliveries(c, n)).items
        assert (pending.state, pending.endpoint_id, pending.channel) == ("pending", made.id, "email")
        with pytest.raises(PreconditionFailed):
            await endpoints.update_endpoint(c, made.id, EndpointUpdate(enabled=False), made.version + 1)
        off = await endpoints.update_endpoint(c, made.id, EndpointUpdate(enabled=False), made.version)
        (dead,) = (await endpoints.notice_deliveries(c, n)).items
        assert (dead.state, dead.last_reason) == ("dead", "ENDPOINT_DISABLED")
        assert [d.id for d in (await endpoints.list_deliveries(c, "dead", made.id, 10, None))[0]] == [dead.id]
        operator = ctx(conn, tenant, Role.OPERATOR_STAFF, of=0)
        every, _ = await endpoints.platform_deliveries(operator, "dead", tenant, 10, None)
        assert [(d.id, d.tenant_id) for d in every] == [(dead.id, tenant)]
        with pytest.raises(Forbidden):
            await endpoints.platform_deliveries(c, "dead", None, 10, None)
        await notice(conn, tenant)  # a disabled endpoint gets no new notices
        assert [d.id for d in (await endpoints.list_deliveries(c, None, made.id, 10, None))[0]] == [dead.id]
        with pytest.raises(Conflict):  # not while it is disabled
            await endpoints.retry_delivery(c, n, dead.id)
        with pytest.raises(Invalid) as wrong:  # an address checked against the endpoint's channel
            await endpoints.update_endpoint(
                c, made.id, EndpointUpdate(address="https://x.example"), off.version
            )
        assert wrong.value.field == "address"
        on = await endpoints.update_endpoint(c, made.id, EndpointUpdate(enabled=True), off.version)
        again = await endpoints.retry_delivery(c, n, dead.id)
        assert (again.state, again.attempts, again.next_attempt_at) == ("pending", 0, AT)
        with pytest.raises(Conflict):
            await endpoints.retry_delivery(c, n, dead.id)  # pending already
        await endpoints.delete_endpoint(c, made.id, on.version)
        (removed,) = (await endpoints.notice_deliveries(c, n)).items
        assert (removed.state, removed.last_error) == ("dead", "the endpoint was removed")
        assert (await endpoints.list_endpoints(c, 10, None))[0] == []  # kept for the log only
        with pytest.raises(NotFound):
            await endpoints.get_endpoint(c, made.id)
