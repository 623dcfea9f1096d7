"""`careflow dev` / `make run`: every process of careflow on one machine, stopped together by Ctrl-C."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

from careflow.auth import Role
from careflow.settings import Settings
from careflow.temporal import dev_server_args, temporal_cli
from careflow.tokens import PARTNER_TOKENS_FILE, DevIssuer, dev_issuer, write_partner_tokens
from devtools.demo import DEV_PATHWAY_MODULES

# Short timings so the demo shows deadlines and escalations within minutes, not weeks.
DEV_TIMINGS = {
    "CAREFLOW_PATHWAYS__REFERRAL__ACK_TIMEOUT": "PT20S",
    "CAREFLOW_PATHWAYS__REFERRAL__APPOINTMENT_DEADLINE": "PT2M",
    "CAREFLOW_PATHWAYS__REFERRAL__TEST_RESULT_DEADLINE": "PT2M",
    "CAREFLOW_PATHWAYS__REFERRAL__TREATMENT_PLAN_DEADLINE": "PT2M",
    "CAREFLOW_PATHWAYS__LAB_ORDER__ACK_TIMEOUT": "PT20S",
    "CAREFLOW_PATHWAYS__LAB_ORDER__RESULT_DEADLINE": "PT2M",
    "CAREFLOW_PATHWAYS__HOME_CARE_REQUEST__ANSWER_DEADLINE": "PT2M",
    "CAREFLOW_PATHWAYS__HOME_CARE_OBSERVATION__ACK_TIMEOUT": "PT20S",
    "CAREFLOW_PATHWAYS__HOME_CARE_OBSERVATION__ANSWER_DEADLINE": "PT2M",
    "CAREFLOW_PATHWAY_MODULES": json.dumps(DEV_PATHWAY_MODULES),  # the tutorial's pathways too
}
# The demo lab acknowledges referrals but never answers them: `careflow demo` sends it one referral
# in ten, so the console has escalations to show, while referrals to the hospital always complete.
PARTNER_TOKEN_REFRESH = 20 * 60  # seconds; the simulator's tokens live an hour
DEV_SIMULATOR = (
    '{"quiet_partners": ["300000000000001"], "quiet_in": ["referral"], '
    '"appointment_delay": 2, "test_result_delay": 2, "treatment_plan_delay": 2}'
)


def wait_for_port(host: str, port: int, timeout: float, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{' '.join(map(str, process.args[:4]))} exited with {process.returncode}")
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex((host, port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout:.0f}s")


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _port(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


def run_dev(settings: Settings, *, demo_referrals: int, simulator_behaviour: str | None = None) -> int:
    data = Path(settings.data_dir)
    data.mkdir(parents=True, exist_ok=True)
    logs = data / "logs"
    logs.mkdir(exist_ok=True)
    # Dev mode for every child, said explicitly: an unset CAREFLOW_ENV means production.
    env = {**os.environ, **{k: v for k, v in DEV_TIMINGS.items() if k not in os.environ}, "CAREFLOW_ENV": "dev"}
    # The Temporal UI decodes through careflow's codec endpoint with a credential of this run only,
    # in the endpoint's path (the UI sends no token): why, in api/routes/codec.py DevUiCodecCredential.
    # The API gets its hash; the credential itself goes to the UI and nowhere else.
    ui_credential = secrets.token_urlsafe(32)
    env["CAREFLOW_CODEC_UI_CREDENTIAL_SHA256"] = hashlib.sha256(ui_credential.encode()).hexdigest()
    ui_codec_endpoint = f"{settings.public_url.rstrip('/')}/codec/ui/{ui_credential}"
    issuer = dev_issuer(data, create=True)
    processes: list[subprocess.Popen] = []

    def start(name: str, args: list[str]) -> subprocess.Popen:
        log_file = open(logs / f"{name}.log", "ab")  # noqa: SIM115 (lives as long as the process)
        process = subprocess.Popen(args, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
        processes.append(process)
        return process

    def stop_all() -> None:
        # A second Ctrl-C (or SIGTERM) must not cut the shutdown short and leave servers behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for process in reversed(processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in reversed(processes):
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)

    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        print("careflow: starting the Temporal dev server, worker, API and simulated partners …", flush=True)
        temporal_port = _port(settings.temporal_address)
        busy = [
            f"{name} port {port}"
            for name, port in (
                ("Temporal", temporal_port),
                ("Temporal UI", settings.temporal_ui_port),
                ("API", settings.api_port),
                ("simulator", settings.simulator_port),
            )
            if _listening(port)
        ]
        if busy:
            raise RuntimeError(
                f"{', '.join(busy)} already in use: is another careflow running? Stop it, or set CAREFLOW_*_PORT"
            )
        temporal = start(
            "temporal",
            [
                temporal_cli(),
                *dev_server_args(
                    settings,
                    db_file=data / "temporal.db",
                    port=temporal_port,
                    ui_port=settings.temporal_ui_port,
                    ui_codec_endpoint=ui_codec_endpoint,
                ),
            ],
        )
        wait_for_port("127.0.0.1", temporal_port, 60, temporal)
        subprocess.run([sys.executable, "-m", "careflow", "migrate"], env=env, check=True)
        worker = start("worker", [sys.executable, "-m", "careflow", "worker"])
        api = start("api", [sys.executable, "-m", "careflow", "api"])
        refresh_partner_tokens(settings, issuer)
        tokens_written = time.monotonic()
        simulator = start(
            "simulator",
            [sys.executable, "-m", "careflow", "simulator", "--behaviour", simulator_behaviour or DEV_SIMULATOR],
        )
        wait_for_port(settings.api_host, settings.api_port, 60, api)
        wait_for_port(settings.simulator_host, settings.simulator_port, 60, simulator)
        time.sleep(1)
        if worker.poll() is not None:
            raise RuntimeError(f"the worker exited with {worker.returncode}: see {logs / 'worker.log'}")
        if demo_referrals:
            from devtools.demo import seed_demo

            asyncio.run(seed_demo(settings, demo_referrals))
        _print_banner(settings, logs, issuer)
        while all(p.poll() is None for p in processes):
            time.sleep(1)
            if time.monotonic() - tokens_written > PARTNER_TOKEN_REFRESH:
                refresh_partner_tokens(settings, issuer)
                tokens_written = time.monotonic()
        dead = [p for p in processes if p.poll() is not None]
        print(
            f"careflow: a process stopped ({' '.join(map(str, dead[0].args[:4]))}); see {logs}; stopping the rest",
            flush=True,
        )
        return 1
    except KeyboardInterrupt:
        print("\ncareflow: stopping …", flush=True)
        return 0
    except (RuntimeError, TimeoutError, subprocess.CalledProcessError) as err:
        print(f"careflow: could not start: {err} (logs in {logs})", file=sys.stderr)
        return 1
    finally:
        stop_all()


def refresh_partner_tokens(settings: Settings, issuer: DevIssuer) -> None:
    """The simulated partners' tokens (every directory entry the simulator answers for)."""
    from messaging import Directory

    port = f":{settings.simulator_port}/"
    sors = [
        e.sor
        for e in Directory.load(settings.directory_path).entries
        if not e.careflow_acts_for and any(port in (url or "") for url in (e.endpoint, e.vans_endpoint))
    ]
    write_partner_tokens(Path(settings.data_dir) / PARTNER_TOKENS_FILE, issuer, sors)


