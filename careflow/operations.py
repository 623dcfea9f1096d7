"""Operator steps for a deployment past one machine: `careflow setup` (schema, Temporal namespace and
search attributes, idempotent) and `careflow secrets` (a fresh env file)."""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets
import time
from datetime import UTC, datetime, timedelta

from google.protobuf.duration_pb2 import Duration
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest, RegisterNamespaceRequest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from careflow.settings import Settings
from careflow.temporal import SEARCH_ATTRIBUTE_TYPES, connect

log = logging.getLogger(__name__)

INDEXED_TYPES = {
    "Keyword": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    "Datetime": IndexedValueType.INDEXED_VALUE_TYPE_DATETIME,
}
# Closed pathways stay visible in Temporal this long (a namespace careflow registers itself).
RETENTION = timedelta(days=30)


class SetupError(RuntimeError):
    """A deployment problem setup cannot fix by itself (a search attribute with another type, ...)."""


async def connect_with_deadline(settings: Settings, timeout: float) -> Client:
    """Connect to Temporal, waiting for a cluster that is still starting (compose starts us together)."""
    deadline = time.monotonic() + timeout
    delay = 0.5
    while True:
        try:
            return await connect(settings)
        except RuntimeError as err:
            if time.monotonic() + delay > deadline:
                raise SetupError(
                    f"Temporal at {settings.temporal_address} not reachable after {timeout:.0f}s: {err}"
                ) from None
            log.info("waiting for Temporal at %s", settings.temporal_address)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5)


async def ensure_namespace(client: Client, namespace: str) -> bool:
    """Register the namespace if the cluster does not have it (a managed cluster usually does);
    True when it was registered now."""
    try:
        await client.workflow_service.describe_namespace(DescribeNamespaceRequest(namespace=namespace))
        return False
    except RPCError as err:
        if err.status is not RPCStatusCode.NOT_FOUND:
            raise
    retention = Duration()
    retention.FromTimedelta(RETENTION)
    try:
        await client.workflow_service.register_namespace(
            RegisterNamespaceRequest(namespace=namespace, workflow_execution_retention_period=retention)
        )
    except RPCError as err:
        if err.status is not RPCStatusCode.ALREADY_EXISTS:  # another setup got there first
            raise
    return True


async def ensure_search_attributes(client: Client, namespace: str, *, timeout: float = 60) -> list[str]:
    """Add careflow's search attributes that the namespace lacks; returns the names added.

    Idempotent, so every deployment can run it at each start. An attribute that exists with another
    type is a deployment error, reported, never "fixed" by removing it. A namespace registered a
    moment ago may not be visible to the operator service yet: retried until `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            listed = await client.operator_service.list_search_attributes(
                ListSearchAttributesRequest(namespace=namespace)
            )
            break
        except RPCError as err:
            if err.status is not RPCStatusCode.NOT_FOUND or time.monotonic() > deadline:
                raise
            await asyncio.sleep(1)
    existing = dict(listed.custom_attributes)
    wrong = {
        name: kind
        for name, kind in SEARCH_ATTRIBUTE_TYPES.items()
        if name in existing and existing[name] != INDEXED_TYPES[kind]
    }
    if wrong:
        raise SetupError(
            f"search attributes exist with another type in namespace {namespace}: "
            f"{', '.join(f'{n} (want {k})' for n, k in wrong.items())}"
        )
    missing = {name: INDEXED_TYPES[kind] for name, kind in SEARCH_ATTRIBUTE_TYPES.items() if name not in existing}
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=namespace, search_attributes=missing)
        )
    return sorted(missing)


async def run_setup(settings: Settings, *, register_namespace: bool = True, timeout: float = 120) -> dict[str, object]:
    """Migrations, then the Temporal namespace and search attributes; a summary for the operator."""
    from store.db import migrate

    await asyncio.to_thread(migrate, settings.sqlalchemy_url)
    client = await connect_with_deadline(settings, timeout)
    registered = await ensure_namespace(client, settings.temporal_namespace) if register_namespace else False
    added = await ensure_search_attributes(client, settings.temporal_namespace, timeout=timeout)
    return {
        "migrated": True,
        "namespace": settings.temporal_namespace,
        "namespace_registered": registered,
        "search_attributes_added": added,
    }


def generate_secrets(env: str = "production") -> str:
    """An env file with fresh secrets for docker-compose (`--env-file`) or any other deployment.

    Every value is new randomness from `secrets`; nothing here is a default or a placeholder, so a
    deployment that starts from it never runs on a secret that someone else also has."""

    def token(nbytes: int = 32) -> str:
        return secrets.token_urlsafe(nbytes)

    key_id = "k" + datetime.now(UTC).strftime("%Y%m%d")
    codec_key = base64.b64encode(secrets.token_bytes(32)).decode()
    lines = [
        f"# careflow secrets, generated {datetime.now(UTC).isoformat(timespec='seconds')} by `careflow secrets`.",
        "# Keep this file out of version control (mode 0600). Rotating the codec key: put a new",
        "# kid:key first in CAREFLOW_CODEC_KEYS and keep the old ones after it until nothing uses them.",
        f"CAREFLOW_ENV={env}",
        f"CAREFLOW_SESSION_SECRET={token(48)}",
        f"CAREFLOW_CODEC_KEYS={key_id}:{codec_key}",
        f"CAREFLOW_CPR_HASH_KEY={token(48)}",
        '# The identity provider whose JWTs careflow accepts (set these; README "Security"):',
        "# CAREFLOW_JWKS=https://idp.example/realms/health/protocol/openid-connect/certs",
        "# CAREFLOW_JWT_ISSUER=https://idp.example/realms/health",
        "# CAREFLOW_JWT_AUDIENCE=careflow",
        "# Database passwords for the compose deployment (careflow's PostgreSQL and Temporal's).",
        f"CAREFLOW_DB_PASSWORD={token(24)}",
        f"TEMPORAL_DB_PASSWORD={token(24)}",
    ]
    return "\n".join(lines) + "\n"
