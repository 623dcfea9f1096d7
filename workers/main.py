"""The careflow worker: registers every pathway workflow and the activities, and runs the relay and
the reconciler of the read model."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack

import httpx
from temporalio.client import Client
from temporalio.runtime import Runtime
from temporalio.worker import Worker

from activities.flows import FlowActivities
from activities.messages import MessageActivities
from careflow.crypto import KeyRing
from careflow.heap import settle
from careflow.httpclient import bounded_client
from careflow.metrics import WorkerMetrics
from careflow.settings import Settings
from careflow.temporal import connect, runtime_for
from careflow.tracing import Tracing
from messaging import load_directory
from store.db import make_engine
from workers.reconcile import Reconciler
from workers.relay import Relay, repeat
from workers.runner import workflow_runner
from workflows.registry import Pathways

log = logging.getLogger(__name__)

# Pass our pure models and pydantic through the sandbox: reloading them per workflow run costs a
# third to half of the throughput (DESIGN.md), and they hold no state a workflow could leak.


def build_worker(
    client: Client,
    settings: Settings,
    *,
    http: httpx.AsyncClient,
    executor: ThreadPoolExecutor,
    task_queue: str | None = None,
    workflows: Sequence[type] | None = None,
    metrics: WorkerMetrics | None = None,
) -> Worker:
    engine = make_engine(settings.sqlalchemy_url)
    key_ring = KeyRing.parse(settings.codec_keys)
    directory = load_directory(settings)
    messages = MessageActivities(engine, http, directory, key_ring)
    flows = FlowActivities(engine)
    workflows = workflows if workflows is not None else Pathways.load(settings.pathway_modules).workflows
    return Worker(
        client,
        task_queue=task_queue or settings.task_queue,
        workflows=workflows,
        activities=[messages.send_message, messages.resolve_organization, flows.record_state],
        activity_executor=executor,
        workflow_runner=workflow_runner(client.data_converter, workflows),  # workers/runner.py
        max_cached_workflows=settings.max_cached_workflows,  # the memory knob (settings.py)
        max_concurrent_activities=executor._max_workers,  # one thread per running activity
        interceptors=[(metrics or WorkerMetrics()).interceptor()],
    )


async def connect_when_reachable(
    settings: Settings, runtime: Runtime | None = None, tracing: Tracing | None = None
) -> Client:
    """Connect to Temporal, waiting for it if it is not up yet (started after the worker, or
    restarting): a worker that exits instead takes the relay with it, and `careflow dev` with it."""
    delay = 0.5
    while True:
        try:
            return await connect(
                settings, runtime=runtime, interceptors=tracing.temporal_interceptors() if tracing else ()
            )
        except RuntimeError as err:  # the SDK's "Failed client connect"
            log.warning(
                "Temporal at %s not reachable (%s); retrying in %.1fs",
                settings.temporal_address,
                str(err).split(":")[0],
                delay,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10)


async def run_worker(settings: Settings) -> None:
    metrics = WorkerMetrics()
    metrics.serve(settings)
    tracing = Tracing.from_settings(settings, "careflow-worker")
    client = await connect_when_reachable(settings, runtime_for(settings), tracing)
    async with AsyncExitStack() as stack:
        stack.callback(tracing.shutdown)
        http = await stack.enter_async_context(
            tracing.instrument_http(
                bounded_client(settings.send_timeout.total_seconds(), in_flight=settings.http_in_flight)
            )
        )
        executor = stack.enter_context(ThreadPoolExecutor(max_workers=32))
        worker = build_worker(client, settings, http=http, executor=executor, metrics=metrics)
        relay = Relay(
            make_engine(settings.sqlalchemy_url),
            client,
            http,
            load_directory(settings),
            KeyRing.parse(settings.codec_keys),
            Pathways.load(settings.pathway_modules),
            settings.task_queue,
        )
        log.info("worker polling task queue %s on %s", settings.task_queue, settings.temporal_address)
        reconciler = Reconciler(relay.engine, client)
        background = [
            asyncio.create_task(relay.run(settings.relay_interval)),
            asyncio.create_task(repeat(reconciler.run_once, settings.reconcile_interval, "reconcile")),
        ]
        settle("worker", settings)
        try:
            await worker.run()
        finally:
            for task in background:
                task.cancel()


def main() -> None:
    from careflow.settings import get_settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(run_worker(get_settings()))
