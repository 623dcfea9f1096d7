"""AES-GCM encryption with a rotatable key ring, and the keyed hash that makes CPR numbers searchable."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_BYTES = 12


@dataclass(frozen=True)
class KeyRing:
    """Keys by id; the first one encrypts, every one decrypts (so keys can be rotated)."""

    active_key_id: str
    keys: dict[str, AESGCM]

    @classmethod
    def parse(cls, spec: str) -> KeyRing:
        keys: dict[str, AESGCM] = {}
        order: list[str] = []
        for part in filter(None, (p.strip() for p in spec.split(","))):
            key_id, _, encoded = part.partition(":")
            raw = base64.b64decode(encoded)
            if len(raw) not in (16, 24, 32):
                raise ValueError(f"codec key {key_id!r} must be 16, 24 or 32 bytes")
            keys[key_id] = AESGCM(raw)
            order.append(key_id)
        if not order:
            raise ValueError("no codec key configured")
        return cls(active_key_id=order[0], keys=keys)

    def encrypt(self, plaintext: bytes, associated_data: bytes | None = None) -> tuple[str, bytes]:
        nonce = os.urandom(NONCE_BYTES)
        return self.active_key_id, nonce + self.keys[self.active_key_id].encrypt(nonce, plaintext, associated_data)

    def decrypt(self, key_id: str, ciphertext: bytes, associated_data: bytes | None = None) -> bytes:
        try:
            key = self.keys[key_id]
        except KeyError:
            raise ValueError(f"unknown key id {key_id!r}") from None
        try:
            return key.decrypt(ciphertext[:NONCE_BYTES], ciphertext[NONCE_BYTES:], associated_data)
        except InvalidTag:
            raise ValueError(f"ciphertext does not authenticate under key {key_id!r}") from None

    def encrypt_text(self, text: str, context: str | None = None) -> str:
        """Self-describing ciphertext for a text column. With a context (table, column and row, e.g.
        `flow.patient_enc:<id>`) it is `kid$c$base64`, bound to that context by AES-GCM associated
        data: copied to another row or column it no longer decrypts. Without one: `kid$base64`."""
        key_id, blob = self.encrypt(text.encode(), _context_ad(context))
        return f"{key_id}${'c$' if context else ''}{base64.b64encode(blob).decode()}"

    def decrypt_text(self, stored: str, context: str | None = None) -> str:
        key_id, _, rest = stored.partition("$")
        bound, _, encoded = rest.partition("$")
        if encoded and bound == "c":  # base64 has no "$": the older form is kid$base64
            return self.decrypt(key_id, base64.b64decode(encoded), _context_ad(context or "")).decode()
        return self.decrypt(key_id, base64.b64decode(rest)).decode()

    def key_id_of(self, stored: str) -> str:
        return stored.partition("$")[0]

    def reencrypt_text(self, stored: str, context: str | None) -> str | None:
        """The same text under the active key and bound to its context; None if it already is."""
        if self.key_id_of(stored) == self.active_key_id and (
            context is None or stored.partition("$")[2].startswith("c$")
        ):
            return None
        return self.encrypt_text(self.decrypt_text(stored, context), context)


def _context_ad(context: str | None) -> bytes | None:
    return f"careflow/column/{context}".encode() if context else None


def cpr_lookup_hash(cpr: str, key: str) -> str:
    """Keyed hash of a CPR number: lets coordinators find a patient without storing the CPR in clear."""
    normalised = cpr.replace("-", "").strip()
    return hmac.new(key.encode(), normalised.encode(), hashlib.sha256).hexdigest()
