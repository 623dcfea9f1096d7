"""What `make run` promises: `careflow dev` starts every process, prints the URLs and tokens, takes the
README's referral to completed, and Ctrl-C stops everything it started."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port
from tests.e2e.dev_run import careflow_dev

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_careflow_dev_runs_the_readme_referral_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    with careflow_dev(tmp_path, demo_referrals=2, impatient_ctrl_c=True) as dev:
        api_url, ports = dev.api_url, dev.ports
        for url in (f"{api_url}/docs", f"{api_url}/console", f"http://127.0.0.1:{ports['ui']}"):
            assert url in dev.banner
        token = dev.token("clinician")
        assert token.count("\n") == 1 and token.startswith("eyJ") and token.count(".") == 2, "the token alone on stdout"
        coordinator = dev.token("coordinator").strip()
        with httpx.Client(timeout=30) as http:
            demo = http.get(f"{api_url}/flows", headers={"Authorization": f"Bearer {coordinator}"}).json()
            assert sorted(f["pathway"] for f in demo["items"]) == [
                "home-care-observation",
                "home-care-request",
                "hospital-notification",
                "lab-order",
                "medcom-referral",
                "referral",
                "referral",
            ], "demo data: the referrals, careflow's MedCom pathways and the tutorial's"
            referral = json.loads((ROOT / "examples" / "referral.json").read_text())
            response = http.post(
                f"{api_url}/referrals", json=referral, headers={"Authorization": f"Bearer {token.strip()}"}
            )
            assert response.status_code == 202, response.text
            url = response.json()["url"]
            status = None
            for _ in range(120):
                status = http.get(url, headers={"Authorization": f"Bearer {coordinator}"}).json()["status"]
                if status == "completed":
                    break
                time.sleep(0.5)
            assert status == "completed"
        # the demo drives any declared pathway: here the tutorial's lab order
        lab_orders = dev.careflow("demo", "--pathway", "lab-order", "--flows", "3", "--timeout", "120", timeout=180)
        assert lab_orders.returncode == 0, lab_orders.stdout + lab_orders.stderr
        assert "demo: pathway lab-order, flows 3, completed 3, escalated 0, failed 0, unsettled 0" in lab_orders.stdout
        assert "result" in lab_orders.stdout, "the time to each declared step"
        # and a MedCom pathway: the acute-care team's observations, answered by the simulated GP
        observations = dev.careflow("demo", "--pathway", "home-care-observation", "--flows", "3", timeout=180)
        assert observations.returncode == 0, observations.stdout + observations.stderr
        assert (
            "demo: pathway home-care-observation, flows 3, completed 3, escalated 0, failed 0, unsettled 0"
            in observations.stdout
        )
        # ... and the referral on MedCom's draft model, whose treatment-started event the demo reports
        referrals = dev.careflow("demo", "--pathway", "medcom-referral", "--flows", "3", timeout=180)
        assert referrals.returncode == 0, referrals.stdout + referrals.stderr
        assert "demo: pathway medcom-referral, flows 3, completed 3, escalated 0, failed 0" in referrals.stdout
    assert dev.process.returncode == 0
    for name, port in ports.items():
        assert not _listening(port), f"{name} still listening after Ctrl-C"
    logs = sorted((tmp_path / "data" / "logs").glob("*.log"))
    assert {p.name for p in logs} >= {"api.log", "worker.log", "simulator.log", "temporal.log"}
    written = "".join(p.read_text(errors="replace") for p in logs)
    assert "POST /referrals" in written and "POST /fhir/" in written, "the logs saw the traffic"
    for patient_data in (
        referral["patient"]["cpr"],
        referral["patient"]["family_name"],
        referral["patient"]["given_name"],
    ):
        assert patient_data not in written, "patient data in a log"


def test_careflow_dev_refuses_to_start_beside_a_running_one(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            **os.environ,
            "CAREFLOW_DATA_DIR": str(tmp_path),
            "CAREFLOW_API_PORT": str(port),
            "CAREFLOW_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
            "CAREFLOW_TEMPORAL_UI_PORT": str(free_port()),
            "CAREFLOW_SIMULATOR_PORT": str(free_port()),
        }
        result = subprocess.run(
            [sys.executable, "-m", "careflow", "dev"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
        )
    assert result.returncode == 1
    assert f"API port {port} already in use" in result.stderr


def test_demo_sends_some_referrals_to_the_quiet_lab() -> None:
    import random

    from devtools.demo import QUIET_SOR, RECEIVING_SOR, referral_body
    from devtools.stack import DEV_SIMULATOR
    from simulator.app import Behaviour

    assert referral_body(random.Random(1))["receiving_sor"] == RECEIVING_SOR
    assert referral_body(random.Random(1), QUIET_SOR)["receiving_sor"] == QUIET_SOR
    under_make_run = Behaviour.model_validate_json(DEV_SIMULATOR)
    assert not under_make_run.answers_referral(QUIET_SOR, "referral")
    assert under_make_run.answers_referral(QUIET_SOR, "lab-order"), "quiet in referrals only: lab orders get results"
    assert all(under_make_run.answers_referral(RECEIVING_SOR) for _ in range(200)), (
        "the hospital always answers under make run"
    )


def test_careflow_dev_over_vans_takes_the_readme_referral_to_completed(tmp_path: Path) -> None:
    """`careflow dev --transport vans`: the worker, API and simulated partners all speak VANSEnvelopes."""
    with careflow_dev(tmp_path, demo_referrals=0, transport="vans") as dev:
        tokens = {role: dev.token(role).strip() for role in ("clinician", "coordinator")}
        with httpx.Client(timeout=30) as http:
            referral = json.loads((ROOT / "examples" / "referral.json").read_text())
            response = http.post(
                f"{dev.api_url}/referrals", json=referral, headers={"Authorization": f"Bearer {tokens['clinician']}"}
            )
            assert response.status_code == 202, response.text
            flow: dict = {}
            for _ in range(120):
                flow = http.get(
                    response.json()["url"], headers={"Authorization": f"Bearer {tokens['coordinator']}"}
                ).json()
                if flow["status"] == "completed":
                    break
                time.sleep(0.5)
            assert flow["status"] == "completed"
            out = [m for m in flow["messages"] if m["direction"] == "out"]
            assert {m["transport"] for m in out} == {"vans"}
            assert all(m["transport_receipt"] == "PositiveMessage" for m in out)
            stats = http.get(f"http://127.0.0.1:{dev.ports['simulator']}/stats").json()
            assert stats["envelopes_received"] >= 1 and stats["transport_duplicates"].get("new", 0) >= 1
    written = (tmp_path / "data" / "logs" / "api.log").read_text(errors="replace")
    assert "POST /vans/envelope" in written, "the hospital's replies came in envelopes"
