"""`softswitch notices ...`: a tenant's notification endpoints and the delivery log from the
operator's shell, through the same service functions as the API (checked and audited the
same way).

    softswitch notices endpoints list --tenant N
    softswitch notices endpoints add --tenant N (--email ADDRESS | --webhook URL)
                                     [--kinds missed_call,low_balance] [--language zh|en]
                                     [--timeout 5] [--disabled] [--description TEXT]
    softswitch notices endpoints set ID --tenant N [--address ...] [--kinds ...] [--language ...]
                                     [--timeout ...] [--enabled/--disabled] [--description ...]
    softswitch notices endpoints remove ID --tenant N
    softswitch notices endpoints rotate-secret ID --tenant N
    softswitch notices deliveries [--tenant N [--notice ID] [--endpoint ID]] [--state dead]
    softswitch notices retry DELIVERY --tenant N --notice ID

A webhook's signing key is printed once, by `add` and `rotate-secret`."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from provisioning.cli import Json, _fail, _model, run, show
from provisioning.engine import Ctx
from provisioning.notify import endpoints
from provisioning.notify.schemas import EndpointCreate, EndpointRead, EndpointUpdate

notices_app = typer.Typer(
    no_args_is_help=True, help="Notices: where they go (endpoints) and the delivery log."
)
endpoints_app = typer.Typer(
    no_args_is_help=True, help="A tenant's e-mail addresses and webhooks for notices."
)
notices_app.add_typer(endpoints_app, name="endpoints")

RequiredTenant = Annotated[int, typer.Option("--tenant", min=1, help="The tenant's id.")]
EndpointArg = Annotated[int, typer.Argument(min=1, help="The endpoint's id (see `endpoints list`).")]
ENDPOINT_COLUMNS = ("id", "channel", "address", "kinds", "language", "enabled", "timeout_s", "version")
DELIVERY_COLUMNS = (
    "id",
    "notice_id",
    "endpoint_id",
    "channel",
    "state",
    "attempts",
    "last_status",
    "last_reason",
    "next_attempt_at",
    "delivered_at",
)


def _kinds(text: str | None) -> list[str] | None:
    return None if text is None else [k.strip() for k in text.split(",") if k.strip()]


def _secret_line(secret: str | None, as_json: bool) -> None:
    if secret is not None and not as_json:
        typer.echo("(the signing key above is shown only now: keep it in the receiver)", err=True)


@endpoints_app.command("list")
def endpoints_list(tenant: RequiredTenant, as_json: Json = False) -> None:
    """The tenant's endpoints (without their keys)."""

    async def work(ctx: Ctx) -> list[EndpointRead]:
        out: list[EndpointRead] = []
        after: int | None = None
        while True:
            items, after = await endpoints.list_endpoints(ctx, 500, after)
            out.extend(items)
            if after is None:
                return out

    show(run(work, tenant), as_json, ENDPOINT_COLUMNS)


@endpoints_app.command("add")
def endpoints_add(
    tenant: RequiredTenant,
    email: Annotated[str | None, typer.Option(help="An e-mail address.")] = None,
    webhook: Annotated[str | None, typer.Option(help="A webhook's http(s) URL.")] = None,
    kinds: Annotated[str | None, typer.Option(help="Comma-separated kinds; none: every kind.")] = None,
    language: Annotated[str, typer.Option(help="zh or en (the e-mails' language).")] = "zh",
    timeout: Annotated[float, typer.Option(help="One attempt's deadline, seconds (0.5-30).")] = 5.0,
    disabled: Annotated[bool, typer.Option("--disabled", help="Add it switched off.")] = False,
    description: Annotated[str, typer.Option(help="What it is, for people.")] = "",
    as_json: Json = False,
) -> None:
    """Add an e-mail address or a webhook; a webhook's signing key is printed once."""
    if (email is None) == (webhook is None):
        _fail("give exactly one of --email and --webhook", "channel", code=2)
    data = _model(
        EndpointCreate,
        channel="email" if email is not None else "webhook",
        address=email if email is not None else webhook,
        kinds=_kinds(kinds) or [],
        language=language,
        timeout_s=timeout,
        enabled=not disabled,
        description=description,
    )
    out = run(lambda ctx: endpoints.create_endpoint(ctx, data), tenant)
    show(out, as_json)
    _secret_line(out.secret, as_json)


