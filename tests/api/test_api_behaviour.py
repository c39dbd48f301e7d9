"""What the API promises besides authorization: field-level validation errors, pagination
and filters, optimistic concurrency (ETag / If-Match), idempotent money, exact decimals,
audit entries, masking, and the number life cycle against an injected clock."""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from dialplan.region import RegionPolicy, region_of
from provisioning.rules import NUMBER_COOLDOWN
from softswitch.core.clock import FixedClock
from tests.api.conftest import ID_NUMBER, World, bearer, expect, make_tenant, suffix, unique_number

pytestmark = pytest.mark.asyncio(loop_scope="session")

SEED_LINE_PACKAGES = {"A39", "A59", "A4-269", "A4-439", "A8-569", "A8-869"}


def locs(resp: httpx.Response) -> list[list[Any]]:
    assert resp.status_code == 422, resp.text
    return [d["loc"] for d in resp.json()["detail"]]


async def walk(
    client: httpx.AsyncClient, url: str, headers: dict[str, str], limit: int, **params: Any
) -> list[int]:
    ids: list[int] = []
    after: int | None = None
    for _ in range(1000):
        q = {**params, "limit": limit, **({"after": after} if after is not None else {})}
        page = expect(await client.get(url, headers=headers, params=q), 200)
        assert len(page["items"]) <= limit
        ids += [i["id"] for i in page["items"]]
        after = page["next_after"]
        if after is None:
            return ids
    raise AssertionError("pagination did not end")


# ---------------------------------------------------------------------------- validation
async def test_bad_extension_and_short_password_name_their_fields(
    client: httpx.AsyncClient, world: World
) -> None:
    resp = await client.post(
        f"/v1/tenants/{world.a.id}/extensions",
        headers=world.admin,
        json={"extension": "12a", "password": "short"},
    )
    assert ["body", "extension"] in locs(resp)
    assert ["body", "password"] in locs(resp)


@pytest.mark.parametrize("category", ["finance", "loans", "medicine", "government_impersonation"])
async def test_forbidden_business_category(client: httpx.AsyncClient, world: World, category: str) -> None:
    resp = await client.post(
        "/v1/tenants", headers=world.admin, json={"name": f"bad {suffix()}", "business_category": category}
    )
    assert locs(resp) == [["body", "business_category"]]
    assert category in resp.json()["detail"][0]["msg"]


async def test_after_sales_line_allows_a_restricted_category(client: httpx.AsyncClient, world: World) -> None:
    body = {"name": f"after-sales {suffix()}", "business_category": "finance", "after_sales_line": True}
    expect(await client.post("/v1/tenants", headers=world.admin, json=body), 201)
    body["business_category"] = "government_impersonation"
    assert locs(await client.post("/v1/tenants", headers=world.admin, json=body)) == [
        ["body", "business_category"]
    ]


async def test_bad_timezone(client: httpx.AsyncClient, world: World) -> None:
    resp = await client.post(
        "/v1/tenants", headers=world.admin, json={"name": "tz", "timezone": "Mars/Olympus"}
    )
    assert locs(resp) == [["body", "timezone"]]
    tenant = expect(await client.get(f"/v1/tenants/{world.a.id}", headers=world.admin), 200)
    resp = await client.patch(
        f"/v1/tenants/{world.a.id}",
        headers={**world.admin, "If-Match": f'"{tenant["version"]}"'},
        json={"timezone": "Nowhere/Land"},
    )
    assert locs(resp) == [["body", "timezone"]]


async def test_extra_fields_are_rejected(client: httpx.AsyncClient, world: World) -> None:
    resp = await client.post(
        f"/v1/tenants/{world.a.id}/blacklist", headers=world.admin, json={"pattern": "12345", "tenant_id": 1}
    )
    assert locs(resp) == [["body", "tenant_id"]]
    assert resp.json()["detail"][0]["type"] == "extra_forbidden"