def _print_banner(settings: Settings, logs: Path, issuer: DevIssuer) -> None:
    ttl = timedelta(hours=1)
    token = {
        role: issuer.issue(
            role,
            ttl=ttl,
            sor={Role.PARTNER: "200000000000001", Role.CLINICIAN: "100000000000001", Role.COORDINATOR: "*"}.get(role),
        )
        for role in Role
    }
    base = settings.public_url
    print(
        f"""
careflow is running.

  API docs (OpenAPI)    {base}/docs
  Coordinator console   {base}/console        (log in with the coordinator token below)
  Flows (JSON)          {base}/flows
  Temporal UI           http://127.0.0.1:{settings.temporal_ui_port}   (decodes payloads through the API, audited)
  Simulated partners    http://{settings.simulator_host}:{settings.simulator_port}/stats
  Logs                  {logs}

Demo tokens (JWTs valid 1 hour; `careflow token --role ROLE` makes more):
  clinician    {token[Role.CLINICIAN]}
  coordinator  {token[Role.COORDINATOR]}
  admin        {token[Role.ADMIN]}

Try:  curl -s -X POST {base}/referrals -H "Authorization: Bearer $(.venv/bin/careflow token --role clinician)" \\
        -H "Content-Type: application/json" -d @examples/referral.json

Ctrl-C stops everything.
""",
        flush=True,
    )
