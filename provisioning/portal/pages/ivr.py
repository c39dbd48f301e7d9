"""The enterprise's IVR menus: the list, and a form per menu a non-programmer can fill in
(the greeting among the tenant's prompts, the timeout and retries, one row per key with
what it does and where to), saved through the service layer (catalog.IVR_MENUS) so the
API's validation of the whole menu set applies: a key pointing to a menu that does not
exist, a transfer to an unknown group or extension, a loop without an exit ... The
service's refusal is shown next to the field that caused it, the rest of the input kept.

The form is a picture of the menu definition (ivr/menu.py); nothing here decides what a
valid menu is, except that a form's two rows cannot both be key 5 (a definition has one
entry per key, so the form cannot send them)."""

# No `from __future__ import annotations`: FastAPI reads the handlers' annotations, and
# `PageDep` is a type chosen when the portal mounts the module.

import re
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, cast

from fastapi import APIRouter
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, Response
from pydantic import ValidationError

from ivr.menu import KEYS
from provisioning import catalog
from provisioning.engine import (
    Conflict,
    Invalid,
    PreconditionFailed,
    ProvisioningError,
    create_row,
    delete_row,
    get_row,
    list_rows,
    update_row,
)
from provisioning.portal.i18n import Translate
from provisioning.portal.web import NavItem, Page, validation_errors
from provisioning.prompts import NAME as PROMPT_NAME
from provisioning.prompts import PromptStore
from provisioning.schemas import MAX_ID, MenuCreate, MenuRead, MenuUpdate
from softswitch.core.settings import Settings

MenuId = Annotated[int, PathParam(ge=1, le=MAX_ID)]

NAV = (NavItem("tenant", "ivr", "IVR menus", 30),)

RES = catalog.IVR_MENUS
FORM_ERRORS = (Invalid, Conflict, PreconditionFailed)
PAGE_SIZE = 500
KEY_ORDER = "123456789*0#"  # as on a phone's keypad
# What a row's action is in the form, and how it is written in the definition.
TARGETED = ("menu", "group", "extension", "number")
ACTIONS = ("menu", "group", "extension", "number", "voicemail", "repeat", "back", "hangup")
TRANSFERS = ("group", "extension", "number")
_ROW_FIELD = re.compile(r"^k-(\d{1,4})-(key|action|target)$")
# "definition: menu 'main' key '3': sub-menu 'x' does not exist" (ivr/menu.py's words)
_WHERE = re.compile(r"""menu (['"])(?P<menu>.*?)\1 key (['"])(?P<key>.*?)\3""")


def _labels(_: Translate) -> dict[str, str]:
    return {
        "menu": _("Go to menu"),
        "group": _("Transfer to destination group"),
        "extension": _("Transfer to extension"),
        "number": _("Transfer to phone number"),
        "voicemail": _("Voicemail"),
        "repeat": _("Play this menu again"),
        "back": _("Back to the previous menu"),
        "hangup": _("Hang up"),
    }


# ---------------------------------------------------------------------- form <-> menu
def _choice_to_form(choice: Any) -> tuple[str, str]:
    """(action, target) of the form for a stored choice."""
    if not isinstance(choice, Mapping):
        return "", ""
    action = str(choice.get("action") or "")
    if action == "menu":
        return "menu", str(choice.get("target") or "")
    if action == "transfer":
        for via in TRANSFERS:
            if choice.get(via) not in (None, ""):
                return via, str(choice[via])
        return "group", ""
    return action, ""


def _choice_of_form(action: str, target: str) -> dict[str, Any]:
    if action == "menu":
        return {"action": "menu", "target": target}
    if action in TRANSFERS:
        return {"action": "transfer", action: target}
    return {"action": action}


def _form_of_menu(name: str, definition: Mapping[str, Any]) -> dict[str, Any]:
    rows = []
    options = definition.get("options")
    for key, choice in options.items() if isinstance(options, Mapping) else ():
        action, target = _choice_to_form(choice)
        rows.append({"key": str(key), "action": action, "target": target})
    default_action, default_target = _choice_to_form(definition.get("default"))
    timeout_ms = definition.get("timeout_ms", 5000)
    return {
        "name": name,
        "prompt": str(definition.get("prompt") or ""),
        "timeout": _seconds(timeout_ms),
        "retries": str(definition.get("retries", 3)),
        "timeout_prompt": str(definition.get("timeout_prompt") or ""),
        "invalid_prompt": str(definition.get("invalid_prompt") or ""),
        "direct_dial": bool(definition.get("direct_dial", False)),
        "extension_digits": str(definition.get("extension_digits", 4)),
        "default_action": default_action,
        "default_target": default_target,
        "rows": rows,
    }


