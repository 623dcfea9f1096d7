"""The worker's workflow runner: Temporal's sandbox, with what careflow passes through it, and
without one round trip into it that careflow's converter makes pointless.

**Passed through** (imported once per process, not once per workflow): the libraries and careflow's
own deterministic modules, the pathway engine (`workflows.steps`) and, since round 4 of issue 12,
the pathway modules themselves. A pathway module is declarations; re-running it and `@workflow.defn`
for every new workflow cost about a quarter of the per-instance sandbox work. The sandbox's runtime
restrictions still apply to passed-through code (Temporal's SandboxRestrictions docs). What a
pathway module does at import is checked where it is not passed through: `strict_runner()`,
which the replay tests use, imports every pathway module afresh inside the sandbox.

**Serialization context.** Before encoding or decoding each payload of a workflow activation, the
SDK asks the sandboxed instance which serialization context applies — each ask is an `exec` inside
the sandbox, about 50 per referral pathway and a quarter of the worker's workflow CPU
(benchmarks/RESULTS.md, round 4). The answer only matters to converters, codecs or storage that
take a context (`WithSerializationContext`, external storage); careflow's take none, so every
answer selects the same converter. `workflow_runner` answers without entering the sandbox when —
and only when — the data converter takes no context, and checks that before the worker starts.
It subclasses the SDK's private `_Instance`, so it is tied to the pinned temporalio version: on any
other version it falls back to the stock sandbox (and says so in the log).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

import temporalio
import temporalio.converter
from temporalio.worker import WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

log = logging.getLogger(__name__)

SDK_VERSION = "1.35.0"  # the version `_ContextFreeInstance` was written and tested against

PASSTHROUGH = (
    "pydantic",
    "pydantic_core",
    "annotated_types",
    "messaging",
    "activities",
    "workflows",  # models, inputs, the engine and the pathway declarations: built once, not per workflow
    "careflow",
    "store",
    "httpx",
    "sqlalchemy",
    "sqlmodel",
    "holidays",  # careflow.deadlines' calendar
)
# Passed through in the strict runner too: the engine and the models (what the pathway modules
# themselves pass through with `workflow.unsafe.imports_passed_through()`), not the pathways.
STRICT_PASSTHROUGH = (*(m for m in PASSTHROUGH if m != "workflows"), "workflows.models", "workflows.inputs")


def takes_context(converter: temporalio.converter.DataConverter) -> bool:
    """Whether the converter would change for some serialization context (a payload converter,
    codec or failure converter that reads it), or stores payloads externally. Asked of the
    converter itself: the SDK's wrappers declare `WithSerializationContext` and give themselves
    back when nothing inside them reads the context."""
    probes = (
        temporalio.converter.WorkflowSerializationContext(namespace="probe", workflow_id="probe"),
        temporalio.converter.ActivitySerializationContext(
            namespace="probe",
            activity_id="probe",
            activity_type="probe",
            activity_task_queue="probe",
            workflow_id="probe",
            workflow_type="probe",
            is_local=False,
        ),
    )
    return converter.external_storage is not None or any(converter.with_context(p) is not converter for p in probes)


def _context_free_runner_class() -> type[SandboxedWorkflowRunner] | None:
    if temporalio.__version__ != SDK_VERSION:
        log.warning(
            "temporalio %s is not %s: the stock sandbox runner is used (workers/runner.py)",
            temporalio.__version__,
            SDK_VERSION,
        )
        return None
    from temporalio.converter._extstore import StorageDriverStoreContext
    from temporalio.worker.workflow_sandbox._runner import _Instance

    class _ContextFreeInstance(_Instance):
        """The sandboxed instance, answering the SDK's context questions outside the sandbox: no
        context, which selects the converter the worker was given (the one that takes none)."""

        def get_serialization_context(self, command_info: object) -> None:
            return None

        def get_external_store_context(self, command_info: object) -> StorageDriverStoreContext:
            return StorageDriverStoreContext(target=None)

    @dataclass(frozen=True)
    class ContextFreeSandboxedWorkflowRunner(SandboxedWorkflowRunner):
        def create_instance(self, det):  # noqa: ANN001, ANN202 - the SDK's signature
            return _ContextFreeInstance(det, self.runner_class, self.restrictions)

    return ContextFreeSandboxedWorkflowRunner


def workflow_runner(converter: temporalio.converter.DataConverter, workflows: Iterable[type] = ()) -> WorkflowRunner:
    """The worker's runner: the sandbox with `PASSTHROUGH` and the modules of `workflows` (pathways
    from a module outside `workflows/`, named in CAREFLOW_PATHWAY_MODULES, too); context questions
    answered outside it when `converter` takes no context."""
    modules = sorted({cls.__module__ for cls in workflows} - {"__main__"})
    restrictions = SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH, *modules)
    runner_class = None if takes_context(converter) else _context_free_runner_class()
    if runner_class is None:
        return SandboxedWorkflowRunner(restrictions=restrictions)
    return runner_class(restrictions=restrictions)


def strict_runner(extra_passthrough: Iterable[str] = ()) -> WorkflowRunner:
    """The stock sandbox, re-importing every pathway module for every workflow: what the replay
    tests run, so that a pathway module's own code is still checked by the sandbox."""
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*STRICT_PASSTHROUGH, *extra_passthrough)
    )
