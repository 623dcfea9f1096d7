"""`careflow dev` as `make run` starts it, on free ports and a test's own data dir."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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


@dataclass
class DevRun:
    """A running `careflow dev`: its process, ports, environment and the banner it printed."""

    process: subprocess.Popen
    ports: dict[str, int]
    env: dict[str, str]
    banner: str = ""

    @property
    def api_url(self) -> str:
        return self.env["CAREFLOW_PUBLIC_URL"]

    def careflow(self, *args: str, check: bool = False, timeout: float | None = None) -> subprocess.CompletedProcess:
        """`careflow ARGS` in the run's environment, its output captured as text."""
        return subprocess.run(
            [sys.executable, "-m", "careflow", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            check=check,
            timeout=timeout,
        )

    def token(self, role: str) -> str:
        """What `careflow token --role ROLE` prints: the token alone on its line."""
        return self.careflow("token", "--role", role, check=True).stdout


@contextmanager
def careflow_dev(
    tmp_path: Path,
    demo_referrals: int,
    transport: str = "",
    *,
    banner_timeout: float = 120,
    impatient_ctrl_c: bool = False,
) -> Iterator[DevRun]:
    """`careflow dev` started (see `start_dev`) and running, its banner printed; Ctrl-C on the way
    out (twice with `impatient_ctrl_c`, which must not leave servers behind either), killed and
    failed if it has not stopped 30 seconds later."""
    process, ports, env = start_dev(tmp_path, demo_referrals, transport)
    try:
        banner = wait_for_banner(process, banner_timeout)
        assert "careflow is running." in banner, banner
        yield DevRun(process, ports, env, banner)
    finally:
        process.send_signal(signal.SIGINT)
        if impatient_ctrl_c:
            time.sleep(0.3)
            process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