async def test_bad_policy_definition_is_422_not_500(client: httpx.AsyncClient, world: World) -> None:
    for definition in (
        {"weekly": {"mon": ["09:00-18:00"]}},
        {"weekly": [{"days": ["mon"], "start": 9, "end": 1}]},
    ):
        resp = await client.post(
            f"/v1/tenants/{world.a.id}/time-policies",
            headers=world.admin,
            json={"name": f"bad-{suffix()}", "definition": definition},
        )
        assert locs(resp) == [["body", "definition"]]
    resp = await client.post(
        f"/v1/tenants/{world.a.id}/region-policies",
        headers=world.admin,
        json={"name": f"bad-{suffix()}", "definition": {"rules": ["guangdong"]}},
    )
    assert locs(resp) == [["body", "definition"]]


async def test_region_names_in_english_are_saved_as_the_geocoders_and_match(
    client: httpx.AsyncClient, world: World
) -> None:
    """Issue 11, item 6: a rule naming "Shanghai" was accepted and could never match (the
    region step compares the geocoder's Chinese names). English and Chinese names are now
    saved in the form the region step matches on, and the saved rule matches."""
    base = f"/v1/tenants/{world.a.id}/region-policies"
    made = expect(
        await client.post(
            base,
            headers=world.admin,
            json={
                "name": f"en-{suffix()}",
                "definition": {
                    "rules": [
                        {"province": "Shanghai", "action": "deny"},
                        {"province": " guangdong ", "city": "Shenzhen", "group": "south"},
                        {"province": "浙江省", "city": "杭州市", "action": "deny"},
                    ],
                    "default": "allow",
                },
            },
        ),
        201,
    )
    saved = expect(await client.get(f"{base}/{made['id']}", headers=world.admin), 200)["definition"]
    assert [(r["province"], r.get("city")) for r in saved["rules"]] == [
        ("上海", None),
        ("广东", "深圳"),
        ("浙江", "杭州"),
    ]
    policy = RegionPolicy.parse(saved)  # what the snapshot builds from the saved row
    assert policy.decide(region_of("13917001234")).action == "deny"  # a Shanghai mobile
    assert policy.decide(region_of("02161234567")).action == "deny"  # a Shanghai fixed line
    shenzhen = policy.decide(region_of("075512345678"))
    assert (shenzhen.action, shenzhen.group) == ("route", "south")
    assert policy.decide(region_of("057112345678")).action == "deny"  # Hangzhou
    assert policy.decide(region_of("13800138000")).action == "allow"  # Beijing: the default

    # An update is read the same way.
    changed = expect(
        await client.patch(
            f"{base}/{made['id']}",
            headers={**world.admin, "If-Match": f'"{made["version"]}"'},
            json={"definition": {"rules": [{"city": "Beijing", "action": "deny"}]}},
        ),
        200,
    )
    assert changed["definition"]["rules"] == [{"city": "北京", "action": "deny"}]
    assert RegionPolicy.parse(changed["definition"]).decide(region_of("13800138000")).action == "deny"


@pytest.mark.parametrize(
    ("rule", "field"),
    [
        ({"province": "Shanhai", "action": "deny"}, "province"),  # a typo in English
        ({"province": "火星", "action": "deny"}, "province"),  # no province of China
        ({"province": "Guangdong", "city": "Shenzen", "action": "deny"}, "city"),
        # a real city, but not in that province: the rule could never match either
        ({"province": "上海", "city": "深圳", "action": "deny"}, "city"),
    ],
)
async def test_a_region_rule_that_could_never_match_is_422_naming_the_field(
    client: httpx.AsyncClient, world: World, rule: dict[str, str], field: str
) -> None:
    bad = await client.post(
        f"/v1/tenants/{world.a.id}/region-policies",
        headers=world.admin,
        json={
            "name": f"typo-{suffix()}",
            "definition": {"rules": [{"province": "北京", "action": "allow"}, rule]},
        },
    )
    assert locs(bad) == [["body", "definition", "rules", 1, field]]
    assert f"rules[1].{field}" in bad.json()["detail"][0]["msg"]


