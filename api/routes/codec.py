"""The codec endpoint the Temporal UI and CLI use to show encrypted payloads, for coordinators only.

And, in dev only, the same decode for the dev server's own Temporal UI (`careflow dev`), which can
send no bearer token: see `DevUiCodecCredential`.
"""

from __future__ import annotations

import hashlib
import hmac

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from sqlmodel import Session
from temporalio.api.common.v1 import Payload, Payloads

from api.deps import Coordinator, SessionDep
from api.security import ASGIApp, Receive, Scope, Send
from store.models import AuditEntry

router = APIRouter(prefix="/codec", tags=["codec"])

# The dev UI's codec endpoint is {public_url}/codec/ui/<credential>; the UI POSTs to …/decode.
UI_PREFIX = "/codec/ui/"
UI_ACTOR = "temporal-ui"
UI_ROLE = "dev-codec-credential"  # not a careflow role: it opens this one route and nothing else


async def _apply(request: Request, decode: bool) -> dict:
    try:
        payloads = json_format.Parse(await request.body(), Payloads())
    except json_format.ParseError as err:
        raise HTTPException(400, f"not a Payloads JSON document: {err}") from None
    codec = request.app.state.temporal_codec
    try:
        result: list[Payload] = await (codec.decode if decode else codec.encode)(list(payloads.payloads))
    except (ValueError, KeyError, DecodeError) as err:
        raise HTTPException(
            400, f"payloads could not be {'decoded' if decode else 'encoded'}: {type(err).__name__}"
        ) from None
    return json_format.MessageToDict(Payloads(payloads=result))


async def _audit_decode(request: Request, session: Session, actor: str, role: str, result: dict, via: str = "") -> None:
    def record() -> None:
        namespace = request.headers.get("x-namespace", "")[:100]
        session.add(
            AuditEntry(
                actor=actor,
                role=role,
                action="codec-decode",
                detail=f"{len(result.get('payloads', []))} payloads, namespace {namespace or '(none)'}{via}",
            )
        )
        session.commit()

    await run_in_threadpool(record)


@router.post("/decode")
async def decode(request: Request, user: Coordinator, session: SessionDep) -> dict:
    """Decrypt payloads (Temporal codec server protocol); audited, as they hold patient data."""
    result = await _apply(request, decode=True)
    await _audit_decode(request, session, user.subject, user.role.value, result)
    return result


@router.post("/encode")
async def encode(request: Request, user: Coordinator) -> dict:
    """Encrypt payloads (Temporal codec server protocol)."""
    return await _apply(request, decode=False)


@router.post("/ui/decode", include_in_schema=False)
async def decode_for_dev_ui(request: Request, session: SessionDep) -> dict:
    """The dev Temporal UI's decode: with the per-run credential from the URL path (checked by
    DevUiCodecCredential), dev only, audited like any other decode."""
    if not request.app.state.settings.is_dev:
        raise HTTPException(404, "the Temporal UI's dev codec credential exists only in dev mode")
    if getattr(request.state, "codec_ui_credential", None) is not True:
        raise HTTPException(401, "not the Temporal UI's codec credential of this run")
    result = await _apply(request, decode=True)
    client = request.client.host if request.client else "?"
    await _audit_decode(request, session, UI_ACTOR, UI_ROLE, result, f", dev Temporal UI credential, from {client}")
    return result


class DevUiCodecCredential:
    """Why the Temporal UI of `careflow dev` decodes with a credential in the URL path.

    The UI calls the codec endpoint from the browser, cross-origin (its port is not the API's), and
    sends a bearer token only with its OIDC login (`passAccessToken`), which the dev server's UI does
    not have; `temporal server start-dev` has --ui-codec-endpoint and nothing to add headers or
    cookies. So (the least bad choice) `careflow dev` mints a random credential per run, gives the UI
    the endpoint {public_url}/codec/ui/<credential>, and the API (given only its SHA-256,
    CAREFLOW_CODEC_UI_CREDENTIAL_SHA256) accepts it for POST /codec/ui/…/decode and nothing else: it
    is no JWT, so no other route takes it; it cannot encode; it dies with the run; every decode is
    audited (actor temporal-ui); outside CAREFLOW_ENV=dev the route answers 404 and the setting
    stops the API from starting. Whoever can open the dev UI (loopback) can read decoded payloads:
    acceptable for the dev stack and its synthetic data, never for a deployment (there the UI signs
    in with OIDC and passes its access token to /codec/decode).

    This middleware runs outermost: it checks the credential and rewrites the path in place to
    /codec/ui/<rest> before anything else sees it, so the credential reaches no log (uvicorn's access
    log reads this same scope), trace, metric label or audit entry. It always runs, in production
    too, so a path with a guessed credential is never logged either.
    """

    def __init__(self, app: ASGIApp, credential_sha256: str = "") -> None:
        self.app = app
        self.digest = credential_sha256.strip().lower()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith(UI_PREFIX):
            credential, _, rest = scope["path"][len(UI_PREFIX) :].partition("/")
            offered = hashlib.sha256(credential.encode()).hexdigest()
            valid = bool(self.digest) and bool(credential) and hmac.compare_digest(offered, self.digest)
            scope["path"] = f"{UI_PREFIX}{rest}"  # valid or not: the route refuses (401, audited) without the flag
            scope["raw_path"] = scope["path"].encode()
            scope.setdefault("state", {})["codec_ui_credential"] = valid
        await self.app(scope, receive, send)
