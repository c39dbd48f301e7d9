"""The portal in a real browser: Playwright drives Debian's chromium against the service
the e2e harness runs (`softswitch serve`). Tests are synchronous (Playwright's sync API);
they set data up through the REST API, as an operator would, and every page a test
visits is saved as a screenshot under build/artifacts/portal/."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, expect, sync_playwright

from scripts.devstack.process import ServiceProcess
from tests.conftest import IN_CI
from tests.e2e.conftest import active_number, api_ok

ROOT = Path(__file__).resolve().parents[3]
ARTIFACTS = ROOT / "build" / "artifacts" / "portal"
CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags chromium keeps calling Google's hosts, which this
# machine's closed network refuses (see the env notes).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "Portal-pass-2026"  # every test user's; passwords are never logged by the service
PHONE = {"width": 390, "height": 844}  # a phone screen: every page must work on it


@pytest.fixture(scope="session")
def playwright(service: ServiceProcess) -> Iterator[Playwright]:
    # The service first: its set-up runs asyncio.run, which Playwright's sync API (an event
    # loop of its own, kept running in this thread) would forbid once started.
    if not Path(CHROMIUM).exists():
        if IN_CI:
            pytest.fail(f"CI=true and {CHROMIUM} is missing (scripts/bootstrap.sh installs chromium)")
        pytest.skip(f"{CHROMIUM} is missing (scripts/bootstrap.sh installs chromium)")
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    b = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield b
    b.close()


@dataclass
class PortalUser:
    username: str
    password: str
    user_id: int
    tenant_id: int | None


@dataclass
class PortalTenant:
    id: int
    number_id: int
    number: str
    admin: PortalUser
    readonly: PortalUser


@dataclass
class PortalWorld:
    base_url: str
    operator: PortalUser
    a: PortalTenant
    b: PortalTenant


def make_user(service: ServiceProcess, role: str, tenant_id: int | None) -> PortalUser:
    name = f"portal-{role.replace('_', '-')}-{secrets.token_hex(3)}"
    user = api_ok(
        service.request(
            "POST",
            "/v1/users",
            json={"username": name, "role": role, "tenant_id": tenant_id, "password": PASSWORD},
        ),
        201,
    )
    return PortalUser(name, PASSWORD, user["id"], tenant_id)


def make_tenant(service: ServiceProcess) -> PortalTenant:
    tenant_id, number_id, number = active_number(service)
    return PortalTenant(
        tenant_id,
        number_id,
        number,
        make_user(service, "tenant_admin", tenant_id),
        make_user(service, "tenant_readonly", tenant_id),
    )


@pytest.fixture(scope="session")
def portal(service: ServiceProcess) -> PortalWorld:
    """Two enterprises (each with an active 400 number, 100 CNY and an admin and a
    read-only user) and an operator, all with portal passwords."""
    return PortalWorld(
        service.base_url,
        make_user(service, "operator_staff", None),
        make_tenant(service),
        make_tenant(service),
    )


@pytest.fixture
def context(browser: Browser, portal: PortalWorld) -> Iterator[BrowserContext]:
    ctx = browser.new_context(base_url=portal.base_url, viewport=PHONE, locale="zh-CN")
    ctx.set_default_timeout(10_000)
    yield ctx
    ctx.close()


class Shots:
    """Saves a screenshot of each page a test looks at: build/artifacts/portal/<test>-<n>-<what>.png"""

    def __init__(self, test_name: str) -> None:
        self.stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", test_name)
        self.n = 0
        ARTIFACTS.mkdir(parents=True, exist_ok=True)

    def __call__(self, page: Page, what: str) -> Path:
        self.n += 1
        path = ARTIFACTS / f"{self.stem}-{self.n:02d}-{what}.png"
        page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def shot(request: pytest.FixtureRequest) -> Shots:
    return Shots(request.node.name)


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


def sign_in(page: Page, user: PortalUser, password: str | None = None) -> None:
    page.goto("/portal/login")
    page.get_by_test_id("username").fill(user.username)
    page.get_by_test_id("password").fill(password or user.password)
    page.get_by_test_id("sign-in").click()


def signed_in(page: Page, user: PortalUser) -> Page:
    sign_in(page, user)
    expect(page.get_by_test_id("who")).to_have_text(user.username)
    return page


def api(service: ServiceProcess, method: str, path: str, status: int = 200, **kw: Any) -> Any:
    return api_ok(service.request(method, path, **kw), status)
