"""Prometheus metrics: scraped from the real stack after driving a pathway, the read-model metrics on
SQLite and PostgreSQL, and the Temporal SDK's runtime metrics from a worker."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlmodel import Session
from temporalio.testing import WorkflowEnvironment

from careflow.auth import Role
from careflow.metrics import ReadModelCollector, WorkerMetrics
from careflow.settings import Settings
from careflow.temporal import connect, runtime_for
from store.models import Escalation, Flow, FlowStatus, InboundMessage, OutboundMessage, utcnow
from tests.conftest import Stack, free_port, referral_payload, wait_for
from workers.main import build_worker

CPR = "0202505123"


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of a Prometheus exposition."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(scraped: dict, name: str, **labels: str) -> float:
    return scraped.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.mark.e2e
async def test_metrics_after_a_pathway(stack: Stack) -> None:
    before = samples((await stack.api.get("/metrics")).text)
    accepted = (
        await stack.api.post("/referrals", json=referral_payload(CPR), headers=stack.headers(Role.CLINICIAN))
    ).json()
    headers = stack.headers(Role.COORDINATOR)

    async def completed() -> bool:
        return (await stack.api.get(f"/flows/{accepted['id']}", headers=headers)).json()["status"] == "completed"

    await wait_for(completed, timeout=60, interval=0.3)
    response = await stack.api.get("/metrics")  # no token: scraped like the health checks
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    after = samples(response.text)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("careflow_http_requests_total", method="POST", route="/referrals", status_code="202") == 1
    assert grew("careflow_http_requests_total", method="GET", route="/flows/{flow_id}", status_code="200") >= 1
    for kind in ("appointment", "test-result", "treatment-plan"):
        assert (
            grew("careflow_inbound_messages_total", message_type=f"careflow-{kind}-message", outcome="accepted") >= 1
        ), kind
    assert grew("careflow_inbound_messages_total", message_type="acknowledgement-message", outcome="accepted") >= 1
    assert grew("careflow_acknowledgements_received_total", code="ok") >= 1
    assert ("careflow_pathways_open", ()) not in after  # a family with labels, never a bare total
    # Nothing that identifies a patient or a pathway is a label value.
    label_values = {v for (_name, labels) in after for _k, v in labels}
    assert not {CPR, "Testa", "Syntetisk", accepted["id"]} & label_values
    assert not any(accepted["id"] in v for v in label_values)

    # The worker: careflow's activities by outcome.
    worker = samples(generate_latest(stack.worker_metrics.registry).decode())
    assert value(worker, "careflow_activity_executions_total", activity="send_message", outcome="completed") >= 1
    assert value(worker, "careflow_activity_executions_total", activity="record_state", outcome="completed") >= 4
    assert value(worker, "careflow_activity_duration_seconds_count", activity="send_message") >= 1


@pytest.mark.e2e
async def test_unknown_routes_and_types_stay_bounded(stack: Stack) -> None:
    await stack.api.get(f"/no-such-page/{uuid.uuid4()}")
    scraped = samples((await stack.api.get("/metrics")).text)
    assert value(scraped, "careflow_http_requests_total", method="GET", route="unmatched", status_code="404") >= 1
    assert not any("no-such-page" in v for (_n, labels) in scraped for _k, v in labels)


def test_read_model_metrics(engine) -> None:  # noqa: ANN001 (sqlite and postgres)
    now = utcnow()
    flows = [
        Flow(
            id=str(uuid.uuid4()),
            workflow_id=f"referral-{uuid.uuid4()}",
            pathway="referral",
            step=step,
            status=status,
            referring_sor="1",
            receiving_sor="2",
            cpr_hash="h",
            patient_enc="x",
            reason_enc="x",
        )
        for step, status in (
            ("appointment", FlowStatus.ACTIVE),
            ("appointment", FlowStatus.ACTIVE),
            ("test_result", FlowStatus.ESCALATED),
            ("referral", FlowStatus.COMPLETED),
        )
    ]
    with Session(engine) as session:
        session.add_all(flows)
        session.flush()
        session.add(
            Escalation(
                flow_id=flows[2].id,
                escalation_key="test_result-1",
                step="test_result",
                reason="no test result by its deadline",
            )
        )
        session.add(
            Escalation(
                flow_id=flows[3].id,
                escalation_key="referral-1",
                step="referral",
                reason="no acknowledgement after 2 resends",
                resolved_at=now,
            )
        )
        for attempt in (0, 1, 2):
            session.add(
                OutboundMessage(
                    message_header_id="m1",
                    bundle_id=str(uuid.uuid4()),
                    flow_id=flows[3].id,
                    step="referral",
                    event_code="careflow-referral-message",
                    attempt=attempt,
                    receiver_sor="2",
                    endpoint="http://x",
                    body_enc="x",
                )
            )
        session.add(
            InboundMessage(
                message_header_id=str(uuid.uuid4()),
                bundle_id="b",
                event_code="careflow-appointment-message",
                sender_sor="2",
                flow_id=flows[0].id,
                content_type="application/fhir+json",
                body_enc="x",
                received_at=now - timedelta(minutes=5),
            )
        )
        session.add(
            InboundMessage(
                message_header_id=str(uuid.uuid4()),
                bundle_id="b",
                event_code="careflow-appointment-message",
                sender_sor="2",
                flow_id=flows[1].id,
                content_type="application/fhir+json",
                body_enc="x",
                delivery_status="delivered",
                received_at=now - timedelta(minutes=5),
            )
        )
        session.commit()

    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry()
    registry.register(ReadModelCollector(engine, cache_seconds=0))
    scraped = samples(generate_latest(registry).decode())
    assert value(scraped, "careflow_pathways_open", pathway="referral", step="appointment", status="active") == 2
    assert value(scraped, "careflow_pathways_open", pathway="referral", step="test_result", status="escalated") == 1
    assert value(scraped, "careflow_pathways_open", pathway="referral", step="referral", status="completed") == 0
    assert value(scraped, "careflow_escalations_total", pathway="referral", step="test_result") == 1
    assert value(scraped, "careflow_escalations_total", pathway="referral", step="referral") == 1
    assert value(scraped, "careflow_escalations_open", pathway="referral", step="test_result") == 1
    assert value(scraped, "careflow_escalations_open", pathway="referral", step="referral") == 0
    assert value(scraped, "careflow_deadline_breaches_total", pathway="referral", step="test_result") == 1
    assert value(scraped, "careflow_deadline_breaches_total", pathway="referral", step="referral") == 0
    assert value(scraped, "careflow_resends_total", pathway="referral", step="referral") == 2
    assert value(scraped, "careflow_relay_backlog_messages") == 1


async def test_worker_serves_temporal_sdk_metrics(dev_server: WorkflowEnvironment, tmp_path: Path) -> None:
    port = free_port()
    settings = Settings(
        data_dir=tmp_path,
        temporal_address=dev_server.client.service_client.config.target_host,
        task_queue=f"metrics-{uuid.uuid4()}",
        temporal_metrics_port=port,
    )
    client = await connect(settings, runtime=runtime_for(settings))
    async with httpx.AsyncClient() as http:
        with ThreadPoolExecutor(max_workers=2) as executor:
            async with build_worker(client, settings, http=http, executor=executor, metrics=WorkerMetrics()):

                async def polled() -> dict | None:
                    scraped = samples((await http.get(f"http://127.0.0.1:{port}/metrics")).text)
                    return (
                        scraped
                        if any(
                            name.startswith("temporal_") and dict(labels).get("task_queue") == settings.task_queue
                            for name, labels in scraped
                        )
                        else None
                    )

                scraped = await wait_for(polled, timeout=30, interval=0.5)
    # The SDK's own families, labelled with the worker's task queue and namespace.
    started = [
        labels
        for name, labels in scraped
        if name == "temporal_worker_start_total" and dict(labels).get("task_queue") == settings.task_queue
    ]
    assert started and dict(started[0])["namespace"] == "default"
    assert any(name == "temporal_request_total" for name, _labels in scraped)
