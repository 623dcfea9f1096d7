"""The Temporal connection takes TLS and mTLS settings (a plain server refuses a TLS client: proof
that TLS is really used)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from temporalio.service import TLSConfig
from temporalio.testing import WorkflowEnvironment

from careflow.settings import Settings
from careflow.temporal import connect, tls_config


def test_tls_settings_become_the_clients_tls_config(tmp_path: Path) -> None:
    assert tls_config(Settings()) is False
    for name in ("ca.pem", "client.pem", "client.key"):
        (tmp_path / name).write_bytes(f"-----{name}-----".encode())
    config = tls_config(
        Settings(
            temporal_tls=True,
            temporal_tls_ca=tmp_path / "ca.pem",
            temporal_tls_cert=tmp_path / "client.pem",
            temporal_tls_key=tmp_path / "client.key",
            temporal_tls_server_name="temporal.internal",
        )
    )
    assert isinstance(config, TLSConfig)
    assert (config.server_root_ca_cert, config.client_cert, config.client_private_key, config.domain) == (
        b"-----ca.pem-----",
        b"-----client.pem-----",
        b"-----client.key-----",
        "temporal.internal",
    )
    with pytest.raises(ValueError, match="go together"):
        tls_config(Settings(temporal_tls=True, temporal_tls_cert=tmp_path / "client.pem"))


async def test_a_tls_client_does_not_talk_to_a_plain_server(dev_server: WorkflowEnvironment) -> None:
    settings = Settings(temporal_address=dev_server.client.service_client.config.target_host, temporal_tls=True)
    with pytest.raises(RuntimeError):
        await asyncio.wait_for(connect(settings), timeout=30)
