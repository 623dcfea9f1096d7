"""/readyz tells the truth: workers polling (Temporal's record of pollers) and the relay's backlog;
and logs as JSON lines carry the trace id."""

from __future__ import annotations

import io
import json
import logging
import uuid
from datetime import timedelta

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
from sqlmodel import Session, select

from api.main import create_app
from careflow.health import polling_workers, relay_backlog
from careflow.logs import JsonLinesFormatter
from store.db import make_engine
from store.models import Flow, InboundMessage, utcnow
from tests.conftest import LoopbackServer, Stack


@pytest.mark.e2e
async def test_ready_with_a_polling_worker_and_no_backlog(stack: Stack) -> None:
    response = await stack.api.get("/readyz?strict=true")
    assert response.status_code == 200, response.text
    assert response.json() == {
        "status": "ready",
        "checks": {"database": "ok", "temporal": "ok", "workers": "ok", "relay": "ok"},
    }
    assert await polling_workers(stack.client, stack.settings.task_queue, timedelta(minutes=1)) >= 1


@pytest.mark.e2e
async def test_degraded_without_workers_and_with_a_stuck_message(stack: Stack) -> None:
    # A second API on the same database and Temporal, for a task queue nobody polls.
    settings = stack.settings.model_copy(
        update={"task_queue": f"nobody-{uuid.uuid4()}", "relay_backlog_threshold": timedelta(seconds=30)}
    )
    flow_id = str(uuid.uuid4())
    header_id = str(uuid.uuid4())
    engine = make_engine(settings.sqlalchemy_url)
    with Session(engine) as session:
        session.add(
            Flow(
                id=flow_id,
                workflow_id=f"referral-{flow_id}",
                pathway="referral",
                referring_sor="1",
                receiving_sor="2",
                cpr_hash="h",
                patient_enc="x",
                reason_enc="x",
            )
        )
        session.flush()
        # Stored ten minutes ago and never delivered: the relay is not keeping up.
        session.add(
            InboundMessage(
                message_header_id=header_id,
                bundle_id="b",
                event_code="careflow-appointment-message",
                sender_sor="2",
                flow_id=flow_id,
                content_type="application/fhir+json",
                body_enc="x",
                received_at=utcnow() - timedelta(minutes=10),
            )
        )
        session.commit()
    try:
        async with (
            LoopbackServer(create_app(settings, run_migrations=False)) as server,
            httpx.AsyncClient(base_url=server.url) as http,
        ):
            lenient = await http.get("/readyz")
            strict = await http.get("/readyz?strict=true")
        body = lenient.json()
        assert lenient.status_code == 200 and body["status"] == "degraded"  # still stores what partners send
        assert body["checks"]["database"] == body["checks"]["temporal"] == "ok"
        assert body["checks"]["workers"].startswith("no worker polled task queue nobody-")
        assert body["checks"]["relay"].startswith("1 inbound messages undelivered")
        assert strict.status_code == 503
    finally:
        with Session(engine) as session:
            # The shared stack's own readiness must not see this message once the test is done.
            session.delete(
                session.exec(select(InboundMessage).where(InboundMessage.message_header_id == header_id)).one()
            )
            session.commit()
        engine.dispose()


def test_relay_backlog_counts_only_old_undelivered_messages(engine) -> None:  # noqa: ANN001
    flow_id = str(uuid.uuid4())
    now = utcnow()
    with Session(engine) as session:
        session.add(
            Flow(
                id=flow_id,
                workflow_id=f"referral-{flow_id}",
                pathway="referral",
                referring_sor="1",
                receiving_sor="2",
                cpr_hash="h",
                patient_enc="x",
                reason_enc="x",
            )
        )
        session.flush()
        for age, status, flow in (
            (10, "received", flow_id),
            (10, "delivered", flow_id),
            (0, "received", flow_id),
            (10, "received", None),
            (10, "rejected", flow_id),
        ):
            session.add(
                InboundMessage(
                    message_header_id=str(uuid.uuid4()),
                    bundle_id="b",
                    event_code="careflow-appointment-message",
                    sender_sor="2",
                    flow_id=flow,
                    delivery_status=status,
                    content_type="application/fhir+json",
                    body_enc="x",
                    received_at=now - timedelta(minutes=age),
                )
            )
        session.commit()
    assert relay_backlog(engine, timedelta(minutes=1)) == 1


def test_json_lines_carry_the_trace_id() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonLinesFormatter())
    log = logging.getLogger(f"test-json-{uuid.uuid4().hex}")
    log.addHandler(handler)
    log.propagate = False
    log.setLevel(logging.INFO)
    log.warning("outside a span")
    context = SpanContext(
        trace_id=0x0AF7651916CD43DD8448EB211C80319C,
        span_id=0x00F067AA0BA902B7,
        is_remote=False,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )
    with trace.use_span(NonRecordingSpan(context)):
        log.info("inside a span: %s", "sent")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("failed")
    outside, inside, failed = (json.loads(line) for line in stream.getvalue().splitlines())
    assert "trace_id" not in outside and outside["level"] == "warning"
    assert inside["message"] == "inside a span: sent"
    assert (inside["trace_id"], inside["span_id"]) == ("0af7651916cd43dd8448eb211c80319c", "00f067aa0ba902b7")
    assert "ValueError: boom" in failed["exception"]
