"""Scale-out: two API processes and two worker processes against one Temporal dev server and one
fresh PostgreSQL database. Referrals go in through both APIs and partners reach careflow through a
round-robin load balancer; mid-run one API and one worker are SIGKILLed and stay dead. At the end
the message store is compared with the workflows' own state: 0 lost, 0 delivered twice, 0 sent twice.
Bounded: 20 pathways, a couple of minutes at most."""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import sys
import time
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from sqlmodel import Session, select
from temporalio.client import Client, WorkflowExecutionStatus

from api.routes.referrals import IDEMPOTENCY_NAMESPACE
from careflow.auth import Role
from careflow.codec import data_converter
from devtools.demo import referral_body
from devtools.stack import wait_for_port
from store.db import make_engine
from store.models import Flow, InboundMessage, OutboundMessage
from tests.conftest import POSTGRES_URL, LoopbackServer, free_port, token, write_directory
from tests.faults.accounting import FlowOutcome, Inbound, Outbound, account
from tests.faults.processes import ProcessStack
from workflows.referral import ReferralPathwayWorkflow

pytestmark = [pytest.mark.e2e, pytest.mark.postgres]

PATHWAYS = 20
SETTLE_SECONDS = 120
TIMINGS = {
    # Generous enough that nothing escalates while a killed worker's activities time out (30 s).
    "CAREFLOW_PATHWAYS__REFERRAL__ACK_TIMEOUT": "PT60S",
    "CAREFLOW_PATHWAYS__REFERRAL__APPOINTMENT_DEADLINE": "PT3M",
    "CAREFLOW_PATHWAYS__REFERRAL__TEST_RESULT_DEADLINE": "PT3M",
    "CAREFLOW_PATHWAYS__REFERRAL__TREATMENT_PLAN_DEADLINE": "PT3M",
}
BEHAVIOUR = {
    "ack_delay": 0.05,
    "appointment_delay": 0.3,
    "test_result_delay": 0.3,
    "treatment_plan_delay": 0.3,
    "post_attempts": 60,
}
SUBJECT = "scale-out-clinician"


def round_robin_balancer(upstreams: list[str]):  # noqa: ANN201
    """What sits in front of the API replicas in production: requests in turn to each, and to the
    next one when a replica does not answer (connection refused or reset)."""
    http = httpx.AsyncClient(timeout=30)
    turn = itertools.count()

    async def app(scope, receive, send) -> None:  # noqa: ANN001
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await http.aclose()
            await send({"type": "lifespan.shutdown.complete"})
            return
        body, more = b"", True
        while more:
            message = await receive()
            body, more = body + message.get("body", b""), message.get("more_body", False)
        headers = [(k, v) for k, v in scope["headers"] if k.lower() not in (b"host", b"content-length")]
        path = scope["path"] + (f"?{scope['query_string'].decode()}" if scope["query_string"] else "")
        first = next(turn)
        for i in range(len(upstreams)):
            upstream = upstreams[(first + i) % len(upstreams)]
            try:
                response = await http.request(scope["method"], upstream + path, content=body, headers=headers)
            except httpx.TransportError:
                continue
            await send(
                {
                    "type": "http.response.start",
                    "status": response.status_code,
                    "headers": [
                        (k.encode(), v.encode())
                        for k, v in response.headers.items()
                        if k.lower() not in ("content-length", "transfer-encoding")
                    ],
                }
            )
            await send({"type": "http.response.body", "body": response.content})
            return
        await send({"type": "http.response.start", "status": 502, "headers": []})
        await send({"type": "http.response.body", "body": b"no replica answered"})

    return app


@pytest_asyncio.fixture
async def database() -> AsyncIterator[str]:
    """A fresh PostgreSQL database for this test, dropped afterwards."""
    import psycopg

    name = f"careflow_scale_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
    except psycopg.OperationalError as err:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"PostgreSQL not reachable at {POSTGRES_URL}: {err}")
    yield POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


