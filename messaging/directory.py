"""The address book of messaging partners: SOR code, EAN, endpoints, the transport each uses, the
message types each accepts, and the organisations careflow acts for.

Loaded from a JSON file the operator maintains (settings.directory_path); every row is checked on
load, so a bad row is named at start-up instead of failing a send later.

Transport (messaging/transport.py): `process-message` posts the Bundle to the partner's FHIR
`$process-message` URL (`endpoint`); `vans` posts the VANSEnvelope around it to `vans_endpoint`. An
entry names the transport it uses and may have endpoints for both. `careflow_acts_for`: careflow
sends and receives for this organisation, so both its endpoints are careflow's own inbound routes —
whatever partners send it (acknowledgements of what careflow sent in its name included) arrives here.

Some message types have no VANS document type in MedCom's catalogue (careflow's own types,
HomeCareObservation): the one agreed with the partner is in `vans_documents` (event code ->
{"name", "version"}), for every partner at the file's top level, per entry to override.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError, ValidationInfo, field_validator

from messaging.errors import DirectoryError, NotAccepted, UnknownOrganization
from messaging.identifiers import is_valid_gln, is_valid_sor
from messaging.model import Organization
from messaging.types import message_label

PartnerKind = Literal["hospital-department", "gp", "lab", "municipality", "careflow"]
TransportName = Literal["process-message", "vans"]
TRANSPORTS: tuple[TransportName, ...] = ("process-message", "vans")


class VansDocumentAgreement(BaseModel):
    """A VANS document type agreed with a partner for a message type MedCom's catalogue lacks."""

    name: str = Field(min_length=1, max_length=100)
    version: str = Field(min_length=1, max_length=20)


class Route(BaseModel):
    """How a message reaches an organisation: the transport and the URL to POST to."""

    transport: TransportName
    url: str


