"""Encrypted columns: bound to their table, column and row; `careflow keys reencrypt` moves them all
to the newest key, on SQLite and PostgreSQL; recorded rows in the first format stay readable."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from careflow.crypto import KeyRing
from careflow.keys import reencrypt
from store.models import Flow, InboundMessage, OutboundMessage, sealed_as

ROOT = Path(__file__).resolve().parents[2]


def key(name: str) -> str:
    return f"{name}:{base64.b64encode(os.urandom(32)).decode()}"


def seed(engine: Engine, ring: KeyRing, *, bound: bool) -> str:
    flow_id = str(uuid.uuid4())
    context = (lambda table, column, row: sealed_as(table, column, row)) if bound else (lambda *_: None)
    with Session(engine) as session:
        session.add(
            Flow(
                id=flow_id,
                workflow_id=f"referral-{flow_id}",
                pathway="referral",
                referring_sor="100000000000001",
                receiving_sor="200000000000001",
                cpr_hash="h",
                patient_enc=ring.encrypt_text('{"cpr": "0101505123"}', context(Flow, "patient_enc", flow_id)),
                reason_enc=ring.encrypt_text("reason", context(Flow, "reason_enc", flow_id)),
            )
        )
        header = str(uuid.uuid4())
        session.add(
            InboundMessage(
                message_header_id=header,
                bundle_id=str(uuid.uuid4()),
                event_code="x",
                sender_sor="200000000000001",
                content_type="application/fhir+json",
                body_enc=ring.encrypt_text("{}", context(InboundMessage, "body_enc", header)),
                ack_enc=None,
            )
        )
        bundle = str(uuid.uuid4())
        session.add(
            OutboundMessage(
                message_header_id=str(uuid.uuid4()),
                bundle_id=bundle,
                flow_id=flow_id,
                step="referral",
                event_code="x",
                attempt=0,
                receiver_sor="200000000000001",
                endpoint="http://x",
                body_enc=ring.encrypt_text("{}", context(OutboundMessage, "body_enc", bundle)),
            )
        )
        session.commit()
    return flow_id


def test_a_ciphertext_copied_to_another_row_or_column_does_not_decrypt() -> None:
    ring = KeyRing.parse(key("k1"))
    stored = ring.encrypt_text("Testa Syntetisk", sealed_as(Flow, "patient_enc", "flow-a"))
    assert ring.decrypt_text(stored, sealed_as(Flow, "patient_enc", "flow-a")) == "Testa Syntetisk"
    for elsewhere in (sealed_as(Flow, "patient_enc", "flow-b"), sealed_as(Flow, "reason_enc", "flow-a"), None):
        with pytest.raises(ValueError, match="does not authenticate"):
            ring.decrypt_text(stored, elsewhere)
    first_format = ring.encrypt_text("older rows")  # kid$base64, before contexts
    assert ring.decrypt_text(first_format, sealed_as(Flow, "reason_enc", "any")) == "older rows"


def test_reencrypt_moves_every_column_to_the_newest_key(engine: Engine) -> None:
    old, new = key("k1"), key("k2")
    old_ring = KeyRing.parse(old)
    ids = [seed(engine, old_ring, bound=False), seed(engine, old_ring, bound=True)]
    rotated = KeyRing.parse(f"{new},{old}")
    moved = reencrypt(engine, rotated, batch=1)
    assert moved == {
        "flow.patient_enc": 2,
        "flow.reason_enc": 2,
        "inboundmessage.body_enc": 2,
        "outboundmessage.body_enc": 2,
    }
    assert reencrypt(engine, rotated) == {}, "a second run has nothing left to do"
    only_new = KeyRing.parse(new)  # the old key can now be retired
    with Session(engine) as session:
        for flow_id in ids:
            flow = session.get(Flow, flow_id)
            assert flow.patient_enc.startswith("k2$c$")
            assert (
                only_new.decrypt_text(flow.patient_enc, sealed_as(Flow, "patient_enc", flow_id))
                == '{"cpr": "0101505123"}'
            )
        for message in session.exec(select(OutboundMessage)).all():
            assert (
                only_new.decrypt_text(message.body_enc, sealed_as(OutboundMessage, "body_enc", message.bundle_id))
                == "{}"
            )


def test_careflow_keys_reencrypt_command(tmp_path: Path) -> None:
    from store.db import make_engine, migrate

    url = f"sqlite:///{tmp_path / 'careflow.db'}"
    migrate(url)
    engine = make_engine(url)
    old, new = key("k1"), key("k2")
    seed(engine, KeyRing.parse(old), bound=True)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CAREFLOW_")},
        "CAREFLOW_DATABASE_URL": url,
        "CAREFLOW_CODEC_KEYS": f"{new},{old}",
        "CAREFLOW_ENV": "production",
    }
    result = subprocess.run(
        [sys.executable, "-m", "careflow", "keys", "reencrypt"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "flow.patient_enc: 1 re-encrypted" in result.stdout and "under key 'k2'" in result.stdout
    engine.dispose()
