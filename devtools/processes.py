"""careflow as separate processes on loopback, as `careflow dev` runs them but on free ports and a data
dir of their own, each in its own process group: the Temporal dev server (SQLite file), `careflow
worker`, `careflow api` and `careflow simulator`. Shared by the fault suite (tests/faults/processes.py),
which kills and restarts them, and the throughput benchmarks (benchmarks/harness.py), which measure them;
here, not in the test tree, so the benchmarks do not depend on it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

from careflow.settings import Settings
from careflow.temporal import dev_server_args, temporal_cli
from careflow.tokens import dev_issuer
from devtools.stack import refresh_partner_tokens, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
DEMO_DIRECTORY = ROOT / "messaging" / "data" / "demo-directory.json"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_directory(path: Path, *, api_url: str, simulator_url: str) -> Path:
    """The demo directory with the stack's own ports for careflow and the simulated partners."""
    text = (
        DEMO_DIRECTORY.read_text()
        .replace("http://127.0.0.1:8000", api_url)
        .replace("http://127.0.0.1:8100", simulator_url)
    )
    path.write_text(text)
    return path


class LoopbackStack:
    """The processes' environment and settings, and the pieces to start, signal and stop them;
    `close()` kills every process group it made. Subclasses say in which order they start."""

    log_tail_lines = 40  # what `log_tail` shows unless asked for more or fewer lines
    mark_starts = True  # a "----- start HH:MM:SS -----" line in a process's log at each (re)start

    def __init__(
        self, data: Path, *, behaviour: dict, task_queue_prefix: str, extra_env: dict[str, str] | None = None
    ) -> None:
        self.data = data
        self.logs = data / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.temporal_port, self.api_port, self.simulator_port = free_port(), free_port(), free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.simulator_url = f"http://127.0.0.1:{self.simulator_port}"
        self.behaviour = behaviour
        directory = write_directory(data / "directory.json", api_url=self.api_url, simulator_url=self.simulator_url)
        # Nothing of the caller's CAREFLOW_* environment leaks into the stack.
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CAREFLOW_")}
        self.env.update(
            {
                "CAREFLOW_ENV": "dev",
                "CAREFLOW_DATA_DIR": str(data),
                "CAREFLOW_TEMPORAL_ADDRESS": f"127.0.0.1:{self.temporal_port}",
                "CAREFLOW_API_PORT": str(self.api_port),
                "CAREFLOW_PUBLIC_URL": self.api_url,
                "CAREFLOW_SIMULATOR_PORT": str(self.simulator_port),
                "CAREFLOW_DIRECTORY_PATH": str(directory),
                "CAREFLOW_TASK_QUEUE": f"{task_queue_prefix}-{uuid.uuid4().hex[:8]}",
                "PYTHONUNBUFFERED": "1",
                **(extra_env or {}),
            }
        )
        self.settings = Settings(
            env="dev",  # the dev codec key, as the processes above have it
            data_dir=data,
            temporal_address=self.env["CAREFLOW_TEMPORAL_ADDRESS"],
            task_queue=self.env["CAREFLOW_TASK_QUEUE"],
            api_port=self.api_port,
            public_url=self.api_url,
            simulator_port=self.simulator_port,
            directory_path=directory,
        )
        self.processes: dict[str, subprocess.Popen] = {}
        self.restarts: dict[str, int] = {}

    # ----- the pieces ---------------------------------------------------------------------

    def start_temporal(self) -> None:
        args = dev_server_args(self.settings, db_file=self.data / "temporal.db", port=self.temporal_port, ui_port=None)
        self._start("temporal", [temporal_cli(), *args])
        self.wait_for("temporal", self.temporal_port)

    def migrate(self) -> None:
        subprocess.run(
            [sys.executable, "-m", "careflow", "migrate"], env=self.env, check=True, cwd=ROOT, stdout=subprocess.DEVNULL
        )

    def launch_simulator(self) -> None:
        """The simulated partners, handed tokens (not the key); not waited for."""
        refresh_partner_tokens(self.settings, dev_issuer(self.data, create=True))
        self._start(
            "simulator", [sys.executable, "-m", "careflow", "simulator", "--behaviour", json.dumps(self.behaviour)]
        )

    def launch_api(self, extra_env: dict[str, str] | None = None) -> None:
        self._start("api", [sys.executable, "-m", "careflow", "api"], extra_env)

    def launch_worker(self) -> None:
        self._start("worker", [sys.executable, "-m", "careflow", "worker"])

    def wait_for(self, name: str, port: int) -> None:
        """Until something listens on `port`; fails at once if process `name` has exited."""
        wait_for_port("127.0.0.1", port, 60, self.processes[name])

    # ----- lifecycle ----------------------------------------------------------------------

    def alive(self, name: str) -> bool:
        process = self.processes.get(name)
        return process is not None and process.poll() is None

    def pids(self) -> dict[str, int]:
        return {name: p.pid for name, p in self.processes.items()}

    def close(self) -> None:
        for name in list(self.processes):
            self._signal(name, signal.SIGKILL)
        for process in self.processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass

    def log_tail(self, name: str, lines: int | None = None) -> str:
        path = self.logs / f"{name}.log"
        if not path.exists():
            return ""
        count = self.log_tail_lines if lines is None else lines
        return "\n".join(path.read_text(errors="replace").splitlines()[-count:])

    # ----- internals ----------------------------------------------------------------------

    def _start(self, name: str, args: list[str], extra_env: dict[str, str] | None = None) -> None:
        if self.alive(name):
            raise RuntimeError(f"{name} is already running")
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 (lives as long as the process)
        if self.mark_starts:
            log.write(f"\n----- start {time.strftime('%H:%M:%S')} -----\n".encode())
            log.flush()
        self.processes[name] = subprocess.Popen(
            args,
            env={**self.env, **(extra_env or {})},
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.restarts[name] = self.restarts.get(name, -1) + 1
        log.close()

    def _signal(self, name: str, sig: int) -> None:
        process = self.processes.get(name)
        if process is not None and process.poll() is None:
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                pass