async def test_policy_definition_round_trips_as_an_object(client: httpx.AsyncClient, world: World) -> None:
    definition = {"weekly": [{"days": ["sat"], "start": "10:00", "end": "12:00"}], "holidays": ["2026-10-01"]}
    made = expect(
        await client.post(
            f"/v1/tenants/{world.a.id}/time-policies",
            headers=world.admin,
            json={"name": f"rt-{suffix()}", "definition": definition},
        ),
        201,
    )
    assert made["definition"] == definition
    got = expect(
        await client.get(f"/v1/tenants/{world.a.id}/time-policies/{made['id']}", headers=world.admin), 200
    )
    assert got["definition"] == definition


# ---------------------------------------------------------------------------- pagination, filters
async def test_pagination_walks_every_row_once(client: httpx.AsyncClient, world: World) -> None:
    url = f"/v1/tenants/{world.a.id}/audit"
    everything = [
        i["id"]
        for i in expect(await client.get(url, headers=world.admin, params={"limit": 500}), 200)["items"]
    ]
    assert len(everything) > 5
    for limit in (1, 2, 3, len(everything)):
        ids = await walk(client, url, world.admin, limit)
        assert ids == everything, limit
    docs = await walk(client, f"/v1/tenants/{world.a.id}/documents", world.admin, 4)
    assert len(docs) == len(set(docs)) >= 6


async def test_filters(client: httpx.AsyncClient, world: World) -> None:
    lines = expect(
        await client.get("/v1/packages", headers=world.admin, params={"kind": "line", "limit": 500}), 200
    )
    assert lines["items"] and {p["kind"] for p in lines["items"]} == {"line"}
    assert SEED_LINE_PACKAGES <= {p["code"] for p in lines["items"]}
    # A tenant's token reads the catalogue too.
    paged = await walk(client, "/v1/packages", bearer(world.a.tokens["tenant_readonly"]), 2, kind="line")
    assert paged == [p["id"] for p in lines["items"]]
    missing = expect(
        await client.get(
            f"/v1/tenants/{world.a.id}/documents", headers=world.admin, params={"status": "missing"}
        ),
        200,
    )["items"]
    assert missing and {d["status"] for d in missing} == {"missing"}
    # Not a declared filter: ignored rather than injected into SQL.
    expect(await client.get("/v1/packages", headers=world.admin, params={"kind; DROP TABLE x": "1"}), 200)


async def test_list_limits_are_validated(client: httpx.AsyncClient, world: World) -> None:
    for params in ({"limit": 0}, {"limit": 501}, {"after": -1}):
        resp = await client.get("/v1/packages", headers=world.admin, params=params)
        assert locs(resp)[0][0] == "query"


# ---------------------------------------------------------------------------- ETag / If-Match
async def test_patch_needs_the_current_version(client: httpx.AsyncClient, world: World) -> None:
    url = f"/v1/tenants/{world.a.id}/ivr-menus/{world.a.items['ivr-menus']}"
    got = await client.get(url, headers=world.admin)
    etag, version = got.headers["ETag"], got.json()["version"]
    assert etag == f'"{version}"'
    body = {
        "definition": {
            "prompt": "vm-intro",
            "timeout_ms": 1000 + int(suffix(), 16) % 5000,
            "default": {"action": "hangup"},
        }
    }
    resp = await client.patch(url, headers=world.admin, json=body)
    assert resp.status_code == 428 and resp.json()["detail"][0]["loc"] == ["header", "If-Match"]
    resp = await client.patch(url, headers={**world.admin, "If-Match": f'"{version + 5}"'}, json=body)
    assert resp.status_code == 412
    assert locs(await client.patch(url, headers={**world.admin, "If-Match": "banana"}, json=body)) == [
        ["header", "If-Match"]
    ]
    resp = await client.patch(url, headers={**world.admin, "If-Match": etag}, json=body)
    out = expect(resp, 200)
    assert out["version"] == version + 1 and out["definition"] == body["definition"]
    assert resp.headers["ETag"] == f'"{version + 1}"'
    # The ETag just read is now stale.
    assert (await client.patch(url, headers={**world.admin, "If-Match": etag}, json=body)).status_code == 412


