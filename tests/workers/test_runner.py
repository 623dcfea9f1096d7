"""The worker's workflow runner (workers/runner.py): context questions answered outside the sandbox
only for a converter that takes no context, the stock sandbox otherwise and on another SDK version;
pathway modules passed through in the worker, imported afresh in the strict runner."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

import pytest
import temporalio
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec, SerializationContext, WithSerializationContext
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from careflow.codec import data_converter
from careflow.settings import DEV_CODEC_KEYS
from workers import runner as runner_module
from workers.runner import strict_runner, takes_context, workflow_runner
from workflows.referral import ReferralPathwayWorkflow


class ContextCodec(PayloadCodec, WithSerializationContext):
    """A codec that reads the serialization context (a new codec per context)."""

    def __init__(self, context: SerializationContext | None = None) -> None:
        self.context = context

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return list(payloads)

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return list(payloads)

    def with_context(self, context: SerializationContext) -> ContextCodec:
        return ContextCodec(context)


def test_careflow_converter_takes_no_context_so_the_worker_answers_outside_the_sandbox() -> None:
    converter = data_converter(DEV_CODEC_KEYS)
    assert not takes_context(converter)
    runner = workflow_runner(converter, [ReferralPathwayWorkflow])
    assert isinstance(runner, SandboxedWorkflowRunner)
    assert type(runner) is not SandboxedWorkflowRunner  # the context-free subclass
    assert "workflows.referral" in runner.restrictions.passthrough_modules


def test_a_converter_that_reads_the_context_gets_the_stock_sandbox() -> None:
    converter = dataclasses.replace(data_converter(DEV_CODEC_KEYS), payload_codec=ContextCodec())
    assert takes_context(converter)
    assert type(workflow_runner(converter)) is SandboxedWorkflowRunner


def test_another_sdk_version_gets_the_stock_sandbox_and_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(temporalio, "__version__", "0.0.0")
    with caplog.at_level(logging.WARNING, logger=runner_module.__name__):
        runner = workflow_runner(data_converter(DEV_CODEC_KEYS))
    assert type(runner) is SandboxedWorkflowRunner
    assert "temporalio 0.0.0 is not" in caplog.text


def test_the_pinned_sdk_is_the_one_the_runner_was_written_for() -> None:
    # When temporalio is upgraded, re-read the SDK's _Instance and re-measure benchmarks/bench_sandbox.py
    # before moving SDK_VERSION: until then the worker runs the stock sandbox, correct but slower.
    assert temporalio.__version__ == runner_module.SDK_VERSION


def test_the_strict_runner_imports_pathway_modules_afresh() -> None:
    passthrough = strict_runner().restrictions.passthrough_modules
    assert "workflows.referral" not in passthrough and "workflows" not in passthrough
    assert {"workflows.models", "workflows.inputs"} <= passthrough