def _seconds(ms: Any) -> str:
    if isinstance(ms, int) and not isinstance(ms, bool):
        return f"{ms / 1000:g}"
    return str(ms)


def _form_values(form: Any) -> dict[str, Any]:
    """The posted form as the template shows it: the rows in the order the page had them."""
    rows: dict[str, dict[str, str]] = {}
    for name, value in form.multi_items():
        m = _ROW_FIELD.match(name)
        if m and isinstance(value, str):
            rows.setdefault(m.group(1), {"key": "", "action": "", "target": ""})[m.group(2)] = value.strip()

    def text(name: str) -> str:
        value = form.get(name)
        return value.strip() if isinstance(value, str) else ""

    return {
        "name": text("name"),
        "prompt": text("prompt"),
        "timeout": text("timeout"),
        "retries": text("retries"),
        "timeout_prompt": text("timeout_prompt"),
        "invalid_prompt": text("invalid_prompt"),
        "direct_dial": form.get("direct_dial") == "on",
        "extension_digits": text("extension_digits"),
        "default_action": text("default_action"),
        "default_target": text("default_target"),
        # a row left entirely empty (an added row not filled in) is no row
        "rows": [r for r in rows.values() if r["key"] or r["target"]],
    }


def _definition(values: Mapping[str, Any], _: Translate) -> tuple[dict[str, Any], dict[str, str]]:
    """The menu definition the form describes, and what of the form cannot be written as
    one (a number that is not a number, no key chosen, a key used twice)."""
    errors: dict[str, str] = {}
    definition: dict[str, Any] = {"prompt": values["prompt"]}

    def number(field: str, text: str, scale: int = 1) -> int | None:
        try:
            return round(float(text) * scale) if scale != 1 else int(text)
        except ValueError:
            errors[field] = _("Enter a number.")
            return None

    timeout = number("timeout", values["timeout"] or "5", 1000)
    if timeout is not None:
        definition["timeout_ms"] = timeout
    retries = number("retries", values["retries"] or "3")
    if retries is not None:
        definition["retries"] = retries
    for prompt in ("timeout_prompt", "invalid_prompt"):
        if values[prompt]:
            definition[prompt] = values[prompt]
    if values["direct_dial"]:
        definition["direct_dial"] = True
        digits = number("extension_digits", values["extension_digits"] or "4")
        if digits is not None:
            definition["extension_digits"] = digits
    options: dict[str, Any] = {}
    for i, row in enumerate(values["rows"]):
        if row["key"] not in KEYS:
            errors[f"keys.{i}.key"] = _("Choose a key.")
            continue
        if row["key"] in options:
            errors[f"keys.{i}.key"] = _("Key {key} is used twice.", key=row["key"])
            continue
        if row["action"] not in ACTIONS:
            errors[f"keys.{i}.action"] = _("Choose what the key does.")
            continue
        options[row["key"]] = _choice_of_form(row["action"], row["target"])
    definition["options"] = options
    if values["default_action"]:
        definition["default"] = _choice_of_form(values["default_action"], values["default_target"])
    return definition, errors


# ---------------------------------------------------------------------- the refusal
def _explain(detail: str, _: Translate) -> str:
    """The service's words about a menu, in the page's language where they are known."""
    patterns: tuple[tuple[str, Any], ...] = (
        (r"sub-menu (['\"])(.*?)\1 does not exist", lambda m: _("There is no menu named {name}.", name=m[2])),
        (
            r"transfer to unknown group (['\"])(.*?)\1",
            lambda m: _("No destination group named {name} is bound to your numbers.", name=m[2]),
        ),
        (
            r"transfer to unknown extension (['\"])(.*?)\1",
            lambda m: _("Extension {name} does not exist.", name=m[2]),
        ),
        (r"prompt (['\"])(.*?)\1 does not exist", lambda m: _("Prompt {name} does not exist.", name=m[2])),
        (r"a prompt name is required", lambda m: _("Choose a prompt.")),
        (r"extension .* must be digits", lambda m: _("An extension is digits only.")),
        (r"number .* must be 3 to 20 digits", lambda m: _("A phone number is 3 to 20 digits.")),
        (r"needs a target menu name", lambda m: _("Enter the menu to go to.")),
        (r"needs exactly one of group, extension or number", lambda m: _("Enter where to transfer to.")),
        (
            r"must be an integer from (\d+) to (\d+)",
            lambda m: _("Enter a whole number from {low} to {high}.", low=m[1], high=m[2]),
        ),
        (
            r"loop without an exit",
            lambda m: _(
                "These menus lead to each other with no way out: add a transfer, voicemail or hang-up."
            ),
        ),
        (
            r"deeper than max_depth (\d+)",
            lambda m: _("Menus are nested too deep (at most {n} levels).", n=m[1]),
        ),
        (
            r"needs options, a default or direct dial",
            lambda m: _("Add a key, a default action or direct dial."),
        ),
        (
            r"two menus are named (['\"])(.*?)\1",
            lambda m: _("A menu named {name} already exists.", name=m[2]),
        ),
    )
    for pattern, say in patterns:
        m = re.search(pattern, detail)
        if m:
            return str(say(m))
    return detail.removeprefix("definition: ")


