"""Console login and logout: a coordinator pastes a token from the identity provider; the console
keeps a signed session."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.console.session import ConsoleSession, csrf_valid
from api.console.web import (
    CONSOLE_ROLES,
    ConsoleRoute,
    CsrfCheckedCoordinator,
    clear_session_cookie,
    end_console_session,
    open_console_session,
    read_session,
    set_session_cookie,
    templates,
)
from api.deps import SessionDep
from careflow.auth import InvalidToken
from store.models import AuditEntry

log = logging.getLogger(__name__)
router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)


def _login_page(
    request: Request, session: ConsoleSession, error: str | None = None, status_code: int = 200
) -> HTMLResponse:
    response = templates.TemplateResponse(
        request, "login.html", {"csrf": session.csrf, "error": error, "user": None}, status_code=status_code
    )
    set_session_cookie(response, request, session)
    return response


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request) -> Response:
    """The login form (with a pre-session that carries its CSRF token)."""
    session = read_session(request)
    if session and session.authenticated and session.role in CONSOLE_ROLES:
        return RedirectResponse("/console", status_code=303)
    return _login_page(request, session if session and not session.authenticated else ConsoleSession.anonymous())


@router.post("/login", response_class=HTMLResponse)
def login(
    request: Request, db: SessionDep, token: Annotated[str, Form()] = "", csrf_token: Annotated[str, Form()] = ""
) -> Response:
    """Check the pasted token: only coordinators and admins enter the console."""
    session = read_session(request)
    if not csrf_valid(session, csrf_token):
        return _login_page(
            request,
            ConsoleSession.anonymous(),
            "The login form had expired. Please paste your token again.",
            status_code=403,
        )
    assert session is not None
    try:
        principal = request.app.state.verifier.verify(token.strip())
    except InvalidToken as err:
        return _login_page(request, session, f"That token was not accepted ({err}).", status_code=401)
    if principal.role.value not in CONSOLE_ROLES:
        log.info("console login refused for role %s", principal.role.value)
        return _login_page(
            request,
            session,
            f"A {principal.role.value} token cannot open the coordinator console: it is for care coordinators (and "
            "admins) only.",
            status_code=403,
        )
    db.add(AuditEntry(actor=principal.subject, role=principal.role.value, action="console-login"))
    db.commit()
    response = RedirectResponse("/console", status_code=303)
    console_session = ConsoleSession.login(
        principal.subject, principal.role.value, principal.expires_at, tuple(principal.organisations)
    )
    open_console_session(request.app.state.engine, console_session)
    set_session_cookie(response, request, console_session)
    return response


@router.post("/logout")
def logout(request: Request, user: CsrfCheckedCoordinator) -> Response:
    """End the console session, on the server too: a copy of the cookie is worth nothing after it."""
    end_console_session(request.app.state.engine, user.sid)
    response = RedirectResponse("/console/login", status_code=303)
    clear_session_cookie(response)
    return response
