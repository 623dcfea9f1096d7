"""careflow as separate processes on loopback, each in its own process group so a test can kill,
stop and restart any of them: the Temporal dev server (SQLite file), `careflow worker`,
`careflow api` and `careflow simulator`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from careflow.settings import Settings
from careflow.temporal import dev_server_args, temporal_cli
from devtools.stack import wait_for_port
from tests.conftest import free_port, write_directory

ROOT = Path(__file__).resolve().parents[2]


class ProcessStack:
    """Start, kill and restart careflow's processes; `close()` kills every process group it made."""

    def __init__(self, data: Path, *, timings: dict[str, str], behaviour: dict, api_crash_ratio: float = 0.0) -> None:
        self.data = data
        self.logs = data / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.temporal_port, self.api_port, self.simulator_port = free_port(), free_port(), free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.simulator_url = f"http://127.0.0.1:{self.simulator_port}"
        self.behaviour = behaviour
        self.api_crash_ratio = api_crash_ratio
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
                "CAREFLOW_TASK_QUEUE": f"careflow-faults-{uuid.uuid4().hex[:8]}",
                "CAREFLOW_RELAY_INTERVAL": "PT1S",
                "PYTHONUNBUFFERED": "1",
                **timings,
            }
        )
        self.settings = Settings(
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

    # ----- lifecycle ----------------------------------------------------------------------

    def start_all(self) -> None:
        self.start_temporal()
        subprocess.run(
            [sys.executable, "-m", "careflow", "migrate"], env=self.env, check=True, cwd=ROOT, stdout=subprocess.DEVNULL
        )
        self.start_simulator()
        self.start_api()
        self.start_worker()

    def close(self) -> None:
        for name in list(self.processes):
            self._signal(name, signal.SIGKILL)
        for process in self.processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass

    def alive(self, name: str) -> bool:
        process = self.processes.get(name)
        return process is not None and process.poll() is None

    # ----- the pieces ---------------------------------------------------------------------

    def start_temporal(self) -> None:
        args = dev_server_args(self.settings, db_file=self.data / "temporal.db", port=self.temporal_port, ui_port=None)
        self._start("temporal", [temporal_cli(), *args])
        wait_for_port("127.0.0.1", self.temporal_port, 60, self.processes["temporal"])

    def stop_temporal(self, sig: int = signal.SIGTERM) -> None:
        self._stop("temporal", sig)

    def start_worker(self) -> None:
        self._start("worker", [sys.executable, "-m", "careflow", "worker"])

    def kill_worker(self) -> None:
        self._stop("worker", signal.SIGKILL)

    def start_api(self, *, crash_ratio: float | None = None) -> None:
        ratio = self.api_crash_ratio if crash_ratio is None else crash_ratio
        self._start(
            "api", [sys.executable, "-m", "careflow", "api"], {"CAREFLOW_TEST_CRASH_AFTER_STORE_RATIO": str(ratio)}
        )
        wait_for_port("127.0.0.1", self.api_port, 60, self.processes["api"])

    def kill_api(self) -> None:
        self._stop("api", signal.SIGKILL)

    def start_simulator(self) -> None:
        from careflow.tokens import dev_issuer
        from devtools.stack import refresh_partner_tokens

        refresh_partner_tokens(self.settings, dev_issuer(self.data, create=True))  # handed tokens, not the key
        self._start(
            "simulator", [sys.executable, "-m", "careflow", "simulator", "--behaviour", json.dumps(self.behaviour)]
        )
        wait_for_port("127.0.0.1", self.simulator_port, 60, self.processes["simulator"])

    def stop_simulator(self) -> None:
        self._stop("simulator", signal.SIGKILL)

    # ----- internals ----------------------------------------------------------------------

    def _start(self, name: str, args: list[str], extra_env: dict[str, str] | None = None) -> None:
        if self.alive(name):
            raise RuntimeError(f"{name} is already running")
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 (lives as long as the process)
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

    def _stop(self, name: str, sig: int) -> None:
        process = self.processes.get(name)
        if process is None:
            return
        self._signal(name, sig)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self._signal(name, signal.SIGKILL)
            process.wait(timeout=10)

    def _signal(self, name: str, sig: int) -> None:
        process = self.processes.get(name)
        if process is not None and process.poll() is None:
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                pass

    def log_tail(self, name: str, lines: int = 40) -> str:
        path = self.logs / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""
