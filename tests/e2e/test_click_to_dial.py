"""Click-to-dial through the real Asterisk, and FreeSWITCH (issue 16 item 3): the API's request rings the
agent's SIP phone (SIPp, registered as the extension) first; only once it answers does
the customer's carrier (SIPp, traced) receive an INVITE for the customer's number, showing
the enterprise's own number in From and P-Asserted-Identity — the outbound path of a
phone's own call, so the call record, the prepaid reservation and its settlement and the
channel count are those of any call. Refusals come back with the reason code."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from decimal import Decimal

import asyncpg
import pytest

from scripts.devstack.process import ServiceProcess
from tests.e2e.click_to_dial_support import (
    Carrier,
    agent_phone,
    customer_number,
    enterprise,
    identity,
    settled_record,
    traced_carrier,
    wait_state,
)
from tests.e2e.conftest import Engine, api_ok, changed

pytestmark = pytest.mark.stack


@pytest.fixture(scope="module")
def carrier(service: ServiceProcess) -> Iterator[Carrier]:
    with traced_carrier(service) as c:
        yield c


async def test_the_agent_rings_first_then_the_customer_sees_the_enterprise_number(
    db: asyncpg.Connection, service: ServiceProcess, carrier: Carrier, engine: Engine
) -> None:
    ent = enterprise(service)
    ext = ent.extension["extension"]
    customer = api_ok(
        service.request(
            "POST",
            f"{ent.base}/customers",
            json={"name": "王五", "company": "Acme", "phones": [customer_number()]},
        ),
        201,
    )
    number = customer["phones"][0]  # E.164
    dialled = number.removeprefix("+86")
    before = api_ok(service.request("GET", f"{ent.base}/account"))

    with agent_phone(ent.extension, ent.password, ring_ms=1500, talk_ms=2500, target=engine.phones) as phone:
        placed = api_ok(
            service.request(
                "POST",
                f"{ent.base}/click-to-dial",
                json={"number": number, "extension": ext, "customer_id": customer["id"]},
            ),
            202,
        )
        assert (placed["state"], placed["dialled"], placed["extension"]) == ("ringing_agent", dialled, ext)
        call_id = placed["call_id"]

        # The agent's phone rings first, showing the customer (name and number) and, as
        # the number, its own extension; the customer's side has nothing yet.
        invite = await phone.wait_rung()
        shown_name, shown_user = identity(invite.headers("From")[0])
        assert shown_name == f"王五 {dialled}" and shown_user == ext, invite.text
        ringing = api_ok(service.request("GET", f"{ent.base}/click-to-dial/{call_id}"))
        assert ringing["state"] == "ringing_agent", ringing
        assert not carrier.trace.invites(dialled), "the customer was called before the agent answered"

        # Answered: the second leg leaves through the outbound path, presenting only the
        # enterprise's number (no display name), like the phone's own call.
        at_carrier = await carrier.invite_for(dialled)
        for header in ("From", "P-Asserted-Identity"):
            values = at_carrier.headers(header)
            assert values, at_carrier.text
            for value in values:
                assert identity(value) == ("", ent.number), f"{header}: {value}"
        connected = wait_state(service, ent, call_id, {"connected", "ended"})
        assert connected["caller_id"] == ent.number

        ended = wait_state(service, ent, call_id, {"ended", "refused", "failed"})
        assert (ended["state"], ended["reason"]) == ("ended", "ROUTED"), ended

    record = await settled_record(db, call_id)
    assert (record["direction"], record["action"], record["tenant_id"]) == ("outbound", "dial", ent.tenant_id)
    assert (record["caller"], record["called"], record["caller_id_shown"]) == (ext, dialled, ent.number)
    assert record["billsec"] >= 1 and record["amount"] > 0, dict(record)
    reservation = await db.fetchrow("SELECT * FROM reservations WHERE call_id = $1", call_id)
    assert reservation is not None and reservation["state"] == "settled", reservation
    # The engine's own CDR of the call is the same call (its id is the click-to-dial's id)
    cdr_legs = await db.fetch("SELECT disposition FROM engine_cdr WHERE linkedid = $1", call_id)
    assert any(r["disposition"] == "ANSWERED" for r in cdr_legs), cdr_legs
    after = api_ok(service.request("GET", f"{ent.base}/account"))
    assert (after["channels_in_use"], Decimal(after["reserved"])) == (0, 0), after
    assert Decimal(after["balance"]) == Decimal(before["balance"]) - record["amount"], (before, after)
    entry = await db.fetchrow(
        "SELECT amount FROM ledger_entries WHERE tenant_id = $1 AND kind = 'call' ORDER BY id DESC LIMIT 1",
        ent.tenant_id,
    )
    assert entry is not None and entry["amount"] == -record["amount"]


async def test_an_unregistered_extension_is_refused_with_its_reason(
    service: ServiceProcess, carrier: Carrier
) -> None:
    ent = enterprise(service)
    resp = service.request(
        "POST",
        f"{ent.base}/click-to-dial",
        json={"number": customer_number(), "extension": ent.extension["extension"]},
    )
    assert resp.status_code == 409, resp.text
    (detail,) = resp.json()["detail"]
    assert detail["type"] == "EXTENSION_NOT_REGISTERED" and detail["loc"] == ["body", "extension"], detail


async def test_no_balance_is_refused_before_any_phone_rings(
    service: ServiceProcess, carrier: Carrier
) -> None:
    # An enterprise whose account holds nothing: its own tenant, number and extension.
    tenant = api_ok(service.request("POST", "/v1/tenants", json={"name": "c2d no money"}), 201)
    ent = enterprise(service, (tenant["id"], 0, ""))
    number = customer_number()
    with agent_phone(ent.extension, ent.password) as phone:
        resp = service.request(
            "POST",
            f"{ent.base}/click-to-dial",
            json={"number": number, "extension": ent.extension["extension"]},
        )
        assert resp.status_code == 409, resp.text
        (detail,) = resp.json()["detail"]
        assert detail["type"] == "NO_BALANCE", detail
        assert phone.invites() == [] and carrier.trace.invites(number) == []


async def test_a_bad_number_or_an_extension_not_the_tenants_is_refused(service: ServiceProcess) -> None:
    ent = enterprise(service)
    bad = service.request(
        "POST", f"{ent.base}/click-to-dial", json={"number": "12345", "extension": ent.extension["extension"]}
    )
    assert bad.status_code == 422, bad.text
    assert (
        bad.json()["detail"][0]["type"] == "INVALID_NUMBER" and bad.json()["detail"][0]["loc"][-1] == "number"
    )
    unknown = service.request(
        "POST", f"{ent.base}/click-to-dial", json={"number": customer_number(), "extension": "99999"}
    )
    assert unknown.status_code == 422, unknown.text
    assert unknown.json()["detail"][0]["type"] == "EXTENSION_UNKNOWN"


async def test_the_outbound_paths_own_rules_decide_the_customers_leg(
    db: asyncpg.Connection, service: ServiceProcess, carrier: Carrier
) -> None:
    """The enterprise refuses caller IDs it does not own, and the agent's extension is set
    to present one: nothing in the click-to-dial request can tell, only the call path's
    decision at the agent's answer — which refuses the customer's leg as it would the
    phone's own call, and the state says why."""
    ent = enterprise(service)
    tenant = api_ok(service.request("GET", ent.base))
    changed(
        service,
        "PATCH",
        ent.base,
        json={"outbound_cli_policy": "refuse"},
        headers={"If-Match": f'"{tenant["version"]}"'},
    )
    changed(
        service,
        "PATCH",
        f"{ent.base}/extensions/{ent.extension['id']}",
        json={"outbound_caller_id": "02155550000"},
        headers={"If-Match": f'"{ent.extension["version"]}"'},
    )
    number = customer_number()
    with agent_phone(ent.extension, ent.password, ring_ms=300, talk_ms=1500) as phone:
        placed = api_ok(
            service.request(
                "POST",
                f"{ent.base}/click-to-dial",
                json={"number": number, "extension": ent.extension["extension"]},
            ),
            202,
        )
        await phone.wait_rung()
        refused = wait_state(service, ent, placed["call_id"], {"refused", "ended", "connected"})
    assert (refused["state"], refused["reason"]) == ("refused", "CALLER_ID_NOT_OWNED"), refused
    assert carrier.trace.invites(number) == [], "a refused call reached the carrier"
    record = await db.fetchrow("SELECT * FROM calls WHERE linkedid = $1", placed["call_id"])
    assert (record["direction"], record["action"], record["reason"]) == (
        "outbound",
        "reject",
        "CALLER_ID_NOT_OWNED",
    )
    assert await db.fetchval("SELECT count(*) FROM reservations WHERE call_id = $1", placed["call_id"]) == 0


