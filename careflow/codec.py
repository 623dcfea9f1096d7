"""Temporal payload codec: every payload AES-GCM encrypted, key id in the payload metadata, bound by
associated data to being a careflow Temporal payload; failure messages and stack traces encoded too.

The worker's codec is strict: a payload that is not careflow ciphertext (a signal or update sent in
plain text by a client that reached Temporal without the key) is decoded to a payload no converter
reads, so the SDK drops the signal, rejects the update and fails the query; the pathway never sees it.
(Raising instead would fail the workflow task over and over, or with a non-retryable error fail the
pathway: the attacker would still be steering it.) The codec does not know the workflow id, so the
associated data binds what it knows: careflow, Temporal payload, format version and key id.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import temporalio.converter
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DefaultFailureConverterWithEncodedAttributes, PayloadCodec

from careflow.crypto import KeyRing

ENCODING = b"binary/encrypted"
FORMAT = b"careflow-v2"  # payloads with associated data; without this metadata: the first format (none)
REFUSED = b"binary/careflow-refused-plaintext"  # what a plain payload becomes in a strict codec


def associated_data(key_id: str) -> bytes:
    return b"careflow/temporal-payload/" + FORMAT + b"/" + key_id.encode()


class EncryptionCodec(PayloadCodec):
    def __init__(self, key_ring: KeyRing, *, strict: bool = True) -> None:
        self.key_ring = key_ring
        self.strict = strict

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        encoded = []
        for payload in payloads:
            key_id = self.key_ring.active_key_id
            _, data = self.key_ring.encrypt(payload.SerializeToString(), associated_data(key_id))
            encoded.append(
                Payload(
                    metadata={"encoding": ENCODING, "encryption-key-id": key_id.encode(), "careflow-format": FORMAT},
                    data=data,
                )
            )
        return encoded

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        decoded = []
        for payload in payloads:
            if payload.metadata.get("encoding") != ENCODING:
                # Not ours. The codec endpoint (lenient) shows it as it is; the worker refuses it.
                decoded.append(Payload(metadata={"encoding": REFUSED}) if self.strict else payload)
                continue
            key_id = payload.metadata["encryption-key-id"].decode()
            version = payload.metadata.get("careflow-format")
            if version not in (None, FORMAT):
                raise ValueError("unknown careflow payload format")
            ad = associated_data(key_id) if version == FORMAT else None  # recorded histories: the first format
            decoded.append(Payload.FromString(self.key_ring.decrypt(key_id, payload.data, ad)))
        return decoded


def data_converter(codec_keys: str) -> temporalio.converter.DataConverter:
    """The one converter for API, worker and tests: pydantic models, encrypted, failures encoded."""
    return dataclasses.replace(
        pydantic_data_converter,
        payload_codec=EncryptionCodec(KeyRing.parse(codec_keys)),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )
