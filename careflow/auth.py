"""Bearer tokens and roles: HMAC-signed, self-contained, verifiable by every process."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from datetime import timedelta
from enum import StrEnum

from pydantic import BaseModel, ValidationError


class Role(StrEnum):
    CLINICIAN = "clinician"
    COORDINATOR = "coordinator"
    PARTNER = "partner"
    ADMIN = "admin"


class Principal(BaseModel):
    subject: str
    role: Role
    sor: str | None = None  # partners are bound to their organisation's SOR code
    expires_at: int


class InvalidToken(Exception):
    pass


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issue_token(secret: str, *, subject: str, role: Role, sor: str | None = None, ttl: timedelta) -> str:
    if role is Role.PARTNER and not sor:
        raise ValueError("a partner token must be bound to a SOR code")
    principal = Principal(subject=subject, role=role, sor=sor, expires_at=int(time.time() + ttl.total_seconds()))
    body = _b64(principal.model_dump_json(exclude_none=True).encode())
    signature = _b64(hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest())
    return f"cf1.{body}.{signature}"


def verify_token(secret: str, token: str) -> Principal:
    try:
        version, body, signature = token.split(".")
    except ValueError:
        raise InvalidToken("malformed token") from None
    expected = _b64(hmac.new(secret.encode(), body.encode(), hashlib.sha256).digest())
    if version != "cf1" or not hmac.compare_digest(signature.encode(), expected.encode()):
        raise InvalidToken("bad signature")
    try:
        principal = Principal.model_validate(json.loads(_unb64(body)))
    except (ValueError, ValidationError):
        raise InvalidToken("malformed token") from None
    if principal.expires_at < time.time():
        raise InvalidToken("token expired")
    return principal
