"""Throughput of careflow's whole stack beside a bare-Temporal floor, in one invocation (issue 12).

    .venv/bin/python benchmarks/bench_throughput.py [--flows 200] [--pathway referral] [--profile]
    .venv/bin/python benchmarks/bench_throughput.py --soak 1000,10000     # worker RSS vs open pathways

(a) bare: the same Temporal dev server binary and settings as `make run` (SQLite file, WAL,
    synchronous=normal), one unsandboxed worker, a workflow of 5 activities and 4 signals per flow —
    what the referral pathway does — and nothing else; the driver signals as soon as an activity
    has run (partners answering at once).
(b) careflow: Temporal dev server, `careflow worker`, `careflow api`, `careflow simulator` (partners
    answering at once) as separate processes; N referrals through `POST /referrals`, settled when the
    store says completed.
Figures are printed, not asserted; the README explains how to read them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx  # noqa: E402
from harness import PARTNERS_AT_ONCE, BenchStack, Profiler, Usage, free_port, load_average, machine, p50_p99  # noqa: E402
from temporalio import activity, workflow  # noqa: E402
from temporalio.api.enums.v1 import EventType  # noqa: E402
from temporalio.api.history.v1 import History  # noqa: E402
from temporalio.client import Client  # noqa: E402
from temporalio.worker import UnsandboxedWorkflowRunner, Worker  # noqa: E402

from careflow.auth import Role  # noqa: E402
from careflow.settings import Settings  # noqa: E402
from careflow.temporal import connect, dev_server_args, temporal_cli  # noqa: E402
from careflow.tokens import dev_issuer  # noqa: E402
from devtools.stack import wait_for_port  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
# Per referral pathway: 1 start, 5 activities (send the referral, 4 projections), 4 signals
# (acknowledgement, appointment, test result, treatment plan), 8 MedCom messages over HTTP
# (referral out; acknowledgement, appointment, test result, treatment plan in; 3 acknowledgements out).
ACTIVITIES, SIGNALS, MESSAGES = 5, 4, 8
LOCAL_ACTIVITY_MARKER = "core_local_activity"  # a local activity's result in the history
REFERRING_SOR, RECEIVING_SOR = "100000000000001", "200000000000001"
WARM_UP = 2
SOAK_CHUNK = 250  # pathways opened at once by the soak

HOPS = {
    "accepted → partner received": "POST /referrals answered (Flow.created_at) → the referral's POST to the partner "
    "returned 2xx (OutboundMessage.sent_at): API, workflow start, first workflow task, send_message",
    "inbound accepted → signalled": "partner's message stored (InboundMessage.received_at) → signal accepted by "
    "Temporal (delivered_at)",
    "activity ran → signalled": "bare: the activity told the driver → the driver's signal RPC returned (the "
    "partner's side of the same hop)",
    "signalled → next activity": "WorkflowExecutionSignaled → the next ActivityTaskScheduled, or local activity's "
    "marker (recorded once the local activity has run), in the history: a workflow task took the signal and moved "
    "on (in careflow the 4 replies arrive together, so later ones wait behind earlier steps)",
    "activity scheduled → completed": "ActivityTaskScheduled → ActivityTaskCompleted in the history, per activity type",
    "reply accepted → ack at partner": "partner's reply stored (received_at) → careflow's acknowledgement accepted "
    "by the partner (ack_sent_at)",
    "pathway": "start (POST /referrals, or StartWorkflow for bare) → completed",
}


# ----- (a) the bare floor -------------------------------------------------------------------------


@activity.defn(name="bare_step")
async def bare_step(step: int) -> int:
    """Does nothing; tells the driver it ran (on stdout), so the driver can answer like a partner."""
    if step < SIGNALS:
        sys.stdout.write(f"{activity.info().workflow_id} {step}\n")
        sys.stdout.flush()
    return step


@workflow.defn(name="BarePathway")
class BarePathwayWorkflow:
    """The referral pathway's shape with nothing else: 5 activities, 4 signals, no search attributes."""

    def __init__(self) -> None:
        self.replies = 0

    @workflow.signal
    def reply(self, step: int) -> None:
        self.replies += 1

    @workflow.run
    async def run(self, flow: str) -> int:
        for step in range(ACTIVITIES):
            await workflow.execute_activity(bare_step, step, start_to_close_timeout=timedelta(seconds=60))
            if step < SIGNALS:
                await workflow.wait_condition(lambda step=step: self.replies > step)
        return self.replies


