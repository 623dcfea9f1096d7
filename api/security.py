"""HTTP hardening around the whole app: body limits read before anything else, JSON depth, CORS on
/codec only, HSTS and no-store headers, and every 401/403 into the audit log.

Plain ASGI middleware: it runs before routing and authentication, so an oversized or absurdly
nested body is refused without being read whole, parsed or authenticated.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import anyio
from starlette.middleware.cors import CORSMiddleware

from api.errors import FHIR_JSON, operation_outcome
from messaging.formats import MAX_JSON_DEPTH, json_depth_exceeded

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

KB = 1024
MB = 1024 * KB
# Per path prefix, the largest body accepted; anything else POSTed gets DEFAULT_LIMIT.
DEFAULT_LIMIT = 64 * KB
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
SECURITY_HEADERS = [(b"x-content-type-options", b"nosniff")]
NO_STORE = (b"cache-control", b"no-store")
HSTS = (b"strict-transport-security", b"max-age=31536000; includeSubDomains")


class BodyTooLarge(Exception):
    pass


async def _outcome(send: Send, status: int, message: str) -> None:
    body = json.dumps(operation_outcome(message, code="too-costly" if status == 413 else "invalid")).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", FHIR_JSON.encode()),
                (b"content-length", str(len(body)).encode()),
                NO_STORE,
                *SECURITY_HEADERS,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyLimitMiddleware:
    """Reads a request body up to its path's limit (413 past it, counted while reading, whatever
    Content-Length says), refuses JSON nested deeper than MAX_JSON_DEPTH (400), then hands the body on."""

    def __init__(self, app: ASGIApp, limits: dict[str, int]) -> None:
        self.app = app
        self.limits = sorted(limits.items(), key=lambda item: -len(item[0]))  # longest prefix first

    def limit_for(self, path: str) -> int:
        return next((limit for prefix, limit in self.limits if path.startswith(prefix)), DEFAULT_LIMIT)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            await _outcome(send, 413, f"request body too large: at most {limit} bytes")
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _outcome(send, 413, f"request body too large: at most {limit} bytes")
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        content_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if (content_type.endswith(b"json") or not content_type) and json_depth_exceeded(body):
            await _outcome(send, 400, f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: wait for the disconnect, as the server would

        await self.app(scope, replay, send)


class ResponseHeadersMiddleware:
    """no-store on everything the API answers (it carries patient data; the console's static files
    set their own caching), nosniff, and HSTS when the request came over HTTPS."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        https = scope.get("scheme") == "https"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                present = {name.lower() for name, _ in headers}
                extra = [*SECURITY_HEADERS, NO_STORE] + ([HSTS] if https else [])
                headers += [(name, value) for name, value in extra if name not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class CodecCORSMiddleware:
    """CORS for the Temporal UI's calls to /codec, and nowhere else; never with credentials."""

    def __init__(self, app: ASGIApp, origins: list[str], prefix: str = "/codec") -> None:
        self.app = app
        self.prefix = prefix
        self.cors = CORSMiddleware(
            app,
            allow_origins=origins,
            allow_methods=["POST"],
            allow_headers=["Authorization", "Content-Type", "X-Namespace"],
            allow_credentials=False,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(self.prefix):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)


class DeniedAuditMiddleware:
    """Every 401 and 403 answer goes into the audit log (failed console logins among them), with
    who it was when the token was valid but the role or scope was not."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 0

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await self.app(scope, receive, watch)
        if status in (401, 403):
            await anyio.to_thread.run_sync(_record_denial, scope, status)


def _record_denial(scope: Scope, status: int) -> None:
    from store.audit import audit_session
    from store.models import AuditEntry

    state = scope["app"].state
    if not hasattr(state, "engine"):
        return  # not started (lifespan not run): nothing to write to
    actor, role = (scope.get("state") or {}).get("actor", ("anonymous", ""))
    path = scope["path"]
    action = "console-login-failed" if path == "/console/login" and scope["method"] == "POST" else f"denied-{status}"
    client = scope.get("client") or ("", 0)
    with audit_session(state.engine, state.audit_key) as session:
        session.add(
            AuditEntry(actor=actor, role=role, action=action, detail=f"{scope['method']} {path} from {client[0]}")
        )
        session.commit()
