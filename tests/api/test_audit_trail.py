"""What the running API writes to the audit log: patient-data reads (API, console, /codec), CPR
searches with the keyed hash and the flows found, failed logins and every 401/403; the chain holds."""

from __future__ import annotations

import base64

import httpx
import pytest
from sqlmodel import Session, col, select

from careflow.auth import Role
from careflow.crypto import cpr_lookup_hash
from store.audit import verify_chain
from store.db import make_engine
from store.models import AuditEntry
from tests.conftest import Stack, referral_payload, wait_for
from tests.console.conftest import console_client, csrf_of

pytestmark = pytest.mark.e2e


def entries_after(stack: Stack, last_id: int) -> list[AuditEntry]:
    engine = make_engine(stack.settings.sqlalchemy_url)
    with Session(engine) as session:
        rows = list(
            session.exec(select(AuditEntry).where(col(AuditEntry.id) > last_id).order_by(col(AuditEntry.id))).all()
        )
    engine.dispose()
    return rows


def last_id(stack: Stack) -> int:
    rows = entries_after(stack, 0)
    return rows[-1].id if rows else 0


async def test_reads_searches_decodes_and_denials_are_audited(stack: Stack) -> None:
    cpr = "0303505123"
    accepted = (
        await stack.api.post("/referrals", json=referral_payload(cpr), headers=stack.headers(Role.CLINICIAN))
    ).json()
    start = last_id(stack)
    await stack.api.get(f"/flows/{accepted['id']}", headers=stack.headers(Role.COORDINATOR))
    await stack.api.post("/flows/search", json={"cpr": cpr}, headers=stack.headers(Role.COORDINATOR))
    payload = {
        "payloads": [
            {
                "metadata": {"encoding": base64.b64encode(b"json/plain").decode()},
                "data": base64.b64encode(b'{"a":1}').decode(),
            }
        ]
    }
    encoded = (await stack.api.post("/codec/encode", json=payload, headers=stack.headers(Role.COORDINATOR))).json()
    assert (
        await stack.api.post("/codec/decode", json=encoded, headers=stack.headers(Role.COORDINATOR))
    ).status_code == 200
    assert (await stack.api.get("/flows", headers={"Authorization": "Bearer nonsense"})).status_code == 401
    assert (await stack.api.get("/flows", headers=stack.headers(Role.PARTNER, "200000000000001"))).status_code == 403
    async with httpx.AsyncClient(base_url=stack.settings.public_url) as client:
        form = await client.get("/console/login")
        assert (
            await client.post("/console/login", data={"token": "forged", "csrf_token": csrf_of(form.text)})
        ).status_code == 401

    async def written() -> list[AuditEntry] | None:  # denials are recorded just after the answer
        rows = entries_after(stack, start)
        return rows if len(rows) >= 6 else None

    rows = await wait_for(written, timeout=10)
    by_action = {r.action: r for r in rows}
    assert by_action["read-flow"].flow_id == accepted["id"]
    search = by_action["search-by-cpr"]
    assert (
        cpr_lookup_hash(cpr, stack.settings.cpr_hash_key) in search.detail
        and accepted["id"] in search.detail
        and cpr not in search.detail
    )
    assert by_action["codec-decode"].actor == "test-coordinator"
    assert "GET /flows" in by_action["denied-401"].detail and by_action["denied-401"].actor == "anonymous"
    assert by_action["denied-403"].actor == "test-partner" and by_action["denied-403"].role == "partner"
    assert "console-login-failed" in by_action
    async with console_client(stack) as console:
        await console.get(f"/console/flows/{accepted['id']}")
    assert any(r.action == "console-read-flow" for r in entries_after(stack, start))
    assert verify_chain(make_engine(stack.settings.sqlalchemy_url), stack.settings.cpr_hash_key).ok
