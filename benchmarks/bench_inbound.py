"""The inbound hot path alone: `POST /fhir/$process-message` under a bounded load generator.

    .venv/bin/python benchmarks/bench_inbound.py [--flows 100] [--concurrency 16] [--transport vans]

Opens `--flows` referral pathways against the real stack (the simulated partner acknowledges
referrals but does not answer them), then posts, as the partners, an appointment, a test result and
a treatment plan for each (3 × flows messages, built beforehand) with a fixed number in flight.
Each message is authenticated, parsed, validated, stored, correlated, signalled to its workflow and
acknowledged back to its sender; the simulator counts the acknowledgements it receives.
Prints messages/s, p50/p99 of the POST, the time until every acknowledgement reached the partner,
CPU and peak RSS per process (and CPU per message). Figures are printed, not asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx  # noqa: E402
from bench_throughput import RECEIVING_SOR, REFERRING_SOR, RESULTS, synthetic_cpr, wait_settled  # noqa: E402
from harness import PARTNERS_AT_ONCE, BenchStack, Profiler, Usage, load_average, machine, p50_p99  # noqa: E402

from careflow.auth import Role  # noqa: E402
from careflow.tokens import dev_issuer  # noqa: E402
from messaging import build_message, load_directory  # noqa: E402
from messaging.model import (  # noqa: E402
    AppointmentContent,
    Envelope,
    MessageKind,
    ObservationValue,
    PatientData,
    TestResultContent,
    TreatmentPlanContent,
)
from messaging.transport import prepare_request  # noqa: E402
from workers.relay import ACK_GRACE  # noqa: E402

LAB_SOR = "300000000000001"


async def open_pathways(stack: BenchStack, count: int, concurrency: int) -> dict[str, PatientData]:
    token = dev_issuer(stack.data, create=True).issue(
        Role.CLINICIAN, sor="100000000000001", subject="bench-clinician", ttl=timedelta(hours=1)
    )
    rng = random.Random(5)
    semaphore = asyncio.Semaphore(concurrency)
    opened: dict[str, PatientData] = {}
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=120) as http:

        async def one() -> None:
            patient = PatientData(cpr=synthetic_cpr(rng), given_name="Testa", family_name="Syntetisk")
            body = {
                "patient": patient.model_dump(),
                "referring_sor": REFERRING_SOR,
                "receiving_sor": RECEIVING_SOR,
                "reason": "Udredning (benchmark)",
                "priority": "routine",
            }
            async with semaphore:
                response = await http.post("/referrals", json=body, headers={"Authorization": f"Bearer {token}"})
            if response.status_code == 202:
                opened[response.json()["id"]] = patient

        await asyncio.gather(*(one() for _ in range(count)))
    return opened


def replies(
    stack: BenchStack, opened: dict[str, PatientData], transport: str = "process-message"
) -> list[tuple[str, bytes, dict[str, str]]]:
    """The partners' replies to every open pathway, as (url, body, headers), interleaved across
    pathways; over `transport` (VANS: each in its envelope, to careflow's /vans/envelope)."""
    from sqlmodel import Session, col, select

    from store.db import make_engine
    from store.models import OutboundMessage

    directory = load_directory(stack.settings.model_copy(update={"partner_transport": transport}))
    with Session(make_engine(stack.settings.sqlalchemy_url)) as session:
        referral_header = {
            o.flow_id: o.message_header_id
            for o in session.exec(
                select(OutboundMessage).where(
                    col(OutboundMessage.flow_id).in_(list(opened)), OutboundMessage.step == "referral"
                )
            ).all()
        }
    hospital, lab, gp = (directory.get(sor).organization for sor in (RECEIVING_SOR, LAB_SOR, REFERRING_SOR))
    tokens = {
        sor: dev_issuer(stack.data, create=True).issue(
            Role.PARTNER, sor=sor, subject=f"bench-{sor}", ttl=timedelta(hours=1)
        )
        for sor in (RECEIVING_SOR, LAB_SOR)
    }
    now = datetime.now(UTC)
    out: list[tuple[str, bytes, dict[str, str]]] = []
    for make in (
        lambda sr: (
            hospital,
            MessageKind.APPOINTMENT,
            AppointmentContent(
                service_request_id=sr, start=now + timedelta(days=7), description="Ambulant forundersøgelse"
            ),
        ),
        lambda sr: (
            lab,
            MessageKind.TEST_RESULT,
            TestResultContent(
                service_request_id=sr,
                code="NPU02319",
                display="Hæmoglobin;B",
                conclusion="Normal",
                observations=[ObservationValue(code="NPU02319", display="Hæmoglobin;B", value=8.9, unit="mmol/L")],
            ),
        ),
        lambda sr: (
            hospital,
            MessageKind.TREATMENT_PLAN,
            TreatmentPlanContent(service_request_id=sr, description="Kontrol om 3 måneder"),
        ),
    ):
        for flow_id, patient in opened.items():
            sender, kind, content = make(flow_id)
            envelope = Envelope(
                message_header_id=str(uuid.uuid4()),
                bundle_id=str(uuid.uuid4()),
                timestamp=now,
                sender=sender,
                receiver=gp,
                patient=patient,
                previous_header_id=referral_header.get(flow_id),
            )
            request = prepare_request(
                directory, build_message(kind, envelope, content), sender=sender, receiver=gp, sent=now
            )
            out.append(
                (request.url, request.body, {**request.headers, "Authorization": f"Bearer {tokens[sender.sor]}"})
            )
    return out


async def acknowledgements_received(http: httpx.AsyncClient, simulator_url: str) -> int:
    stats = (await http.get(f"{simulator_url}/stats")).json()
    return sum(stats["received"].values())


async def run(args: argparse.Namespace, data: Path) -> int:
    stack = BenchStack(
        data,
        behaviour={**PARTNERS_AT_ONCE, "reply": False},
        extra_env={"CAREFLOW_PARTNER_TRANSPORT": args.transport},
    )
    try:
        stack.start_all()
        from store.db import make_engine

        opened = await open_pathways(stack, args.flows, 16)
        waiting = await wait_settled(make_engine(stack.settings.sqlalchemy_url), list(opened), 300, step="appointment")
        messages = replies(stack, opened, args.transport)
        print(
            f"inbound: {len(opened)} pathways open ({waiting} waiting for their appointment), {len(messages)} "
            f"replies to post over {args.transport} (load average {load_average()})",
            flush=True,
        )
        latencies: list[float] = []
        statuses: dict[int, int] = {}
        async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=args.concurrency)) as http:
            before = await acknowledgements_received(http, stack.simulator_url)
            queue: asyncio.Queue = asyncio.Queue()
            for message in messages:
                queue.put_nowait(message)

            async def poster() -> None:
                while not queue.empty():
                    endpoint, body, headers = queue.get_nowait()
                    started = time.monotonic()
                    response = await http.post(endpoint, content=body, headers=headers)
                    latencies.append(time.monotonic() - started)
                    statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

            usage = Usage({**stack.pids(), "load gen": os.getpid()})
            profiler = Profiler({"api-inbound": stack.processes["api"].pid}, RESULTS) if args.profile else None
            usage.start()
            t0 = time.monotonic()
            await asyncio.gather(*(poster() for _ in range(args.concurrency)))
            posted = time.monotonic() - t0
            acks = 0
            while time.monotonic() - t0 < posted + 120:
                acks = await acknowledgements_received(http, stack.simulator_url) - before
                if acks >= len(messages):
                    break
                await asyncio.sleep(0.2)
            acked = time.monotonic() - t0
            usage.stop()
            if profiler:
                print(f"  flame graph: {', '.join(map(str, profiler.stop()))}")
            settled_acks = None
            if args.resent:
                # Past the relay's grace for acknowledgements, and a pass of it: any acknowledgement
                # it sent again while the API's own post was still on its way has arrived by now.
                await asyncio.sleep(max(0.0, ACK_GRACE.total_seconds() + 5 - (time.monotonic() - t0 - posted)))
                settled_acks = await acknowledgements_received(http, stack.simulator_url) - before
        print(
            f"inbound: posted {len(messages)} with {args.concurrency} in flight: {len(messages) / posted:.1f} "
            f"messages/s over {posted:.1f}s, "
            f"answers {dict(sorted(statuses.items()))}; POST {p50_p99(latencies)}"
        )
        print(
            f"inbound: acknowledgements at the partner {acks}/{len(messages)} after {acked:.1f}s "
            f"({acks / acked:.1f}/s, accepted message → acknowledged end to end)"
        )
        if settled_acks is not None:
            print(
                f"inbound: acknowledgements at the partner once the relay's grace had passed: {settled_acks} "
                f"({settled_acks - len(messages)} sent twice)"
            )
        print(*usage.lines(len(messages), "message"), sep="\n")
        print(f"load average at the end: {load_average()}")
        taken = sum(n for status, n in statuses.items() if 200 <= status < 300)
        return 0 if taken == len(messages) and acks >= len(messages) else 1
    finally:
        stack.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--flows", type=int, default=100, help="pathways to open; 3 replies are posted per pathway (default 100)"
    )
    parser.add_argument("--concurrency", type=int, default=16, help="POSTs in flight (default 16)")
    parser.add_argument(
        "--transport",
        choices=["process-message", "vans"],
        default="process-message",
        help="how the partners post, and careflow answers (default: FHIR $process-message)",
    )
    parser.add_argument("--profile", action="store_true", help=f"py-spy flame graph of the API into {RESULTS}")
    parser.add_argument(
        "--resent",
        action="store_true",
        help="then wait out the relay's grace for acknowledgements and count those sent twice (about 35 s more)",
    )
    args = parser.parse_args()
    print(f"machine: {machine()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="careflow-bench-inbound-") as tmp:
        return asyncio.run(run(args, Path(tmp)))


if __name__ == "__main__":
    sys.exit(main())
