"""`careflow setup` against the real Temporal dev server, and `careflow secrets`."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy import inspect
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from careflow.crypto import KeyRing
from careflow.operations import SetupError, ensure_namespace, ensure_search_attributes, generate_secrets, run_setup
from careflow.settings import Settings
from careflow.temporal import SEARCH_ATTRIBUTE_TYPES
from store.db import make_engine

ROOT = Path(__file__).resolve().parents[2]


async def test_setup_migrates_registers_namespace_and_search_attributes(
    dev_server: WorkflowEnvironment, tmp_path: Path
) -> None:
    namespace = f"setup-{uuid.uuid4().hex[:8]}"
    settings = Settings(
        data_dir=tmp_path,
        temporal_address=dev_server.client.service_client.config.target_host,
        temporal_namespace=namespace,
    )

    summary = await run_setup(settings, timeout=30)

    assert summary["namespace_registered"] is True
    assert summary["search_attributes_added"] == sorted(SEARCH_ATTRIBUTE_TYPES)
    assert {"flow", "inboundmessage", "outboundmessage"} <= set(
        inspect(make_engine(settings.sqlalchemy_url)).get_table_names()
    )
    listed = await dev_server.client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    assert listed.custom_attributes["CareflowStep"] == IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD
    assert listed.custom_attributes["CareflowNextDeadline"] == IndexedValueType.INDEXED_VALUE_TYPE_DATETIME

    # Every deployment runs setup at each start: the second run changes nothing.
    again = await run_setup(settings, timeout=30)
    assert (again["namespace_registered"], again["search_attributes_added"]) == (False, [])


async def test_setup_refuses_an_attribute_with_another_type(dev_server: WorkflowEnvironment) -> None:
    client = dev_server.client
    other = f"setup-{uuid.uuid4().hex[:8]}"
    await ensure_namespace(client, other)
    # A fresh namespace takes a moment to become usable: retry until the wrong type is in place.
    for _ in range(60):
        try:
            await client.operator_service.add_search_attributes(
                AddSearchAttributesRequest(
                    namespace=other, search_attributes={"CareflowStep": IndexedValueType.INDEXED_VALUE_TYPE_TEXT}
                )
            )
            break
        except RPCError:
            await asyncio.sleep(0.5)
    with pytest.raises(SetupError, match="CareflowStep"):
        await ensure_search_attributes(client, other, timeout=30)


def test_secrets_are_fresh_and_accepted_outside_dev(tmp_path: Path) -> None:
    def run():
        return subprocess.run(
            [sys.executable, "-m", "careflow", "secrets"], capture_output=True, text=True, check=True, cwd=ROOT
        ).stdout  # noqa: E731

    first, second = run(), run()
    values = dict(line.split("=", 1) for line in first.splitlines() if line and not line.startswith("#"))
    again = dict(line.split("=", 1) for line in second.splitlines() if line and not line.startswith("#"))
    assert values["CAREFLOW_ENV"] == "production"
    for name in (
        "CAREFLOW_SESSION_SECRET",
        "CAREFLOW_CODEC_KEYS",
        "CAREFLOW_CPR_HASH_KEY",
        "CAREFLOW_DB_PASSWORD",
        "TEMPORAL_DB_PASSWORD",
    ):
        assert values[name] and values[name] != again[name], name
    # The production settings accept them (the dev secrets are refused there), and the codec key works.
    settings = Settings(
        env="production",
        session_secret=values["CAREFLOW_SESSION_SECRET"],
        codec_keys=values["CAREFLOW_CODEC_KEYS"],
        cpr_hash_key=values["CAREFLOW_CPR_HASH_KEY"],
    )
    settings.refuse_unsafe("worker")  # the generated secrets pass the fail-closed checks
    ring = KeyRing.parse(settings.codec_keys)
    key_id, sealed = ring.encrypt(b"payload")
    assert ring.decrypt(key_id, sealed) == b"payload"


def test_secrets_env_is_the_operators_choice() -> None:
    assert "CAREFLOW_ENV=staging\n" in generate_secrets("staging")
