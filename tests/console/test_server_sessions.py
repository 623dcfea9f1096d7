"""Console sessions are kept server-side: logout ends them for every copy of the cookie, a login of
the same person under a changed role ends the old session (the change applies at once), and the
server's row — not the cookie — says who is logged in with which role."""

from __future__ import annotations

import httpx
import pytest
from sqlmodel import Session, select

from careflow.auth import Role
from store.db import make_engine
from store.models import ConsoleLogin
from tests.conftest import Stack, token
from tests.console.conftest import csrf_of

pytestmark = pytest.mark.e2e


async def _login(stack: Stack, role: Role, subject: str) -> httpx.AsyncClient:
    client = httpx.AsyncClient(base_url=stack.settings.public_url, timeout=30)
    form = await client.get("/console/login")
    response = await client.post(
        "/console/login", data={"token": token(stack.settings, role, subject=subject), "csrf_token": csrf_of(form.text)}
    )
    assert response.status_code == 303, response.text
    return client


def _cookie(client: httpx.AsyncClient) -> str:
    return next(c.value for c in client.cookies.jar if c.name == "careflow_console")


async def test_logout_ends_the_session_for_every_copy_of_the_cookie(stack: Stack) -> None:
    client = await _login(stack, Role.COORDINATOR, "coordinator-logout")
    stolen = _cookie(client)
    page = await client.get("/console/flows")
    assert page.status_code == 200
    assert (await client.post("/console/logout", data={"csrf_token": csrf_of(page.text)})).status_code == 303
    await client.aclose()
    async with httpx.AsyncClient(base_url=stack.settings.public_url, cookies={"careflow_console": stolen}) as replay:
        assert (await replay.get("/console")).status_code == 303, (
            "an ended session is no session, whatever the cookie says"
        )


async def test_a_new_login_ends_the_old_session_so_a_changed_role_applies(stack: Stack) -> None:
    as_admin = await _login(stack, Role.ADMIN, "person-17")
    assert (await as_admin.get("/console")).status_code == 200
    as_coordinator = await _login(stack, Role.COORDINATOR, "person-17")  # the IdP now says coordinator
    assert (await as_coordinator.get("/console")).status_code == 200
    assert (await as_admin.get("/console")).status_code == 303, "the admin session ended with the new login"
    engine = make_engine(stack.settings.sqlalchemy_url)
    with Session(engine) as db:
        rows = db.exec(select(ConsoleLogin).where(ConsoleLogin.subject == "person-17")).all()
    engine.dispose()
    assert sorted((r.role, r.ended_at is None) for r in rows) == [("admin", False), ("coordinator", True)]
    assert all(len(r.sid_hash) == 64 and r.sid_hash not in _cookie(as_coordinator) for r in rows), (
        "the id is stored hashed"
    )
    second_coordinator = await _login(stack, Role.COORDINATOR, "person-17")  # same role, another browser
    assert (await as_coordinator.get("/console")).status_code == 200, "an unchanged role keeps its other sessions"
    for client in (as_admin, as_coordinator, second_coordinator):
        await client.aclose()
