"""The codec endpoint the Temporal UI and CLI use to show encrypted payloads, for coordinators only."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from temporalio.api.common.v1 import Payload, Payloads

from api.deps import Coordinator, SessionDep
from store.models import AuditEntry

router = APIRouter(prefix="/codec", tags=["codec"])


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


@router.post("/decode")
async def decode(request: Request, user: Coordinator, session: SessionDep) -> dict:
    """Decrypt payloads (Temporal codec server protocol); audited, as they hold patient data."""
    result = await _apply(request, decode=True)

    def record() -> None:
        namespace = request.headers.get("x-namespace", "")[:100]
        session.add(
            AuditEntry(
                actor=user.subject,
                role=user.role.value,
                action="codec-decode",
                detail=f"{len(result.get('payloads', []))} payloads, namespace {namespace or '(none)'}",
            )
        )
        session.commit()

    await run_in_threadpool(record)
    return result


@router.post("/encode")
async def encode(request: Request, user: Coordinator) -> dict:
    """Encrypt payloads (Temporal codec server protocol)."""
    return await _apply(request, decode=False)
