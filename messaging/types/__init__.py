"""The message types careflow builds, parses, validates and labels, one module each, and their registry.

Adding a message type = one module + one line in the registry list:

1. a module here (copy the closest one, e.g. `appointment.py`) with its content model, its
   builder, its own validation rules and `TYPE = MessageType(code=..., system=..., label=...,
   label_da=..., focus=..., content=..., build=..., rules=(...), profile=...)`;
2. its name in `BUILT_IN` below.

(A released MedCom type also lists the profiles of the resources inside the Bundle in
messaging/profiles.py; careflow's own types have none.)

Nothing else changes: build_message, parse_message, validate_message, acknowledgements, the
directory, the console's labels, the event code system and the VANS document type all ask the
registry. A pathway module
outside messaging (a test, a tutorial) may instead call `MESSAGE_TYPES.register(TYPE)` when it is
imported; registering the same type again is a no-op, so re-imports (Temporal's sandbox) are safe.
A careflow-style type uses careflow's own event code system (terminology.CAREFLOW_EVENT_SYSTEM),
never MedCom's, and has no `profile`.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from dataclasses import fields

from messaging.types.base import MessageType

# The built-in message types: one module each in this package, each exposing TYPE.
BUILT_IN = (
    "referral",
    "appointment",
    "test_result",
    "treatment_plan",
    "cancellation",
    "care_communication",
    "hospital_notification",
    "homecare_observation",
    "acknowledgement",
    # MedCom's draft referral model (messaging/referral_draft.py)
    "new_referral",
    "update_referral",
    "cancel_referral",
    "referral_triage",
    "referral_booking",
)


class UnknownMessageType(KeyError):
    """No message type with this event code is registered."""

    def __str__(self) -> str:  # KeyError would quote the repr; say what is missing instead
        return self.args[0] if self.args else "unknown message type"


class MessageTypes:
    """Message types by event code."""

    def __init__(self, types: tuple[MessageType, ...] | list[MessageType] = ()) -> None:
        self._by_code: dict[str, MessageType] = {}
        for message_type in types:
            self.register(message_type)

    def register(self, message_type: MessageType) -> MessageType:
        """Add a type; the same object again is a no-op, another type with its code is refused."""
        if not isinstance(message_type, MessageType):
            raise TypeError(f"register takes a MessageType, got {type(message_type).__name__}")
        existing = self._by_code.get(message_type.code)
        if existing is None:
            self._by_code[message_type.code] = message_type
            return message_type
        if existing is message_type or _declaration(existing) == _declaration(message_type):
            return existing  # the same declaration, e.g. its module imported again by Temporal's sandbox
        raise ValueError(
            f"message type {message_type.code!r} is already registered ({existing.label}, from "
            f"{_where(existing)}); event codes are unique"
        )

    def get(self, code: str) -> MessageType:
        found = self.find(code)
        if found is None:
            raise UnknownMessageType(
                f"no message type with event code {str(code)!r} is registered; known: "
                f"{', '.join(sorted(self._by_code))}"
            )
        return found

    def find(self, code: object) -> MessageType | None:
        return self._by_code.get(str(code)) if isinstance(code, str) else None

    def __iter__(self) -> Iterator[MessageType]:
        return iter(list(self._by_code.values()))

    def __len__(self) -> int:
        return len(self._by_code)

    def __contains__(self, code: object) -> bool:
        return self.find(code) is not None

    def codes(self) -> frozenset[str]:
        return frozenset(self._by_code)

    def label(self, code: str, lang: str = "en") -> str:
        """What coordinators call the message ("referral"; lang="da": "henvisning"); the code itself
        when no such type is registered."""
        if lang not in ("en", "da"):
            raise ValueError(f"labels are in en or da, not {lang!r}")
        found = self.find(code)
        if found is None:
            return str(code)
        return found.label_da if lang == "da" else found.label


def _name(value: object) -> object:
    """Functions and classes by where they are defined: a re-imported module makes new objects."""
    if callable(value):
        return (getattr(value, "__module__", None), getattr(value, "__qualname__", repr(value)))
    if isinstance(value, tuple):
        return tuple(_name(v) for v in value)
    return value


def _declaration(message_type: MessageType) -> tuple:
    return tuple(_name(getattr(message_type, f.name)) for f in fields(message_type))


def _where(message_type: MessageType) -> str:
    source = message_type.build or message_type.content or (message_type.rules[0] if message_type.rules else None)
    return getattr(source, "__module__", "unknown module")


def _built_in() -> list[MessageType]:
    return [importlib.import_module(f"{__name__}.{name}").TYPE for name in BUILT_IN]


MESSAGE_TYPES = MessageTypes(_built_in())


def message_label(code: str) -> str:
    """English with the Danish in brackets, as timelines and escalations say it: "referral (henvisning)"."""
    found = MESSAGE_TYPES.find(code)
    return f"{found.label} ({found.label_da})" if found else str(code)


def message_label_da(code: str) -> str:
    return MESSAGE_TYPES.label(code, "da")


__all__ = [
    "BUILT_IN",
    "MESSAGE_TYPES",
    "MessageType",
    "MessageTypes",
    "UnknownMessageType",
    "message_label",
    "message_label_da",
]
