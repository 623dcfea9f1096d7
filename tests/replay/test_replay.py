"""Recorded histories of earlier pathway versions must replay on the current code: a change to a
running pathway needs `workflow.patched(...)`, or this test fails with a NondeterminismError.

Record a new history with
`CAREFLOW_RECORD_HISTORIES=tests/replay/histories make test PYTEST_ARGS=tests/e2e tests/workflows`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from careflow.codec import data_converter
from careflow.settings import DEV_CODEC_KEYS
from tests.conftest import TEST_PATHWAY_MODULES
from workers.runner import strict_runner, workflow_runner
from workflows.registry import Pathways

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def test_histories_are_recorded() -> None:
    assert HISTORIES, "no recorded histories under tests/replay/histories"


@pytest.mark.parametrize("runner", ["worker", "strict"])
@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_replay(path: Path, runner: str) -> None:
    """Every recorded history replays on the worker's runner (pathway modules passed through,
    context answered outside the sandbox) and on the strict one (every pathway module imported
    afresh in the sandbox, the SDK's own context round trips): workers/runner.py."""
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    converter = data_converter(DEV_CODEC_KEYS)  # recorded in dev mode, with the dev key
    workflows = Pathways.load(TEST_PATHWAY_MODULES).workflows  # built-in, the tutorial's and the tests' own
    replayer = Replayer(
        workflows=workflows,
        data_converter=converter,
        workflow_runner=workflow_runner(converter, workflows) if runner == "worker" else strict_runner(),
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None
