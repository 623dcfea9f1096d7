"""The codec endpoint the Temporal UI and CLI use to show encrypted payloads, for coordinators only."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Request
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from temporalio.api.common.v1 import Payload, Payloads

from api.deps import Coordinator

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
        raise HTTPException(400, f"payloads could not be {'decoded' if decode else 'encoded'}: {type(err).__name__}") from None
    return json_format.MessageToDict(Payloads(payloads=result))


@router.post("/decode")
async def decode(request: Request, user: Coordinator) -> dict:
    """Decrypt payloads (Temporal codec server protocol)."""
    return await _apply(request, decode=True)


@router.post("/encode")
async def encode(request: Request, user: Coordinator) -> dict:
    """Encrypt payloads (Temporal codec server protocol)."""
    return await _apply(request, decode=False)