def _token(service: ServiceProcess, role: str, tenant_id: int) -> dict[str, str]:
    user = api_ok(
        service.request(
            "POST",
            "/v1/users",
            json={
                "username": f"c2d-{role.replace('_', '-')}-{secrets.token_hex(3)}",
                "role": role,
                "tenant_id": tenant_id,
            },
        ),
        201,
    )
    token = api_ok(service.request("POST", f"/v1/users/{user['id']}/tokens", json={"name": "c2d"}), 201)
    return {"Authorization": f"Bearer {token['token']}"}


async def test_customers_through_the_api_with_the_tenant_roles(service: ServiceProcess) -> None:
    ent = enterprise(service)
    admin, readonly = (
        _token(service, "tenant_admin", ent.tenant_id),
        _token(service, "tenant_readonly", ent.tenant_id),
    )
    made = service.request(
        "POST",
        f"{ent.base}/customers",
        json={"name": "赵六", "phones": ["139 0078 0001", "+86 10 6552 9988"], "tags": ["vip"]},
        headers=admin,
    )
    customer = api_ok(made, 201)
    assert customer["phones"] == ["+8613900780001", "+861065529988"]
    note = api_ok(
        service.request(
            "POST",
            f"{ent.base}/customer-notes",
            json={"customer_id": customer["id"], "body": "回访"},
            headers=admin,
        ),
        201,
    )
    assert note["author"].startswith("c2d-tenant-admin-")
    listed = api_ok(
        service.request(
            "GET", f"{ent.base}/customer-notes", params={"customer_id": customer["id"]}, headers=readonly
        )
    )
    assert [n["body"] for n in listed["items"]] == ["回访"]
    # read-only: reads, but neither changes customers nor places calls
    assert (
        api_ok(service.request("GET", f"{ent.base}/customers/{customer['id']}", headers=readonly))["name"]
        == "赵六"
    )
    refused = service.request("POST", f"{ent.base}/customers", json={"name": "x"}, headers=readonly)
    assert refused.status_code == 403, refused.text
    call = service.request(
        "POST",
        f"{ent.base}/click-to-dial",
        json={"number": customer["phones"][0], "extension": "7000"},
        headers=readonly,
    )
    assert call.status_code == 403, call.text
    bad = service.request(
        "POST", f"{ent.base}/customers", json={"name": "y", "phones": ["12345"]}, headers=admin
    )
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][:2] == ["body", "phones"], bad.text
    # another enterprise's token: not there
    other = enterprise(service)
    hidden = service.request(
        "GET",
        f"{ent.base}/customers/{customer['id']}",
        headers=_token(service, "tenant_admin", other.tenant_id),
    )
    assert hidden.status_code == 404, hidden.text


