"""The console's session cookie and CSRF token: a signed, expiring payload.

The cookie holds who is logged in (token subject and role: never patient data), when the session
ends, and the session's CSRF token. It is signed with an HMAC key derived from the session secret
(CAREFLOW_SESSION_SECRET), so a forged or altered cookie is simply not a session.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import asdict, dataclass

COOKIE_NAME = "careflow_console"
FLASH_COOKIE = "careflow_console_flash"
COOKIE_PATH = "/console"
SESSION_SECONDS = 8 * 3600  # a working day; never beyond the pasted token's own expiry
ANONYMOUS_SECONDS = 3600  # the login form's pre-session, which carries only a CSRF token
FLASH_SECONDS = 60


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _key(secret: str, purpose: str) -> bytes:
    # Domain separation: a console cookie can never pass as an API token, nor a flash as a session.
    return hmac.new(secret.encode(), f"careflow-console-{purpose}".encode(), hashlib.sha256).digest()


def sign(secret: str, purpose: str, payload: dict) -> str:
    body = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
    signature = _b64(hmac.new(_key(secret, purpose), body.encode(), hashlib.sha256).digest())
    return f"{body}.{signature}"


def unsign(secret: str, purpose: str, value: str | None) -> dict | None:
    """The payload of a validly signed, unexpired value; None for anything else."""
    if not value or value.count(".") != 1:
        return None
    body, signature = value.split(".")
    expected = _b64(hmac.new(_key(secret, purpose), body.encode(), hashlib.sha256).digest())
    if not hmac.compare_digest(signature.encode(), expected.encode()):  # bytes: any cookie text compares
        return None
    try:
        payload = json.loads(_unb64(body))
    except ValueError:
        return None
    if not isinstance(payload, dict) or not isinstance(payload.get("exp"), int) or payload["exp"] < time.time():
        return None
    return payload


@dataclass(frozen=True)
class ConsoleSession:
    csrf: str
    exp: int
    sub: str | None = None  # None: not logged in yet (the login form's pre-session)
    role: str | None = None
    orgs: tuple[str, ...] = ()  # the SOR codes the token named ("*": all)
    sid: str | None = None  # the server-side session (store.models.ConsoleLogin) this cookie names

    @property
    def authenticated(self) -> bool:
        return self.sub is not None

    @classmethod
    def anonymous(cls) -> ConsoleSession:
        return cls(csrf=secrets.token_urlsafe(32), exp=int(time.time()) + ANONYMOUS_SECONDS)

    @classmethod
    def login(
        cls, subject: str, role: str, token_expires_at: int, organisations: tuple[str, ...] = ()
    ) -> ConsoleSession:
        # A fresh CSRF token at login: a token planted before login is worth nothing after it.
        return cls(
            csrf=secrets.token_urlsafe(32),
            exp=min(int(time.time()) + SESSION_SECONDS, token_expires_at),
            sub=subject,
            role=role,
            orgs=tuple(organisations),
            sid=secrets.token_urlsafe(32),
        )

    def encode(self, secret: str) -> str:
        return sign(secret, "session", asdict(self))

    @classmethod
    def decode(cls, secret: str, value: str | None) -> ConsoleSession | None:
        payload = unsign(secret, "session", value)
        if payload is None or not isinstance(payload.get("csrf"), str):
            return None
        sub, role = payload.get("sub"), payload.get("role")
        if (sub is None) != (role is None):
            return None
        orgs = payload.get("orgs") or []
        if not isinstance(orgs, list) or not all(isinstance(o, str) for o in orgs):
            return None
        sid = payload.get("sid")
        if sid is not None and not isinstance(sid, str):
            return None
        return cls(csrf=payload["csrf"], exp=payload["exp"], sub=sub, role=role, orgs=tuple(orgs), sid=sid)


def sid_hash(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


def csrf_valid(session: ConsoleSession | None, submitted: str | None) -> bool:
    """The submitted form token matches the session's, compared in constant time."""
    if session is None or not submitted:
        return False
    return hmac.compare_digest(session.csrf.encode(), submitted.encode())


def encode_flash(secret: str, kind: str, text: str) -> str:
    return sign(secret, "flash", {"kind": kind, "text": text, "exp": int(time.time()) + FLASH_SECONDS})


def decode_flash(secret: str, value: str | None) -> tuple[str, str] | None:
    payload = unsign(secret, "flash", value)
    if payload is None:
        return None
    return str(payload.get("kind", "info")), str(payload.get("text", ""))
