"""Who sees which pathways: clinicians their organisation's (as referrer or receiver), coordinators
the organisations their token names (`*`: all), admin all. A read outside one's scope is possible
only as a break-glass read, with a reason, flagged in the audit log."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import or_
from sqlmodel import col

from careflow.auth import Role
from store.models import Flow

ALL_ORGANISATIONS = "*"
BREAK_GLASS_HEADER = "X-Break-Glass-Reason"


def visible_organisations(role: Role | str, organisations: Iterable[str]) -> frozenset[str] | None:
    """The SOR codes whose pathways this caller sees; None: all of them."""
    organisations = frozenset(organisations)
    if Role(role) is Role.ADMIN or (Role(role) is Role.COORDINATOR and ALL_ORGANISATIONS in organisations):
        return None
    return organisations - {ALL_ORGANISATIONS}


def restrict(query, organisations: frozenset[str] | None):  # noqa: ANN001, ANN201
    """Only flows one of the organisations is party to (referring or receiving)."""
    if organisations is None:
        return query
    return query.where(or_(col(Flow.referring_sor).in_(organisations), col(Flow.receiving_sor).in_(organisations)))


def in_scope(flow: Flow, organisations: frozenset[str] | None) -> bool:
    return organisations is None or flow.referring_sor in organisations or flow.receiving_sor in organisations
