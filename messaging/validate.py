"""MedCom conformance rules for message Bundles, each issue naming its rule, element and error code.

Structure is checked by fhir.resources (R4B models); the MedCom rules run on the plain JSON, so
they also report on Bundles that fhir.resources rejects. Issue texts never quote element values:
they may be patient data.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from datetime import UTC

from pydantic import BaseModel, ValidationError

from messaging.bundle import ReferenceIndex, as_dict, as_list, destination_use, header_id_of, walk_references
from messaging.identifiers import (
    CPR_SYSTEM,
    GLN_SYSTEMS,
    SOR_SYSTEM,
    is_replacement_cpr_system,
    is_valid_cpr,
    is_valid_gln,
    is_valid_replacement_cpr,
    is_valid_sor,
)
from messaging.model import ValidationIssue
from messaging.profiles import declared_profiles, expected_profile, is_medcom_profile
from messaging.terminology import (
    MEDCOM_DESTINATION_USE_SYSTEM,
    MEDCOM_EVENT_SYSTEM,
    Terminology,
    get_terminology,
)
from messaging.types import MESSAGE_TYPES, MessageTypes
from messaging.types.base import MessageType

# MedCom acknowledgement error codes (MedComAcknowledgementErrorCodes.fsh)
DATATYPE_WRONG = "MSG_Datatype_Wrong"
VALUESET_UNKNOWN = "MSG_VALUESET_VALUE_UNKNOWN"
CODESYSTEM_UNKNOWN = "MSG_CodeSystem_VALUE_UNKNOWN"
ELEMENT_TOO_LONG = "MSG_Element_To_Long"
RECEIVER_MISSING = "MSG_Receiver_Identifier_MISSING"
RECEIVER_UNKNOWN = "MSG_Receiver_Identifier_UNKNOWN"

# MedCom's stand-in for a message that could not be sent; not a type careflow builds or routes.
EMPTY_MESSAGE = "empty-message"
MAX_ID_LENGTH = 64  # FHIR id: [A-Za-z0-9\-\.]{1,64}

# The generic rule ids, with the MedCom error code each usually maps to. Each message type's own
# rules (messaging/types/) name theirs; "message-focus" checks the focus each type declares.
RULES: dict[str, str] = {
    "fhir-structure": DATATYPE_WRONG,
    "element-too-long": ELEMENT_TOO_LONG,
    "bundle-type": VALUESET_UNKNOWN,
    "bundle-id": DATATYPE_WRONG,
    "bundle-timestamp": DATATYPE_WRONG,
    "header-first": DATATYPE_WRONG,
    "header-id": DATATYPE_WRONG,
    "event-code": CODESYSTEM_UNKNOWN,
    "patient-count": DATATYPE_WRONG,
    "patient-cpr": DATATYPE_WRONG,
    "sender-organization": DATATYPE_WRONG,
    "receiver-organization": RECEIVER_MISSING,
    "sor-identifier": DATATYPE_WRONG,
    "ean-identifier": DATATYPE_WRONG,
    "destination-primary": RECEIVER_MISSING,
    "destination-cc": VALUESET_UNKNOWN,
    "provenance-present": DATATYPE_WRONG,
    "provenance-target": DATATYPE_WRONG,
    "provenance-activity": CODESYSTEM_UNKNOWN,
    "reference-resolves": DATATYPE_WRONG,
    "message-focus": DATATYPE_WRONG,
    "message-type-rule": DATATYPE_WRONG,
    "meta-profile": VALUESET_UNKNOWN,
}


class _Check:
    """One validation run over one Bundle: collects issues, shares the reference index."""

    def __init__(self, bundle: dict, terminology: Terminology, types: MessageTypes = MESSAGE_TYPES) -> None:
        self.bundle = bundle
        self.terminology = terminology
        self.types = types
        self.message_type: MessageType | None = None
        self.issues: list[ValidationIssue] = []
        self.index = ReferenceIndex(bundle)
        self.entries = bundle.get("entry") if isinstance(bundle.get("entry"), list) else []
        self.header: dict = {}
        self.event_code = ""

    def add(self, rule: str, path: str, message: str, code: str | None = None) -> None:
        self.issues.append(ValidationIssue(rule=rule, path=path, message=message, error_code=code or RULES[rule]))

    def typed_all(self) -> list[tuple[int, dict]]:
        return [
            (i, e["resource"])
            for i, e in enumerate(self.entries)
            if isinstance(e, dict) and isinstance(e.get("resource"), dict)
        ]

    def typed(self, resource_type: str) -> list[tuple[int, dict]]:
        found = []
        for i, entry in enumerate(self.entries):
            resource = entry.get("resource") if isinstance(entry, dict) else None
            if isinstance(resource, dict) and resource.get("resourceType") == resource_type:
                found.append((i, resource))
        return found


def _loc_path(loc: tuple) -> str:
    return "Bundle" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc)


# Resources found valid, by a digest of their content: the same organisations, practitioners and
# patient travel in message after message, and validating one costs 0.1-0.3 ms (a pure function of
# its content). Bounded; the oldest are forgotten first.
VALID_KEPT = 4096
_valid: dict[bytes, None] = {}
_valid_lock = threading.Lock()


def _digest(resource: dict) -> bytes:
    canonical = json.dumps(resource, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.blake2b(canonical.encode("utf-8", errors="surrogatepass"), digest_size=16).digest()


def _remember_valid(digest: bytes) -> None:
    with _valid_lock:
        while len(_valid) >= VALID_KEPT:
            del _valid[next(iter(_valid))]
        _valid[digest] = None


def check_structure(c: _Check) -> None:
    """FHIR R4 structure, as fhir.resources' R4B models see it: each entry's resource by its own
    model (the Bundle model would pick the same model by resourceType, at a quarter more cost), then
    the Bundle without them. The issues are those the Bundle model finds in one pass (checked
    against it on mutated MedCom examples: tests/messaging/test_structure.py)."""
    from fhir.resources.R4B import get_fhir_model_class
    from fhir.resources.R4B.bundle import Bundle

    shell_entries = []
    for i, entry in enumerate(c.entries):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        resource_type = resource.get("resourceType") if isinstance(resource, dict) else None
        try:
            if not isinstance(resource_type, str):
                raise ValueError
            model = get_fhir_model_class(resource_type)
        except ValueError:
            c.add("fhir-structure", f"Bundle.entry[{i}].resource.resourceType", "unknown or missing FHIR resource type")
            continue
        # unknown resource types were reported above; the Bundle model would only fail on them as a whole
        at = ("entry", len(shell_entries), "resource")
        shell_entries.append({key: value for key, value in entry.items() if key != "resource"})
        digest = _digest(resource)
        if digest in _valid:
            continue
        if _structure_issues(c, model, resource, at):
            continue
        _remember_valid(digest)
    _structure_issues(c, Bundle, {**c.bundle, "entry": shell_entries}, ())


def _structure_issues(c: _Check, model: type[BaseModel], value: dict, at: tuple) -> bool:
    """Validate `value` by `model`; add what it finds (locations under `at`). True when it found any."""
    try:
        model.model_validate(value)
    except ValidationError as exc:
        for error in exc.errors(include_input=False, include_url=False):
            c.add("fhir-structure", _loc_path((*at, *error["loc"])), f"invalid FHIR content ({error['type']})")
        return True
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        # fhir.resources itself trips over some hostile input (e.g. a boolean where a url belongs)
        c.add("fhir-structure", "Bundle", f"invalid FHIR content ({type(exc).__name__})")
        return True
    return False


def check_ids(c: _Check) -> None:
    if isinstance(c.bundle.get("id"), str) and len(c.bundle["id"]) > MAX_ID_LENGTH:
        c.add("element-too-long", "Bundle.id", f"id longer than {MAX_ID_LENGTH} characters")
    for i, entry in enumerate(c.entries):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        rid = resource.get("id") if isinstance(resource, dict) else None
        if isinstance(rid, str) and len(rid) > MAX_ID_LENGTH:
            c.add("element-too-long", f"Bundle.entry[{i}].resource.id", f"id longer than {MAX_ID_LENGTH} characters")


def check_bundle(c: _Check) -> None:
    if c.bundle.get("type") != "message":
        c.add("bundle-type", "Bundle.type", "Bundle.type must be 'message'")
    if not isinstance(c.bundle.get("id"), str) or not c.bundle["id"]:
        c.add("bundle-id", "Bundle.id", "Bundle.id is missing")
    if not isinstance(c.bundle.get("timestamp"), str) or not c.bundle["timestamp"]:
        c.add("bundle-timestamp", "Bundle.timestamp", "Bundle.timestamp is missing")


def check_header(c: _Check) -> None:
    headers = c.typed("MessageHeader")
    first = c.entries[0].get("resource") if c.entries and isinstance(c.entries[0], dict) else None
    if not isinstance(first, dict) or first.get("resourceType") != "MessageHeader":
        c.add("header-first", "Bundle.entry[0].resource", "the first entry must be the MessageHeader")
    if len(headers) > 1:
        c.add("header-first", f"Bundle.entry[{headers[1][0]}].resource", "a message has exactly one MessageHeader")
    if not headers:
        return
    index, c.header = headers[0]
    path = f"Bundle.entry[{index}].resource"
    if not isinstance(c.header.get("id"), str) or not c.header["id"]:
        c.add("header-id", f"{path}.id", "MessageHeader.id is missing")
    coding = c.header.get("eventCoding") if isinstance(c.header.get("eventCoding"), dict) else {}
    system, code = coding.get("system"), coding.get("code")
    c.event_code = code.lower() if isinstance(code, str) else ""
    c.message_type = c.types.find(code) or c.types.find(c.event_code)
    own_systems = {t.system for t in c.types} - {MEDCOM_EVENT_SYSTEM}
    if system == MEDCOM_EVENT_SYSTEM:
        if not c.terminology.has(MEDCOM_EVENT_SYSTEM, code):
            c.add("event-code", f"{path}.eventCoding.code", "not a code of MedCom's event code system")
    elif isinstance(system, str) and system in own_systems:
        if c.message_type is None or c.message_type.system != system:
            c.add("event-code", f"{path}.eventCoding.code", "not a careflow event code")
    else:
        c.add(
            "event-code",
            f"{path}.eventCoding.system",
            "event code system is neither MedCom's nor careflow's",
            VALUESET_UNKNOWN,
        )
    if c.message_type is not None and c.message_type.system != system:
        c.message_type = None  # a code in the wrong system is not that type: its rules do not apply


def _check_organization(c: _Check, reference: object, path: str, role: str) -> None:
    """The party at `reference` must be an Organization in the Bundle with a valid SOR and EAN."""
    receiver = role != "sender"
    rule = "sender-organization" if not receiver else "receiver-organization"
    found = c.index.resolve(reference)
    if found is None or found[1].get("resourceType") != "Organization":
        c.add(rule, path, f"the {role} must reference an Organization in the Bundle")
        return
    index, org = found
    org_path = f"Bundle.entry[{index}].resource"
    identifiers = [i for i in as_list(org.get("identifier")) if isinstance(i, dict)]
    for system_rule, systems, is_valid, label in (
        ("sor-identifier", (SOR_SYSTEM,), is_valid_sor, "SOR code"),
        ("ean-identifier", GLN_SYSTEMS, is_valid_gln, "EAN/GLN (13 digits, GS1 check digit)"),
    ):
        position = next((k for k, ident in enumerate(identifiers) if ident.get("system") in systems), None)
        if position is None:
            c.add(
                system_rule,
                f"{org_path}.identifier",
                f"the {role} Organization has no {label}",
                RECEIVER_MISSING if receiver else None,
            )
        elif not is_valid(identifiers[position].get("value")):
            c.add(
                system_rule,
                f"{org_path}.identifier[{position}].value",
                f"the {role} Organization's {label} is malformed",
                RECEIVER_UNKNOWN if receiver else None,
            )


def check_parties(c: _Check) -> None:
    if not c.header:
        return
    header_path = f"Bundle.entry[{next(i for i, r in c.typed('MessageHeader') if r is c.header)}].resource"
    _check_organization(c, c.header.get("sender"), f"{header_path}.sender", "sender")
    destinations = c.header.get("destination") if isinstance(c.header.get("destination"), list) else []
    primaries = 0
    for k, dest in enumerate(destinations):
        if not isinstance(dest, dict):
            continue
        path = f"{header_path}.destination[{k}]"
        use = destination_use(dest)
        if use == "primary":
            primaries += 1
            _check_organization(c, dest.get("receiver"), f"{path}.receiver", "primary receiver")
        elif use == "cc":
            if c.message_type is None or not c.message_type.carbon_copy:
                c.add(
                    "destination-cc", f"{path}.extension", "this message type does not allow carbon-copy destinations"
                )
            else:
                _check_organization(c, dest.get("receiver"), f"{path}.receiver", "cc receiver")
        else:
            c.add(
                "destination-cc",
                f"{path}.extension",
                f"destination use must be a code of {MEDCOM_DESTINATION_USE_SYSTEM}",
            )
    if primaries != 1:
        c.add(
            "destination-primary",
            f"{header_path}.destination",
            f"exactly one primary destination is required, found {primaries}",
        )


def check_patient(c: _Check) -> None:
    patients = c.typed("Patient")
    # messages without clinical content carry no Patient
    if c.event_code == EMPTY_MESSAGE or (c.message_type is not None and not c.message_type.patient):
        if patients:
            c.add("patient-count", f"Bundle.entry[{patients[0][0]}].resource", "this message type carries no Patient")
        return
    if len(patients) != 1:
        c.add("patient-count", "Bundle.entry", f"exactly one Patient is required, found {len(patients)}")
    for index, patient in patients[:1]:
        path = f"Bundle.entry[{index}].resource.identifier"
        identifiers = [i for i in as_list(patient.get("identifier")) if isinstance(i, dict)]
        cpr = next((k for k, i in enumerate(identifiers) if i.get("system") == CPR_SYSTEM), None)
        replacement = next((k for k, i in enumerate(identifiers) if is_replacement_cpr_system(i.get("system"))), None)
        if cpr is not None:
            if not is_valid_cpr(identifiers[cpr].get("value")):
                c.add(
                    "patient-cpr",
                    f"{path}[{cpr}].value",
                    "CPR must be 10 digits with a valid day (01-31) and month (01-12)",
                )
        elif replacement is not None:
            if not is_valid_replacement_cpr(identifiers[replacement].get("value")):
                c.add("patient-cpr", f"{path}[{replacement}].value", "replacement CPR is malformed")
        else:
            c.add("patient-cpr", path, "the Patient has neither a CPR nor a replacement CPR")


def check_provenance(c: _Check) -> None:
    provenances = c.typed("Provenance")
    if not provenances:
        c.add("provenance-present", "Bundle.entry", "at least one Provenance is required")
        return
    header_id = c.header.get("id")
    targets_header = any(
        header_id_of(t) == header_id for _, p in provenances for t in as_list(p.get("target")) if isinstance(t, dict)
    )
    # MedCom's published empty-message example carries only the Provenance of the message it
    # stands in for; an empty message is therefore not held to this rule.
    if header_id and not targets_header and c.event_code != EMPTY_MESSAGE:
        c.add(
            "provenance-target",
            f"Bundle.entry[{provenances[-1][0]}].resource.target",
            "no Provenance targets this MessageHeader",
        )
    for index, provenance in provenances:
        codings = as_list(as_dict(provenance.get("activity")).get("coding"))
        if not any(
            isinstance(cd, dict) and c.terminology.is_activity(cd.get("system"), cd.get("code")) for cd in codings
        ):
            c.add(
                "provenance-activity",
                f"Bundle.entry[{index}].resource.activity",
                "activity must be a MedCom activity code",
            )


def _is_organization_reference(reference: str) -> bool:
    """A literal reference to an Organization: "Organization/<id>" or a URL ending in it."""
    parts = reference.rstrip("/").split("/")
    return len(parts) >= 2 and parts[-2] == "Organization" and bool(parts[-1])


def check_references(c: _Check) -> None:
    for i, entry in enumerate(c.entries):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict):
            continue
        is_provenance = resource.get("resourceType") == "Provenance"
        for path, reference in walk_references(resource, f"Bundle.entry[{i}].resource"):
            if reference.startswith("#") or c.index.resolve(reference) is not None:
                continue
            # Provenance points back at earlier messages of the chain, which are not in this Bundle
            if is_provenance and header_id_of(reference) and (".target[" in path or ".what." in path):
                continue
            # ... and at the organisations that sent them, which need not be parties to this
            # message: MedCom's own HospitalNotification test-script messages name earlier
            # senders (even as agent of this message's Provenance) without carrying them.
            if is_provenance and ".agent[" in path and _is_organization_reference(reference):
                continue
            c.add("reference-resolves", path, "reference does not resolve inside the Bundle")


def check_message_type(c: _Check) -> None:
    """What the message's own type requires: its focus resource, then the type's own rules."""
    message_type = c.message_type
    if message_type is None or not c.header:
        return
    header_index = next((i for i, r in c.typed("MessageHeader") if r is c.header), 0)
    focus = as_list(c.header.get("focus"))
    if message_type.focus is None:
        if focus:
            c.add(
                "message-focus", f"Bundle.entry[{header_index}].resource.focus", f"a {message_type.label} has no focus"
            )
    elif not focus:
        c.add(
            "message-focus",
            f"Bundle.entry[{header_index}].resource.focus",
            f"a {message_type.label} focuses on a {message_type.focus}",
        )
    else:
        for k, reference in enumerate(focus):
            found = c.index.resolve(reference)
            if found is not None and found[1].get("resourceType") != message_type.focus:
                c.add(
                    "message-focus",
                    f"Bundle.entry[{header_index}].resource.focus[{k}]",
                    f"a {message_type.label} focuses on a {message_type.focus}",
                )
    for rule in message_type.rules:
        try:
            c.issues.extend(rule(c.bundle))
        except (AttributeError, IndexError, KeyError, TypeError, ValueError):
            # a rule that cannot read the message has found it broken; refuse it, never crash
            name = getattr(rule, "__name__", "rule")
            c.add("message-type-rule", "Bundle", f"the {message_type.label} rule {name} cannot read this message")


def check_profiles(c: _Check) -> None:
    """Declared MedCom profiles must be the ones of the message's type (as in MedCom's examples);
    careflow's own event types must not claim any MedCom profile. Declaring none is allowed."""
    if not c.event_code:
        return
    if c.message_type is not None and c.message_type.system != MEDCOM_EVENT_SYSTEM:
        for index, resource in [(None, c.bundle), *((i, r) for i, r in c.typed_all())]:
            if any(is_medcom_profile(p) for p in declared_profiles(resource)):
                path = "Bundle.meta.profile" if index is None else f"Bundle.entry[{index}].resource.meta.profile"
                c.add("meta-profile", path, "careflow's own message types have no MedCom profile")
        return
    header_index = next((i for i, r in c.typed("MessageHeader") if r is c.header), 0)
    for path, resource, role in (
        ("Bundle.meta.profile", c.bundle, "Bundle"),
        (f"Bundle.entry[{header_index}].resource.meta.profile", c.header, "MessageHeader"),
    ):
        expected = expected_profile(c.event_code, role)
        medcom = [p for p in declared_profiles(resource) if is_medcom_profile(p)]
        if expected is not None and medcom and expected not in medcom:
            c.add("meta-profile", path, f"the {role} declares a MedCom profile of another message type")


