"""The partner report on the real stack: pathways driven through the worker, API and simulated partners
over HTTP, each partner made to behave differently, then the report's numbers per partner — as JSON,
as CSV and as the console's chart and table.

The module runs its own stack (API, worker, simulator, SQLite; the session's Temporal dev server)
with five more departments pointed at the simulator, so every count is this module's alone."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
import uuid
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import pytest_asyncio
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from careflow.auth import Role
from careflow.crypto import KeyRing, cpr_lookup_hash
from careflow.settings import Settings
from messaging import Directory
from messaging.model import PatientData
from store.db import migrate
from store.models import Flow
from tests.conftest import (
    LoopbackServer,
    Stack,
    encrypted_client,
    free_port,
    referral_payload,
    token,
    wait_for,
    write_directory,
)
from tests.console.conftest import GP_SOR, _session, console_client, read_flow, synthetic_cpr
from workflows.models import PathwayInput, PathwayTimings
from workflows.referral import ReferralPathwayWorkflow
from workflows.registry import PATHWAYS

pytestmark = pytest.mark.e2e

# Departments of the demo directory, pointed at the simulator for this module.
ANSWERS = "500518100001644"  # answers everything
QUIET = "500888100001634"  # acknowledges, never answers: the appointment deadline passes
SILENT = "501258100001624"  # never acknowledges: resent once, then escalated
REFUSES = "501628100001614"  # answers careflow's POST with 422
FATAL = "501998100001604"  # acknowledges with fatal-error
LAB = "300000000000001"  # sends every test result
SVG = "{http://www.w3.org/2000/svg}"


@dataclass
class Driven:
    since: str
    until: str
    workflow_ids: list[str]


@contextmanager
def behaving(stack: Stack, **changes: object) -> Iterator[None]:
    simulator = stack.simulator_app.state.simulator
    before = simulator.behaviour
    simulator.behaviour = before.model_copy(update=changes)
    try:
        yield
    finally:
        simulator.behaviour = before


async def _refer(stack: Stack, receiving_sor: str) -> str:
    """A referral through the API, as a clinician makes it."""
    response = await stack.api.post(
        "/referrals",
        json=referral_payload(synthetic_cpr(), receiving_sor=receiving_sor),
        headers=stack.headers(Role.CLINICIAN),
    )
    assert response.status_code == 202, response.text
    return response.json()["id"]


async def _start(stack: Stack, receiving_sor: str, timings: PathwayTimings) -> str:
    """A referral with timings of seconds (the API takes them from settings): the flow row as POST
    /referrals makes it, the workflow started on the stack's worker."""
    settings, definition = stack.settings, PATHWAYS["referral"]
    directory, key_ring = Directory.load(settings.directory_path), KeyRing.parse(settings.codec_keys)
    cpr, flow_id = synthetic_cpr(), str(uuid.uuid4())
    patient = PatientData(cpr=cpr, given_name="Testa", family_name="Syntetisk")
    with _session(stack) as session:
        session.add(
            Flow(
                id=flow_id,
                workflow_id=definition.workflow_id(flow_id),
                pathway=definition.name,
                referring_sor=GP_SOR,
                receiving_sor=receiving_sor,
                cpr_hash=cpr_lookup_hash(cpr, settings.cpr_hash_key),
                patient_enc=key_ring.encrypt_text(patient.model_dump_json()),
                reason_enc=key_ring.encrypt_text("Hovedpine"),
            )
        )
        session.commit()
    await stack.client.start_workflow(
        ReferralPathwayWorkflow.run,
        PathwayInput(
            flow_id=flow_id,
            pathway=definition.name,
            patient=patient,
            referring=directory.get(GP_SOR).organization,
            receiving=directory.get(receiving_sor).organization,
            reason="Hovedpine",
            timings=timings,
        ),
        id=definition.workflow_id(flow_id),
        task_queue=settings.task_queue,
    )
    return flow_id


async def _until(stack: Stack, flow_id: str, predicate, timeout: float = 30) -> None:  # noqa: ANN001
    async def check() -> bool:
        flow = read_flow(stack, flow_id)
        return bool(flow and predicate(flow))

    await wait_for(check, timeout=timeout, interval=0.2)


