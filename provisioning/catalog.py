"""Every entity the generic engine serves, declared once: table, models, scope, roles."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

from dialplan.region import RegionPolicy
from dialplan.time_policy import TimePolicy
from ivr.menu import MenuSet
from provisioning import schemas as s
from provisioning.billing_cycle import end_subscription, run_billing_cycle
from provisioning.customers import CUSTOMER_NOTES, CUSTOMERS
from provisioning.engine import Conflict, Ctx, Invalid, PrepareHook, Resource, Values
from provisioning.numbers import TENANT_NUMBERS
from provisioning.pbx import check_pbx
from provisioning.places import PlaceError, canonical_region_definition
from provisioning.prompts import PromptStore
from provisioning.roles import ADMINS, EVERYONE, OPERATORS, TENANT_WRITERS
from provisioning.rules import documents_due, hash_pin, mask_id_number
from provisioning.sip import after_extension_write, after_trunk_write, prepare_extension
from provisioning.users import prepare_user
from rating.fees import renewal_too_short, term_months
from softswitch.core.settings import Settings


async def _number_of_tenant(ctx: Ctx, values: Values, before: Mapping[str, Any] | None) -> Values:
    number_id = values.get("number_id", before["number_id"] if before else None)
    ok = await ctx.conn.fetchval(
        "SELECT 1 FROM numbers WHERE id = $1 AND tenant_id = $2", number_id, ctx.tenant_id
    )
    if not ok:
        raise Invalid(f"number {number_id} does not belong to this tenant", "number_id")
    return values


async def _prepare_pin(ctx: Ctx, values: Values, before: Mapping[str, Any] | None) -> Values:
    if before is None:
        await _number_of_tenant(ctx, values, None)
    pin = values.pop("pin", None)
    if pin is not None:
        values["pin_sha256"] = hash_pin(pin)
    return values


async def _prepare_document(ctx: Ctx, values: Values, before: Mapping[str, Any] | None) -> Values:
    # Approving or rejecting a document is the operator's review, not the tenant's.
    if values.get("status") in ("approved", "rejected") and not ctx.actor.is_operator:
        raise Invalid("only an operator approves or rejects documents", "status")
    if before is None:
        paid_at = await ctx.conn.fetchval("SELECT paid_at FROM tenants WHERE id = $1", ctx.tenant_id)
        values["due_at"] = documents_due(paid_at)
    values["updated_at"] = ctx.clock.now()
    return values


async def _trunk_route_parent(ctx: Ctx, values: Values, before: Mapping[str, Any] | None) -> Values:
    if "trunk_id" in values and not await ctx.conn.fetchval(
        "SELECT 1 FROM trunks WHERE id = $1", values["trunk_id"]
    ):
        raise Invalid(f"trunk {values['trunk_id']} does not exist", "trunk_id")
    return values


def _policy_check(parse: Callable[..., object]) -> PrepareHook:
    """A policy that would not parse is refused on save, never met by a live call."""

    async def check(ctx: Ctx, values: Values, before: Mapping[str, Any] | None) -> Values:
        if values.get("definition") is not None:
            try:
                parse(values["definition"])
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                raise Invalid(f"definition: {exc}", "definition") from None
        return values

    return check


async def _region_policy_check(ctx: Ctx, values: Values, before: Mapping[str, Any] | None) -> Values:
    """A region policy is saved with its rules' provinces and cities as the region step
    matches them ("Shanghai", "上海市" -> "上海"); a name that could never match is refused
    naming its place in the definition (``definition.rules.<i>.province``)."""
    definition = values.get("definition")
    if isinstance(definition, Mapping):
        try:
            values["definition"] = canonical_region_definition(definition)
        except PlaceError as exc:
            raise Invalid(f"definition: {exc}", ".".join(("definition", *map(str, exc.path)))) from None
    return await _policy_check(RegionPolicy.parse)(ctx, values, before)


POOL_NUMBERS = Resource(
    "numbers",
    "numbers",
    s.NumberRead,
    s.NumberCreate,
    None,
    deletable=False,
    tenant_scoped=False,
    read_roles=OPERATORS,
    write_roles=OPERATORS,
    filters=("state", "kind", "tenant_id"),
)
DOCUMENTS = Resource(
    "documents",
    "tenant_documents",
    s.DocumentRead,
    s.DocumentCreate,
    s.DocumentUpdate,
    deletable=False,
    filters=("status", "kind"),
    prepare=_prepare_document,
)
BINDINGS = Resource(
    "bindings",
    "destination_bindings",
    s.BindingRead,
    s.BindingCreate,
    s.BindingUpdate,
    filters=("number_id",),
    masks={"owner_id_number": mask_id_number},
    prepare=_number_of_tenant,
)


async def _prepare_extension(ctx: Ctx, values: Values, before: Mapping[str, Any] | None) -> Values:
    return await prepare_extension(ctx, await check_pbx(ctx, values, before), before)


EXTENSIONS = Resource(
    "extensions",
    "sip_extensions",
    s.ExtensionRead,
    s.ExtensionCreate,
    s.ExtensionUpdate,
    filters=("site", "device_kind", "extension"),
    prepare=_prepare_extension,
    after_write=after_extension_write,
)


async def _renewal_not_shorter(ctx: Ctx, values: Values, before: Mapping[str, Any] | None) -> Values:
    """Seed 000 §2.4: a renewal's period is not shorter than the original's. A renewal is a
    new subscription to a package the tenant subscribed to before (the original is the
    first; open-ended, its period is the package's minimum term), or a later ``ends_on`` of
    a subscription that had one (the extension is measured against its own period)."""
    starts_on, ends_on = values.get("starts_on"), values.get("ends_on")
    if before is None:
        original = await ctx.conn.fetchrow(
            "SELECT s.starts_on, s.ends_on, p.min_term_months FROM subscriptions s "
            "JOIN packages p ON p.id = s.package_id WHERE s.tenant_id = $1 AND s.package_id = $2 "
            "ORDER BY s.starts_on, s.id LIMIT 1",
            ctx.tenant_id,
            values.get("package_id"),
        )
        if original is None or starts_on is None or ends_on is None or ends_on < starts_on:
            return values
        required = (
            term_months(original["starts_on"], original["ends_on"])
            if original["ends_on"] is not None
            else original["min_term_months"]
        )
        renewal = term_months(starts_on, ends_on)
    else:
        old_end = before["ends_on"]
        if "ends_on" not in values or ends_on is None or old_end is None or ends_on <= old_end:
            return values
        required = term_months(before["starts_on"], old_end)
        renewal = term_months(old_end + timedelta(days=1), ends_on)
    if renewal_too_short(required, renewal):
        raise Invalid(
            f"a renewal runs at least as long as the original contract: {required} months, "
            f"this one {renewal} (seed 000 §2.4)",
            "ends_on",
        )
    return values


async def _apply_subscription(
    ctx: Ctx, action: str, before: Mapping[str, Any] | None, after: Mapping[str, Any] | None
) -> None:
    """A subscription takes effect at once: the billing cycle for this tenant charges the
    (prorated) first rent and sets the account's channels, rate and allowance — the same
    code path as the monthly run, so doing it again is a no-op. One ended by an operator
    before its minimum term is over pays the early-termination fee at once (seed 001)."""

    if after is not None and after["state"] == "active":
        report = await run_billing_cycle(ctx.conn, ctx.clock.now(), tenant_ids=[after["tenant_id"]])
        if report.errors:
            raise Invalid(f"the subscription could not be applied: {report.errors}", "package_id")
    if after is not None and after["state"] == "ended" and (before is None or before["state"] != "ended"):
        await end_subscription(ctx.conn, after["tenant_id"], after["id"], ctx.clock.now())


SUBSCRIPTIONS = Resource(
    "subscriptions",
    "subscriptions",
    s.SubscriptionRead,
    s.SubscriptionCreate,
    s.SubscriptionUpdate,
    deletable=False,
    write_roles=OPERATORS,
    filters=("state",),
    prepare=_renewal_not_shorter,
    after_write=_apply_subscription,
)
TIME_POLICIES = Resource(
    "time-policies",
    "time_policies",
    s.PolicyRead,
    s.PolicyCreate,
    s.PolicyUpdate,
    filters=("enabled",),
    prepare=_policy_check(TimePolicy.parse),
)
REGION_POLICIES = Resource(
    "region-policies",
    "region_policies",
    s.PolicyRead,
    s.PolicyCreate,
    s.PolicyUpdate,
    filters=("enabled",),
    prepare=_region_policy_check,
)


async def _validate_menus(ctx: Ctx, values: Values, before: Mapping[str, Any] | None) -> Values:
    """The tenant's whole menu set, with this change, must validate: no dangling targets,
    no loop without an exit, depth within the limit, every prompt present (a tenant's
    own, the platform's, or an Asterisk sound), transfers to known extensions and groups."""

    rows = [
        {"name": r["name"], "definition": r["definition"]}
        for r in await ctx.conn.fetch(
            "SELECT id, name, definition FROM ivr_menus WHERE tenant_id = $1", ctx.tenant_id
        )
        if before is None or r["id"] != before["id"]
    ]
    merged = {**(before or {}), **values}
    rows.append({"name": merged["name"], "definition": merged["definition"]})
    try:
        await _check_menu_set(ctx, rows)
    except ValueError as exc:
        raise Invalid(f"definition: {exc}", "definition") from None
    return values


async def _menus_after_delete(
    ctx: Ctx, action: str, before: Mapping[str, Any] | None, after: Mapping[str, Any] | None
) -> None:
    """A menu another menu still leads to is not deleted: the tenant's remaining set must
    validate as on every save (the call path loads a tenant's menus only as a valid set)."""
    if action != "delete" or before is None:
        return
    rows = [
        {"name": r["name"], "definition": r["definition"]}
        for r in await ctx.conn.fetch(
            "SELECT name, definition FROM ivr_menus WHERE tenant_id = $1", ctx.tenant_id
        )
    ]
    if not rows:
        return
    try:
        await _check_menu_set(ctx, rows)
    except ValueError as exc:
        raise Conflict(f"menu {before['name']!r} cannot be deleted: {exc}", "name") from None


async def _check_menu_set(ctx: Ctx, rows: list[dict[str, Any]]) -> None:
    """Raises ValueError naming what is wrong with this set of the tenant's menus."""
    sounds = _sounds_dir(ctx)
    store = PromptStore(sounds)

    def prompt_exists(name: str) -> bool:
        try:
            if store.exists(f"t{ctx.tenant_id}", name) or store.exists("system", name):
                return True
        except ValueError:
            pass
        return any(
            (sounds / lang / f"{name}{ext}").is_file()
            for lang in ("en", "en_US_f_Allison", "")
            for ext in (".gsm", ".wav", ".ulaw")
        )

    extensions = {
        r["extension"]
        for r in await ctx.conn.fetch(
            "SELECT extension FROM sip_extensions WHERE tenant_id = $1", ctx.tenant_id
        )
    }
    groups = {
        r["group_name"]
        for r in await ctx.conn.fetch(
            "SELECT DISTINCT group_name FROM destination_bindings WHERE tenant_id = $1", ctx.tenant_id
        )
    }
    MenuSet.from_rows(rows, prompt_exists=prompt_exists, known_extensions=extensions, known_groups=groups)


def _sounds_dir(ctx: Ctx) -> Path:
    settings = ctx.settings if isinstance(ctx.settings, Settings) else Settings()
    return settings.asterisk.sounds_dir


IVR_MENUS = Resource(
    "ivr-menus",
    "ivr_menus",
    s.MenuRead,
    s.MenuCreate,
    s.MenuUpdate,
    prepare=_validate_menus,
    after_write=_menus_after_delete,
)
TENANT_BLACKLIST = Resource(
    "blacklist",
    "blacklist_entries",
    s.BlacklistRead,
    s.BlacklistCreate,
    s.BlacklistUpdate,
    filters=("direction", "match_kind"),
)
PINS = Resource(
    "pins",
    "number_pins",
    s.PinRead,
    s.PinCreate,
    s.PinUpdate,
    filters=("number_id",),
    prepare=_prepare_pin,
)
LEDGER = Resource("ledger", "ledger_entries", s.LedgerRead, deletable=False, filters=("kind",))
CALLS = Resource("calls", "calls", s.CallRead, deletable=False, filters=("reason", "action", "direction"))
# Notices the billing cycle (and others) write to the outbox; read-only for the tenant.
NOTICES = Resource("notices", "outbox", s.NoticeRead, deletable=False, filters=("kind",))
TENANT_AUDIT = Resource(
    "audit",
    "audit_log",
    s.AuditRead,
    deletable=False,
    read_roles=TENANT_WRITERS,
    filters=("entity", "action"),
)

PACKAGES = Resource(
    "packages",
    "packages",
    s.PackageRead,
    s.PackageCreate,
    s.PackageUpdate,
    deletable=False,
    tenant_scoped=False,
    read_roles=EVERYONE,
    write_roles=ADMINS,
    filters=("kind", "active", "code"),
)
PLATFORM_BLACKLIST = Resource(
    "blacklist",
    "blacklist_entries",
    s.BlacklistRead,
    s.BlacklistCreate,
    s.BlacklistUpdate,
    tenant_scoped=False,
    platform_rows_only=True,
    read_roles=OPERATORS,
    write_roles=OPERATORS,
    filters=("direction", "match_kind"),
)
TRUNKS = Resource(
    "trunks",
    "trunks",
    s.TrunkRead,
    s.TrunkCreate,
    s.TrunkUpdate,
    tenant_scoped=False,
    read_roles=OPERATORS,
    write_roles=OPERATORS,
    filters=("kind", "enabled"),
    after_write=after_trunk_write,
)
TRUNK_ROUTES = Resource(
    "trunk-routes",
    "trunk_routes",
    s.TrunkRouteRead,
    s.TrunkRouteCreate,
    s.TrunkRouteUpdate,
    tenant_scoped=False,
    read_roles=OPERATORS,
    write_roles=OPERATORS,
    filters=("trunk_id",),
    prepare=_trunk_route_parent,
)
USERS = Resource(
    "users",
    "operator_users",
    s.UserRead,
    s.UserCreate,
    s.UserUpdate,
    tenant_scoped=False,
    read_roles=OPERATORS,
    write_roles=ADMINS,
    filters=("role", "tenant_id"),
    prepare=prepare_user,
)
AUDIT = Resource(
    "audit",
    "audit_log",
    s.AuditRead,
    deletable=False,
    tenant_scoped=False,
    read_roles=OPERATORS,
    filters=("entity", "action", "tenant_id"),
)

# What the API mounts generically, in the order the OpenAPI document lists them.
TENANT_RESOURCES = (
    DOCUMENTS,
    TENANT_NUMBERS,
    BINDINGS,
    EXTENSIONS,
    SUBSCRIPTIONS,
    TIME_POLICIES,
    REGION_POLICIES,
    IVR_MENUS,
    TENANT_BLACKLIST,
    PINS,
    CUSTOMERS,
    CUSTOMER_NOTES,
    LEDGER,
    CALLS,
    NOTICES,
    TENANT_AUDIT,
)
PLATFORM_RESOURCES = (
    POOL_NUMBERS,
    PACKAGES,
    PLATFORM_BLACKLIST,
    TRUNKS,
    TRUNK_ROUTES,
    USERS,
    AUDIT,
)