async def test_tenant_patch_needs_the_current_version(client: httpx.AsyncClient, world: World) -> None:
    url = f"/v1/tenants/{world.a.id}"
    got = await client.get(url, headers=world.admin)
    version = got.json()["version"]
    body = {"emergency_contact_name": f"n{suffix()}"}
    headers = bearer(world.a.tokens["tenant_admin"])
    assert (await client.patch(url, headers=headers, json=body)).status_code == 428
    assert (
        await client.patch(url, headers={**headers, "If-Match": f'"{version + 1}"'}, json=body)
    ).status_code == 412
    resp = await client.patch(url, headers={**headers, "If-Match": got.headers["ETag"]}, json=body)
    assert expect(resp, 200)["version"] == version + 1
    # Legal identity is the operator's to change.
    resp = await client.patch(url, headers={**headers, "If-Match": resp.headers["ETag"]}, json={"name": "x"})
    expect(resp, 403)


async def test_delete_needs_the_current_version(client: httpx.AsyncClient, world: World) -> None:
    base = f"/v1/tenants/{world.a.id}/blacklist"
    row = expect(await client.post(base, headers=world.admin, json={"pattern": unique_number("1", 11)}), 201)
    url = f"{base}/{row['id']}"
    assert (await client.delete(url, headers=world.admin)).status_code == 428
    assert (await client.delete(url, headers={**world.admin, "If-Match": '"99"'})).status_code == 412
    expect(await client.get(url, headers=world.admin), 200)
    patched = await client.patch(
        url, headers={**world.admin, "If-Match": f'"{row["version"]}"'}, json={"note": "x"}
    )
    assert (
        await client.delete(url, headers={**world.admin, "If-Match": f'"{row["version"]}"'})
    ).status_code == 412
    resp = await client.delete(url, headers={**world.admin, "If-Match": patched.headers["ETag"]})
    assert resp.status_code == 204 and resp.content == b""
    expect(await client.get(url, headers=world.admin), 404)
    assert (
        await client.delete(url, headers={**world.admin, "If-Match": patched.headers["ETag"]})
    ).status_code == 404


# ---------------------------------------------------------------------------- money
async def fresh_tenant(client: httpx.AsyncClient, world: World) -> int:
    return (await make_tenant(client, world.admin, f"api-money {suffix()}"))["id"]


async def recharge(
    client: httpx.AsyncClient, world: World, tid: int, key: str | None, amount: str
) -> httpx.Response:
    headers = dict(world.admin)
    if key is not None:
        headers["Idempotency-Key"] = key
    return await client.post(f"/v1/tenants/{tid}/recharges", headers=headers, json={"amount": amount})


async def balance(client: httpx.AsyncClient, world: World, tid: int) -> str:
    return expect(await client.get(f"/v1/tenants/{tid}/account", headers=world.admin), 200)["balance"]


async def test_money_is_exact_decimal_strings(client: httpx.AsyncClient, world: World) -> None:
    tid = await fresh_tenant(client, world)
    assert await balance(client, world, tid) == "0.0000"
    first = expect(await recharge(client, world, tid, f"k-{uuid.uuid4()}", "100.10"), 201)
    second = expect(await recharge(client, world, tid, f"k-{uuid.uuid4()}", "0.20"), 201)
    assert isinstance(first["amount"], str) and first["amount"] == "100.1000"
    assert second["balance_after"] == "100.3000"
    assert await balance(client, world, tid) == "100.3000"
    # More than two decimals, zero and negatives are refused, naming the field.
    for amount in ("0.001", "0", "-5"):
        assert locs(await recharge(client, world, tid, f"k-{uuid.uuid4()}", amount)) == [["body", "amount"]]
    assert await balance(client, world, tid) == "100.3000"


