"""Temporal payload codec: every payload AES-GCM encrypted, key id in the payload metadata."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import temporalio.converter
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec
from temporalio.contrib.pydantic import pydantic_data_converter

from careflow.crypto import KeyRing

ENCODING = b"binary/encrypted"


class EncryptionCodec(PayloadCodec):
    def __init__(self, key_ring: KeyRing) -> None:
        self.key_ring = key_ring

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        encoded = []
        for payload in payloads:
            key_id, data = self.key_ring.encrypt(payload.SerializeToString())
            encoded.append(
                Payload(metadata={"encoding": ENCODING, "encryption-key-id": key_id.encode()}, data=data)
            )
        return encoded

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        decoded = []
        for payload in payloads:
            if payload.metadata.get("encoding") != ENCODING:
                decoded.append(payload)
                continue
            key_id = payload.metadata["encryption-key-id"].decode()
            decoded.append(Payload.FromString(self.key_ring.decrypt(key_id, payload.data)))
        return decoded


def data_converter(codec_keys: str) -> temporalio.converter.DataConverter:
    """The one converter for API, worker and tests: pydantic models, encrypted."""
    return dataclasses.replace(pydantic_data_converter, payload_codec=EncryptionCodec(KeyRing.parse(codec_keys)))
