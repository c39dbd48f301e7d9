"""Operator CLI commands over the provisioning service layer.

Every command acts as the operator principal `cli:<os user>` (platform admin) through the
same service functions as the REST API, so each change is checked and audited the same way.
Output is an aligned table by default and the models' JSON with --json."""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import re
import secrets
import unicodedata
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, NoReturn, TypeVar

import asyncpg
import typer
from pydantic import BaseModel, ValidationError

from dialplan.time_policy import DEFAULT_TIMEZONE
from provisioning import catalog, engine, money, numbers, tenants, users
from provisioning.engine import Ctx, ProvisioningError, Resource
from provisioning.roles import Principal, Role
from provisioning.schemas import (
    BindingCreate,
    DocumentRead,
    DocumentUpdate,
    ExtensionCreate,
    NumberCreate,
    RechargeCreate,
    TenantCreate,
    TokenCreate,
)
from softswitch.core.clock import clock_from_setting
from softswitch.core.db import connect
from softswitch.core.settings import load_settings

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

Json = Annotated[bool, typer.Option("--json", help="Print JSON (for scripts) instead of a table.")]
TenantId = Annotated[int, typer.Argument(min=1, help="The tenant's id.")]
NumberId = Annotated[int, typer.Argument(min=1, help="The number's id (see `number list`).")]


# ---------------------------------------------------------------------------- plumbing
def _fail(message: str, field: str | None = None, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}" + (f" ({field})" if field else ""), err=True)
    raise typer.Exit(code)


def _model(cls: type[M], **values: Any) -> M:
    """Build a request model from the options; invalid input is a usage error (exit 2)."""
    try:
        return cls(**values)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or None
        _fail(str(err["msg"]), field, code=2)


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container user without a passwd entry
        return f"uid{os.getuid()}"


def run(work: Callable[[Ctx], Awaitable[T]], tenant_id: int | None = None) -> T:
    """Open a connection, build the operator's Ctx (scoped to tenant_id) and run `work`.
    A ProvisioningError becomes `error: <message> (<field>)` and exit code 1."""

    settings = load_settings()
    actor = Principal(user_id=None, name=f"cli:{_os_user()}", role=Role.PLATFORM_ADMIN)

    async def _main() -> T:
        try:
            conn = await connect(settings)
        except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
            db = settings.database
            raise ProvisioningError(f"cannot reach the database at {db.host}:{db.port}: {exc}") from exc
        try:
            ctx = Ctx(conn, actor, clock_from_setting(settings.fixed_now), tenant_id, settings)
            return await work(ctx)
        finally:
            await conn.close()

    try:
        return asyncio.run(_main())
    except ProvisioningError as exc:
        _fail(exc.message, exc.field)


async def _all_rows(ctx: Ctx, res: Resource, filters: Mapping[str, str] | None = None) -> list[BaseModel]:
    """Every row of a tenant-scoped resource, page by page."""
    out: list[BaseModel] = []
    after: int | None = None
    while True:
        items, after = await engine.list_rows(ctx, res, filters or {}, 500, after)
        out.extend(items)
        if after is None:
            return out