async def test_recharge_is_idempotent(client: httpx.AsyncClient, world: World, pool: asyncpg.Pool) -> None:
    tid = await fresh_tenant(client, world)
    key = f"idem-{uuid.uuid4()}"
    first = expect(await recharge(client, world, tid, key, "25.50"), 201)
    again = expect(await recharge(client, world, tid, key, "25.50"), 200)
    assert again == first
    assert await balance(client, world, tid) == "25.5000"
    conflict = await recharge(client, world, tid, key, "25.51")
    assert conflict.status_code == 409 and conflict.json()["detail"][0]["loc"] == [
        "header",
        "Idempotency-Key",
    ]
    missing = await recharge(client, world, tid, None, "1.00")
    assert missing.status_code == 422 and ["header", "idempotency-key"] in locs(missing)
    assert locs(await recharge(client, world, tid, "short", "1.00")) == [["header", "idempotency-key"]]
    ledger = expect(await client.get(f"/v1/tenants/{tid}/ledger", headers=world.admin), 200)["items"]
    assert [e["id"] for e in ledger] == [first["id"]]
    # The same key on another tenant is another recharge.
    other = await fresh_tenant(client, world)
    expect(await recharge(client, world, other, key, "25.50"), 201)
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT count(*) FROM ledger_entries WHERE idempotency_key = $1", key) == 2


