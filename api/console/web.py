"""Console plumbing: HTML error handling, templates, the logged-in coordinator, CSRF, flash messages."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from fastapi import Depends, Form, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from jinja2 import pass_context
from sqlalchemy import Engine, update
from sqlmodel import Session, col

from api.console.session import (
    COOKIE_NAME,
    COOKIE_PATH,
    FLASH_COOKIE,
    ConsoleSession,
    csrf_valid,
    decode_flash,
    encode_flash,
    sid_hash,
)
from api.scoping import visible_organisations
from careflow.auth import Role
from store.models import ConsoleLogin, utcnow

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
COPENHAGEN = ZoneInfo("Europe/Copenhagen")
CONSOLE_ROLES = (Role.COORDINATOR.value, Role.ADMIN.value)

# Words that are no message type or declared step.
TERMS = {"completed": "Completed · afsluttet", "acknowledgement": "Acknowledgement · kvittering"}


def declared_terms(pathways: Iterable[Any]) -> dict[str, str]:
    """Step names and message types in coordinators' words, read once from the declarations at
    start-up: a reply step is called by its message (English · Danish), an event step by its title."""
    from messaging.model import message_label
    from workflows.declare import AwaitEvent, AwaitReply, Send, SendOnEvent

    terms: dict[str, str] = {}
    for pathway in pathways:
        for step in pathway.all_steps():
            if isinstance(step, Send | AwaitReply | SendOnEvent):
                terms.setdefault(step.name, _both(message_label(step.message)))
                terms.setdefault(step.message, _both(message_label(step.message)))
            elif isinstance(step, AwaitEvent):
                terms.setdefault(step.name, (step.title or step.event).capitalize())
        terms.setdefault(pathway.name, f"{pathway.title} · {pathway.title_da.lower()}")
    return terms


def _both(label: str) -> str:
    """'appointment (indkaldelse)' → 'Appointment · indkaldelse'."""
    english, _, danish = label.partition(" (")
    return f"{english[:1].upper()}{english[1:]}" + (f" · {danish.rstrip(')')}" if danish else "")


# Security headers for every console page: no third-party content, no inline script, no framing.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class LoginRequired(Exception):
    """No valid coordinator session: pages go to the login form, fragments answer 401."""


def aware(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def local_time(moment: datetime | None) -> str:
    moment = aware(moment)
    return moment.astimezone(COPENHAGEN).strftime("%Y-%m-%d %H:%M") if moment else "—"


def iso_time(moment: datetime | None) -> str:
    moment = aware(moment)
    return moment.astimezone(UTC).isoformat() if moment else ""


def term(name: str | None, declared: Mapping[str, str] | None = None) -> str:
    """A step, message type or pathway in coordinators' words (`declared`: the app's declared_terms)."""
    from messaging.model import message_label

    key = name or ""
    found = TERMS.get(key) or (declared or {}).get(key)
    if found:
        return found
    label = message_label(key)
    return _both(label) if label != key else key.replace("_", " ").replace("-", " ")


def query_string(params: dict[str, Any], **changes: Any) -> str:
    merged = {**params, **changes}
    return urlencode({k: v for k, v in merged.items() if v not in (None, "", False)})


templates = Jinja2Templates(directory=str(HERE / "templates"))


def age(seconds: float) -> str:
    """How long something has waited, coarsely: '45 s', '12 min', '3 h', '2 d'."""
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit}"
    return f"{int(seconds)} s"


@pass_context
def _term_filter(context: Any, name: str | None) -> str:
    request = context.get("request")
    return term(name, getattr(request.app.state, "console_terms", None) if request is not None else None)


templates.env.filters.update(local=local_time, iso=iso_time, term=_term_filter, age=age)
templates.env.globals.update(query_string=query_string, json=json)


class ConsoleRoute(APIRoute):
    """Answers the console's errors as HTML pages (the API's are FHIR OperationOutcomes)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def console_handler(request: Request) -> Response:
            try:
                response = await handler(request)
            except LoginRequired:
                if request.headers.get("x-console-fragment"):
                    response = HTMLResponse("login required", status_code=401)
                else:
                    response = RedirectResponse("/console/login", status_code=303)
            except HTTPException as exc:
                response = error_page(request, exc.status_code, str(exc.detail))
            except RequestValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in e.get('loc', ())[1:])}: {e.get('msg', 'invalid')}" for e in exc.errors()
                )
                response = error_page(request, 422, f"the request was not understood ({problems})")
            for name, value in SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
            return response

        return console_handler


def error_page(request: Request, status: int, message: str) -> HTMLResponse:
    return templates.TemplateResponse(
        request, "error.html", {"status": status, "message": message, "user": None}, status_code=status
    )


def read_session(request: Request) -> ConsoleSession | None:
    return ConsoleSession.decode(request.app.state.settings.session_secret, request.cookies.get(COOKIE_NAME))