@endpoints_app.command("set")
def endpoints_set(
    endpoint_id: EndpointArg,
    tenant: RequiredTenant,
    address: Annotated[str | None, typer.Option(help="A new address or URL.")] = None,
    kinds: Annotated[str | None, typer.Option(help="Comma-separated kinds; '' for every kind.")] = None,
    language: Annotated[str | None, typer.Option(help="zh or en.")] = None,
    timeout: Annotated[float | None, typer.Option(help="Seconds (0.5-30).")] = None,
    enabled: Annotated[bool | None, typer.Option("--enabled/--disabled", help="Switch it on or off.")] = None,
    description: Annotated[str | None, typer.Option()] = None,
    as_json: Json = False,
) -> None:
    """Change what is given; disabling gives up the endpoint's open deliveries."""
    changes: dict[str, Any] = {
        k: v
        for k, v in {
            "address": address,
            "kinds": _kinds(kinds),
            "language": language,
            "timeout_s": timeout,
            "enabled": enabled,
            "description": description,
        }.items()
        if v is not None
    }
    data = _model(EndpointUpdate, **changes)

    async def work(ctx: Ctx) -> EndpointRead:
        current = await endpoints.get_endpoint(ctx, endpoint_id)
        return await endpoints.update_endpoint(ctx, endpoint_id, data, current.version)

    show(run(work, tenant), as_json)


@endpoints_app.command("remove")
def endpoints_remove(endpoint_id: EndpointArg, tenant: RequiredTenant) -> None:
    """Remove an endpoint (its deliveries stay in the log)."""

    async def work(ctx: Ctx) -> None:
        current = await endpoints.get_endpoint(ctx, endpoint_id)
        await endpoints.delete_endpoint(ctx, endpoint_id, current.version)

    run(work, tenant)
    typer.echo(f"removed endpoint {endpoint_id}")


@endpoints_app.command("rotate-secret")
def endpoints_rotate(endpoint_id: EndpointArg, tenant: RequiredTenant, as_json: Json = False) -> None:
    """A new signing key for a webhook, printed once; the old one signs nothing more."""
    out = run(lambda ctx: endpoints.rotate_secret(ctx, endpoint_id), tenant)
    show(out, as_json)
    _secret_line(out.secret, as_json)


@notices_app.command("deliveries")
def deliveries(
    tenant: Annotated[
        int | None, typer.Option("--tenant", min=1, help="The tenant's id (none: every tenant's).")
    ] = None,
    notice: Annotated[int | None, typer.Option(min=1, help="Only this notice's deliveries.")] = None,
    state: Annotated[str | None, typer.Option(help="pending, delivered, failed or dead.")] = None,
    endpoint: Annotated[int | None, typer.Option(min=1, help="Only this endpoint's.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    as_json: Json = False,
) -> None:
    """The delivery log: each notice's state at each endpoint; without --tenant every
    tenant's, newest first."""
    if state is not None and state not in ("pending", "delivered", "failed", "dead"):
        _fail(f"not a delivery state: {state!r}", "state", code=2)
    if tenant is None:
        if notice is not None or endpoint is not None:
            _fail("--notice and --endpoint need --tenant", "tenant", code=2)
        items, nxt = run(lambda ctx: endpoints.platform_deliveries(ctx, state, None, limit, None))
        show(items, as_json, ("tenant_id", *DELIVERY_COLUMNS))
        if nxt is not None and not as_json:
            typer.echo(f"(the newest {limit} shown)", err=True)
        return
    if notice is not None:
        show(
            run(lambda ctx: endpoints.notice_deliveries(ctx, notice), tenant).items, as_json, DELIVERY_COLUMNS
        )
        return
    items, nxt = run(lambda ctx: endpoints.list_deliveries(ctx, state, endpoint, limit, None), tenant)
    show(items, as_json, DELIVERY_COLUMNS)
    if nxt is not None and not as_json:
        typer.echo(f"(more than {limit}: narrow with --state or --endpoint)", err=True)


@notices_app.command("retry")
def retry(
    delivery: Annotated[int, typer.Argument(min=1, help="The delivery's id.")],
    tenant: RequiredTenant,
    notice: Annotated[int, typer.Option(min=1, help="The notice it delivers.")],
    as_json: Json = False,
) -> None:
    """Send a dead or failed delivery again now."""
    show(run(lambda ctx: endpoints.retry_delivery(ctx, notice, delivery), tenant), as_json)
