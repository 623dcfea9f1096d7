"""Worker CPU per sandboxed workflow instance: replay one recorded history many times (issue 12).

    .venv/bin/python benchmarks/bench_sandbox.py [--history referral-late-appointment-local-projections] [--n 200]

Every replay creates a new sandboxed instance, as the worker does for every pathway it starts (or
evicts and takes up again): the sandbox re-runs the pathway's module, and whatever that module builds
(pydantic models, `@workflow.defn`'s inspection) is paid again. The history itself is short, so the
figure is mostly that cost. No Temporal server needed. Figures are printed, not asserted.
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
from temporalio.worker import Replayer  # noqa: E402
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions  # noqa: E402

from careflow.codec import data_converter  # noqa: E402
from careflow.settings import DEV_CODEC_KEYS  # noqa: E402
from tests.conftest import TEST_PATHWAY_MODULES  # noqa: E402
from workers.main import PASSTHROUGH  # noqa: E402
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
    args = parser.parse_args()
    path = ROOT / "tests" / "replay" / "histories" / f"{args.history}.json"
    history = WorkflowHistory.from_json(args.history, path.read_text())
    replayer = Replayer(
        workflows=Pathways.load(TEST_PATHWAY_MODULES).workflows,
        data_converter=data_converter(DEV_CODEC_KEYS),  # recorded in dev mode, with the dev key
        workflow_runner=SandboxedWorkflowRunner(
            restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH)
        ),
    )
    await replay(replayer, history, WARM_UP)
    started = time.process_time()
    await replay(replayer, history, args.n)
    cpu = time.process_time() - started
    print(f"{args.history}: {cpu / args.n * 1000:.2f} ms CPU per sandboxed workflow replayed (n={args.n})")


if __name__ == "__main__":
    asyncio.run(main())
