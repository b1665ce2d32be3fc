"""The web dashboard in a real headless Chromium, against the real stack.

A trader logs in, sees a running bot, watches a real fill arrive in the blotter without a
reload (the bot's intent executed by a real executor and paper broker) and pauses the bot; an
admin trips a kill switch behind a typed confirmation and a risk officer resets it; a viewer,
on a phone, sees no control at all; an admin manages keys and roles and reads the audit log; a
trader deploys with parameters, promotes and rolls back. Every step leaves a screenshot in
``.coyote/test-artifacts/dashboard/<test>-<step>.png``. The browser tests also fail on a
script error, a CSP violation or a request to another origin; one more test checks the served
files themselves (headers, no foreign URL, size).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from playwright.async_api import Browser, Page, async_playwright, expect

from coyote_control_plane import dashboard
from tests.control_plane._trading import Trading
from tests.control_plane.conftest import (
    REPO,
    ControlPlaneUnderTest,
    add_account,
    buyer_bundle,
    deploy,
    push,
)
from tests.control_plane.test_supervisor import publish_bar

ARTIFACTS = REPO / ".coyote" / "test-artifacts" / "dashboard"
PASSWORD = "correct-horse-battery"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Labels of every button that changes something; a viewer must see none of them.
CONTROL_LABELS = re.compile(
    r"^(Start|Pause|Resume|Stop|Deploy…|Release…|Roll back…|Trip kill switch…|Reset…|Limits…|"
    r"Capital…|Add account…|Add user…|Delete…|Disable|Enable|New key…|Revoke…)$"
)
BUNDLE_LIMIT = 60 * 1024  # bytes, uncompressed

# -- the browser ------------------------------------------------------------------------------


def _chromium() -> str:
    found = shutil.which("chromium")
    if found is None:
        pytest.skip("no Chromium: run COYOTE_BROWSER_TESTS=1 scripts/bootstrap.sh (make test does)")
    return found


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    """Debian's Chromium, driven by Playwright (its own browsers are never downloaded)."""
    executable = _chromium()
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield launched
        await launched.close()


@dataclasses.dataclass
class Tab:
    """A page of its own browser context (its own cookies), and what went wrong in it."""

    page: Page
    base: str
    test: str
    errors: list[str] = dataclasses.field(default_factory=list)
    requests: list[str] = dataclasses.field(default_factory=list)
    """Every URL the page asked for, in order."""

    async def shot(self, step: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        await self.page.screenshot(path=ARTIFACTS / f"{self.test}-{step}.png", full_page=True)

    async def login(
        self, email: str, password: str = PASSWORD, *, expect_role: str | None = None
    ) -> None:
        page = self.page
        await page.goto(self.base + "/")
        await page.get_by_label("Email").fill(email)
        await page.get_by_label("Password").fill(password)
        await page.get_by_role("button", name="Log in").click()
        if expect_role is not None:
            await expect(page.get_by_test_id("role")).to_have_text(expect_role)

    async def go(self, page_name: str) -> None:
        """Opens a page from the navigation and waits until it has loaded its data."""
        await self.page.locator(f'.nav a[data-page="{page_name}"]').click()
        await expect(self.page.locator("main")).to_have_attribute("data-ready", page_name)

    def check_clean(self) -> None:
        assert not self.errors, self.errors
        foreign = [url for url in self.requests if not url.startswith((self.base, "data:"))]
        assert not foreign, f"requests to other origins: {foreign}"


@contextlib.asynccontextmanager
async def tab(
    browser: Browser, cp: ControlPlaneUnderTest, test: str, **context: Any
) -> AsyncIterator[Tab]:
    ctx = await browser.new_context(
        viewport=context.pop("viewport", {"width": 1366, "height": 900}), **context
    )
    page = await ctx.new_page()
    page.set_default_timeout(15_000)
    opened = Tab(page, cp.url, test)

    def on_console(message: Any) -> None:
        # Answers like 401 (not logged in yet) are logged by the browser as resource errors;
        # anything else at error level (script errors, CSP violations) is a failure.
        if message.type == "error" and "Failed to load resource" not in message.text:
            opened.errors.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda error: opened.errors.append(f"page error: {error}"))
    page.on("request", lambda request: opened.requests.append(request.url))
    try:
        yield opened
    finally:
        await ctx.close()
    opened.check_clean()


def email(cp: ControlPlaneUnderTest, role: str) -> str:
    return f"{role}@{cp.acme.slug}.example"


