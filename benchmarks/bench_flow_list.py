"""How fast is the coordinator console's flow list with 10,000 pathways? Target: under 200 ms.

Fills a fresh SQLite store (bulk insert), then requests the HTML page in-process through httpx's
ASGI transport with a coordinator session, and prints median and p95 per variant.
Run: `.venv/bin/python benchmarks/bench_flow_list.py [--flows N] [--requests N]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx  # noqa: E402
from sqlalchemy import insert  # noqa: E402

from api.console.session import COOKIE_NAME, ConsoleSession  # noqa: E402
from api.console.web import open_console_session  # noqa: E402
from api.main import create_app  # noqa: E402
from careflow.crypto import KeyRing, cpr_lookup_hash  # noqa: E402
from careflow.settings import Settings  # noqa: E402
from store.db import make_engine, migrate  # noqa: E402
from store.models import Escalation, Flow  # noqa: E402

STEPS = ["referral", "appointment", "test_result", "treatment_plan", "completed"]
RECEIVERS = ["200000000000001", "200000000000002", "300000000000001", "400000000000001"]
TARGET_MS = 200.0


def fill(settings: Settings, count: int) -> None:
    """Bulk-insert synthetic flows: a mix of steps and statuses, some overdue, some escalated."""
    rng = random.Random(7)
    key_ring = KeyRing.parse(settings.codec_keys)
    # One ciphertext shared by all rows: the list page never decrypts, so this costs nothing real.
    patient_enc = key_ring.encrypt_text(
        json.dumps({"cpr": "0101505123", "given_name": "Testa", "family_name": "Syntetisk"})
    )
    reason_enc = key_ring.encrypt_text("Brystsmerter ved anstrengelse")
    now = datetime.now(UTC)
    flows, escalations = [], []
    for i in range(count):
        step = rng.choice(STEPS)
        status = "completed" if step == "completed" else rng.choice(["active"] * 8 + ["escalated", "cancelled"])
        deadline = (
            None
            if status in ("completed", "cancelled") or step == "referral"
            else now + timedelta(hours=rng.randint(-72, 30 * 24))
        )
        flow_id = str(uuid.uuid4())
        flows.append(
            {
                "id": flow_id,
                "workflow_id": f"referral-{flow_id}",
                "pathway": "referral",
                "status": status,
                "step": step,
                "referring_sor": "100000000000001",
                "receiving_sor": rng.choice(RECEIVERS),
                "priority": rng.choice(["routine", "routine", "urgent"]),
                "next_deadline": deadline,
                "open_escalations": 1 if status == "escalated" else 0,
                "cpr_hash": cpr_lookup_hash(f"0101{50 + i % 40:02d}{i % 10000:04d}", settings.cpr_hash_key),
                "patient_enc": patient_enc,
                "reason_enc": reason_enc,
                "created_at": now - timedelta(minutes=i),
                "updated_at": now,
                "steps_json": "[]",
                "state_version": 1,
            }
        )
        if status == "escalated":
            escalations.append(
                {
                    "flow_id": flow_id,
                    "escalation_key": f"{step}-1",
                    "step": step,
                    "reason": "no reply by the deadline",
                    "opened_at": now - timedelta(hours=i % 100),
                }
            )
    engine = make_engine(settings.sqlalchemy_url)
    with engine.begin() as conn:
        conn.execute(insert(Flow), flows)
        if escalations:
            conn.execute(insert(Escalation), escalations)
    engine.dispose()


async def measure(settings: Settings, requests: int) -> dict[str, tuple[float, float]]:
    app = create_app(settings, run_migrations=False)
    console_session = ConsoleSession.login("bench-coordinator", "coordinator", int(time.time()) + 3600, ("*",))
    cookie = console_session.encode(settings.session_secret)
    variants = {
        "list, sorted by next deadline": "/console/flows",
        "list, overdue only": "/console/flows?overdue=1",
        "list, step + organisation": "/console/flows?step=appointment&receiving_sor=200000000000001",
        "list, page 100": "/console/flows?page=100",
        "table fragment (auto-refresh)": "/console/flows/table",
        "overview": "/console",
    }
    results = {}
    async with app.router.lifespan_context(app):
        open_console_session(app.state.engine, console_session)  # the server-side half of the login
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://127.0.0.1:8000", cookies={COOKIE_NAME: cookie}
        ) as client:
            for label, path in variants.items():
                for _ in range(3):  # warm up: templates compiled, connections open
                    (await client.get(path)).raise_for_status()
                times = []
                for _ in range(requests):
                    start = time.perf_counter()
                    response = await client.get(path)
                    times.append((time.perf_counter() - start) * 1000)
                    response.raise_for_status()
                times.sort()
                results[label] = (statistics.median(times), times[max(0, int(len(times) * 0.95) - 1)])
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--flows", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            env="dev", data_dir=Path(tmp), temporal_address="127.0.0.1:1"
        )  # dev secrets; Temporal is never called
        migrate(settings.sqlalchemy_url)
        start = time.perf_counter()
        fill(settings, args.flows)
        print(f"filled {args.flows} flows in {time.perf_counter() - start:.1f} s")
        results = asyncio.run(measure(settings, args.requests))
    print(f"{'request':38} {'median':>9} {'p95':>9}   ({args.requests} requests each, target < {TARGET_MS:.0f} ms)")
    slow = False
    for label, (median, p95) in results.items():
        print(f"{label:38} {median:7.1f}ms {p95:7.1f}ms")
        slow |= p95 > TARGET_MS and label.startswith("list, sorted")
    print("flow list: " + ("SLOWER than target" if slow else "within target"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
