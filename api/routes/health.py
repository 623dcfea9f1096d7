"""Liveness and readiness, the only endpoints without authentication."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlmodel import Session

from careflow.health import polling_workers, relay_backlog

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(
    request: Request,
    strict: bool = Query(False, description="answer 503 when degraded too (for monitoring, not load balancers)"),
) -> JSONResponse:
    """Database and Temporal reachable (else 503: this replica cannot work); workers polling and the
    relay keeping up (else "degraded": this replica still stores what partners send, so a load
    balancer keeps it, while `?strict=true` answers 503 for monitoring)."""
    settings = request.app.state.settings
    checks: dict[str, str] = {}
    try:
        await run_in_threadpool(_select_one, request.app.state.engine)
        checks["database"] = "ok"
    except Exception as err:  # readiness reports, it does not fail
        checks["database"] = f"unreachable: {type(err).__name__}"
    try:
        await asyncio.wait_for(request.app.state.temporal.service_client.check_health(), timeout=3)
        checks["temporal"] = "ok"
    except Exception as err:  # readiness reports, it does not fail
        checks["temporal"] = f"unreachable: {type(err).__name__}"
    if checks["temporal"] == "ok":
        try:
            workers = await asyncio.wait_for(
                polling_workers(request.app.state.temporal, settings.task_queue, settings.worker_stale_after), timeout=3
            )
            checks["workers"] = (
                "ok"
                if workers
                else f"no worker polled task queue {settings.task_queue} in the last "
                f"{settings.worker_stale_after.total_seconds():.0f}s"
            )
        except Exception as err:  # readiness reports, it does not fail
            checks["workers"] = f"unknown: {type(err).__name__}"
    else:
        checks["workers"] = "unknown: Temporal unreachable"
    if checks["database"] == "ok":
        try:
            waiting = await run_in_threadpool(relay_backlog, request.app.state.engine, settings.relay_backlog_threshold)
            checks["relay"] = (
                "ok"
                if not waiting
                else f"{waiting} inbound messages undelivered for more than "
                f"{settings.relay_backlog_threshold.total_seconds():.0f}s"
            )
        except Exception as err:  # readiness reports, it does not fail
            checks["relay"] = f"unknown: {type(err).__name__}"
    else:
        checks["relay"] = "unknown: database unreachable"
    if checks["database"] != "ok" or checks["temporal"] != "ok":
        status = "not-ready"
    else:
        status = "ready" if all(v == "ok" for v in checks.values()) else "degraded"
    failing = status == "not-ready" or (strict and status == "degraded")
    return JSONResponse({"status": status, "checks": checks}, status_code=503 if failing else 200)


def _select_one(engine) -> None:  # noqa: ANN001
    with Session(engine) as session:
        session.exec(text("SELECT 1"))