def _refusal(exc: ProvisioningError, values: Mapping[str, Any], _: Translate) -> dict[str, str]:
    """The service's refusal as {form field: message}: the menu definition's own words
    name the menu and the key ("menu 'main' key '3': ...") and so the row of this form."""
    if isinstance(exc, Conflict):
        return {"name": _("A menu named {name} already exists.", name=values["name"])}
    if isinstance(exc, PreconditionFailed):
        return {"": _("Someone changed this menu meanwhile: reload the page to see it.")}
    field = (exc.field or "").split(".")[0]
    message = _explain(exc.message, _)
    if field == "name":
        return {"name": message}
    if field != "definition":
        return {"": message}
    if "two menus are named" in exc.message:
        return {"name": message}
    where = _WHERE.search(exc.message)
    if where is None:
        return {"": message}
    if where["menu"] != values["name"]:  # another menu of the set, e.g. one leading to this one
        return {
            "": _("Menu {menu}, key {key}: {problem}", menu=where["menu"], key=where["key"], problem=message)
        }
    key = where["key"]
    if key in ("prompt", "timeout_prompt", "invalid_prompt", "retries", "extension_digits"):
        return {key: message}
    if key == "timeout_ms":
        return {"timeout": message}
    if key == "direct_dial":
        return {"direct_dial": message}
    if key == "default":
        sub = "action" if "unknown action" in exc.message else "target"
        return {f"default_{sub}": message}
    for i, row in enumerate(values["rows"]):
        if row["key"] == key:
            if "unknown action" in exc.message:
                return {f"keys.{i}.action": message}
            if "option key is one of" in exc.message:
                return {f"keys.{i}.key": message}
            return {f"keys.{i}.target": message}
    return {"": message}


# ---------------------------------------------------------------------- what to offer
def _sounds(page: Page) -> Path:
    settings = page.deps.settings if isinstance(page.deps.settings, Settings) else Settings()
    return settings.asterisk.sounds_dir


def _prompt_names(root: Path) -> list[str]:
    """Prompt names stored under a scope's folder (softswitch/<scope>/<name>.wav)."""
    if not root.is_dir():
        return []
    names = []
    for path in root.rglob("*.wav"):
        name = path.relative_to(root).with_suffix("").as_posix()
        if PROMPT_NAME.match(name):  # not a half-written .part file
            names.append(name)
    return sorted(names)


def _prompts(page: Page) -> dict[str, list[str]]:
    store = PromptStore(_sounds(page))
    return {
        "tenant": _prompt_names(store.root / f"t{page.ctx.tenant_id}"),
        "system": _prompt_names(store.root / "system"),
    }


async def _choices(page: Page, menus: list[Any]) -> dict[str, list[str]]:
    """What a key's target may name: the tenant's menus, groups and extensions (for the
    field's suggestions; the service decides)."""
    groups = await page.ctx.conn.fetch(
        "SELECT DISTINCT group_name FROM destination_bindings WHERE tenant_id = $1 ORDER BY 1",
        page.ctx.tenant_id,
    )
    exts, _next = await list_rows(page.ctx, catalog.EXTENSIONS, {}, PAGE_SIZE, None)
    return {
        "menu": sorted(m.name for m in menus),
        "group": [r["group_name"] for r in groups],
        "extension": sorted(str(getattr(e, "extension", "")) for e in exts),
    }


async def _menus(page: Page) -> list[MenuRead]:
    items, _next = await list_rows(page.ctx, RES, {}, PAGE_SIZE, None)
    return sorted(cast(list[MenuRead], items), key=lambda m: m.name)


