"""`careflow demo`: drive N synthetic flows of any declared pathway through a running careflow and
summarise. Each pathway's `example` gives the input (synthetic patients); the demo plays the
clinician for the events a pathway awaits."""

from __future__ import annotations

import asyncio
import functools
import random
import statistics
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta

import httpx

from careflow.auth import Role
from careflow.settings import Settings
from careflow.tokens import dev_issuer
from workflows.examples import synthetic_cpr, synthetic_patient
from workflows.registry import Pathways, events

__all__ = ["referral_body", "run_demo", "seed_demo", "synthetic_cpr"]

REFERRING_SOR = "100000000000001"
RECEIVING_SOR = "200000000000001"
# The demo lab: under `make run` it acknowledges referrals but never answers (escalations to show).
QUIET_SOR = "300000000000001"
QUIET_SHARE = 0.1
SETTLED = {"completed", "cancelled", "failed"}
# What `careflow dev` loads besides the built-in pathways: the tutorial's (docs/adding-a-pathway.md).
DEV_PATHWAY_MODULES = ["examples.pathways.lab_order", "examples.pathways.home_care_request"]

REASONS = [
    "Brystsmerter ved anstrengelse",
    "Hjertebanken, udredning",
    "Forhøjet blodtryk trods behandling",
    "Åndenød ved gang",
]


def referral_body(rng: random.Random, receiving_sor: str = RECEIVING_SOR) -> dict:
    return {
        "patient": synthetic_patient(rng),
        "referring_sor": REFERRING_SOR,
        "receiving_sor": receiving_sor,
        "reason": rng.choice(REASONS),
        "priority": rng.choice(["routine", "routine", "urgent"]),
    }


def _tokens(settings: Settings) -> tuple[Callable[[str], dict[str, str]], str]:
    """Tokens from the dev stack's key (the demo drives a `careflow dev` stack, nothing else): a
    clinician of each organisation the demo acts for (a clinician acts for their own), a coordinator
    of all."""
    issuer = dev_issuer(settings.data_dir, create=False)
    ttl = timedelta(hours=1)

    @functools.cache
    def clinician(sor: str) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {issuer.issue(Role.CLINICIAN, sor=sor, subject=f'demo-clinician-{sor}', ttl=ttl)}"
        }

    return clinician, issuer.issue(Role.COORDINATOR, sor="*", subject="demo-coordinator", ttl=ttl)


def acting_sor(declaration: type, body: dict) -> str:
    """The organisation a flow's start acts for (its pathway's acting party), from the start's input."""
    party = next((p for p in declaration.parties if p.role == declaration.acting_for), None)
    value = body.get(party.field) if party is not None and party.field else None
    return value if isinstance(value, str) and value else REFERRING_SOR


def dev_pathways(settings: Settings) -> Pathways:
    """The pathways the dev stack runs: careflow's own, and the modules the settings name (else the tutorial's)."""
    return Pathways.load(settings.pathway_modules or DEV_PATHWAY_MODULES)


async def seed_demo(settings: Settings, count: int) -> None:
    """Demo data for `make run`: a few referrals (the last to the quiet lab, so one escalates) and
    one flow of every other pathway that has an example, unless the store already has flows."""
    clinician, coordinator = _tokens(settings)
    async with httpx.AsyncClient(base_url=settings.public_url, timeout=30) as http:
        existing = await http.get("/flows", params={"limit": 1}, headers={"Authorization": f"Bearer {coordinator}"})
        if existing.status_code == 200 and existing.json()["total"] > 0:
            return
        rng = random.Random()
        for i in range(count):
            receiving = QUIET_SOR if i == count - 1 and count > 1 else RECEIVING_SOR  # one will escalate
            await http.post("/referrals", json=referral_body(rng, receiving), headers=clinician(REFERRING_SOR))
        for pathway in dev_pathways(settings):
            example = pathway.example(rng)
            if pathway.name != "referral" and pathway.api_start and example is not None:
                await http.post(
                    f"/pathways/{pathway.name}/flows", json=example, headers=clinician(acting_sor(pathway, example))
                )


def _bar(done: int, total: int, started: float) -> None:
    width = 40
    filled = int(width * done / max(total, 1))
    sys.stderr.write(
        f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} settled  {time.monotonic() - started:6.1f}s"
    )
    sys.stderr.flush()