# ---------------------------------------------------------------------------- output
def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ",".join(_cell(v) for v in value) or "-"
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _width(text: str) -> int:
    """Terminal columns: CJK characters (tenant names) take two."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _pad(text: str, width: int) -> str:
    return text + " " * (width - _width(text))


def show(data: BaseModel | Sequence[BaseModel], as_json: bool, columns: Sequence[str] = ()) -> None:
    """A list as an aligned table (the given columns), one record as field/value lines;
    with --json the models' JSON."""
    if isinstance(data, BaseModel):
        record = data.model_dump(mode="json")
        if as_json:
            typer.echo(json.dumps(record, ensure_ascii=False, indent=2))
            return
        rows = [[key, _cell(value)] for key, value in record.items()]
        header: list[str] | None = None
    else:
        records = [m.model_dump(mode="json") for m in data]
        if as_json:
            typer.echo(json.dumps(records, ensure_ascii=False, indent=2))
            return
        if not records:
            typer.echo("(none)")
            return
        cols = list(columns) or list(records[0])
        rows = [[_cell(r.get(c)) for c in cols] for r in records]
        header = [c.upper() for c in cols]
    table = ([header] if header else []) + rows
    widths = [max(_width(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        typer.echo("  ".join(_pad(cell, w) for cell, w in zip(row, widths, strict=True)).rstrip())


# ---------------------------------------------------------------------------- tenants
tenant_app = typer.Typer(no_args_is_help=True, help="Enterprises: onboarding and state.")
TENANT_COLUMNS = ("id", "name", "state", "business_category", "after_sales_line", "timezone", "created_at")


@tenant_app.command("create")
def tenant_create(
    name: str,
    category: Annotated[str, typer.Option(help="Business category, e.g. general, tea, finance.")] = "general",
    after_sales: Annotated[bool, typer.Option("--after-sales", help="Only an after-sales line.")] = False,
    entity_kind: Annotated[str, typer.Option(help="company or sole_trader.")] = "company",
    timezone: Annotated[str, typer.Option(help="IANA time zone.")] = DEFAULT_TIMEZONE,
    credit_code: Annotated[str | None, typer.Option(help="Unified social credit code (18).")] = None,
    legal_person: Annotated[str, typer.Option(help="Legal person's name.")] = "",
    id_number: Annotated[str, typer.Option(help="Legal person's ID number (shown masked).")] = "",
    paid_at: Annotated[str | None, typer.Option(help="Paid at (ISO 8601, with offset).")] = None,
    as_json: Json = False,
) -> None:
    """Create a tenant; its onboarding documents are due 7 days after --paid-at."""
    paid = None
    if paid_at is not None:
        try:
            paid = datetime.fromisoformat(paid_at)
        except ValueError:
            _fail(f"not an ISO 8601 time: {paid_at!r}", "paid_at", code=2)
        if paid.tzinfo is None:
            _fail("give --paid-at with its UTC offset, e.g. 2024-05-01T10:00+08:00", "paid_at", code=2)
    data = _model(
        TenantCreate,
        name=name,
        business_category=category,
        after_sales_line=after_sales,
        entity_kind=entity_kind,
        timezone=timezone,
        credit_code=credit_code,
        legal_person_name=legal_person,
        legal_person_id_number=id_number,
        paid_at=paid,
    )
    show(run(lambda ctx: tenants.create_tenant(ctx, data)), as_json)


@tenant_app.command("list")
def tenant_list(
    state: Annotated[str | None, typer.Option(help="active, suspended or terminated.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 100,
    after: Annotated[int | None, typer.Option(min=0, help="Show tenants after this id.")] = None,
    as_json: Json = False,
) -> None:
    """List tenants (ordered by id)."""
    items, nxt = run(lambda ctx: tenants.list_tenants(ctx, limit, after, state))
    show(items, as_json, TENANT_COLUMNS)
    if nxt is not None and not as_json:
        typer.echo(f"(more: --after {nxt})", err=True)


@tenant_app.command("show")
def tenant_show(tenant_id: TenantId, as_json: Json = False) -> None:
    """Show one tenant."""
    show(run(lambda ctx: tenants.get_tenant(ctx, tenant_id)), as_json)


@tenant_app.command("suspend")
def tenant_suspend(tenant_id: TenantId, as_json: Json = False) -> None:
    """Suspend a tenant: its SIP accounts leave Asterisk until it is resumed."""
    show(run(lambda ctx: tenants.change_tenant_state(ctx, tenant_id, "suspend")), as_json)


@tenant_app.command("resume")
def tenant_resume(tenant_id: TenantId, as_json: Json = False) -> None:
    """Resume a suspended tenant."""
    show(run(lambda ctx: tenants.change_tenant_state(ctx, tenant_id, "resume")), as_json)


# ---------------------------------------------------------------------------- numbers
number_app = typer.Typer(no_args_is_help=True, help="Numbers: assign and their life cycle.")
NUMBER_COLUMNS = ("id", "number", "kind", "state", "approved_at", "created_at")


@number_app.command("assign")
def number_assign(
    tenant_id: TenantId,
    number: str,
    kind: Annotated[str, typer.Option(help="unified_400, unified_95, did or caller_id.")] = "unified_400",
    as_json: Json = False,
) -> None:
    """Assign a number to the tenant (from the pool, or new); it starts reserved."""
    data = _model(NumberCreate, number=number, kind=kind)
    show(run(lambda ctx: numbers.assign_number(ctx, data), tenant_id), as_json)


def _number_action(action: str, doc: str) -> None:
    def command(tenant_id: TenantId, number_id: NumberId, as_json: Json = False) -> None:
        show(run(lambda ctx: numbers.number_action(ctx, number_id, action), tenant_id), as_json)

    command.__doc__ = doc
    number_app.command(action)(command)


_number_action("submit", "Submit a reserved number for approval.")
_number_action("approve", "Approve a pending number (needs every onboarding document approved).")
_number_action("suspend", "Suspend an active number.")
_number_action("resume", "Resume a suspended number.")
_number_action("release", "Release a number to the pool (after a 90-day cool-down); drops its bindings.")


@number_app.command("list")
def number_list(
    tenant_id: TenantId,
    state: Annotated[str | None, typer.Option(help="Only numbers in this state.")] = None,
    as_json: Json = False,
) -> None:
    """List the tenant's numbers."""
    filters = {"state": state} if state else {}
    show(run(lambda ctx: _all_rows(ctx, numbers.TENANT_NUMBERS, filters), tenant_id), as_json, NUMBER_COLUMNS)


# ---------------------------------------------------------------------------- documents
document_app = typer.Typer(no_args_is_help=True, help="Onboarding documents and their review.")
DOCUMENT_COLUMNS = ("id", "kind", "status", "due_at", "reference", "note", "updated_at")


@document_app.command("list")
def document_list(tenant_id: TenantId, as_json: Json = False) -> None:
    """List the tenant's onboarding documents."""
    show(run(lambda ctx: _all_rows(ctx, catalog.DOCUMENTS), tenant_id), as_json, DOCUMENT_COLUMNS)


@document_app.command("approve")
def document_approve(
    tenant_id: TenantId,
    doc_id: Annotated[int | None, typer.Argument(min=1, help="The document's id.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Approve every document not approved yet.")] = False,
    as_json: Json = False,
) -> None:
    """Approve one document (or --all), at the version just read (If-Match)."""
    if (doc_id is None) == (not all_):
        _fail("give a DOC_ID or --all (not both)", code=2)

    async def approve(ctx: Ctx) -> list[BaseModel]:
        if doc_id is not None:
            docs = [await engine.get_row(ctx, catalog.DOCUMENTS, doc_id)]
        else:
            docs = await _all_rows(ctx, catalog.DOCUMENTS)
        approved = []
        for doc in docs:
            assert isinstance(doc, DocumentRead)
            if doc_id is None and doc.status == "approved":
                continue
            change = DocumentUpdate(status="approved")
            approved.append(await engine.update_row(ctx, catalog.DOCUMENTS, doc.id, change, doc.version))
        return approved

    show(run(approve, tenant_id), as_json, DOCUMENT_COLUMNS)


# ---------------------------------------------------------------------------- extensions
extension_app = typer.Typer(no_args_is_help=True, help="SIP extensions (written to Asterisk's realtime).")
EXTENSION_COLUMNS = ("id", "extension", "display_name", "site", "device_kind", "fax_allowed", "endpoint_id")


@extension_app.command("add")
def extension_add(
    tenant_id: TenantId,
    ext: Annotated[str, typer.Argument(help="The extension number, 2-6 digits.")],
    password: Annotated[
        str | None, typer.Option(help="SIP password (10+ printable chars); generated if omitted.")
    ] = None,
    name: Annotated[str, typer.Option(help="Display name.")] = "",
    site: Annotated[str, typer.Option(help="Site (branch) of the extension.")] = "main",
    gateway: Annotated[bool, typer.Option("--gateway", help="A gateway (several registrations).")] = False,
    fax: Annotated[bool, typer.Option("--fax", help="Allow T.38 fax.")] = False,
    as_json: Json = False,
) -> None:
    """Add an extension; a generated password is printed once, here, and never again."""
    generated = secrets.token_urlsafe(18) if password is None else None
    data = _model(
        ExtensionCreate,
        extension=ext,
        password=password or generated,
        display_name=name,
        site=site,
        device_kind="gateway" if gateway else "phone",
        fax_allowed=fax,
    )
    out = run(lambda ctx: engine.create_row(ctx, catalog.EXTENSIONS, data), tenant_id)
    if as_json:
        record = out.model_dump(mode="json") | ({"password": generated} if generated else {})
        typer.echo(json.dumps(record, ensure_ascii=False, indent=2))
        return
    show(out, as_json)
    if generated:
        typer.echo(f"password      {generated}   (generated; shown only now)")


@extension_app.command("pbx-add")
def extension_pbx_add(
    tenant_id: TenantId,
    ext: Annotated[str, typer.Argument(help="The PBX trunk's account number, 2-6 digits.")],
    extensions: Annotated[
        str, typer.Option("--range", help="The extensions behind the PBX, FIRST-LAST (e.g. 8100-8115).")
    ],
    channels: Annotated[int, typer.Option(help="Its channels (from the tenant's trunk modules).")] = 1,
    password: Annotated[
        str | None, typer.Option(help="SIP password (10+ printable chars); generated if omitted.")
    ] = None,
    site: Annotated[str, typer.Option(help="Site (branch) the PBX serves.")] = "main",
    as_json: Json = False,
) -> None:
    """Attach a customer's PBX as a trunk (it registers as EXT's endpoint): it owns the range's
    extensions and the numbers bound to it (binding kind pbx); a generated password is printed once."""
    first, _, last = extensions.partition("-")
    generated = secrets.token_urlsafe(18) if password is None else None
    data = _model(
        ExtensionCreate,
        extension=ext,
        password=password or generated,
        site=site,
        device_kind="pbx",
        range_first=first,
        range_last=last or first,
        channels=channels,
    )
    out = run(lambda ctx: engine.create_row(ctx, catalog.EXTENSIONS, data), tenant_id)
    if as_json:
        record = out.model_dump(mode="json") | ({"password": generated} if generated else {})
        typer.echo(json.dumps(record, ensure_ascii=False, indent=2))
        return
    show(out, as_json)
    if generated:
        typer.echo(f"password      {generated}   (generated; shown only now)")


@extension_app.command("list")
def extension_list(tenant_id: TenantId, as_json: Json = False) -> None:
    """List the tenant's extensions."""
    show(run(lambda ctx: _all_rows(ctx, catalog.EXTENSIONS), tenant_id), as_json, EXTENSION_COLUMNS)


# ---------------------------------------------------------------------------- bindings
binding_app = typer.Typer(no_args_is_help=True, help="Destinations bound to numbers.")
BINDING_COLUMNS = ("id", "number_id", "position", "destination", "kind", "ring_timeout_s", "owner_name")


def bind(
    tenant_id: TenantId,
    number_id: NumberId,
    destination: Annotated[str, typer.Argument(help="Where calls ring: a mobile, fixed line or extension.")],
    owner_name: Annotated[str, typer.Option(help="Real name of the destination's owner.")],
    owner_id: Annotated[str, typer.Option(help="Owner's ID number (shown masked).")],
    position: Annotated[int, typer.Option(help="Order in the hunt (0 rings first).")] = 0,
    ring_timeout: Annotated[int, typer.Option(help="Seconds to ring before the next.")] = 30,
    kind: Annotated[str, typer.Option(help="mobile, fixed or extension.")] = "mobile",
    as_json: Json = False,
) -> None:
    """Bind a destination to one of the tenant's numbers."""
    data = _model(
        BindingCreate,
        number_id=number_id,
        destination=destination,
        kind=kind,
        position=position,
        ring_timeout_s=ring_timeout,
        owner_name=owner_name,
        owner_id_number=owner_id,
    )
    show(run(lambda ctx: engine.create_row(ctx, catalog.BINDINGS, data), tenant_id), as_json)


@binding_app.command("list")
def binding_list(
    tenant_id: TenantId,
    number_id: Annotated[int | None, typer.Option(min=1, help="Only this number's bindings.")] = None,
    as_json: Json = False,
) -> None:
    """List the tenant's destination bindings."""
    filters = {"number_id": str(number_id)} if number_id else {}
    show(run(lambda ctx: _all_rows(ctx, catalog.BINDINGS, filters), tenant_id), as_json, BINDING_COLUMNS)


# ---------------------------------------------------------------------------- money and calls
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{8,200}$")  # as the API's Idempotency-Key header


def recharge(
    tenant_id: TenantId,
    amount: Annotated[str, typer.Argument(help="Amount in yuan, e.g. 100.10 (at most 2 decimals).")],
    reference: Annotated[str, typer.Option(help="Receipt or transfer reference.")] = "",
    idempotency_key: Annotated[
        str | None, typer.Option(help="Retry with the same key to credit only once (default: a new key).")
    ] = None,
    as_json: Json = False,
) -> None:
    """Credit the tenant's prepaid account (one ledger entry per idempotency key)."""
    try:
        value = Decimal(amount)
    except InvalidOperation:
        _fail(f"not an amount: {amount!r}", "amount", code=2)
    key = idempotency_key or str(uuid.uuid4())
    if not _IDEMPOTENCY_KEY.match(key):
        _fail("8 to 200 printable characters without spaces", "idempotency_key", code=2)
    data = _model(RechargeCreate, amount=value, reference=reference)
    entry, created = run(lambda ctx: money.recharge(ctx, data, key), tenant_id)
    show(entry, as_json)
    if not created:
        typer.echo(f"(already recorded under idempotency key {key}; not credited again)", err=True)


def balance(tenant_id: TenantId, as_json: Json = False) -> None:
    """Show the tenant's prepaid account."""
    show(run(money.get_account, tenant_id), as_json)


CALL_COLUMNS = ("id", "decided_at", "caller", "called", "action", "reason", "destinations", "hangup_cause")


def calls(
    tenant_id: TenantId,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 20,
    reason: Annotated[str | None, typer.Option(help="Only calls decided for this reason.")] = None,
    after: Annotated[int | None, typer.Option(min=0, help="Show calls after this id.")] = None,
    as_json: Json = False,
) -> None:
    """List the tenant's calls (ordered by id, oldest first; page on with --after)."""
    filters = {"reason": reason} if reason else {}
    items, nxt = run(lambda ctx: engine.list_rows(ctx, catalog.CALLS, filters, limit, after), tenant_id)
    show(items, as_json, CALL_COLUMNS)
    if nxt is not None and not as_json:
        typer.echo(f"(more: --after {nxt})", err=True)


# ---------------------------------------------------------------------------- users
users_app = typer.Typer(no_args_is_help=True, help="Operator users and their API tokens.")


@users_app.command("bootstrap")
def users_bootstrap(
    username: Annotated[str, typer.Option(help="The platform admin's username.")] = "admin",
    as_json: Json = False,
) -> None:
    """Create the platform admin (if missing) and print a new API token for it, once."""
    token = run(lambda ctx: users.bootstrap_admin(ctx.conn, username, ctx.clock.now()))
    if as_json:
        typer.echo(json.dumps({"username": username, "token": token}))
    else:
        typer.echo(f"username  {username}\ntoken     {token}   (shown only now)")


@users_app.command("token")
def users_token(
    user_id: Annotated[int, typer.Argument(min=1, help="The user's id.")],
    name: Annotated[str, typer.Option(help="What the token is for.")] = "",
    as_json: Json = False,
) -> None:
    """Issue an API token for a user; it is printed once, here, and never again."""
    data = _model(TokenCreate, name=name)
    show(run(lambda ctx: users.issue_token(ctx, user_id, data)), as_json)


def register(app: typer.Typer) -> None:
    """Add the operator's sub-commands to the `softswitch` command."""
    app.add_typer(tenant_app, name="tenant")
    app.add_typer(number_app, name="number")
    app.add_typer(document_app, name="document")
    app.add_typer(extension_app, name="extension")
    app.command("bind")(bind)
    app.add_typer(binding_app, name="binding")
    app.command("recharge")(recharge)
    app.command("balance")(balance)
    app.command("calls")(calls)
    app.add_typer(users_app, name="users")
