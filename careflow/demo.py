"""`careflow demo`: drive N synthetic referrals through a running careflow and summarise."""

from __future__ import annotations

import asyncio
import random
import statistics
import sys
import time
from datetime import datetime, timedelta

import httpx

from careflow.auth import Role, issue_token
from careflow.settings import Settings

REFERRING_SOR = "100000000000001"
RECEIVING_SOR = "200000000000001"
# The demo lab: under `make run` it acknowledges referrals but never answers (escalations to show).
QUIET_SOR = "300000000000001"
QUIET_SHARE = 0.1
STEPS = ("referral", "appointment", "test_result", "treatment_plan")
SETTLED = {"completed", "cancelled", "failed"}

GIVEN = ["Anna", "Mads", "Sofie", "Oliver", "Ida", "Lucas", "Freja", "Emil", "Karla", "Noah"]
FAMILY = ["Testesen", "Prøvesen", "Demosen", "Eksempelsen", "Syntetisk"]
REASONS = ["Brystsmerter ved anstrengelse", "Hjertebanken, udredning", "Forhøjet blodtryk trods behandling", "Åndenød ved gang"]


def synthetic_cpr(rng: random.Random) -> str:
    """A valid-format CPR that belongs to nobody: 7th digit 5-8 with year 27-57 means born 2027-2057."""
    return f"{rng.randint(1, 28):02d}{rng.randint(1, 12):02d}{rng.randint(30, 57):02d}{rng.randint(5, 8)}{rng.randint(0, 999):03d}"


def referral_body(rng: random.Random, receiving_sor: str = RECEIVING_SOR) -> dict:
    return {
        "patient": {"cpr": synthetic_cpr(rng), "given_name": rng.choice(GIVEN), "family_name": rng.choice(FAMILY)},
        "referring_sor": REFERRING_SOR,
        "receiving_sor": receiving_sor,
        "reason": rng.choice(REASONS),
        "priority": rng.choice(["routine", "routine", "urgent"]),
    }


def _tokens(settings: Settings) -> tuple[str, str]:
    ttl = timedelta(hours=2)
    return (
        issue_token(settings.token_secret, subject="demo-clinician", role=Role.CLINICIAN, ttl=ttl),
        issue_token(settings.token_secret, subject="demo-coordinator", role=Role.COORDINATOR, ttl=ttl),
    )


async def seed_demo(settings: Settings, count: int) -> None:
    """Demo data for `make run`: a few referrals, unless the store already has flows."""
    clinician, coordinator = _tokens(settings)
    async with httpx.AsyncClient(base_url=settings.public_url, timeout=30) as http:
        existing = await http.get("/flows", params={"limit": 1}, headers={"Authorization": f"Bearer {coordinator}"})
        if existing.status_code == 200 and existing.json()["total"] > 0:
            return
        rng = random.Random()
        for i in range(count):
            receiving = QUIET_SOR if i == count - 1 and count > 1 else RECEIVING_SOR  # one will escalate
            await http.post("/referrals", json=referral_body(rng, receiving), headers={"Authorization": f"Bearer {clinician}"})


def _bar(done: int, total: int, started: float) -> None:
    width = 40
    filled = int(width * done / max(total, 1))
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} settled  {time.monotonic() - started:6.1f}s")
    sys.stderr.flush()