async def run_demo(
    settings: Settings, *, pathway: str = "referral", flows: int, api_url: str | None, concurrency: int, timeout: float
) -> int:
    declaration = dev_pathways(settings).get(pathway)
    if declaration is None or not declaration.api_start:
        sys.stderr.write(f"no pathway {pathway!r} to start through the API\n")
        return 2
    if declaration.example(random.Random(0)) is None:
        sys.stderr.write(f"the {pathway} pathway declares no example input for the demo\n")
        return 2
    clinician, coordinator = _tokens(settings)
    rng = random.Random()
    started = time.monotonic()
    failed_to_start = 0
    flow_ids: list[str] = []
    events_reported = 0
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=api_url or settings.public_url, timeout=60, limits=limits) as http:
        semaphore = asyncio.Semaphore(concurrency)

        async def post_one() -> None:
            nonlocal failed_to_start
            try:
                async with semaphore:
                    if pathway == "referral":  # one in ten to the demo lab, which never answers under `make run`
                        url, body = (
                            "/referrals",
                            referral_body(rng, QUIET_SOR if rng.random() < QUIET_SHARE else RECEIVING_SOR),
                        )
                    else:
                        url, body = f"/pathways/{pathway}/flows", declaration.example(rng)
                    response = await http.post(url, json=body, headers=clinician(acting_sor(declaration, body)))
            except httpx.HTTPError:
                failed_to_start += 1
                return
            if response.status_code == 202:
                flow_ids.append(response.json()["id"])
            else:
                failed_to_start += 1

        await asyncio.gather(*(post_one() for _ in range(flows)))
        auth = {"Authorization": f"Bearer {coordinator}"}
        event_steps = {s.name: s.event for s in events(declaration)}
        pending = set(flow_ids)
        status: dict[str, str] = {}
        escalated: set[str] = set()  # flows with an escalation (open when seen)
        finished_at: dict[str, float] = {}
        reported: set[tuple[str, str]] = set()
        scripts = {flow_id: declaration.demo_events(rng) for flow_id in flow_ids}  # alongside events, in order
        first_step = declaration.steps[0].name
        while pending and time.monotonic() - started < timeout:
            # One paged list request sees every flow's status; details are fetched once at the end.
            try:
                for flow in await _list_all(http, auth, len(flow_ids)):
                    if flow["id"] not in pending:
                        continue
                    status[flow["id"]] = flow["status"]
                    if flow["open_escalations"]:
                        escalated.add(flow["id"])
                    script = scripts.get(flow["id"])
                    if script and flow["step"] != first_step and flow["status"] not in SETTLED:
                        # One alongside event per look at the flow: admitted, on leave, back, discharged.
                        event, data = script.pop(0)
                        answer = await http.post(
                            f"/flows/{flow['id']}/events/{event}",
                            json={"reason": "demo", "data": data},
                            headers=clinician(flow["referring_sor"]),
                        )
                        events_reported += answer.status_code == 200
                    elif flow["step"] in event_steps and (flow["id"], flow["step"]) not in reported:
                        # The demo plays the clinician: it reports the event the flow waits for.
                        reported.add((flow["id"], flow["step"]))
                        answer = await http.post(
                            f"/flows/{flow['id']}/events/{event_steps[flow['step']]}",
                            json={"reason": "demo"},
                            headers=clinician(flow["referring_sor"]),
                        )
                        events_reported += answer.status_code == 200
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
        milestones = [s.name for s in declaration.steps]
        durations = await _step_durations(http, auth, flow_ids, semaphore, escalated, milestones)
    completed = sum(1 for s in status.values() if s == "completed")
    # Throughput over the completed flows only: escalated ones wait for their deadline by design.
    elapsed = (
        max((t for f, t in finished_at.items() if status.get(f) == "completed"), default=time.monotonic()) - started
    )
    print(
        f"demo: pathway {pathway}, flows {flows}, completed {completed}, escalated {len(escalated)}, "
        f"failed {failed_to_start + sum(1 for s in status.values() if s == 'failed')}, unsettled {len(pending)}, "
        f"events reported {events_reported}, {completed / elapsed if elapsed else 0:.1f} flows/s over {elapsed:.1f}s"
    )
    for step in milestones[1:]:
        values = durations.get(step, [])
        if values:
            print(
                f"  {step:<15} p50 {_percentile(values, 50):6.2f}s   p99 {_percentile(values, 99):6.2f}s   "
                f"(n={len(values)})"
            )
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


async def _step_durations(
    http: httpx.AsyncClient,
    auth: dict,
    flow_ids: list[str],
    semaphore: asyncio.Semaphore,
    escalated: set[str],
    steps: list[str],
) -> dict[str, list[float]]:
    """Time from one step's milestone to the next, from each flow's timeline: the first message sent
    starts the clock; a step is reached when its reply is received (or its event reported, or its
    message sent)."""
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
        timeline = flow["timeline"]
        sent = [datetime.fromisoformat(e["at"]) for e in timeline if e["kind"] == "sent"]
        previous = sent[0] if sent else None
        for step in steps[1:]:
            reached = [
                datetime.fromisoformat(e["at"])
                for e in timeline
                if e["step"] == step and e["kind"] in ("received", "event", "sent")
            ]
            if previous is None or not reached:
                break
            durations.setdefault(step, []).append((reached[0] - previous).total_seconds())
            previous = reached[0]

    await asyncio.gather(*(one(f) for f in flow_ids))
    return durations


def _percentile(values: list[float], pct: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[pct - 1]
