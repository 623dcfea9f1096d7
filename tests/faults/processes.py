"""careflow as separate processes on loopback, each in its own process group so a test can kill,
stop and restart any of them: the Temporal dev server (SQLite file), `careflow worker`,
`careflow api` and `careflow simulator` (environment, ports and process groups: devtools/processes.py)."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

from devtools.processes import LoopbackStack


class ProcessStack(LoopbackStack):
    """Start, kill and restart careflow's processes; `close()` kills every process group it made."""

    def __init__(self, data: Path, *, timings: dict[str, str], behaviour: dict, api_crash_ratio: float = 0.0) -> None:
        super().__init__(
            data,
            behaviour=behaviour,
            task_queue_prefix="careflow-faults",
            extra_env={"CAREFLOW_RELAY_INTERVAL": "PT1S", **timings},
        )
        self.api_crash_ratio = api_crash_ratio

    # ----- lifecycle ----------------------------------------------------------------------

    def start_all(self) -> None:
        self.start_temporal()
        self.migrate()
        self.start_simulator()
        self.start_api()
        self.start_worker()

    # ----- the pieces ---------------------------------------------------------------------

    def stop_temporal(self, sig: int = signal.SIGTERM) -> None:
        self._stop("temporal", sig)

    def start_worker(self) -> None:
        self.launch_worker()

    def kill_worker(self) -> None:
        self._stop("worker", signal.SIGKILL)

    def start_api(self, *, crash_ratio: float | None = None) -> None:
        ratio = self.api_crash_ratio if crash_ratio is None else crash_ratio
        self.launch_api({"CAREFLOW_TEST_CRASH_AFTER_STORE_RATIO": str(ratio)})
        self.wait_for("api", self.api_port)

    def kill_api(self) -> None:
        self._stop("api", signal.SIGKILL)

    def start_simulator(self) -> None:
        self.launch_simulator()
        self.wait_for("simulator", self.simulator_port)

    def stop_simulator(self) -> None:
        self._stop("simulator", signal.SIGKILL)

    # ----- internals ----------------------------------------------------------------------

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