@pytest_asyncio.fixture(scope="module")
async def stack(dev_server: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    """The session's stack, built again on a fresh database and a directory with more simulated partners."""
    from api.main import create_app
    from simulator.app import Behaviour, create_simulator
    from workers.main import build_worker

    data = tmp_path_factory.mktemp("report-stack")
    api_port, simulator_port = free_port(), free_port()
    api_url, simulator_url = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{simulator_port}"
    directory = json.loads(
        write_directory(data / "demo.json", api_url=api_url, simulator_url=simulator_url).read_text()
    )
    for entry in directory["entries"]:
        if entry["sor"] in (ANSWERS, QUIET, SILENT, REFUSES, FATAL):
            entry["endpoint"] = f"{simulator_url}/partners/{entry['sor']}/$process-message"
    (data / "directory.json").write_text(json.dumps(directory))
    settings = Settings(
        data_dir=data,
        temporal_address=dev_server.client.service_client.config.target_host,
        task_queue=f"careflow-{uuid.uuid4()}",
        public_url=api_url,
        api_port=api_port,
        simulator_port=simulator_port,
        directory_path=data / "directory.json",
    )
    migrate(settings.sqlalchemy_url)
    client = await encrypted_client(dev_server, settings)
    # The appointment a second after the referral: later than the workflow takes to finish the referral
    # step, so its reply latency is more than the 0 s of a reply that beat its step.
    simulator_app = create_simulator(
        settings,
        Behaviour(ack_delay=0.05, appointment_delay=1.0, test_result_delay=0.2, treatment_plan_delay=0.2),
        partner_token=lambda sor: token(settings, Role.PARTNER, sor),
    )
    async with (
        httpx.AsyncClient(timeout=30) as worker_http,
        LoopbackServer(simulator_app, simulator_port),
        LoopbackServer(create_app(settings, run_migrations=False), api_port),
        httpx.AsyncClient(base_url=api_url, timeout=30) as api,
    ):
        with ThreadPoolExecutor(max_workers=8) as executor:
            async with build_worker(client, settings, http=worker_http, executor=executor):
                yield Stack(
                    settings=settings, client=client, api=api, simulator_url=simulator_url, simulator_app=simulator_app
                )


@pytest_asyncio.fixture(scope="module")
async def driven(stack: Stack) -> AsyncIterator[Driven]:
    since = datetime.now(UTC) - timedelta(seconds=1)
    ids: list[str] = []
    with behaving(stack, quiet_partners=[QUIET, SILENT, FATAL]):
        answered = [await _refer(stack, ANSWERS) for _ in range(2)]
        ids += answered
        quiet = await _start(stack, QUIET, PathwayTimings(appointment_deadline=timedelta(seconds=1.5)))
        ids.append(quiet)
        await asyncio.gather(*(_until(stack, f, lambda flow: flow.status == "completed", timeout=60) for f in answered))
        await _until(stack, quiet, lambda flow: flow.step == "appointment" and flow.open_escalations > 0)
        # The partners' behaviour is shared: one misbehaviour at a time.
        with behaving(stack, quiet_partners=[QUIET, SILENT, FATAL], ack_code="none"):
            ids.append(
                silent := await _start(stack, SILENT, PathwayTimings(ack_timeout=timedelta(seconds=1), max_resends=1))
            )
            await _until(stack, silent, lambda flow: flow.open_escalations > 0)
        with behaving(
            stack,
            quiet_partners=[QUIET, SILENT, FATAL],
            failure="reject",
            reject_reason="afdelingen modtager ikke henvisninger",
        ):
            ids.append(refused := await _refer(stack, REFUSES))
            await _until(stack, refused, lambda flow: flow.open_escalations > 0)
        with behaving(stack, quiet_partners=[QUIET, SILENT, FATAL], ack_code="fatal-error"):
            ids.append(fatal := await _start(stack, FATAL, PathwayTimings()))
            await _until(stack, fatal, lambda flow: flow.open_escalations > 0)
    until = datetime.now(UTC) + timedelta(seconds=1)
    yield Driven(
        since=since.isoformat().replace("+00:00", "Z"),
        until=until.isoformat().replace("+00:00", "Z"),
        workflow_ids=[f"referral-{i}" for i in ids],
    )
    for workflow_id in ids:
        try:
            await stack.client.get_workflow_handle(f"referral-{workflow_id}").terminate(reason="test finished")
        except RPCError:  # completed already
            pass


async def _report(stack: Stack, driven: Driven) -> dict:
    response = await stack.api.get(
        "/reports/partners",
        params={"since": driven.since, "until": driven.until},
        headers=stack.headers(Role.COORDINATOR),
    )
    assert response.status_code == 200, response.text
    return response.json()


def csv_text(report: dict) -> str:
    return repr(report)


async def test_report_numbers_per_partner(stack: Stack, driven: Driven) -> None:
    report = await _report(stack, driven)
    rows = {p["sor"]: p for p in report["partners"]}
    assert {ANSWERS, QUIET, SILENT, REFUSES, FATAL, LAB} <= set(rows)

    answers = rows[ANSWERS]
    assert answers["name"] == "Neurologisk afdeling, Rigshospitalet"
    assert (
        answers["messages_sent"],
        answers["resends"],
        answers["acknowledged"],
        answers["fatal_errors"],
        answers["deadlines_breached"],
    ) == (2, 0, 2, 0, 0)
    # the simulator acknowledges after 0.05 s, books after 1 s, then answers each step after 0.2 s
    assert 0 <= answers["ack_latency_p50_seconds"] <= answers["ack_latency_p99_seconds"] < 10
    assert set(answers["reply_latency"]) == {"appointment", "treatment_plan"}  # the lab sends the test results
    for step in ("appointment", "treatment_plan"):
        latency = answers["reply_latency"][step]
        assert latency["replies"] == 2 and 0 <= latency["p50_seconds"] <= latency["p99_seconds"] < 10, step
    lab = rows[LAB]
    assert (lab["messages_sent"], set(lab["reply_latency"]), lab["reply_latency"]["test_result"]["replies"]) == (
        0,
        {"test_result"},
        2,
    )
    assert set(rows) == {ANSWERS, QUIET, SILENT, REFUSES, FATAL, LAB}

    quiet = rows[QUIET]
    assert (quiet["messages_sent"], quiet["resends"], quiet["acknowledged"], quiet["fatal_errors"]) == (1, 0, 1, 0)
    assert (quiet["deadlines_breached"], quiet["deadlines_breached_by_step"], quiet["reply_latency"]) == (
        1,
        {"appointment": 1},
        {},
    )

    silent = rows[SILENT]
    assert (silent["messages_sent"], silent["resends"], silent["acknowledged"], silent["ack_latency_p50_seconds"]) == (
        1,
        1,
        0,
        None,
    )
    assert (silent["fatal_errors"], silent["deadlines_breached"]) == (0, 0)  # "no acknowledgement" is no deadline

    refuses = rows[REFUSES]
    assert (
        refuses["messages_sent"],
        refuses["refused_sends"],
        refuses["fatal_error_acks"],
        refuses["fatal_errors"],
        refuses["acknowledged"],
    ) == (1, 1, 0, 1, 0)

    fatal = rows[FATAL]
    assert (
        fatal["messages_sent"],
        fatal["fatal_error_acks"],
        fatal["refused_sends"],
        fatal["fatal_errors"],
        fatal["acknowledged"],
    ) == (1, 1, 0, 1, 1)
    assert 0 <= fatal["ack_latency_p99_seconds"] < 10


async def test_csv_export_has_the_same_numbers(stack: Stack, driven: Driven) -> None:
    report = await _report(stack, driven)
    response = await stack.api.get(
        "/reports/partners.csv",
        params={"since": driven.since, "until": driven.until},
        headers=stack.headers(Role.COORDINATOR),
    )
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    table = {r["sor"]: r for r in csv.DictReader(io.StringIO(response.text))}
    assert set(table) == {p["sor"] for p in report["partners"]}
    for p in report["partners"]:
        row = table[p["sor"]]
        for field in (
            "messages_sent",
            "resends",
            "acknowledged",
            "fatal_error_acks",
            "refused_sends",
            "fatal_errors",
            "deadlines_breached",
        ):
            assert int(row[field]) == p[field], (p["sor"], field)
        for field in ("ack_latency_p50_seconds", "ack_latency_p99_seconds"):
            assert (float(row[field]) if row[field] else None) == (round(p[field], 3) if p[field] is not None else None)
        for step, latency in p["reply_latency"].items():
            assert int(row[f"{step}_replies"]) == latency["replies"]
    assert (
        table[ANSWERS]["name"] == "Neurologisk afdeling, Rigshospitalet"
        and table[QUIET]["appointment_deadlines_breached"] == "1"
    )


async def test_console_page_draws_one_bar_per_partner(stack: Stack, driven: Driven) -> None:
    report = await _report(stack, driven)
    async with console_client(stack) as client:
        page = await client.get("/console/reports/partners", params={"since": driven.since, "until": driven.until})
        assert page.status_code == 200, page.text
        assert 'href="/console/reports/partners" aria-current="page"' in page.text
        svg = ET.fromstring(re.search(r"<svg class=\"sla-chart\".*?</svg>", page.text, re.S).group(0))
        bars = {g.get("data-sor"): g for g in svg.iter(f"{SVG}g") if g.get("class") == "partner-bar"}
        assert list(bars) == [p["sor"] for p in report["partners"]]  # one bar per partner, in the report's order
        for p in report["partners"]:
            rects = {r.get("class"): float(r.get("width")) for r in bars[p["sor"]].iter(f"{SVG}rect")}
            if p["ack_latency_p99_seconds"] is None:
                assert rects == {}, p["sor"]  # nothing acknowledged: no bar, a note
            else:
                assert 0 <= rects["p50"] <= rects["p99"] <= 520, p["sor"]
        assert set(bars) >= {ANSWERS, QUIET, FATAL, SILENT, REFUSES} and not list(bars[SILENT].iter(f"{SVG}rect"))
        # the table's counts, and a CSV export for the same period through the console's session
        assert re.search(rf'<tr data-sor="{QUIET}">.*?class="num breached">1<', page.text, re.S)
        assert "Syntetisk" not in page.text and "Syntetisk" not in csv_text(report)  # no patient data
        assert "<script" not in page.text.split("<main>")[1].split("</main>")[0]  # the chart is no script
        export = re.search(r'id="csv-export" href="([^"]+)"', page.text).group(1).replace("&amp;", "&")
        csv_response = await client.get(export)
        assert csv_response.status_code == 200 and csv_response.text.splitlines()[0].startswith(
            "sor,name,messages_sent"
        )
        assert {r["sor"] for r in csv.DictReader(io.StringIO(csv_response.text))} == set(bars)
        # a bad period is a 422 page, not a 500
        bad = await client.get("/console/reports/partners", params={"since": "last tuesday"})
        assert bad.status_code == 422 and "since is not an ISO 8601 datetime" in bad.text


async def test_bad_period_and_wrong_role_are_refused(stack: Stack) -> None:
    coordinator = stack.headers(Role.COORDINATOR)
    for params, words in (
        ({"since": "yesterday"}, "since is not an ISO 8601 datetime"),
        ({"since": "2031-03-02T00:00:00Z", "until": "2031-03-01T00:00:00Z"}, "the period is empty"),
        ({"since": "2020-01-01", "until": "2031-01-01"}, "longer than 366 days"),
    ):
        for path in ("/reports/partners", "/reports/partners.csv"):
            response = await stack.api.get(path, params=params, headers=coordinator)
            assert response.status_code == 422, (path, params)
            outcome = response.json()
            assert outcome["resourceType"] == "OperationOutcome" and words in outcome["issue"][0]["diagnostics"]
    assert (await stack.api.get("/reports/partners", headers=stack.headers(Role.CLINICIAN))).status_code == 403
    assert (await stack.api.get("/reports/partners.csv")).status_code == 401
    default = await stack.api.get("/reports/partners", headers=coordinator)
    assert default.status_code == 200
    body = default.json()
    assert timedelta(days=30) == datetime.fromisoformat(body["until"]) - datetime.fromisoformat(body["since"])
