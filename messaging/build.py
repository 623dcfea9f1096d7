"""build_message: the FHIR message Bundle of any registered message type, from its content.

Every message shares one envelope: MessageHeader first, sender and primary receiver
Organizations (SOR + EAN), one Patient (CPR), and a Provenance for this exchange; the type's
builder (messaging/types/) adds its focus and other resources. Resource ids are derived from the
MessageHeader id, so a resend (same header, new Bundle.id) carries the same resources.
"""

from __future__ import annotations

from pydantic import BaseModel

from messaging.errors import MessageError
from messaging.identifiers import SOR_ENDPOINT_PREFIX
from messaging.model import Envelope, ValidationIssue
from messaging.profiles import apply_profiles

# The shared resource helpers keep their old import path (messaging.acknowledge and others use it).
from messaging.resources import (  # noqa: F401
    ACT_CODE_SYSTEM,
    DIAGNOSTIC_REPORT_CODE_SYSTEM,
    NPU_SYSTEM,
    BuildContext,
    based_on_service_request,
    derived_id,
    destination,
    entry,
    organization_resource,
    patient_resource,
    provenance_resource,
    ref,
    service_request_identifier,
)
from messaging.terminology import CAREFLOW_PATHWAY_TAG_SYSTEM
from messaging.types import MESSAGE_TYPES
from messaging.types.base import ContentBuilder  # noqa: F401
from messaging.types.care_communication import CARE_COMMUNICATION_CATEGORY_SYSTEM  # noqa: F401
from messaging.types.referral import REQUEST_PRIORITIES  # noqa: F401

_Context = BuildContext  # its old name


def build_message(code: str, envelope: Envelope, content: BaseModel | dict) -> dict:
    """The FHIR JSON of a message Bundle of the registered type `code` (a MessageKind or its value).

    `content` is the type's content model, or a dict validated into it (so a workflow may pass
    plain data). Raises UnknownMessageType for an unregistered code, ValueError for a type that
    is not built from content (acknowledgements: use build_acknowledgement), TypeError for
    another type's content model, pydantic's ValidationError for a dict that does not fit.
    """
    message_type = MESSAGE_TYPES.get(code)
    if message_type.content is None or message_type.build is None:
        raise ValueError(f"{message_type.code} has no builder; acknowledgements are built by build_acknowledgement")
    if isinstance(content, dict):
        content = message_type.content.model_validate(content)
    elif not isinstance(content, message_type.content):
        raise TypeError(f"{message_type.code} needs {message_type.content.__name__}, got {type(content).__name__}")
    if message_type.patient and envelope.patient is None:
        raise MessageError(
            f"{message_type.code} needs a patient",
            [
                ValidationIssue(
                    rule="patient-count", path="Bundle.entry", message="a clinical message carries exactly one Patient"
                )
            ],
        )
    ctx = BuildContext(envelope)
    focus, others = message_type.build(ctx, content)
    header = {
        "resourceType": "MessageHeader",
        "id": ctx.header_id,
        "eventCoding": {"system": message_type.system, "code": message_type.code},
        "destination": [destination(ref(ctx.receiver), envelope.receiver)],
        "sender": {"reference": ref(ctx.sender)},
        "source": {"endpoint": SOR_ENDPOINT_PREFIX + envelope.sender.sor},
        "focus": [{"reference": ref(r)} for r in focus],
    }
    if ctx.header_extensions:
        header = {"resourceType": "MessageHeader", "id": ctx.header_id, "extension": ctx.header_extensions, **header}
    if envelope.pathway:
        header = {
            "resourceType": "MessageHeader",
            "id": ctx.header_id,
            "meta": {"tag": [{"system": CAREFLOW_PATHWAY_TAG_SYSTEM, "code": envelope.pathway}]},
            **{k: v for k, v in header.items() if k not in ("resourceType", "id")},
        }
    if ctx.definition:
        header["definition"] = ctx.definition
    provenance = provenance_resource(
        ctx.id("provenance"),
        ctx.header_id,
        ctx.timestamp,
        ctx.activity,
        ref(ctx.sender),
        ctx.previous_header_id,
        ctx.entity_role,
    )
    patient = [ctx.patient] if message_type.patient and ctx.patient is not None else []
    resources = [header, *patient, *focus, *others, ctx.sender, ctx.receiver, *ctx.history, provenance]
    bundle = {"resourceType": "Bundle", "id": envelope.bundle_id, "type": "message", "timestamp": ctx.timestamp}
    bundle["entry"] = [entry(r) for r in resources]
    # MedCom's released types declare their profiles (the Bundle's is the type's `profile`);
    # careflow's own types claim none
    return apply_profiles(bundle)