def _summary(definition: Mapping[str, Any], labels: Mapping[str, str]) -> list[tuple[str, str, str]]:
    """(key, action label, target) for the list."""
    options = definition.get("options")
    out = []
    for key, choice in sorted(
        (options.items() if isinstance(options, Mapping) else ()),
        key=lambda kv: KEY_ORDER.find(str(kv[0])),
    ):
        action, target = _choice_to_form(choice)
        out.append((str(key), labels.get(action, action), target))
    return out


def _may_write(page: Page) -> bool:
    return page.who.may(RES.write_roles)


async def _form_page(
    page: Page, menu: Any, values: Mapping[str, Any], errors: Mapping[str, str], status: int = 200
) -> HTMLResponse:
    menus = await _menus(page)
    return page.render(
        "tenant/ivr_form.html",
        status=status,
        menu_row=menu,
        values=values,
        errors=errors,
        prompts=_prompts(page),
        choices=await _choices(page, [m for m in menus if menu is None or m.id != menu.id]),
        labels=_labels(page._),
        actions=ACTIONS,
        targeted=TARGETED,
        keys=KEY_ORDER,
        may_write=_may_write(page),
    )


def _version(form: Any) -> int | None:
    v = form.get("version")
    return int(v) if isinstance(v, str) and v.isdigit() and len(v) < 10 else None


async def _save(
    page: Page,
    menu: Any,
    values: dict[str, Any],
    write: Callable[[dict[str, Any]], Awaitable[None]],
) -> Response:
    """The form's menu through the service layer (`write` creates or updates it); back to
    the list, or the form again with every problem beside its field and nothing lost."""
    definition, errors = _definition(values, page._)
    if not errors:
        try:
            await write(definition)
        except ValidationError as exc:
            errors = validation_errors(
                exc, {"name": page._("Enter a name of 1 to 100 characters.")}, ("name",)
            )
        except FORM_ERRORS as exc:
            errors = _refusal(exc, values, page._)
        else:
            return page.redirect(f"{page.base}/ivr")
    return await _form_page(page, menu, values, errors, 422)


def mount_tenant(router: APIRouter, PageDep: Any) -> None:  # noqa: N803 - a type alias
    @router.get("/ivr", response_class=HTMLResponse)
    async def menus(page: PageDep) -> HTMLResponse:
        items = await _menus(page)
        labels = _labels(page._)
        return page.render(
            "tenant/ivr.html",
            items=items,
            summaries={m.id: _summary(m.definition, labels) for m in items},
            may_write=_may_write(page),
        )

    @router.get("/ivr/new", response_class=HTMLResponse)
    async def new_menu(page: PageDep) -> HTMLResponse:
        values = _form_of_menu("", {"options": {}})
        values["rows"] = [{"key": "1", "action": "", "target": ""}, {"key": "2", "action": "", "target": ""}]
        return await _form_page(page, None, values, {})

    @router.post("/ivr/new", response_class=HTMLResponse)
    async def create_menu(page: PageDep) -> Response:
        values = _form_values(await page.request.form())

        async def write(definition: dict[str, Any]) -> None:
            model = MenuCreate.model_validate({"name": values["name"], "definition": definition})
            await create_row(page.ctx, RES, model)

        return await _save(page, None, values, write)

    @router.get("/ivr/{menu_id}", response_class=HTMLResponse)
    async def edit_menu(page: PageDep, menu_id: MenuId) -> HTMLResponse:
        menu = cast(MenuRead, await get_row(page.ctx, RES, menu_id))
        return await _form_page(page, menu, _form_of_menu(menu.name, menu.definition), {})

    @router.post("/ivr/{menu_id}", response_class=HTMLResponse)
    async def change_menu(page: PageDep, menu_id: MenuId) -> Response:
        menu = await get_row(page.ctx, RES, menu_id)
        form = await page.request.form()
        values = _form_values(form)

        async def write(definition: dict[str, Any]) -> None:
            model = MenuUpdate.model_validate({"name": values["name"], "definition": definition})
            await update_row(page.ctx, RES, menu_id, model, _version(form))

        return await _save(page, menu, values, write)

    @router.post("/ivr/{menu_id}/delete", response_class=HTMLResponse)
    async def remove_menu(page: PageDep, menu_id: MenuId) -> Response:
        form = await page.request.form()
        await delete_row(page.ctx, RES, menu_id, _version(form))
        return page.redirect(f"{page.base}/ivr")