def set_session_cookie(response: Response, request: Request, session: ConsoleSession) -> None:
    response.set_cookie(
        COOKIE_NAME,
        session.encode(request.app.state.settings.session_secret),
        max_age=max(0, session.exp - int(datetime.now(UTC).timestamp())),
        path=COOKIE_PATH,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )


def clear_session_cookie(response: Response) -> None:
    response.delete_cookie(COOKIE_NAME, path=COOKIE_PATH, httponly=True, samesite="lax")


@dataclass(frozen=True)
class ConsoleUser:
    subject: str
    role: str
    csrf: str
    organisations: tuple[str, ...] = ()
    sid: str = ""

    @property
    def scope(self) -> frozenset[str] | None:
        """The SOR codes whose pathways this user sees (api/scoping.py); None: all."""
        return visible_organisations(self.role, self.organisations)


def open_console_session(engine: Engine, session: ConsoleSession) -> None:
    """The server-side half of a login: this session's row. The same person's open sessions under
    another role or other organisations end: the identity provider's change applies at once."""
    assert session.sid and session.sub and session.role
    organisations = json.dumps(sorted(session.orgs))
    with Session(engine) as db:
        changed = (col(ConsoleLogin.role) != session.role) | (col(ConsoleLogin.organisations_json) != organisations)
        db.exec(
            update(ConsoleLogin)
            .where(col(ConsoleLogin.subject) == session.sub, col(ConsoleLogin.ended_at).is_(None), changed)
            .values(ended_at=utcnow())
        )
        db.add(
            ConsoleLogin(
                sid_hash=sid_hash(session.sid),
                subject=session.sub,
                role=session.role,
                organisations_json=organisations,
                expires_at=datetime.fromtimestamp(session.exp, UTC),
            )
        )
        db.commit()


def end_console_session(engine: Engine, sid: str) -> None:
    with Session(engine) as db:
        db.exec(
            update(ConsoleLogin)
            .where(col(ConsoleLogin.sid_hash) == sid_hash(sid), col(ConsoleLogin.ended_at).is_(None))
            .values(ended_at=utcnow())
        )
        db.commit()


def get_console_user(request: Request) -> ConsoleUser:
    """The logged-in coordinator: a validly signed cookie naming a session the server still holds
    open (role and organisations come from the server's row, not the cookie)."""
    session = read_session(request)
    if session is None or not session.authenticated or not session.sid:
        raise LoginRequired()
    with Session(request.app.state.engine) as db:
        row = db.get(ConsoleLogin, sid_hash(session.sid))
    if (
        row is None
        or row.ended_at is not None
        or aware(row.expires_at) < utcnow()
        or row.subject != session.sub
        or row.role not in CONSOLE_ROLES
    ):
        raise LoginRequired()
    request.state.actor = (row.subject, row.role)  # for the audit of a 403
    return ConsoleUser(
        subject=row.subject,
        role=row.role,
        csrf=session.csrf,
        organisations=tuple(json.loads(row.organisations_json)),
        sid=session.sid,
    )


CurrentCoordinator = Annotated[ConsoleUser, Depends(get_console_user)]


def require_csrf(
    user: CurrentCoordinator, request: Request, csrf_token: Annotated[str | None, Form()] = None
) -> ConsoleUser:
    """Every console POST carries the session's CSRF token; without it nothing happens."""
    if not csrf_valid(read_session(request), csrf_token):
        log.warning("console POST %s refused: missing or wrong CSRF token (user %s)", request.url.path, user.subject)
        raise HTTPException(
            403,
            "This form has expired or did not come from the console (CSRF token missing or wrong). Nothing was "
            "changed; reload the page and try again.",
        )
    return user


CsrfCheckedCoordinator = Annotated[ConsoleUser, Depends(require_csrf)]


def flash_redirect(request: Request, url: str, kind: str, text: str) -> RedirectResponse:
    response = RedirectResponse(url, status_code=303)
    response.set_cookie(
        FLASH_COOKIE,
        encode_flash(request.app.state.settings.session_secret, kind, text),
        max_age=60,
        path=COOKIE_PATH,
        httponly=True,
        samesite="lax",
    )
    return response


def render(request: Request, template: str, context: dict[str, Any], *, status_code: int = 200) -> HTMLResponse:
    """A page, with the flash message (if any) shown once."""
    flash = decode_flash(request.app.state.settings.session_secret, request.cookies.get(FLASH_COOKIE))
    response = templates.TemplateResponse(request, template, {"flash": flash, **context}, status_code=status_code)
    if FLASH_COOKIE in request.cookies:
        response.delete_cookie(FLASH_COOKIE, path=COOKIE_PATH, httponly=True, samesite="lax")
    return response


def safe_next(url: str | None, default: str = "/console/escalations") -> str:
    """Only ever redirect inside the console (no open redirect)."""
    if url and url.startswith("/console") and not url.startswith("//") and "\\" not in url:
        return url
    return default