def give_the_admin_a_password(cp: ControlPlaneUnderTest) -> None:
    """The bootstrapped admin has only a key; the other users got their password in conftest."""
    users = cp.acme.admin.get("/v1/users").json()
    admin_id = next(u["id"] for u in users if u["email"] == email(cp, "admin"))
    answer = cp.acme.admin.patch(f"/v1/users/{admin_id}", json={"password": PASSWORD})
    assert answer.status_code == 200, answer.text


async def no_controls_on(t: Tab) -> None:
    await expect(t.page.locator("[data-control]")).to_have_count(0)
    labels = await t.page.get_by_role("button").all_inner_texts()
    assert not [label for label in labels if CONTROL_LABELS.match(label.strip())], labels


# -- the scenarios ------------------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.integration
@pytest.mark.slow
async def test_a_trader_sees_a_running_bot_a_live_fill_and_pauses_it(
    trading: Trading, browser: Browser
) -> None:
    cp = trading.cp
    deploy(cp.acme.trader, params={"quantity": 2}, capital="10000", start=True)
    async with tab(browser, cp, "trader") as t:
        page = t.page
        await page.goto(cp.url + "/")
        await expect(page.get_by_role("button", name="Log in")).to_be_visible()
        await t.shot("1-login")
        await t.login(email(cp, "trader"), expect_role="trader")
        row = page.locator('tr[data-key="buy"]')
        await expect(row.locator(".badge")).to_have_text("running", timeout=45_000)
        await expect(row.get_by_role("button", name="Pause")).to_be_visible()
        await t.shot("2-running")

        await t.go("blotter")
        await expect(page.get_by_test_id("live")).to_have_attribute("data-state", "live")
        fills = page.locator("table.fills tbody tr[data-key]")
        await expect(fills).to_have_count(0)
        await page.evaluate("window.__notReloaded = true")
        asked = len(t.requests)
        minute = 1
        deadline = time.monotonic() + 60
        while await fills.count() == 0:
            assert time.monotonic() < deadline, "no fill reached the blotter within 60 s"
            publish_bar(trading.redis, trading.venue, minute)
            minute += 1
            await page.wait_for_timeout(500)
        first = fills.first
        await expect(first).to_contain_text("GOOG")
        await expect(first.locator(".side")).to_have_text("buy")
        await expect(first.locator('td[data-label="Quantity"]')).to_have_text("2")
        assert await page.evaluate("window.__notReloaded === true"), "the page was reloaded"
        reloaded = [url for url in t.requests[asked:] if "/v1/reports/fills?" in url]
        assert not reloaded, (
            f"the fill came from a reload of the reports, not the stream: {reloaded}"
        )
        orders = page.locator('table.cards tbody tr[data-key] .status[data-status="filled"]')
        await expect(orders.first).to_be_visible()
        # The positions are refreshed from the reports after fills.
        await expect(page.locator("tbody tr[data-key$='/buy/GOOG']")).to_be_visible()
        await t.shot("3-live-fill")

        await t.go("bots")
        await row.get_by_role("button", name="Pause").click()
        await expect(row.get_by_role("button", name="Resume")).to_be_visible()
        await expect(row.locator(".badge")).to_have_text("paused", timeout=30_000)
        await t.shot("4-paused")
    audit = cp.acme.admin.get("/v1/audit", params={"action": "deployment.pause"}).json()
    assert [e["actor"] for e in audit] == [f"user:{email(cp, 'trader')}"]


