"""Dependencies as Annotated aliases: settings, session, Temporal client, current user, roles."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine
from sqlmodel import Session
from temporalio.client import Client

from careflow.auth import InvalidToken, Principal, Role
from careflow.crypto import KeyRing
from careflow.settings import Settings
from exchange.receiving import Receiver
from messaging import Directory
from store.audit import audit_session
from workflows.registry import Pathways


async def get_settings_dep(request: Request) -> Settings:
    return request.app.state.settings


async def get_session(request: Request) -> AsyncIterator[Session]:
    # Audit entries added to it are hash-chained (store/audit.py). Opening a session does no I/O,
    # and closing one does none unless a transaction is still open (its rollback), so only that goes
    # to a thread: a sync dependency costs FastAPI two thread hand-offs per request.
    session = audit_session(request.app.state.engine, request.app.state.audit_key, expire_on_commit=False)
    try:
        yield session
    finally:
        if session.in_transaction():
            await asyncio.to_thread(session.close)
        else:
            session.close()


async def get_temporal(request: Request) -> Client:
    return request.app.state.temporal


async def get_directory(request: Request) -> Directory:
    return request.app.state.directory


async def get_key_ring(request: Request) -> KeyRing:
    return request.app.state.key_ring


async def get_engine(request: Request) -> Engine:
    return request.app.state.engine


async def get_pathways(request: Request) -> Pathways:
    return request.app.state.pathways


async def get_receiver(request: Request) -> Receiver:
    return request.app.state.receiver


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]
SessionDep = Annotated[Session, Depends(get_session)]
TemporalDep = Annotated[Client, Depends(get_temporal)]
DirectoryDep = Annotated[Directory, Depends(get_directory)]
KeyRingDep = Annotated[KeyRing, Depends(get_key_ring)]
EngineDep = Annotated[Engine, Depends(get_engine)]
PathwaysDep = Annotated[Pathways, Depends(get_pathways)]
ReceiverDep = Annotated[Receiver, Depends(get_receiver)]

_bearer = HTTPBearer(
    auto_error=False, description="a JWT from the identity provider (in dev: `careflow token --role ROLE`)"
)


async def get_current_user(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    if credentials is None:
        raise HTTPException(
            401, "authentication required: send 'Authorization: Bearer <token>'", headers={"WWW-Authenticate": "Bearer"}
        )
    verifier = request.app.state.verifier
    try:
        # On the event loop when the key is at hand (the signature check is CPU only); in a thread
        # when the identity provider's keys (JWKS) must be fetched first.
        principal = verifier.verify_at_hand(credentials.credentials)
        if principal is None:
            principal = await asyncio.to_thread(verifier.verify, credentials.credentials)
    except InvalidToken as err:
        raise HTTPException(401, f"invalid token: {err}", headers={"WWW-Authenticate": "Bearer"}) from None
    request.state.actor = (principal.subject, principal.role.value)  # for the audit of a 403
    return principal


CurrentUser = Annotated[Principal, Depends(get_current_user)]


def require_roles(*roles: Role, admin: bool = True) -> Callable[[Principal], Principal]:
    async def check(user: CurrentUser) -> Principal:  # async: no thread hand-off for a comparison
        if user.role not in roles and not (admin and user.role is Role.ADMIN):
            raise HTTPException(
                403, f"role {user.role.value} may not do this; needs {' or '.join(r.value for r in roles)}"
            )
        return user

    return check


Clinician = Annotated[Principal, Depends(require_roles(Role.CLINICIAN))]
Coordinator = Annotated[Principal, Depends(require_roles(Role.COORDINATOR))]
FlowReader = Annotated[Principal, Depends(require_roles(Role.COORDINATOR, Role.CLINICIAN))]
Reader = Annotated[Principal, Depends(require_roles(Role.COORDINATOR, Role.CLINICIAN, Role.PARTNER))]


# Admin does not act as a partner: a partner is an organisation, bound to its SOR.
async def get_scope(user: CurrentUser) -> frozenset[str] | None:
    from api.scoping import visible_organisations

    return visible_organisations(user.role, user.organisations)


Scope = Annotated[frozenset[str] | None, Depends(get_scope)]
Partner = Annotated[Principal, Depends(require_roles(Role.PARTNER, admin=False))]