async def test_concurrent_identical_recharges_credit_once(client: httpx.AsyncClient, world: World) -> None:
    tid = await fresh_tenant(client, world)
    key = f"race-{uuid.uuid4()}"
    responses = await asyncio.gather(*(recharge(client, world, tid, key, "7.77") for _ in range(10)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 9 + [201], [r.text for r in responses]
    assert len({r.json()["id"] for r in responses}) == 1
    assert await balance(client, world, tid) == "7.7700"
    ledger = expect(await client.get(f"/v1/tenants/{tid}/ledger", headers=world.admin), 200)["items"]
    assert len(ledger) == 1


# ---------------------------------------------------------------------------- audit and masking
async def audit_of(
    client: httpx.AsyncClient, world: World, tid: int, entity: str, entity_id: int
) -> list[dict]:
    out = expect(
        await client.get(
            f"/v1/tenants/{tid}/audit", headers=world.admin, params={"entity": entity, "limit": 500}
        ),
        200,
    )["items"]
    return [r for r in out if r["entity_id"] == str(entity_id)]


async def test_audit_for_create_update_delete_with_masked_id_numbers(
    client: httpx.AsyncClient, world: World, pool: asyncpg.Pool
) -> None:
    tw = world.a
    base = f"/v1/tenants/{tw.id}/bindings"
    made = expect(
        await client.post(
            base,
            headers=world.admin,
            json={
                "number_id": tw.items["numbers"],
                "destination": unique_number("137", 11),
                "owner_name": "Zhao Liu",
                "owner_id_number": ID_NUMBER,
            },
        ),
        201,
    )
    assert made["owner_id_number"] == "3101**********1234"
    url = f"{base}/{made['id']}"
    assert expect(await client.get(url, headers=bearer(tw.tokens["tenant_readonly"])), 200)[
        "owner_id_number"
    ] == ("3101**********1234")
    listed = expect(await client.get(base, headers=world.admin, params={"limit": 500}), 200)["items"]
    assert all(ID_NUMBER not in str(b) for b in listed)
    updated = expect(
        await client.patch(
            url,
            headers={**bearer(tw.tokens["tenant_admin"]), "If-Match": f'"{made["version"]}"'},
            json={"ring_timeout_s": 45, "owner_id_number": "440101198001019999"},
        ),
        200,
    )
    assert updated["owner_id_number"] == "4401**********9999"
    expect(await client.delete(url, headers={**world.admin, "If-Match": f'"{updated["version"]}"'}), 204)

    entries = await audit_of(client, world, tw.id, "bindings", made["id"])
    by_action = {e["action"]: e for e in entries}
    assert set(by_action) == {"create", "update", "delete"}
    admin_name = expect(await client.get("/v1/whoami", headers=world.admin), 200)["name"]
    tenant_admin_name = expect(
        await client.get("/v1/whoami", headers=bearer(tw.tokens["tenant_admin"])), 200
    )["name"]
    create, update, delete = by_action["create"], by_action["update"], by_action["delete"]
    assert create["actor"] == admin_name and create["before"] is None and create["after"]["id"] == made["id"]
    assert update["actor"] == tenant_admin_name
    assert update["before"]["ring_timeout_s"] == 30 and update["after"]["ring_timeout_s"] == 45
    assert update["after"]["version"] == update["before"]["version"] + 1
    assert delete["after"] is None and delete["before"]["ring_timeout_s"] == 45
    assert all(e["tenant_id"] == tw.id for e in entries)
    for e in entries:
        assert ID_NUMBER not in str(e) and "440101198001019999" not in str(e)
    # And in the database itself, not only in what the API shows.
    async with pool.acquire() as conn:
        raw = await conn.fetch(
            "SELECT before::text AS b, after::text AS a, jsonb_typeof(coalesce(after, before)) AS t "
            "FROM audit_log WHERE entity = 'bindings' AND entity_id = $1",
            str(made["id"]),
        )
    assert len(raw) == 3
    for r in raw:
        assert r["t"] == "object"
        assert ID_NUMBER not in f"{r['b']}{r['a']}" and "440101198001019999" not in f"{r['b']}{r['a']}"


async def test_tenant_legal_person_id_is_masked_everywhere(
    client: httpx.AsyncClient, world: World, pool: asyncpg.Pool
) -> None:
    tenant = expect(await client.get(f"/v1/tenants/{world.a.id}", headers=world.admin), 200)
    assert tenant["legal_person_id_number"] == "3101**********1234"
    audit = expect(
        await client.get(
            "/v1/audit",
            headers=world.admin,
            params={"entity": "tenants", "tenant_id": world.a.id, "limit": 500},
        ),
        200,
    )["items"]
    created = [a for a in audit if a["action"] == "create"]
    assert created and created[0]["after"]["legal_person_id_number"] == "3101**********1234"
    assert ID_NUMBER not in str(audit)
    async with pool.acquire() as conn:
        texts = await conn.fetch(
            "SELECT coalesce(before::text, '') || coalesce(after::text, '') AS t "
            "FROM audit_log WHERE tenant_id = $1",
            world.a.id,
        )
    assert texts and not [t for t in texts if ID_NUMBER in t["t"]]


# ---------------------------------------------------------------------------- number life cycle
async def test_number_life_cycle_and_cooldown(
    client: httpx.AsyncClient, world: World, clock: FixedClock
) -> None:
    tid = (await make_tenant(client, world.admin, f"api-life {suffix()}"))["id"]
    base = f"/v1/tenants/{tid}"
    number = unique_number()
    num = expect(
        await client.post(
            f"{base}/numbers", headers=world.admin, json={"number": number, "kind": "unified_400"}
        ),
        201,
    )
    assert num["state"] == "reserved" and num["tenant_id"] == tid
    act = f"{base}/numbers/{num['id']}"
    assert expect(await client.post(f"{act}/submit", headers=world.admin), 200)["state"] == "pending_approval"
    refused = await client.post(f"{act}/approve", headers=world.admin)
    assert locs(refused) == [["body", "documents"]]
    msg = refused.json()["detail"][0]["msg"]
    assert "business_licence" in msg and "signed_contract" in msg
    # Resume a pending number: not a transition.
    assert (await client.post(f"{act}/resume", headers=world.admin)).status_code == 409

    docs = expect(await client.get(f"{base}/documents", headers=world.admin), 200)["items"]
    assert len(docs) == 6
    for doc in docs[:-1]:
        expect(
            await client.patch(
                f"{base}/documents/{doc['id']}",
                headers={**world.admin, "If-Match": f'"{doc["version"]}"'},
                json={"status": "approved"},
            ),
            200,
        )
    still = await client.post(f"{act}/approve", headers=world.admin)
    assert locs(still) == [["body", "documents"]] and docs[-1]["kind"] in still.json()["detail"][0]["msg"]
    last = docs[-1]
    expect(
        await client.patch(
            f"{base}/documents/{last['id']}",
            headers={**world.admin, "If-Match": f'"{last["version"]}"'},
            json={"status": "approved"},
        ),
        200,
    )
    approved = expect(await client.post(f"{act}/approve", headers=world.admin), 200)
    assert approved["state"] == "active" and approved["approved_at"] is not None

    released = expect(await client.post(f"{act}/release", headers=world.admin), 200)
    assert released["state"] == "released" and released["tenant_id"] is None
    available_after = datetime.fromisoformat(released["available_after"])
    assert available_after == clock.now() + NUMBER_COOLDOWN
    # Gone from the tenant's view.
    expect(await client.get(f"{base}/numbers/{num['id']}", headers=world.admin), 404)

    other = f"/v1/tenants/{world.b.id}/numbers"
    body = {"number": number, "kind": "unified_400"}
    saved = clock.at
    try:
        refused = await client.post(other, headers=world.admin, json=body)
        assert refused.status_code == 409 and refused.json()["detail"][0]["loc"] == ["body", "number"]
        clock.at = available_after - timedelta(seconds=1)
        assert (await client.post(other, headers=world.admin, json=body)).status_code == 409
        clock.at = available_after
        again = expect(await client.post(other, headers=world.admin, json=body), 201)
        assert again["id"] == num["id"] and again["tenant_id"] == world.b.id and again["state"] == "reserved"
        assert again["available_after"] is None and again["released_at"] is None
    finally:
        clock.at = saved
    # Assigned now: taking it again is a conflict for anyone.
    assert (await client.post(f"{base}/numbers", headers=world.admin, json=body)).status_code == 409


async def test_tenant_cannot_approve_its_own_documents_or_numbers(
    client: httpx.AsyncClient, world: World
) -> None:
    tw = world.a
    headers = bearer(tw.tokens["tenant_admin"])
    doc = expect(
        await client.get(f"/v1/tenants/{tw.id}/documents/{tw.items['documents']}", headers=headers), 200
    )
    resp = await client.patch(
        f"/v1/tenants/{tw.id}/documents/{doc['id']}",
        headers={**headers, "If-Match": f'"{doc["version"]}"'},
        json={"status": "approved"},
    )
    assert locs(resp) == [["body", "status"]]
    expect(
        await client.post(f"/v1/tenants/{tw.id}/numbers/{tw.items['numbers']}/approve", headers=headers), 403
    )


async def test_a_menu_another_menu_leads_to_is_not_deleted(client: httpx.AsyncClient, world: World) -> None:
    base = f"/v1/tenants/{world.a.id}/ivr-menus"
    tag = suffix()
    leaf = expect(
        await client.post(
            base,
            headers=world.admin,
            json={
                "name": f"leaf-{tag}",
                "definition": {"prompt": "vm-intro", "default": {"action": "hangup"}},
            },
        ),
        201,
    )
    root = expect(
        await client.post(
            base,
            headers=world.admin,
            json={
                "name": f"root-{tag}",
                "definition": {
                    "prompt": "vm-intro",
                    "options": {"1": {"action": "menu", "target": f"leaf-{tag}"}},
                    "default": {"action": "hangup"},
                },
            },
        ),
        201,
    )
    resp = await client.delete(
        f"{base}/{leaf['id']}", headers={**world.admin, "If-Match": f'"{leaf["version"]}"'}
    )
    assert resp.status_code == 409, resp.text
    assert f"leaf-{tag}" in resp.json()["detail"][0]["msg"]
    expect(await client.get(f"{base}/{leaf['id']}", headers=world.admin), 200)  # still there
    # Once nothing leads to it, it goes.
    for menu in (root, leaf):
        resp = await client.delete(
            f"{base}/{menu['id']}", headers={**world.admin, "If-Match": f'"{menu["version"]}"'}
        )
        assert resp.status_code == 204, resp.text