CHECKS: tuple[Callable[[_Check], None], ...] = (
    check_structure,
    check_ids,
    check_bundle,
    check_header,
    check_parties,
    check_patient,
    check_provenance,
    check_references,
    check_message_type,
    check_profiles,
)


def validate_message(
    body: dict, *, terminology: Terminology | None = None, structure: bool = True, types: MessageTypes | None = None
) -> list[ValidationIssue]:
    """Every broken rule of a message Bundle given as FHIR JSON; an empty list means valid.

    The generic rules are here; each message type adds its own (messaging/types/). `structure=False`
    skips the fhir.resources check, e.g. for input that was just parsed from XML by fhir.resources
    itself. `types` defaults to the registry of message types.
    """
    if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
        return [
            ValidationIssue(
                rule="bundle-type",
                path="Bundle.resourceType",
                message="resource is not a Bundle",
                error_code=DATATYPE_WRONG,
            )
        ]
    c = _Check(body, terminology or get_terminology(), types or MESSAGE_TYPES)
    for check in CHECKS:
        if check is check_structure and not structure:
            continue
        check(c)
    return c.issues


def warm_up() -> None:
    """Build fhir.resources' models and load the terminology now, not on the first inbound message
    (the first validation of each resource type otherwise costs tens of milliseconds).
    Call it at process start."""
    from datetime import datetime

    from pydantic import ValidationError as ContentError

    from messaging.build import build_message
    from messaging.model import Envelope, ObservationValue, Organization, PatientData

    get_terminology()
    now = datetime.now(UTC)
    # synthetic parties and patient: nothing here is real
    envelope = Envelope(
        message_header_id="warm-up",
        bundle_id="warm-up",
        timestamp=now,
        sender=Organization(sor="100000000000001", ean="5790000209354", name="warm-up"),
        receiver=Organization(sor="200000000000001", ean="5790001348120", name="warm-up"),
        patient=PatientData(cpr="0101010000"),
    )
    values = {
        "service_request_id": "warm-up",
        "reason": "warm-up",
        "start": now,
        "effective": now,
        "code": "x",
        "description": "warm-up",
        "communication_id": "warm-up",
        "text": "warm-up",
        "encounter_id": "warm-up",
        "report_id": "warm-up",
        "observations": [ObservationValue(code="x", value=1.0)],
        "episode_of_care_id": "warm-up",
    }
    for message_type in MESSAGE_TYPES:
        if message_type.content is None:
            continue
        try:
            content = message_type.content(
                **{k: v for k, v in values.items() if k in message_type.content.model_fields}
            )
        except ContentError:
            continue  # a type with content fields these samples do not cover: it warms up on first use
        validate_message(build_message(message_type.code, envelope, content))