@pytest.mark.browser
@pytest.mark.integration
async def test_kill_switch_trip_needs_the_name_typed_and_only_risk_or_admin_resets_it(
    cp: ControlPlaneUnderTest, browser: Browser, tmp_path: Path
) -> None:
    give_the_admin_a_password(cp)
    add_account(cp.acme.admin)
    push(cp.acme.trader, buyer_bundle(tmp_path))
    deploy(cp.acme.trader)
    async with tab(browser, cp, "kill-switch") as admin:
        page = admin.page
        await admin.login(email(cp, "admin"), expect_role="admin")
        await admin.go("risk")
        banner = page.locator(".banner")
        await expect(banner).to_have_attribute("data-state", "ok")
        await page.get_by_role("button", name="Trip kill switch…").click()
        dialog = page.get_by_role("dialog", name="Trip a kill switch")
        await dialog.get_by_label("Halt").select_option("account")
        await dialog.get_by_label("Which").select_option("paper")
        await dialog.get_by_label("Reason").fill("drill: broker outage")
        trip = dialog.get_by_role("button", name="Trip kill switch")
        await expect(trip).to_be_disabled()
        await dialog.get_by_label("Type the name to confirm").fill("papr")
        await expect(trip).to_be_disabled()
        await dialog.get_by_label("Type the name to confirm").fill("paper")
        await expect(trip).to_be_enabled()
        await admin.shot("1-trip-dialog")
        await trip.click()
        await expect(dialog).to_have_count(0)
        await expect(banner).to_have_attribute("data-state", "halted")
        active = page.locator("tbody tr[data-key]").filter(has_text="drill: broker outage")
        await expect(active).to_contain_text(f"user:{email(cp, 'admin')}")
        await expect(page.locator('tr[data-key="paper"] .badge')).to_have_text("halted")
        await admin.shot("2-tripped")

        async with tab(browser, cp, "kill-switch") as trader:
            await trader.login(email(cp, "trader"), expect_role="trader")
            await trader.go("risk")
            await expect(trader.page.locator(".banner")).to_have_attribute("data-state", "halted")
            await expect(
                trader.page.get_by_role("button", name="Trip kill switch…")
            ).to_be_visible()
            await expect(trader.page.get_by_role("button", name="Reset…")).to_have_count(0)
            await trader.shot("3-trader-cannot-reset")

        async with tab(browser, cp, "kill-switch") as risk:
            await risk.login(email(cp, "risk"), expect_role="risk")
            await risk.go("risk")
            await risk.page.get_by_role("button", name="Reset…").click()
            reset_dialog = risk.page.get_by_role("dialog")
            await expect(reset_dialog).to_contain_text(f"user:{email(cp, 'admin')}")
            await expect(reset_dialog).to_contain_text("drill: broker outage")
            reset = reset_dialog.get_by_role("button", name="Reset kill switch")
            await expect(reset).to_be_disabled()
            await reset_dialog.get_by_label("Type the name to confirm").fill("paper")
            await risk.shot("4-reset-dialog")
            await reset.click()
            await expect(risk.page.locator(".banner")).to_have_attribute("data-state", "ok")
            await risk.shot("5-reset")

        # The admin's page heard of the reset over the live stream.
        await expect(banner).to_have_attribute("data-state", "ok")
        # An admin may reset too: the whole organisation this time, confirmed by its slug.
        await page.get_by_role("button", name="Trip kill switch…").click()
        await dialog.get_by_label("Halt").select_option("organization")
        await dialog.get_by_label("Reason").fill("end of day")
        await dialog.get_by_label("Type the name to confirm").fill(cp.acme.slug)
        await trip.click()
        await expect(banner).to_contain_text("the whole organisation")
        await page.get_by_role("button", name="Reset…").click()
        await page.get_by_role("dialog").get_by_label("Type the name to confirm").fill(cp.acme.slug)
        await page.get_by_role("dialog").get_by_role("button", name="Reset kill switch").click()
        await expect(banner).to_have_attribute("data-state", "ok")
        await admin.shot("6-admin-reset")

    entries = cp.acme.admin.get("/v1/audit", params={"target": "account/paper"}).json()
    assert [(e["action"], e["actor"]) for e in entries if e["action"].startswith("kill")] == [
        ("kill_switch.reset", f"user:{email(cp, 'risk')}"),
        ("kill_switch.trip", f"user:{email(cp, 'admin')}"),
    ]
    assert cp.acme.admin.get("/v1/kill-switches").json() == []