async def bare_worker(address: str, task_queue: str) -> None:
    client = await Client.connect(address)
    worker = Worker(
        client,
        task_queue=task_queue,
        workflows=[BarePathwayWorkflow],
        activities=[bare_step],
        workflow_runner=UnsandboxedWorkflowRunner(),
        max_cached_workflows=2000,
    )
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    await worker.run()


async def run_bare(flows: int, concurrency: int, data: Path, sample: int, rate: float = 0) -> dict:
    print(
        f"\n== bare Temporal floor: {flows} flows{f' at {rate}/s' if rate else ''} (load average {load_average()})",
        flush=True,
    )
    port = free_port()
    address = f"127.0.0.1:{port}"
    task_queue = f"bare-{uuid.uuid4().hex[:8]}"
    log = open(data / "bare-temporal.log", "ab")  # noqa: SIM115
    temporal = subprocess.Popen(
        [temporal_cli(), *dev_server_args(Settings(), db_file=data / "bare-temporal.db", port=port, ui_port=None)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    worker = None
    try:
        wait_for_port("127.0.0.1", port, 60, temporal)
        worker = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--bare-worker",
            address,
            task_queue,
            stdout=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        assert worker.stdout is not None
        if (await asyncio.wait_for(worker.stdout.readline(), 60)).strip() != b"ready":
            raise RuntimeError("the bare worker did not start")
        client = await Client.connect(address)
        signal_latency: list[float] = []
        signals: set[asyncio.Task] = set()

        async def answer(workflow_id: str, step: int) -> None:
            started = time.monotonic()
            await client.get_workflow_handle(workflow_id).signal(BarePathwayWorkflow.reply, step)
            signal_latency.append(time.monotonic() - started)

        async def partner() -> None:
            while line := await worker.stdout.readline():
                workflow_id, step = line.decode().split()
                task = asyncio.create_task(answer(workflow_id, int(step)))
                signals.add(task)
                task.add_done_callback(signals.discard)

        partner_task = asyncio.create_task(partner())
        semaphore = asyncio.Semaphore(concurrency)
        durations: list[float] = []

        async def one(index: int) -> str:
            workflow_id = f"bare-{uuid.uuid4()}"
            if rate:
                await asyncio.sleep(index / rate)
            started = time.monotonic()
            async with semaphore:
                handle = await client.start_workflow(
                    BarePathwayWorkflow.run, f"flow-{index}", id=workflow_id, task_queue=task_queue
                )
            await handle.result()
            durations.append(time.monotonic() - started)
            return workflow_id

        paced, rate = rate, 0
        await asyncio.gather(*(one(i) for i in range(WARM_UP)))
        rate = paced
        durations.clear()
        signal_latency.clear()
        usage = Usage({"temporal": temporal.pid, "worker": worker.pid, "driver": os.getpid()})
        usage.start()
        t0 = time.monotonic()
        ids = await asyncio.gather(*(one(i) for i in range(flows)))
        elapsed = time.monotonic() - t0
        usage.stop()
        partner_task.cancel()
        hops, sizes = await history_hops(client, random.sample(ids, min(sample, len(ids))))
        hops["activity ran → signalled"] = signal_latency
        hops["pathway"] = durations
        return {
            "flows": flows,
            "completed": len(durations),
            "elapsed": elapsed,
            "usage": usage,
            "hops": hops,
            "sizes": sizes,
            "messages": SIGNALS,
        }
    finally:
        for process in (worker, temporal):
            if process is not None and process.returncode is None:
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        temporal.wait(timeout=10)
        log.close()


# ----- history: per-hop times and sizes -----------------------------------------------------------


async def history_hops(
    client: Client, workflow_ids: list[str]
) -> tuple[dict[str, list[float]], list[tuple[int, int, int, int, int]]]:
    """Hops read from the workflows' own histories, and (events, bytes, activities, signals, of the
    activities local ones) per history."""
    hops: dict[str, list[float]] = defaultdict(list)
    sizes: list[tuple[int, int, int, int, int]] = []
    for workflow_id in workflow_ids:
        history = await client.get_workflow_handle(workflow_id).fetch_history()
        events = list(history.events)
        count = lambda kind, events=events: sum(1 for e in events if e.event_type == kind)  # noqa: E731
        local = [
            e
            for e in events
            if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
            and e.marker_recorded_event_attributes.marker_name == LOCAL_ACTIVITY_MARKER
        ]
        sizes.append(
            (
                len(events),
                History(events=events).ByteSize(),
                count(EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED) + len(local),
                count(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED),
                len(local),
            )
        )
        scheduled: dict[int, tuple[str, datetime]] = {}
        pending_signals: list[datetime] = []
        for event in events:
            at = event.event_time.ToDatetime()
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
                pending_signals.append(at)
            elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED or (
                event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED
                and event.marker_recorded_event_attributes.marker_name == LOCAL_ACTIVITY_MARKER
            ):
                if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
                    name = event.activity_task_scheduled_event_attributes.activity_type.name
                    scheduled[event.event_id] = (name, at)
                hops["signalled → next activity"].extend((at - s).total_seconds() for s in pending_signals)
                pending_signals.clear()
            elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
                name, when = scheduled.get(event.activity_task_completed_event_attributes.scheduled_event_id, ("?", at))
                hops[f"activity scheduled → completed [{name}]"].append((at - when).total_seconds())
    return hops, sizes


# ----- (b) careflow's whole stack ------------------------------------------------------------------


def synthetic_cpr(rng: random.Random) -> str:
    """Valid-format CPR that belongs to nobody: 7th digit 5-8 with year 30-57 means born 2030-2057."""
    day, month, year = rng.randint(1, 28), rng.randint(1, 12), rng.randint(30, 57)
    return f"{day:02d}{month:02d}{year:02d}{rng.randint(5, 8)}{rng.randint(0, 999):03d}"


def referral_body(rng: random.Random, pathway: str) -> dict:
    return {
        "patient": {"cpr": synthetic_cpr(rng), "given_name": "Testa", "family_name": "Syntetisk"},
        "referring_sor": REFERRING_SOR,
        "receiving_sor": RECEIVING_SOR,
        "reason": "Udredning (benchmark)",
        "priority": "routine",
        "pathway": pathway,
    }


def _utc(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


async def post_referrals(
    stack: BenchStack, count: int, concurrency: int, pathway: str, rng: random.Random, rate: float = 0
) -> list[str]:
    """POST `count` referrals, all at once (`concurrency` in flight) or paced at `rate` per second."""
    token = dev_issuer(stack.data, create=True).issue(
        Role.CLINICIAN, sor="100000000000001", subject="bench-clinician", ttl=timedelta(hours=1)
    )
    semaphore = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(
        base_url=stack.api_url, timeout=120, limits=httpx.Limits(max_connections=concurrency)
    ) as http:

        async def one(index: int) -> str | None:
            if rate:
                await asyncio.sleep(index / rate)
            async with semaphore:
                response = await http.post(
                    "/referrals", json=referral_body(rng, pathway), headers={"Authorization": f"Bearer {token}"}
                )
            return response.json()["id"] if response.status_code == 202 else None

        ids = await asyncio.gather(*(one(i) for i in range(count)))
    return [i for i in ids if i]


async def wait_settled(engine, flow_ids: list[str], timeout: float, *, step: str | None = None) -> int:  # noqa: ANN001
    """Poll the store (not the API: the poller must not load what it measures) until every flow is
    settled (or has reached `step`); returns how many did."""
    from sqlalchemy import func
    from sqlmodel import Session, col, select

    from store.models import Flow

    deadline = time.monotonic() + timeout
    done = 0
    while time.monotonic() < deadline:
        with Session(engine) as session:
            condition = Flow.step == step if step else col(Flow.status).in_(("completed", "cancelled", "failed"))
            done = 0
            for chunk in range(0, len(flow_ids), 500):
                done += session.exec(
                    select(func.count())
                    .select_from(Flow)
                    .where(col(Flow.id).in_(flow_ids[chunk : chunk + 500]), condition)
                ).one()
        if done >= len(flow_ids):
            return done
        await asyncio.sleep(0.5)
    return done


def store_hops(engine, flow_ids: list[str]) -> tuple[dict[str, list[float]], datetime | None, int]:  # noqa: ANN001
    """Hops from the message store's timestamps; the last completion; messages exchanged."""
    from sqlmodel import Session, col, select

    from store.models import Flow, InboundMessage, OutboundMessage

    hops: dict[str, list[float]] = defaultdict(list)
    last: datetime | None = None
    messages = 0
    with Session(engine) as session:
        flows = {f.id: f for f in session.exec(select(Flow).where(col(Flow.id).in_(flow_ids))).all()}
        for flow in flows.values():
            if flow.completed_at:
                hops["pathway"].append((_utc(flow.completed_at) - _utc(flow.created_at)).total_seconds())
                last = max(last or _utc(flow.completed_at), _utc(flow.completed_at))
        for out in session.exec(select(OutboundMessage).where(col(OutboundMessage.flow_id).in_(flow_ids))).all():
            messages += out.sent_at is not None
            if out.step == "referral" and out.attempt == 0 and out.sent_at and out.flow_id in flows:
                hops["accepted → partner received"].append(
                    (_utc(out.sent_at) - _utc(flows[out.flow_id].created_at)).total_seconds()
                )
        for inbound in session.exec(select(InboundMessage).where(col(InboundMessage.flow_id).in_(flow_ids))).all():
            messages += 1 + (inbound.ack_sent_at is not None)
            if inbound.delivered_at:
                hops["inbound accepted → signalled"].append(
                    (_utc(inbound.delivered_at) - _utc(inbound.received_at)).total_seconds()
                )
            if inbound.ack_sent_at:
                hops["reply accepted → ack at partner"].append(
                    (_utc(inbound.ack_sent_at) - _utc(inbound.received_at)).total_seconds()
                )
    return hops, last, messages


def worker_cache(max_cached: int | None) -> tuple[int, dict[str, str]]:
    """The worker's cache (`--max-cached`, else the setting's default) and the environment that sets it."""
    cache = max_cached or Settings().max_cached_workflows
    return cache, {"CAREFLOW_MAX_CACHED_WORKFLOWS": str(cache)}


async def run_careflow(
    flows: int,
    concurrency: int,
    data: Path,
    sample: int,
    pathway: str,
    profile: bool,
    timeout: float,
    rate: float = 0,
    max_cached: int | None = None,
) -> dict:
    cache, cache_env = worker_cache(max_cached)
    print(
        f"\n== careflow, whole stack: {flows} {pathway} pathways{f' at {rate}/s' if rate else ''}, "
        f"max_cached_workflows {cache} (load average {load_average()})",
        flush=True,
    )
    if flows > cache:
        print(
            f"  note: {flows} pathways in flight at once exceed the worker's cache of {cache}: evicted workflows "
            "replay their history on every step (--max-cached N)",
            flush=True,
        )
    from store.db import make_engine

    stack = BenchStack(data, behaviour=PARTNERS_AT_ONCE, extra_env=cache_env)
    profiler = None
    try:
        stack.start_all()
        engine = make_engine(stack.settings.sqlalchemy_url)
        rng = random.Random(12)
        warm = await post_referrals(stack, WARM_UP, WARM_UP, pathway, rng)
        if len(warm) < WARM_UP or await wait_settled(engine, warm, 120) < WARM_UP:
            raise RuntimeError(
                f"careflow did not complete the warm-up referrals; worker log:\n{stack.log_tail('worker')}"
            )
        usage = Usage({**stack.pids(), "driver": os.getpid()})
        if profile:
            profiler = Profiler({name: stack.processes[name].pid for name in ("api", "worker", "simulator")}, RESULTS)
        usage.start()
        started_at = datetime.now(UTC)
        t0 = time.monotonic()
        ids = await post_referrals(stack, flows, concurrency, pathway, rng, rate)
        settled = await wait_settled(engine, ids, timeout)
        usage.stop()
        if profiler:
            print(f"  flame graphs: {', '.join(str(p) for p in profiler.stop())}")
            profiler = None
        hops, last, messages = store_hops(engine, ids)
        elapsed = (last - started_at).total_seconds() if last else time.monotonic() - t0
        client = await connect(stack.settings)
        from sqlmodel import Session, col, select

        from store.models import Flow

        with Session(engine) as session:
            workflow_ids = list(session.exec(select(Flow.workflow_id).where(col(Flow.id).in_(ids))).all())
        history, sizes = await history_hops(client, random.sample(workflow_ids, min(sample, len(workflow_ids))))
        hops.update(history)
        completed = len(hops["pathway"])
        return {
            "flows": flows,
            "accepted": len(ids),
            "settled": settled,
            "completed": completed,
            "elapsed": elapsed,
            "usage": usage,
            "hops": hops,
            "sizes": sizes,
            "messages_total": messages,
        }
    finally:
        if profiler:
            profiler.stop()
        stack.close()


# ----- soak: worker RSS against open pathways -------------------------------------------------------


async def run_soak(
    levels: list[int], concurrency: int, data: Path, pathway: str, level_timeout: float, max_cached: int | None = None
) -> None:
    """Open pathways that wait on their (30-day) appointment deadline: the partner acknowledges the
    referral and never answers. Worker RSS at each level."""
    from store.db import make_engine

    cache, cache_env = worker_cache(max_cached)
    print(
        f"\n== soak: worker RSS with {', '.join(map(str, levels))} open {pathway} pathways, max_cached_workflows "
        f"{cache} (load average {load_average()})",
        flush=True,
    )
    stack = BenchStack(
        data,
        behaviour={**PARTNERS_AT_ONCE, "reply": False},
        extra_env=cache_env,
    )
    try:
        stack.start_all()
        engine = make_engine(stack.settings.sqlalchemy_url)
        rng = random.Random(7)
        ids: list[str] = []
        usage = Usage(stack.pids())
        rows = []
        for level in levels:
            t0 = time.monotonic()
            while len(ids) < level and time.monotonic() - t0 < level_timeout:
                # A chunk at a time, each waiting before the next: the backlog in flight (and the
                # memory it takes while it lasts) is the same at every level, so RSS compares open
                # pathways, not the size of the burst that opened them.
                chunk = await post_referrals(stack, min(SOAK_CHUNK, level - len(ids)), concurrency, pathway, rng)
                ids += chunk
                left = max(10.0, level_timeout - (time.monotonic() - t0))
                await wait_settled(engine, chunk, left, step="appointment")
            waiting = await wait_settled(
                engine, ids, max(10.0, level_timeout - (time.monotonic() - t0)), step="appointment"
            )
            await asyncio.sleep(5)  # let the worker's caches and the allocator settle
            rss = {p.name: p.rss_mb() for p in usage.processes}
            rows.append((level, waiting, rss["worker"]))
            print(
                f"soak: open {waiting:6d} (asked {level}) in {time.monotonic() - t0:6.1f}s   worker RSS "
                f"{rss['worker']:6.0f} MB   "
                f"temporal {rss['temporal']:6.0f} MB   api {rss['api']:5.0f} MB   load average {load_average()}",
                flush=True,
            )
        if len(rows) > 1 and rows[0][2]:
            print(
                f"soak: worker RSS {rows[-1][2]:.0f} MB at {rows[-1][1]} vs {rows[0][2]:.0f} MB at {rows[0][1]}: "
                f"{100 * (rows[-1][2] / rows[0][2] - 1):+.0f} %"
            )
    finally:
        stack.close()


# ----- report ---------------------------------------------------------------------------------------


def report(bare: dict | None, careflow: dict | None, rate: float = 0) -> None:
    print("\n== results")
    bare_rate = careflow_rate = None
    if bare:
        bare_rate = bare["completed"] / bare["elapsed"]
        print(
            f"bare: flows {bare['flows']}, completed {bare['completed']}, {bare_rate:.1f} flows/s, "
            f"{bare_rate * bare['messages']:.1f} signals/s over {bare['elapsed']:.1f}s"
        )
        print(*bare["usage"].lines(bare["completed"]), sep="\n")
    if careflow:
        careflow_rate = careflow["completed"] / careflow["elapsed"] if careflow["elapsed"] > 0 else 0.0
        print(
            f"careflow: referrals {careflow['flows']}, accepted {careflow['accepted']}, completed "
            f"{careflow['completed']}, "
            f"{careflow_rate:.1f} flows/s, {careflow['messages_total'] / careflow['elapsed']:.1f} messages/s "
            f"({careflow['messages_total']} MedCom messages over HTTP, {MESSAGES} per pathway) over "
            f"{careflow['elapsed']:.1f}s"
        )
        print(*careflow["usage"].lines(careflow["completed"]), sep="\n")
    if bare_rate and careflow_rate is not None:
        paced = f"  (paced at {rate}/s: compare the hops, not flows/s)" if rate else "  (target ≥ 0.7)"
        print(f"ratio: careflow / bare = {careflow_rate / bare_rate:.2f}{paced}")
        cpu_bare = bare["usage"].cpu("temporal") / bare["completed"]
        cpu_careflow = careflow["usage"].cpu("temporal") / max(careflow["completed"], 1)
        print(
            f"temporal persistence: {1000 * cpu_bare:.1f} ms Temporal CPU per bare flow vs {1000 * cpu_careflow:.1f} "
            "ms per careflow pathway"
        )
    print("\nhops (p50/p99):")
    names = sorted(
        {*(bare or {}).get("hops", {}), *(careflow or {}).get("hops", {})},
        key=lambda n: (list(HOPS).index(n.split(" [")[0]) if n.split(" [")[0] in HOPS else 99, n),
    )
    for name in names:
        for label, run in (("bare", bare), ("careflow", careflow)):
            if run and run["hops"].get(name):
                print(f"  {label:<8} {name:<52} {p50_p99(run['hops'][name])}")
    print(
        "\nhistory per pathway (Temporal's default continue-as-new suggestion: 10,240 events or 10 MB; hard limits "
        "51,200 / 50 MB):"
    )
    for label, run in (("bare", bare), ("careflow", careflow)):
        if run and run["sizes"]:
            events, size, activities, signals, local = (sorted(column) for column in zip(*run["sizes"], strict=False))
            print(
                f"  {label:<8} events {events[0]}–{events[-1]}, bytes {size[0]}–{size[-1]}, activities "
                f"{activities[0]}–{activities[-1]} (local {local[0]}–{local[-1]}), signals {signals[0]}–{signals[-1]} "
                f"({len(events)} histories)"
            )
    print("\nhop definitions:")
    for name, meaning in HOPS.items():
        print(f"  {name}: {meaning}")
    print(f"\nload average at the end: {load_average()}")


async def main_async(args: argparse.Namespace) -> int:
    print(f"machine: {machine()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="careflow-bench-") as tmp:
        data = Path(tmp)
        if args.soak:
            await run_soak(
                [int(n) for n in args.soak.split(",")],
                args.concurrency,
                data / "soak",
                args.pathway,
                args.soak_timeout,
                args.max_cached,
            )
            return 0
        bare = None if args.skip_bare else await run_bare(args.flows, args.concurrency, data, args.histories, args.rate)
        careflow = (
            None
            if args.skip_careflow
            else await run_careflow(
                args.flows,
                args.concurrency,
                data / "careflow",
                args.histories,
                args.pathway,
                args.profile,
                args.timeout,
                args.rate,
                args.max_cached,
            )
        )
    report(bare, careflow, args.rate)
    return 0 if careflow is None or careflow["completed"] == careflow["flows"] else 1


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--bare-worker":
        asyncio.run(bare_worker(sys.argv[2], sys.argv[3]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flows", type=int, default=200, help="pathways to drive in each run (default 200)")
    parser.add_argument("--pathway", default="referral", help="careflow pathway to drive (default referral)")
    parser.add_argument(
        "--concurrency", type=int, default=32, help="workflow starts / referral POSTs in flight (default 32)"
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=0,
        help="start pathways at this many per second instead of all at once (for latency below saturation)",
    )
    parser.add_argument(
        "--histories", type=int, default=20, help="histories fetched for per-hop times and sizes (default 20)"
    )
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for careflow's pathways to settle")
    parser.add_argument(
        "--profile",
        action="store_true",
        help=f"py-spy flame graphs of the API and worker into {RESULTS} (the `bench` extra)",
    )
    parser.add_argument("--skip-bare", action="store_true")
    parser.add_argument("--skip-careflow", action="store_true")
    parser.add_argument("--soak", help="instead: worker RSS at these numbers of open pathways, e.g. 1000,10000")
    parser.add_argument("--soak-timeout", type=float, default=900, help="seconds allowed per soak level (default 900)")
    parser.add_argument(
        "--max-cached",
        type=int,
        help="the worker with this CAREFLOW_MAX_CACHED_WORKFLOWS (default: the setting's default)",
    )
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