async def test_a_suspended_enterprise_is_refused(service: ServiceProcess) -> None:
    ent = enterprise(service)
    api_ok(service.request("POST", f"{ent.base}/suspend"))
    resp = service.request(
        "POST",
        f"{ent.base}/click-to-dial",
        json={"number": customer_number(), "extension": ent.extension["extension"]},
    )
    assert resp.status_code == 403, resp.text
    assert resp.json()["detail"][0]["type"] == "TENANT_SUSPENDED"


async def test_a_customer_who_never_answers_costs_nothing_and_is_not_answered(
    db: asyncpg.Connection, service: ServiceProcess, carrier: Carrier, engine: Engine
) -> None:
    # The agent answers and waits 4 s; the customer's phone (a number ending in 99 at the
    # carrier) rings and never answers. The agent's answer is not the call's: nothing is
    # billed, the record says not answered.
    ent = enterprise(service)
    number = customer_number()[:-2] + "99"
    before = api_ok(service.request("GET", f"{ent.base}/account"))
    with agent_phone(ent.extension, ent.password, ring_ms=500, talk_ms=4000, target=engine.phones) as phone:
        placed = api_ok(
            service.request(
                "POST",
                f"{ent.base}/click-to-dial",
                json={"number": number, "extension": ent.extension["extension"]},
            ),
            202,
        )
        call_id = placed["call_id"]
        await phone.wait_rung()
        await carrier.invite_for(placed["dialled"])  # the customer's phone rang
        wait_state(service, ent, call_id, {"ended", "refused", "failed", "agent_no_answer"})
    deadline = asyncio.get_running_loop().time() + 15
    while True:
        row = await db.fetchrow("SELECT * FROM calls WHERE linkedid = $1", call_id)
        reservation = await db.fetchrow("SELECT * FROM reservations WHERE call_id = $1", call_id)
        if (
            row is not None
            and row["ended_at"] is not None
            and reservation is not None
            and reservation["state"] != "open"
        ):
            break
        assert asyncio.get_running_loop().time() < deadline, (
            row and dict(row),
            reservation and dict(reservation),
        )
        await asyncio.sleep(0.02)
    assert row["answered_at"] is None, dict(row)
    assert not row["amount"], dict(row)
    assert reservation["state"] == "released", dict(reservation)
    after = api_ok(service.request("GET", f"{ent.base}/account"))
    assert Decimal(after["balance"]) == Decimal(before["balance"]), (before, after)
    assert after["channels_in_use"] == 0, after
