"""One trace per exchange: the clinician's request, the workflow start, the activity, the HTTP call to
the partner and the partner's acknowledgement back, all linked (in-memory exporter, real processes
on loopback: API, worker and simulated partner in this test's event loop)."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from temporalio.testing import WorkflowEnvironment

from api.main import create_app
from careflow.auth import Role
from careflow.settings import Settings
from careflow.temporal import connect
from careflow.tracing import Tracing
from simulator.app import Behaviour, create_simulator
from store.db import migrate
from tests.conftest import LoopbackServer, auth, free_port, referral_payload, token, wait_for, write_directory
from workers.main import build_worker

pytestmark = pytest.mark.e2e


async def test_one_trace_from_request_to_partner_acknowledgement(
    dev_server: WorkflowEnvironment, tmp_path: Path
) -> None:
    exporter = InMemorySpanExporter()
    tracing = Tracing.with_exporter(exporter, "careflow-test", processor=SimpleSpanProcessor)
    api_port, simulator_port = free_port(), free_port()
    api_url, simulator_url = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{simulator_port}"
    settings = Settings(
        data_dir=tmp_path,
        temporal_address=dev_server.client.service_client.config.target_host,
        task_queue=f"tracing-{uuid.uuid4()}",
        public_url=api_url,
        api_port=api_port,
        simulator_port=simulator_port,
        directory_path=write_directory(tmp_path / "directory.json", api_url=api_url, simulator_url=simulator_url),
    )
    migrate(settings.sqlalchemy_url)
    client = await connect(settings, interceptors=tracing.temporal_interceptors())
    simulator = create_simulator(
        settings,
        Behaviour(ack_delay=0.05, reply=False),
        tracing=tracing,
        partner_token=lambda sor: token(settings, Role.PARTNER, sor),
    )
    async with (
        tracing.instrument_http(httpx.AsyncClient(timeout=30)) as worker_http,
        LoopbackServer(simulator, simulator_port),
        LoopbackServer(create_app(settings, run_migrations=False, tracing=tracing), api_port),
        httpx.AsyncClient(base_url=api_url, timeout=30) as api,
    ):
        with ThreadPoolExecutor(max_workers=4) as executor:
            async with build_worker(client, settings, http=worker_http, executor=executor):
                accepted = (
                    await api.post(
                        "/referrals", json=referral_payload("0303505123"), headers=auth(settings, Role.CLINICIAN)
                    )
                ).json()

                def signalled():  # noqa: ANN202
                    return [s for s in exporter.get_finished_spans() if s.name.startswith("SignalWorkflow:")]

                async def acknowledged():  # noqa: ANN202
                    return signalled()

                await wait_for(acknowledged, timeout=30, interval=0.2)

    spans = exporter.get_finished_spans()
    by_id = {s.context.span_id: s for s in spans}

    def chain(span) -> list[str]:  # noqa: ANN001
        names = [span.name]
        while span.parent is not None and span.parent.span_id in by_id:
            span = by_id[span.parent.span_id]
            names.append(span.name)
        return names

    request = next(s for s in spans if s.name == "POST /referrals" and s.kind.name == "SERVER")
    trace_id = request.context.trace_id
    in_trace = [s for s in spans if s.context.trace_id == trace_id]
    names = {s.name for s in in_trace}
    assert "StartWorkflow:ReferralPathwayWorkflow" in names
    assert "RunWorkflow:ReferralPathwayWorkflow" in names
    assert "RunActivity:send_message" in names
    # The activity's POST to the partner, the partner's handling of it, and its acknowledgement back
    # to careflow, delivered to the workflow as a signal: all in the one trace.
    partner_call = next(
        s
        for s in in_trace
        if s.kind.name == "CLIENT"
        and s.name == "POST"
        and str(s.attributes.get("url.full", s.attributes.get("http.url", ""))).startswith(simulator_url)
    )
    assert "RunActivity:send_message" in chain(partner_call)
    partner_server = next(
        s for s in in_trace if s.kind.name == "SERVER" and s.name == "POST /partners/{sor}/$process-message"
    )
    assert partner_server.parent.span_id == partner_call.context.span_id
    ack_request = next(s for s in in_trace if s.kind.name == "SERVER" and s.name == "POST /fhir/$process-message")
    assert partner_server.name in chain(ack_request)
    signal = next(s for s in in_trace if s.name == "SignalWorkflow:message_received")
    assert "POST /fhir/$process-message" in chain(signal) and chain(signal)[-1] == "POST /referrals"
    # No patient data on any span.
    for span in spans:
        text = repr(dict(span.attributes or {})) + span.name
        assert "0303505123" not in text and "Syntetisk" not in text
    assert accepted["id"]
