"""Who is calling: roles and the principal a verified token stands for (see careflow.tokens)."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict


class Role(StrEnum):
    CLINICIAN = "clinician"
    COORDINATOR = "coordinator"
    PARTNER = "partner"
    ADMIN = "admin"


class Principal(BaseModel):
    model_config = ConfigDict(frozen=True)  # one verified token's principal serves all its requests

    subject: str
    role: Role
    sor: str | None = None  # partners (and clinicians) act for their organisation's SOR code
    organisations: list[str] = []  # every SOR code the token names (coordinators may have several)
    expires_at: int


class InvalidToken(Exception):
    pass
