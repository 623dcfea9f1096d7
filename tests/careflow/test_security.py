"""The payload codec, its key rotation, tokens and the refusal of dev secrets outside dev mode."""

from __future__ import annotations

import base64
import os
from datetime import timedelta

import pytest
from pydantic import ValidationError
from temporalio.api.common.v1 import Payload

from careflow.auth import InvalidToken, Role, issue_token, verify_token
from careflow.codec import ENCODING, EncryptionCodec
from careflow.crypto import KeyRing, cpr_lookup_hash
from careflow.settings import Settings


def key(name: str) -> str:
    return f"{name}:{base64.b64encode(os.urandom(32)).decode()}"


async def test_codec_encrypts_with_the_first_key_and_decrypts_with_any() -> None:
    old, new = key("k1"), key("k2")
    payload = Payload(metadata={"encoding": b"json/plain"}, data=b'{"cpr": "0101505123"}')
    (encrypted,) = await EncryptionCodec(KeyRing.parse(old)).encode([payload])
    assert encrypted.metadata["encoding"] == ENCODING and encrypted.metadata["encryption-key-id"] == b"k1"
    assert b"0101505123" not in encrypted.SerializeToString()
    rotated = EncryptionCodec(KeyRing.parse(f"{new},{old}"))
    assert (await rotated.decode([encrypted]))[0] == payload, "old payloads stay readable after rotation"
    (re_encrypted,) = await rotated.encode([payload])
    assert re_encrypted.metadata["encryption-key-id"] == b"k2"
    with pytest.raises(ValueError, match="unknown key id"):
        await EncryptionCodec(KeyRing.parse(new)).decode([encrypted])
    tampered = Payload(metadata=dict(encrypted.metadata), data=encrypted.data[:-1] + bytes([encrypted.data[-1] ^ 1]))
    with pytest.raises(ValueError, match="does not authenticate"):
        await rotated.decode([tampered])


def test_key_ring_rejects_bad_keys() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        KeyRing.parse("k1:" + base64.b64encode(b"short").decode())
    with pytest.raises(ValueError, match="no codec key"):
        KeyRing.parse(" , ")


def test_cpr_lookup_hash_is_keyed_and_ignores_the_dash() -> None:
    assert cpr_lookup_hash("010150-5123", "k") == cpr_lookup_hash("0101505123", "k")
    assert cpr_lookup_hash("0101505123", "k") != cpr_lookup_hash("0101505123", "other key")
    assert "0101505123" not in cpr_lookup_hash("0101505123", "k")


def test_tokens_are_signed_expire_and_bind_partners() -> None:
    token = issue_token("secret", subject="hospital", role=Role.PARTNER, sor="200000000000001", ttl=timedelta(minutes=5))
    principal = verify_token("secret", token)
    assert (principal.role, principal.sor) == (Role.PARTNER, "200000000000001")
    with pytest.raises(InvalidToken, match="bad signature"):
        verify_token("another secret", token)
    version, body, signature = token.split(".")
    forged_body = base64.urlsafe_b64encode(b'{"subject":"x","role":"admin","expires_at":9999999999}').rstrip(b"=").decode()
    with pytest.raises(InvalidToken):
        verify_token("secret", f"{version}.{forged_body}.{signature}")
    with pytest.raises(InvalidToken, match="expired"):
        verify_token("secret", issue_token("secret", subject="c", role=Role.CLINICIAN, ttl=timedelta(seconds=-1)))
    with pytest.raises(ValueError, match="SOR"):
        issue_token("secret", subject="p", role=Role.PARTNER, ttl=timedelta(minutes=1))


def test_dev_secrets_are_refused_outside_dev_mode() -> None:
    with pytest.raises(ValidationError, match="CAREFLOW_TOKEN_SECRET"):
        Settings(env="production")
    settings = Settings(env="production", token_secret="t", codec_keys=key("k1"), cpr_hash_key="h")
    assert settings.env == "production"