class DirectoryEntry(BaseModel):
    sor: str
    ean: str
    name: str = Field(min_length=1)
    kind: PartnerKind
    transport: TransportName = "process-message"  # the one this partner uses
    endpoint: str | None = Field(default=None, validate_default=True)  # URL of the partner's $process-message
    vans_endpoint: str | None = Field(default=None, validate_default=True)  # URL its VANSEnvelopes are posted to
    careflow_acts_for: bool = False  # careflow sends and receives in this organisation's name
    accepts: list[str]  # event codes, optionally "code|version"
    vans_documents: dict[str, VansDocumentAgreement] = Field(default_factory=dict)

    @field_validator("sor")
    @classmethod
    def _sor(cls, value: str) -> str:
        if not is_valid_sor(value):
            raise ValueError("SOR code must be 6-18 digits")
        return value

    @field_validator("ean")
    @classmethod
    def _ean(cls, value: str) -> str:
        if not is_valid_gln(value):
            raise ValueError("EAN must be 13 digits with a valid GS1 check digit")
        return value

    @field_validator("endpoint", "vans_endpoint")
    @classmethod
    def _endpoint(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            needed = {"endpoint": "process-message", "vans_endpoint": "vans"}[info.field_name]
            if info.data.get("transport") == needed:
                raise ValueError(f"required by the entry's transport {needed!r}")
            return value
        if not value.startswith(("http://", "https://")):
            raise ValueError("endpoint must be an http(s) URL")
        return value

    def url_for(self, transport: TransportName) -> str | None:
        return self.endpoint if transport == "process-message" else self.vans_endpoint

    @field_validator("accepts")
    @classmethod
    def _accepts(cls, value: list[str]) -> list[str]:
        for item in value:
            code, _, version = item.partition("|")
            if not code or (("|" in item) and not version):
                raise ValueError(f"accepts item {item!r} must be 'code' or 'code|version'")
        return value

    @property
    def accepted_codes(self) -> frozenset[str]:
        return frozenset(item.partition("|")[0] for item in self.accepts)

    def accepts_kind(self, kind: str) -> bool:
        """Whether this partner takes messages with event code `kind` (any type, registered or not)."""
        return str(kind) in self.accepted_codes

    @property
    def organization(self) -> Organization:
        return Organization(sor=self.sor, ean=self.ean, name=self.name)


class Directory:
    """Lookup by SOR (the address) or EAN; `require_accepts` guards every send; `route` says how a
    message reaches an organisation.

    `transport`: every entry that has an endpoint for this transport uses it, whatever its own
    (settings.partner_transport: the dev stack and the e2e tests run all partners over VANS so)."""

    def __init__(
        self,
        entries: list[DirectoryEntry],
        *,
        transport: TransportName | None = None,
        vans_documents: dict[str, VansDocumentAgreement] | None = None,
    ) -> None:
        self._entries = list(entries)
        self._by_sor = {e.sor: e for e in self._entries}
        self._by_ean = {e.ean: e for e in self._entries}
        self.transport = transport
        self.vans_documents = dict(vans_documents or {})

    @classmethod
    def load(cls, path: str | Path, *, transport: TransportName | None = None) -> Directory:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DirectoryError([f"cannot read {path}: {type(exc).__name__}"]) from None
        rows = data.get("entries") if isinstance(data, dict) else data
        if not isinstance(rows, list):
            raise DirectoryError(["file must hold a list of entries (or an object with 'entries')"])
        agreed = data.get("vans_documents", {}) if isinstance(data, dict) else {}
        try:
            documents = {k: VansDocumentAgreement.model_validate(v) for k, v in dict(agreed).items()}
        except (ValidationError, TypeError, ValueError) as exc:
            raise DirectoryError([f"vans_documents: {type(exc).__name__}"]) from None
        return cls.from_rows(rows, transport=transport, vans_documents=documents)

    @classmethod
    def from_rows(
        cls,
        rows: list,
        *,
        transport: TransportName | None = None,
        vans_documents: dict[str, VansDocumentAgreement] | None = None,
    ) -> Directory:
        problems: list[str] = []
        entries: list[DirectoryEntry] = []
        seen_sor: dict[str, int] = {}
        seen_ean: dict[str, int] = {}
        for index, row in enumerate(rows):
            try:
                entry = DirectoryEntry.model_validate(row)
            except ValidationError as exc:
                for error in exc.errors():
                    field = ".".join(str(p) for p in error["loc"]) or "row"
                    problems.append(f"row {index} field '{field}': {error['msg']}")
                continue
            if entry.sor in seen_sor:
                problems.append(f"row {index} field 'sor': duplicate of row {seen_sor[entry.sor]}")
            if entry.ean in seen_ean:
                problems.append(f"row {index} field 'ean': duplicate of row {seen_ean[entry.ean]}")
            seen_sor.setdefault(entry.sor, index)
            seen_ean.setdefault(entry.ean, index)
            entries.append(entry)
        if problems:
            raise DirectoryError(problems)
        return cls(entries, transport=transport, vans_documents=vans_documents)

    @property
    def entries(self) -> list[DirectoryEntry]:
        return list(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, sor: str) -> DirectoryEntry:
        try:
            return self._by_sor[sor]
        except KeyError:
            raise UnknownOrganization(f"no directory entry for SOR {sor}") from None

    def find_by_ean(self, ean: str) -> DirectoryEntry:
        try:
            return self._by_ean[ean]
        except KeyError:
            raise UnknownOrganization(f"no directory entry for EAN {ean}") from None

    def route(self, sor: str) -> Route:
        """How a message for this organisation travels: the directory-wide transport if the entry
        has an endpoint for it, else the entry's own."""
        entry = self.get(sor)
        if self.transport is not None and (url := entry.url_for(self.transport)) is not None:
            return Route(transport=self.transport, url=url)
        return Route(transport=entry.transport, url=entry.url_for(entry.transport) or "")

    def acts_for(self, sor: str) -> bool:
        """Whether careflow sends and receives in this organisation's name."""
        entry = self._by_sor.get(sor)
        return entry is not None and entry.careflow_acts_for

    @property
    def acted_for(self) -> list[DirectoryEntry]:
        return [e for e in self._entries if e.careflow_acts_for]

    def vans_document(self, sor: str, event_code: str) -> VansDocumentAgreement | None:
        """The VANS document type agreed with this organisation for a message type, if any."""
        entry = self._by_sor.get(sor)
        for agreements in (entry.vans_documents if entry else {}, self.vans_documents):
            for key in (event_code, "*"):  # "*": any type the catalogue lacks, "{event}" its event code
                if key in agreements:
                    found = agreements[key]
                    return found.model_copy(update={"name": found.name.replace("{event}", event_code)})
        return None

    def require_accepts(self, sor: str, kind: str) -> DirectoryEntry:
        entry = self.get(sor)
        if not entry.accepts_kind(kind):
            raise NotAccepted(f"{entry.name} (SOR {sor}) does not accept {message_label(kind)} messages ({kind})")
        return entry


def load_directory(settings) -> Directory:  # noqa: ANN001 (careflow.settings.Settings; messaging imports no careflow)
    """The directory a careflow process uses: the operator's file, with the partner transport the
    settings may impose (CAREFLOW_PARTNER_TRANSPORT)."""
    return Directory.load(settings.directory_path, transport=settings.partner_transport or None)


def load_default_directory() -> Directory:
    from careflow.settings import get_settings

    return load_directory(get_settings())
