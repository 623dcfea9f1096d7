"""Worker CPU per workflow: replay one recorded history many times, per runner (issue 12).

    .venv/bin/python benchmarks/bench_sandbox.py [--history referral-late-appointment-local-projections] [--n 200]
        [--runner worker --runner strict --runner unsandboxed]

Every replay creates a new workflow instance and runs the whole recorded pathway through it, as the
worker does for every pathway it starts (or evicts and takes up again). The worker's runner
(workers/runner.py: pathway modules passed through, serialization context answered outside the
sandbox) against the strict sandbox the replay tests also run (every pathway module imported afresh
per instance, the SDK's context round trips) and, for comparison only, no sandbox. No Temporal
server needed. Figures are printed, not asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from temporalio.client import WorkflowHistory  # noqa: E402
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner  # noqa: E402

from careflow.codec import data_converter  # noqa: E402
from careflow.settings import DEV_CODEC_KEYS  # noqa: E402
from tests.conftest import TEST_PATHWAY_MODULES  # noqa: E402
from workers.runner import strict_runner, workflow_runner  # noqa: E402
from workflows.registry import Pathways  # noqa: E402

WARM_UP = 10


async def _histories(history: WorkflowHistory, n: int) -> AsyncIterator[WorkflowHistory]:
    for _ in range(n):
        yield history


async def replay(replayer: Replayer, history: WorkflowHistory, n: int) -> None:
    async with replayer.workflow_replay_iterator(_histories(history, n)) as results:
        async for result in results:
            if result.replay_failure is not None:
                raise result.replay_failure


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--history", default="referral-late-appointment-local-projections")
    parser.add_argument("--n", type=int, default=200, help="replays to time (default 200)")
    parser.add_argument(
        "--runner",
        choices=["worker", "strict", "unsandboxed"],
        action="append",
        help="the worker's runner, the strict sandbox the replay tests also run, or no sandbox at all "
        "(for comparison only); repeat for several (default: worker and strict)",
    )
    args = parser.parse_args()
    path = ROOT / "tests" / "replay" / "histories" / f"{args.history}.json"
    history = WorkflowHistory.from_json(args.history, path.read_text())
    converter = data_converter(DEV_CODEC_KEYS)  # recorded in dev mode, with the dev key
    workflows = Pathways.load(TEST_PATHWAY_MODULES).workflows
    runners = {
        "worker": lambda: workflow_runner(converter, workflows),
        "strict": strict_runner,
        "unsandboxed": UnsandboxedWorkflowRunner,
    }
    for name in args.runner or ["worker", "strict"]:
        replayer = Replayer(workflows=workflows, data_converter=converter, workflow_runner=runners[name]())
        await replay(replayer, history, WARM_UP)
        started = time.process_time()
        await replay(replayer, history, args.n)
        cpu = time.process_time() - started
        print(f"{args.history}, {name} runner: {cpu / args.n * 1000:.2f} ms CPU per workflow replayed (n={args.n})")


if __name__ == "__main__":
    asyncio.run(main())
