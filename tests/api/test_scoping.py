"""Scoping: clinicians act for their organisation, coordinators see the organisations their token
names, admin all; a break-glass read outside one's scope needs a reason and is flagged in the audit."""

from __future__ import annotations

import httpx
import pytest
from sqlmodel import Session, col, select

from careflow.auth import Role
from store.db import make_engine
from store.models import AuditEntry
from tests.conftest import Stack, referral_payload, token
from tests.console.conftest import csrf_of

pytestmark = pytest.mark.e2e

GP, HOSPITAL, OTHER_GP, OTHER_HOSPITAL = "100000000000001", "200000000000001", "400000000000001", "500407100001651"


def bearer(stack: Stack, role: Role, sor: str | None = None, subject: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(stack.settings, role, sor, subject)}"}


def audit(stack: Stack, flow_id: str) -> list[AuditEntry]:
    engine = make_engine(stack.settings.sqlalchemy_url)
    with Session(engine) as session:
        rows = list(
            session.exec(select(AuditEntry).where(AuditEntry.flow_id == flow_id).order_by(col(AuditEntry.id))).all()
        )
    engine.dispose()
    return rows


async def _referral(stack: Stack, cpr: str) -> str:
    response = await stack.api.post("/referrals", json=referral_payload(cpr), headers=bearer(stack, Role.CLINICIAN, GP))
    assert response.status_code == 202, response.text
    return response.json()["id"]


async def test_a_clinician_refers_from_their_own_organisation_only(stack: Stack) -> None:
    flow_id = await _referral(stack, "0707505123")
    detail = (await stack.api.get(f"/flows/{flow_id}", headers=bearer(stack, Role.CLINICIAN, GP))).json()
    assert detail["referring_sor"] == GP
    forged = await stack.api.post(
        "/referrals",
        json={**referral_payload("0707505124"), "referring_sor": OTHER_GP},
        headers=bearer(stack, Role.CLINICIAN, GP),
    )
    assert forged.status_code == 403 and "own organisation" in forged.json()["issue"][0]["diagnostics"]
    generic = await stack.api.post(
        "/pathways/referral/flows",
        json={**referral_payload("0707505124"), "referring_sor": OTHER_GP},
        headers=bearer(stack, Role.CLINICIAN, GP),
    )
    assert generic.status_code == 403, "the generic start is held to the same rule"


async def test_each_role_sees_the_flows_it_is_party_to(stack: Stack) -> None:
    flow_id = await _referral(stack, "2010505123")
    seen = {
        "referring clinician": (Role.CLINICIAN, GP, True),
        "receiving clinician": (Role.CLINICIAN, HOSPITAL, True),
        "other clinician": (Role.CLINICIAN, OTHER_GP, False),
        "coordinator of the hospital": (Role.COORDINATOR, HOSPITAL, True),
        "coordinator elsewhere": (Role.COORDINATOR, OTHER_HOSPITAL, False),
        "regional coordinator": (Role.COORDINATOR, "*", True),
        "admin": (Role.ADMIN, None, True),
    }
    for who, (role, sor, visible) in seen.items():
        headers = bearer(stack, role, sor)
        listed = (await stack.api.get("/flows", params={"limit": 500, "sort": "newest"}, headers=headers)).json()[
            "items"
        ]
        assert (flow_id in {f["id"] for f in listed}) is visible, who
        if sor not in (None, "*"):
            assert all(sor in (f["referring_sor"], f["receiving_sor"]) for f in listed), (
                f"{who} sees only its organisation's flows"
            )
        read = await stack.api.get(f"/flows/{flow_id}", headers=headers)
        assert read.status_code == (200 if visible else 403), who
        if role is Role.COORDINATOR:
            found = (await stack.api.post("/flows/search", json={"cpr": "2010505123"}, headers=headers)).json()
            assert found["total"] == (1 if visible else 0), who


async def test_a_break_glass_read_needs_a_reason_and_is_flagged(stack: Stack) -> None:
    flow_id = await _referral(stack, "1111505123")
    outsider = bearer(stack, Role.COORDINATOR, OTHER_HOSPITAL, subject="coordinator-elsewhere")
    refused = await stack.api.get(f"/flows/{flow_id}", headers=outsider)
    assert refused.status_code == 403 and "X-Break-Glass-Reason" in refused.json()["issue"][0]["diagnostics"]
    assert (
        await stack.api.get(f"/flows/{flow_id}", headers={**outsider, "X-Break-Glass-Reason": ""})
    ).status_code == 403
    read = await stack.api.get(f"/flows/{flow_id}", headers={**outsider, "X-Break-Glass-Reason": "akut indlagt hos os"})
    assert read.status_code == 200 and read.json()["patient"]["cpr"] == "1111505123"
    flagged = [e for e in audit(stack, flow_id) if e.break_glass]
    assert [(e.actor, e.action, e.detail) for e in flagged] == [
        ("coordinator-elsewhere", "break-glass-read-flow", "akut indlagt hos os")
    ]


async def test_the_console_is_scoped_and_breaks_glass_with_a_reason(stack: Stack) -> None:
    flow_id = await _referral(stack, "1212505123")
    async with httpx.AsyncClient(base_url=stack.settings.public_url, timeout=30) as client:
        form = await client.get("/console/login")
        login = await client.post(
            "/console/login",
            data={
                "token": token(stack.settings, Role.COORDINATOR, OTHER_HOSPITAL, "console-elsewhere"),
                "csrf_token": csrf_of(form.text),
            },
        )
        assert login.status_code == 303
        listing = await client.get("/console/flows", params={"sort": "newest"})
        assert flow_id not in listing.text
        page = await client.get(f"/console/flows/{flow_id}")
        assert page.status_code == 403 and "break glass" in page.text.lower() and "1212505123"[:6] not in page.text
        no_reason = await client.post(
            f"/console/flows/{flow_id}/break-glass", data={"reason": "", "csrf_token": csrf_of(page.text)}
        )
        assert no_reason.status_code == 422
        opened = await client.post(
            f"/console/flows/{flow_id}/break-glass",
            data={"reason": "patient overflyttet til os", "csrf_token": csrf_of(page.text)},
        )
        assert opened.status_code == 200 and "121250-5123" in opened.text
    flagged = [e for e in audit(stack, flow_id) if e.break_glass]
    assert [(e.actor, e.action, e.detail) for e in flagged] == [
        ("console-elsewhere", "console-break-glass-read-flow", "patient overflyttet til os")
    ]


async def test_out_of_scope_actions_are_refused(stack: Stack) -> None:
    """Reporting an event to, or triaging for, a pathway outside one's organisations is 403."""
    flow_id = await _referral(stack, "1303505123")
    elsewhere = bearer(stack, Role.CLINICIAN, OTHER_GP)
    event = await stack.api.post(f"/flows/{flow_id}/events/discharged", json={"reason": "x"}, headers=elsewhere)
    assert event.status_code == 403
    scoped = bearer(stack, Role.COORDINATOR, HOSPITAL)
    assert (await stack.api.get("/triage", headers=scoped)).status_code == 403
    assert (await stack.api.get("/triage", headers=bearer(stack, Role.COORDINATOR, "*"))).status_code == 200