@pytest.mark.browser
@pytest.mark.integration
async def test_a_viewer_sees_no_control_and_no_admin_page_even_on_a_phone(
    cp: ControlPlaneUnderTest, browser: Browser, tmp_path: Path
) -> None:
    add_account(cp.acme.admin)
    push(cp.acme.trader, buyer_bundle(tmp_path))
    deploy(cp.acme.trader)
    cp.acme.admin.post(
        "/v1/kill-switches", json={"scope": "deployment", "target": "buy", "reason": "drill"}
    )
    phone = {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True}

    async with tab(browser, cp, "viewer", **phone) as t:
        page = t.page
        await t.login(email(cp, "viewer"), "not-the-password")
        await expect(page.get_by_role("alert")).to_have_text("unknown email or wrong password")
        await t.shot("1-wrong-password")
        await t.login(email(cp, "viewer"), expect_role="viewer")
        await expect(page.locator(".nav a")).to_have_text(["Bots", "Blotter", "Risk"])
        for step, name in enumerate(["bots", "blotter", "risk"], start=2):
            await t.go(name)
            await expect(page.locator("main .card").first).to_be_visible()
            if name == "bots":
                await expect(page.locator('tr[data-key="buy"] .badge')).to_have_text("stopped")
            if name == "risk":
                await expect(page.locator(".banner")).to_have_attribute("data-state", "halted")
            await no_controls_on(t)
            overflow = await page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, f"the {name} page is wider than a phone by {overflow} px"
            await t.shot(f"{step}-{name}")
        for hidden in ("admin", "audit", "keys"):
            await page.goto(f"{cp.url}/ui/#/{hidden}")
            await expect(page.locator("main")).to_contain_text(
                "The viewer role may not see this page."
            )
            await no_controls_on(t)
        await t.shot("5-admin-refused")

    # The same pages show a trader the controls the viewer did not get.
    async with tab(browser, cp, "viewer") as trader:
        await trader.login(email(cp, "trader"), expect_role="trader")
        await expect(
            trader.page.locator('tr[data-key="buy"]').get_by_role("button", name="Start")
        ).to_be_visible()
        await expect(trader.page.locator("[data-control]").first).to_be_visible()
        await trader.shot("6-trader-for-comparison")


@pytest.mark.browser
@pytest.mark.integration
async def test_an_admin_makes_a_key_shown_once_revokes_it_changes_a_role_and_reads_the_audit(
    cp: ControlPlaneUnderTest, browser: Browser
) -> None:
    give_the_admin_a_password(cp)
    add_account(cp.acme.admin)
    async with tab(browser, cp, "admin") as t:
        page = t.page
        await t.login(email(cp, "admin"), expect_role="admin")
        await expect(page.locator(".nav a")).to_have_text(
            ["Bots", "Blotter", "Risk", "Audit", "API keys", "Admin"]
        )
        await t.go("keys")
        await page.get_by_role("button", name="New key…").click()
        await page.get_by_role("dialog").get_by_label("Name").fill("laptop")
        await page.get_by_role("dialog").get_by_label("Role").select_option("viewer")
        await page.get_by_role("button", name="Create key").click()
        shown = page.get_by_label("The new key")
        key = await shown.input_value()
        assert key.startswith("cyk_")
        await t.shot("1-key-shown-once")
        await page.get_by_role("button", name="Close").click()
        await expect(shown).to_have_count(0)
        row = page.locator("tbody tr").filter(has_text="laptop")
        await expect(row.locator(".badge")).to_have_text("active")
        assert key not in await page.content()  # nowhere on the page any more
        await row.get_by_role("button", name="Revoke…").click()
        await page.get_by_role("dialog").get_by_role("button", name="Revoke key").click()
        await expect(row.locator(".badge")).to_have_text("revoked")
        revoked = cp.anonymous().get("/v1/auth/me", headers={"Authorization": f"Bearer {key}"})
        assert revoked.status_code == 401

        await t.go("admin")
        await page.get_by_label(f"Role of {email(cp, 'viewer')}").select_option("risk")
        await expect(page.locator(".toast").first).to_contain_text("updated")
        await t.shot("2-admin")
        users = cp.acme.admin.get("/v1/users").json()
        assert next(u["role"] for u in users if u["email"] == email(cp, "viewer")) == "risk"

        await t.go("audit")
        audit = page.locator("tbody tr")
        await expect(audit.filter(has_text="api_key.revoke")).to_have_count(1)
        # What this admin did in the dashboard, newest first (the fixtures used its key).
        await page.get_by_label("actor").fill(f"user:{email(cp, 'admin')}")
        await page.get_by_role("button", name="Search").click()
        await expect(audit.locator("code")).to_have_text(
            ["user.update", "api_key.revoke", "api_key.create", "auth.login"]
        )
        await t.shot("3-audit")