async def test_two_apis_two_workers_one_of_each_killed(database: str, tmp_path) -> None:  # noqa: ANN001
    stack = ProcessStack(tmp_path, timings=TIMINGS, behaviour=BEHAVIOUR)
    stack.env["CAREFLOW_DATABASE_URL"] = database
    second_api_port = free_port()
    apis = [stack.api_url, f"http://127.0.0.1:{second_api_port}"]
    balancer_port = free_port()
    # Partners (the simulator) reach careflow through the balancer, as they would in production.
    write_directory(
        tmp_path / "directory.json", api_url=f"http://127.0.0.1:{balancer_port}", simulator_url=stack.simulator_url
    )
    started = time.monotonic()
    try:
        async with LoopbackServer(round_robin_balancer(apis), balancer_port):
            await asyncio.to_thread(stack.start_all)
            stack._start(
                "api-2", [sys.executable, "-m", "careflow", "api"], {"CAREFLOW_API_PORT": str(second_api_port)}
            )
            stack._start("worker-2", [sys.executable, "-m", "careflow", "worker"])
            await asyncio.to_thread(wait_for_port, "127.0.0.1", second_api_port, 60, stack.processes["api-2"])
            summary, counts = await _drive_kill_and_count(stack, apis)
    finally:
        stack.close()
    print(f"\nscale-out: {summary.line()}; {counts}; {time.monotonic() - started:.0f}s")
    assert summary.ok, f"{summary.line()}: {summary.problems()}\n{stack.log_tail('worker-2')}"
    assert summary.completed == PATHWAYS
    assert counts["through_api_1"] > 0 and counts["through_api_2"] > 0
    assert counts["in_flight_at_kill"] > 0, "the kills must hit pathways under way"


async def _drive_kill_and_count(stack: ProcessStack, apis: list[str]) -> tuple:
    rng = random.Random(20_50_0101)
    headers = {"Authorization": f"Bearer {token(stack.settings, Role.CLINICIAN, subject=SUBJECT)}"}
    keys = [f"scale-{uuid.uuid4()}" for _ in range(PATHWAYS)]
    flow_ids = [str(uuid.uuid5(IDEMPOTENCY_NAMESPACE, f"{SUBJECT}:{key}")) for key in keys]
    through = {0: 0, 1: 0}
    async with httpx.AsyncClient(timeout=30) as http:

        async def refer(i: int) -> None:
            """Alternate between the APIs; a clinician whose API is gone retries on the other, same key."""
            body = referral_body(rng)
            for attempt in range(2):
                which = (i + attempt) % 2
                try:
                    response = await http.post(
                        f"{apis[which]}/referrals", json=body, headers={**headers, "Idempotency-Key": keys[i]}
                    )
                except httpx.TransportError:
                    continue
                assert response.status_code in (202, 409), response.text
                through[which] += 1
                return
            raise AssertionError(f"referral {i} reached no API")

        for i in range(PATHWAYS // 2):
            await refer(i)
            await asyncio.sleep(0.1)
        # Mid-run: pathways in every step, messages in flight. Kill one API and one worker for good.
        engine = make_engine(stack.env["CAREFLOW_DATABASE_URL"])
        await asyncio.sleep(0.3)
        await asyncio.to_thread(stack.kill_api)
        await asyncio.to_thread(stack.kill_worker)
        with Session(engine) as session:
            in_flight_at_kill = len(session.exec(select(Flow.id).where(Flow.status == "active")).all())
        for i in range(PATHWAYS // 2, PATHWAYS):
            await refer(i)
            await asyncio.sleep(0.1)

        deadline = time.monotonic() + SETTLE_SECONDS
        while time.monotonic() < deadline:
            with Session(engine) as session:
                settled = session.exec(
                    select(Flow.status).where(Flow.status.in_(["completed", "escalated", "cancelled", "failed"]))
                ).all()  # type: ignore[attr-defined]
            if len(settled) >= PATHWAYS:
                break
            await asyncio.sleep(1)
        await asyncio.sleep(3)  # acknowledgements of the last replies
        stats = (await http.get(f"{stack.simulator_url}/stats")).json()

    client = await Client.connect(
        stack.settings.temporal_address,
        namespace=stack.settings.temporal_namespace,
        data_converter=data_converter(stack.settings.codec_keys),
    )
    outcomes: dict[str, FlowOutcome] = {}
    for flow_id in flow_ids:
        handle = client.get_workflow_handle_for(ReferralPathwayWorkflow.run, f"referral-{flow_id}")
        description = await handle.describe()
        state = await handle.query(ReferralPathwayWorkflow.pathway_state)
        outcomes[flow_id] = FlowOutcome(state=state, closed=description.status is not WorkflowExecutionStatus.RUNNING)
    with Session(engine) as session:
        inbound = [
            Inbound(m.message_header_id, m.flow_id, m.event_code, m.delivery_status)
            for m in session.exec(select(InboundMessage)).all()
        ]
        outbound = [
            Outbound(m.flow_id, m.step, m.event_code, m.message_header_id, m.bundle_id)
            for m in session.exec(select(OutboundMessage)).all()
        ]
    engine.dispose()
    summary = account(flow_ids, outcomes, inbound, outbound, stats.get("headers_per_step", {}))
    counts = {
        "through_api_1": through[0],
        "through_api_2": through[1],
        "in_flight_at_kill": in_flight_at_kill,
        "inbound_messages": len(inbound),
        "outbound_messages": len(outbound),
    }
    return summary, counts