async def run_demo(settings: Settings, *, referrals: int, api_url: str | None, concurrency: int, timeout: float) -> int:
    clinician, coordinator = _tokens(settings)
    rng = random.Random()
    started = time.monotonic()
    failed_to_start = 0
    flow_ids: list[str] = []
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=api_url or settings.public_url, timeout=60, limits=limits) as http:
        semaphore = asyncio.Semaphore(concurrency)

        async def post_one() -> None:
            nonlocal failed_to_start
            try:
                async with semaphore:
                    receiving = QUIET_SOR if rng.random() < QUIET_SHARE else RECEIVING_SOR
                    response = await http.post("/referrals", json=referral_body(rng, receiving), headers={"Authorization": f"Bearer {clinician}"})
            except httpx.HTTPError:
                failed_to_start += 1
                return
            if response.status_code == 202:
                flow_ids.append(response.json()["id"])
            else:
                failed_to_start += 1

        await asyncio.gather(*(post_one() for _ in range(referrals)))
        auth = {"Authorization": f"Bearer {coordinator}"}
        pending = set(flow_ids)
        status: dict[str, str] = {}
        escalated: set[str] = set()  # flows with an escalation (open when seen)
        finished_at: dict[str, float] = {}
        while pending and time.monotonic() - started < timeout:
            # One paged list request sees every flow's status; details are fetched once at the end.
            try:
                for flow in await _list_all(http, auth, len(flow_ids)):
                    if flow["id"] not in pending:
                        continue
                    status[flow["id"]] = flow["status"]
                    if flow["open_escalations"]:
                        escalated.add(flow["id"])
                    # A flow whose partner stays silent escalates and waits: count it as settled.
                    if flow["status"] in SETTLED or flow["open_escalations"]:
                        pending.discard(flow["id"])
                        finished_at.setdefault(flow["id"], time.monotonic())
            except httpx.HTTPError as err:
                sys.stderr.write(f"\n(poll failed: {type(err).__name__}; retrying)\n")
            _bar(len(flow_ids) - len(pending), len(flow_ids), started)
            if pending:
                await asyncio.sleep(0.5)
        sys.stderr.write("\n")
        durations = await _step_durations(http, auth, flow_ids, semaphore, escalated)
    completed = sum(1 for s in status.values() if s == "completed")
    # Throughput over the completed flows only: escalated ones wait for their deadline by design.
    elapsed = max((t for f, t in finished_at.items() if status.get(f) == "completed"), default=time.monotonic()) - started
    print(
        f"demo: referrals {referrals}, completed {completed}, escalated {len(escalated)}, failed {failed_to_start + sum(1 for s in status.values() if s == 'failed')}, "
        f"unsettled {len(pending)}, {completed / elapsed if elapsed else 0:.1f} flows/s over {elapsed:.1f}s"
    )
    for step in STEPS[1:]:
        values = durations.get(step, [])
        if values:
            print(f"  {step:<15} p50 {_percentile(values, 50):6.2f}s   p99 {_percentile(values, 99):6.2f}s   (n={len(values)})")
    return 0 if not pending and not failed_to_start else 1


async def _list_all(http: httpx.AsyncClient, auth: dict, newest: int) -> list[dict]:
    flows: list[dict] = []
    while len(flows) < newest:
        response = await http.get("/flows", params={"sort": "newest", "limit": 500, "offset": len(flows)}, headers=auth)
        response.raise_for_status()
        page = response.json()["items"]
        if not page:
            break
        flows.extend(page)
    return flows


async def _step_durations(http: httpx.AsyncClient, auth: dict, flow_ids: list[str], semaphore: asyncio.Semaphore, escalated: set[str]) -> dict[str, list[float]]:
    """Time from one step's start to the next, from each flow's timeline."""
    durations: dict[str, list[float]] = {}

    async def one(flow_id: str) -> None:
        try:
            async with semaphore:
                response = await http.get(f"/flows/{flow_id}", headers=auth)
        except httpx.HTTPError:
            return
        if response.status_code != 200:
            return
        flow = response.json()
        if flow["escalations"]:
            escalated.add(flow_id)
        timeline = response.json()["timeline"]
        sent = [datetime.fromisoformat(e["at"]) for e in timeline if e["kind"] == "sent" and e["step"] == "referral"]
        previous = sent[0] if sent else None
        for step in STEPS[1:]:
            received = [datetime.fromisoformat(e["at"]) for e in timeline if e["kind"] == "received" and e["step"] == step]
            if previous is None or not received:
                break
            durations.setdefault(step, []).append((received[0] - previous).total_seconds())
            previous = received[0]

    await asyncio.gather(*(one(f) for f in flow_ids))
    return durations


def _percentile(values: list[float], pct: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]
