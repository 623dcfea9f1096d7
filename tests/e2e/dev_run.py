"""`careflow dev` as `make run` starts it, on free ports and a test's own data dir."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import free_port, write_directory

ROOT = Path(__file__).resolve().parents[2]


def start_dev(
    tmp_path: Path, demo_referrals: int, transport: str = ""
) -> tuple[subprocess.Popen, dict[str, int], dict[str, str]]:
    """Start `careflow dev` (with `--transport vans`, say, every partner over VANS); returns the
    process, its ports and the environment it runs in."""
    ports = {name: free_port() for name in ("temporal", "ui", "api", "simulator")}
    api_url = f"http://127.0.0.1:{ports['api']}"
    simulator_url = f"http://127.0.0.1:{ports['simulator']}"
    env = {
        **os.environ,
        "CAREFLOW_DATA_DIR": str(tmp_path / "data"),
        "CAREFLOW_TEMPORAL_ADDRESS": f"127.0.0.1:{ports['temporal']}",
        "CAREFLOW_TEMPORAL_UI_PORT": str(ports["ui"]),
        "CAREFLOW_API_PORT": str(ports["api"]),
        "CAREFLOW_PUBLIC_URL": api_url,
        "CAREFLOW_SIMULATOR_PORT": str(ports["simulator"]),
        "CAREFLOW_DIRECTORY_PATH": str(
            write_directory(tmp_path / "directory.json", api_url=api_url, simulator_url=simulator_url)
        ),
    }
    dev = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "careflow",
            "dev",
            "--demo-referrals",
            str(demo_referrals),
            *(["--transport", transport] if transport else []),
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return dev, ports, env


def wait_for_banner(dev: subprocess.Popen, timeout: float) -> str:
    """What `careflow dev` printed up to its last banner line (or until it stopped printing)."""
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = dev.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("Ctrl-C stops everything"):
            break
    return "".join(lines)
