"""Shared parts of the throughput benchmarks: careflow's processes on loopback (devtools/processes.py,
shared with the fault suite), per-process CPU and peak RSS from /proc, the machine, percentiles."""

from __future__ import annotations

import os
import platform
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from careflow.temporal import temporal_cli  # noqa: E402
from devtools.processes import LoopbackStack, free_port  # noqa: E402, F401 (free_port: for the scripts)

# Partners that answer at once: what the measurements used.
PARTNERS_AT_ONCE = {
    "ack_delay": 0,
    "appointment_delay": 0,
    "test_result_delay": 0,
    "treatment_plan_delay": 0,
    "reply_delay": 0,
}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def machine() -> str:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    temporal = subprocess.run([temporal_cli(), "--version"], capture_output=True, text=True).stdout.strip()
    python = platform.python_version()
    return f"nproc {os.cpu_count()}, {model}, Python {python}, {temporal}, load average {load_average()}"


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * (len(ordered) - 1))))
    return ordered[index]


def p50_p99(values: list[float]) -> str:
    if not values:
        return "   (none)"
    return (
        f"p50 {percentile(values, 50) * 1000:7.0f} ms   p99 {percentile(values, 99) * 1000:7.0f} ms   (n={len(values)})"
    )


@dataclass
class ProcessUsage:
    """CPU seconds between `start()` and `stop()`, and the kernel's peak RSS (VmHWM) of one process."""

    name: str
    pid: int
    cpu_start: float = 0.0
    cpu_seconds: float = 0.0
    peak_rss_mb: float = 0.0
    wall: float = 0.0
    _t0: float = field(default=0.0, repr=False)

    def _cpu(self) -> float:
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime
        except (OSError, IndexError, ValueError):
            return 0.0

    def _hwm_mb(self) -> float:
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return self.peak_rss_mb

    def rss_mb(self) -> float:
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except OSError:
            pass
        return 0.0

    def start(self) -> None:
        self.cpu_start, self._t0 = self._cpu(), time.monotonic()

    def stop(self) -> None:
        self.cpu_seconds = self._cpu() - self.cpu_start
        self.wall = time.monotonic() - self._t0
        self.peak_rss_mb = self._hwm_mb()

    def line(self, per: int = 0, per_label: str = "flow") -> str:
        percent = 100 * self.cpu_seconds / self.wall if self.wall else 0.0
        cost = f"   {1000 * self.cpu_seconds / per:6.1f} ms CPU/{per_label}" if per else ""
        cpu = f"CPU {percent:5.0f} %  ({self.cpu_seconds:6.1f} s)"
        return f"  {self.name:<10} {cpu}   peak RSS {self.peak_rss_mb:6.0f} MB{cost}"


class Usage:
    """Usage of several processes over one measured window."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.processes = [ProcessUsage(name, pid) for name, pid in pids.items()]

    def start(self) -> None:
        for p in self.processes:
            p.start()

    def stop(self) -> None:
        for p in self.processes:
            p.stop()

    def lines(self, per: int = 0, per_label: str = "flow") -> list[str]:
        return [p.line(per, per_label) for p in self.processes]

    def cpu(self, name: str) -> float:
        return next(p.cpu_seconds for p in self.processes if p.name == name)


class BenchStack(LoopbackStack):
    """careflow as separate processes on loopback, as `careflow dev` runs them, each in its own
    process group; `close()` kills every group it started."""

    log_tail_lines = 30
    mark_starts = False

    def __init__(self, data: Path, *, behaviour: dict, extra_env: dict[str, str] | None = None) -> None:
        super().__init__(data, behaviour=behaviour, task_queue_prefix="careflow-bench", extra_env=extra_env)

    def start_all(self) -> None:
        self.start_temporal()
        self.migrate()
        self.launch_simulator()
        self.launch_api()
        self.launch_worker()
        self.wait_for("simulator", self.simulator_port)
        self.wait_for("api", self.api_port)


class Profiler:
    """py-spy (the `bench` extra) recording some processes into SVG flame graphs until `stop()`."""

    def __init__(self, pids: dict[str, int], out: Path, rate: int = 97, *, gil: bool = True) -> None:
        self.out = out
        out.mkdir(parents=True, exist_ok=True)
        exe = Path(sys.executable).parent / "py-spy"
        if not exe.exists():
            raise SystemExit("py-spy is not installed: `.venv/bin/pip install -c constraints.txt -e '.[bench]'`")
        self.recorders = {
            name: subprocess.Popen(
                [
                    str(exe),
                    "record",
                    "--pid",
                    str(pid),
                    "--rate",
                    str(rate),
                    "--nonblocking",
                    # Only the thread holding the GIL: where the CPU goes. Without it, threads waiting
                    # for the GIL or for SQLite's lock show as busy in whatever frame they wait in.
                    *(["--gil"] if gil else []),
                    "--format",
                    "flamegraph",
                    "--output",
                    str(out / f"{name}.svg"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            for name, pid in pids.items()
        }

    def stop(self) -> list[Path]:
        for process in self.recorders.values():
            process.send_signal(signal.SIGINT)
        written = []
        for name, process in self.recorders.items():
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
            if (self.out / f"{name}.svg").exists():
                written.append(self.out / f"{name}.svg")
        return written