@pytest.mark.browser
@pytest.mark.integration
async def test_a_trader_deploys_with_parameters_promotes_a_release_and_rolls_back(
    cp: ControlPlaneUnderTest, browser: Browser, tmp_path: Path
) -> None:
    add_account(cp.acme.admin)
    push(cp.acme.trader, buyer_bundle(tmp_path))
    async with tab(browser, cp, "deploy") as t:
        page = t.page
        await t.login(email(cp, "trader"), expect_role="trader")
        await expect(page.locator("main")).to_have_attribute("data-ready", "bots")
        await page.get_by_role("button", name="Deploy…").click()
        form = page.get_by_role("dialog", name="Deploy a bot")
        params = form.get_by_label("Parameters (JSON)")
        assert json.loads(await params.input_value()) == {"quantity": 1, "crash": False}
        await form.get_by_label("Name").fill("buy-five")
        await params.fill('{"quantity": 5}')
        await form.get_by_label("Capital").fill("2500")
        await t.shot("1-deploy-dialog")
        await form.get_by_role("button", name="Deploy").click()
        row = page.locator('tr[data-key="buy-five"]')
        await expect(row.locator(".badge")).to_have_text("stopped")
        made = cp.acme.viewer.get("/v1/deployments/buy-five").json()
        assert (made["params"], made["capital"], made["release"]) == ({"quantity": 5}, "2500", 1)

        await row.get_by_role("button", name="Release…").click()
        form = page.get_by_role("dialog", name="New release of buy-five")
        await form.get_by_label("Parameters (JSON)").fill('{"quantity": 0}')
        await form.get_by_role("button", name="Promote").click()
        # The server's message, naming the bad parameter, and the dialog stays open.
        await expect(form.get_by_role("alert")).to_contain_text("quantity")
        await t.shot("2-bad-parameters")
        await form.get_by_label("Parameters (JSON)").fill('{"quantity": 7}')
        await form.get_by_role("button", name="Promote").click()
        await expect(row).to_contain_text("r2")

        await row.get_by_role("button", name="Roll back…").click()
        form = page.get_by_role("dialog", name="Roll back buy-five")
        await expect(form.get_by_role("listitem")).to_have_count(2)  # the history
        await form.get_by_role("button", name="Roll back").click()
        await expect(row).to_contain_text("r1")
        await t.shot("3-rolled-back")
    history = cp.acme.viewer.get("/v1/deployments/buy-five/history").json()
    assert [(h["release"], h["action"]) for h in history] == [
        (1, "rollback"),
        (2, "promote"),
        (1, "deploy"),
    ]


# -- the files ------------------------------------------------------------------------------------


@pytest.mark.unit
def test_every_asset_is_served_by_us_and_the_bundle_stays_small() -> None:
    app = FastAPI()
    app.include_router(dashboard.router)
    client = TestClient(app)
    files = {path.name: path.read_text() for path in dashboard.STATIC_DIR.iterdir()}

    assert client.get("/", follow_redirects=False).headers["location"] == "/ui/"
    page = client.get("/ui/")
    assert page.status_code == 200
    assert page.headers["content-security-policy"] == dashboard.CONTENT_SECURITY_POLICY
    assert "default-src 'none'" in dashboard.CONTENT_SECURITY_POLICY
    assert "'unsafe-inline'" not in dashboard.CONTENT_SECURITY_POLICY
    assert page.headers["cache-control"] == "no-cache"
    # Every file the page links is ours, versioned, and cached for good at that version.
    links = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sorted(link.split("?")[0] for link in links) == ["app.css", "app.js", "favicon.svg"]
    for link in links:
        answer = client.get(f"/ui/{link}")
        assert answer.status_code == 200, link
        assert answer.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert (
            client.get(f"/ui/{link}", headers={"If-None-Match": answer.headers["etag"]}).status_code
            == 304
        )
    # No inline script, style or handler: the CSP would refuse them.
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>|\bstyle=|\bon[a-z]+=", page.text)
    # Modules import only each other, and nothing anywhere names another origin.
    for name, text in files.items():
        for module in re.findall(r"from '([^']+)'", text):
            assert module.startswith("./") and module[2:] in files, (name, module)
        urls = re.findall(r"(?:https?:)?//[\w.-]+\.[a-z]{2,}[^\s'\")]*", text)
        assert set(urls) <= {"http://www.w3.org/2000/svg"}, (name, urls)
        answer = client.get(f"/ui/{name}") if name != "index.html" else page
        assert answer.status_code == 200, name
    assert client.get("/ui/app.js").headers["cache-control"] == "no-cache"  # unversioned
    assert client.get("/ui/nope.js").status_code == 404
    assert client.get("/ui/..%2Fmain.py").status_code in (404, 422)
    total = sum(len(text.encode()) for text in files.values())
    assert total < BUNDLE_LIMIT, f"the dashboard is {total} bytes; keep it under {BUNDLE_LIMIT}"
    assert app.openapi()["paths"] == {}  # not part of the API
