"""The console in a real browser (Debian's Chromium, headless) against the real stack on loopback.

A coordinator logs in, reads the overview, filters the list, finds a patient by CPR, opens a
pathway and one of its messages, has an action refused (deadline in the past), then resolves the
escalation by extending its deadline and sees the new deadline. Screenshots: test-artifacts/console/.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import pytest_asyncio

from careflow.auth import Role
from tests.conftest import Stack, token, wait_for
from tests.console.conftest import read_audit, read_escalations, read_flow

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "console"
COPENHAGEN = ZoneInfo("Europe/Copenhagen")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest_asyncio.fixture
async def browser() -> AsyncIterator[object]:
    if not CHROMIUM.exists():
        message = f"Debian's Chromium is not installed at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


async def _page(browser, stack: Stack):  # noqa: ANN001, ANN202
    context = await browser.new_context(
        base_url=stack.settings.public_url,
        viewport={"width": 1366, "height": 860},
        locale="da-DK",
        timezone_id="Europe/Copenhagen",
    )
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    # Script errors and CSP violations; not the refused login's own 403 answer.
    page.on(
        "console",
        lambda msg: (
            errors.append(msg.text) if msg.type == "error" and "Failed to load resource" not in msg.text else None
        ),
    )
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status == 404 else None)
    return context, page, errors


async def _shot(page, name: str) -> None:  # noqa: ANN001
    SHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def _local(moment: datetime) -> str:
    return moment.astimezone(COPENHAGEN).strftime("%Y-%m-%dT%H:%M")


async def test_coordinator_resolves_an_escalation_in_the_browser(stack: Stack, browser, escalated_flow) -> None:  # noqa: ANN001
    from playwright.async_api import expect

    flow = await escalated_flow()
    escalation = next(e for e in read_escalations(stack, flow.flow_id) if e.resolved_at is None)
    context, page, errors = await _page(browser, stack)
    try:
        # Login: a clinician's token is refused with a clear message, a coordinator's gets in.
        await page.goto("/console/flows")
        await expect(page).to_have_url(re.compile(r"/console/login$"))
        await page.fill("#token", token(stack.settings, Role.CLINICIAN))
        await page.click("button[type=submit]")
        await expect(page.locator("#login-error")).to_contain_text("cannot open the coordinator console")
        await _shot(page, "01-login-refused")
        await page.fill("#token", token(stack.settings, Role.COORDINATOR, subject="coordinator-birgit"))
        await page.click("button[type=submit]")
        await expect(page).to_have_url(re.compile(r"/console$"))
        cookies = await context.cookies()
        session_cookie = next(c for c in cookies if c["name"] == "careflow_console")
        assert (
            session_cookie["httpOnly"] and session_cookie["sameSite"] == "Lax" and session_cookie["path"] == "/console"
        )

        # Overview: the counts link into the filtered list.
        await expect(page.locator("#card-escalations .n")).not_to_have_text("0")
        await expect(page.locator("#card-overdue .n")).not_to_have_text("0")
        await expect(page.locator("#by-step")).to_contain_text("Appointment · indkaldelse")
        await _shot(page, "02-overview")
        await page.click("#card-overdue")
        await expect(page).to_have_url(re.compile(r"/console/flows\?overdue=1"))
        await expect(page.locator(f"tr[data-flow-id='{flow.flow_id}']")).to_be_visible()

        # Flow list: filters apply on change; the table refreshes itself.
        await page.goto("/console/flows")
        await page.select_option("select[name=step]", "appointment")
        await expect(page).to_have_url(re.compile(r"step=appointment"))
        await page.select_option("select[name=receiving_sor]", "200000000000001")
        await expect(page).to_have_url(re.compile(r"receiving_sor=200000000000001"))
        row = page.locator(f"tr[data-flow-id='{flow.flow_id}']")
        await expect(row).to_be_visible()
        await expect(row.locator("time.countdown")).to_contain_text("overdue by")
        before = await page.locator(".summary time").get_attribute("datetime")
        await page.wait_for_function(
            "before => document.querySelector('.summary time').getAttribute('datetime') !== before",
            arg=before,
            timeout=15000,
        )
        await _shot(page, "03-flow-list-filtered")

        # Find the patient by CPR: POSTed, so the number is in no URL.
        await page.fill("#cpr-search input[name=cpr]", f"{flow.cpr[:6]}-{flow.cpr[6:]}")
        await page.click("#cpr-search button")
        await expect(page.locator("#search-result")).to_contain_text("1 pathway for this patient")
        assert flow.cpr not in page.url and flow.cpr[:6] not in page.url
        await expect(page.locator(f"tr[data-flow-id='{flow.flow_id}']")).to_be_visible()
        await _shot(page, "04-cpr-search")

        # Flow detail: the step picture, the countdown, messages with their acknowledgement.
        await page.click(f"tr[data-flow-id='{flow.flow_id}'] a")
        await expect(page).to_have_url(re.compile(f"/console/flows/{flow.flow_id}$"))
        await expect(page.locator("svg.steps g.step-current")).to_have_attribute("data-step", "appointment")
        await expect(page.locator("svg.steps g[data-step=referral]")).to_have_class(re.compile("step-done"))
        await expect(page.locator("#next-deadline time.countdown")).to_contain_text("overdue by")
        await expect(page.locator("#messages")).to_contain_text("Referral · henvisning")
        await expect(page.locator("#messages .ack-ok").first).to_be_visible()
        await expect(page.locator("#timeline")).to_contain_text("escalated")
        await _shot(page, "05-flow-detail")
        await page.locator("#messages a", has_text="view FHIR").first.click()
        await expect(page.locator("#fhir-body")).to_contain_text('"resourceType": "Bundle"')
        await expect(page.locator("#fhir-body")).to_contain_text('"type": "message"')
        await _shot(page, "06-message-fhir")
        assert {"console-read-flow", "console-read-message"} <= {a.action for a in read_audit(stack, flow.flow_id)}

        # Escalation inbox: a deadline in the past is refused, with the pathway's own reason.
        await page.goto("/console/escalations")
        card = page.locator(f"article[data-escalation-id='{escalation.id}']")
        await expect(card).to_contain_text("no appointment (indkaldelse) by its deadline")
        await _shot(page, "07-escalation-inbox")
        await card.locator("summary", has_text="Extend deadline").click()
        await card.locator("input[name=new_deadline]").fill(_local(datetime.now(UTC) - timedelta(days=1)))
        await card.locator(".action-extend input[name=reason]").fill("hospital asked for more time")
        await card.locator(".action-extend button").click()
        await expect(page.locator("#flash")).to_contain_text(
            "The pathway refused this action: the new deadline must be in the future"
        )
        await _shot(page, "08-action-refused")
        assert next(e for e in read_escalations(stack, flow.flow_id) if e.id == escalation.id).resolved_at is None

        # Resolve it by extending the deadline; the inbox empties of it and the flow shows the new deadline.
        new_deadline = (datetime.now(UTC) + timedelta(days=10)).replace(second=0, microsecond=0)
        card = page.locator(f"article[data-escalation-id='{escalation.id}']")
        await card.locator("summary", has_text="Extend deadline").click()
        await card.locator("input[name=new_deadline]").fill(_local(new_deadline))
        await card.locator(".action-extend input[name=reason]").fill("hospital asked for more time")
        await card.locator(".action-extend button").click()
        await expect(page.locator("#flash")).to_contain_text("Done: deadline of appointment is now")
        await _shot(page, "09-deadline-extended")

        async def resolved() -> bool:
            row = next(e for e in read_escalations(stack, flow.flow_id) if e.id == escalation.id)
            return row.resolved_at is not None

        await wait_for(resolved)
        await page.goto("/console/escalations")
        await expect(page.locator(f"article[data-escalation-id='{escalation.id}']")).to_have_count(0)
        await expect(page.locator(f"#resolved tr[data-escalation-id='{escalation.id}']")).to_contain_text(
            "coordinator-birgit"
        )
        await page.goto(f"/console/flows/{flow.flow_id}")
        shown = new_deadline.astimezone(COPENHAGEN).strftime("%Y-%m-%d %H:%M")
        await expect(page.locator("#next-deadline")).to_contain_text(shown)
        await expect(page.locator("#next-deadline time.countdown")).to_contain_text("in 9d")
        await expect(page.locator("#timeline")).to_contain_text("deadline extended")
        await expect(page.locator("#timeline")).to_contain_text("coordinator-birgit")
        await _shot(page, "10-flow-after-extension")

        row = next(e for e in read_escalations(stack, flow.flow_id) if e.id == escalation.id)
        assert row.resolved_by == "coordinator-birgit"
        assert read_flow(stack, flow.flow_id).open_escalations == 0
        actions = [a.action for a in read_audit(stack, flow.flow_id)]
        assert "console-extend-deadline-refused" in actions and "console-extend-deadline" in actions

        # Logout ends the session.
        await page.click(".logout button")
        await expect(page).to_have_url(re.compile(r"/console/login$"))
        await page.goto("/console")
        await expect(page).to_have_url(re.compile(r"/console/login$"))
        assert not errors, errors  # no script errors, no CSP violations
    finally:
        await context.close()
