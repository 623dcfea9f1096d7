"""The payload codec, its key rotation and the CPR lookup hash."""

from __future__ import annotations

import base64
import os

import pytest
from temporalio.api.common.v1 import Payload

from careflow.codec import ENCODING, EncryptionCodec
from careflow.crypto import KeyRing, cpr_lookup_hash


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
