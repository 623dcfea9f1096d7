"""MedCom FHIR messaging: build, parse (JSON and XML), validate and acknowledge messages; directory.

The message types are plug-ins: one module each in messaging/types/, listed in its registry."""

from messaging import model as _model
from messaging.acknowledge import build_acknowledgement, needs_acknowledgement
from messaging.build import build_message
from messaging.directory import Directory, DirectoryEntry, load_default_directory, load_directory
from messaging.errors import DirectoryError, MessageError, NotAccepted, UnknownOrganization
from messaging.formats import from_xml, to_json, to_xml
from messaging.model import *  # noqa: F401,F403  (the domain models are part of this package's API)
from messaging.parse import decode_body, parse_message
from messaging.types import MESSAGE_TYPES, MessageType, MessageTypes, UnknownMessageType
from messaging.validate import validate_message, warm_up

__all__ = [
    *_model.__all__,
    "MESSAGE_TYPES",
    "MessageType",
    "MessageTypes",
    "UnknownMessageType",
    "build_message",
    "build_acknowledgement",
    "needs_acknowledgement",
    "parse_message",
    "decode_body",
    "warm_up",
    "validate_message",
    "to_json",
    "to_xml",
    "from_xml",
    "Directory",
    "DirectoryEntry",
    "load_default_directory",
    "load_directory",
    "MessageError",
    "DirectoryError",
    "UnknownOrganization",
    "NotAccepted",
]
