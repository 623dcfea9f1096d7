"""The address book of messaging partners: SOR code, EAN, endpoint and the message types each accepts.

Loaded from a JSON file the operator maintains (settings.directory_path); every row is checked on
load, so a bad row is named at start-up instead of failing a send later.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError, field_validator

from messaging.errors import DirectoryError, NotAccepted, UnknownOrganization
from messaging.identifiers import is_valid_gln, is_valid_sor
from messaging.model import Organization
from messaging.types import message_label

PartnerKind = Literal["hospital-department", "gp", "lab", "municipality", "careflow"]


class DirectoryEntry(BaseModel):
    sor: str
    ean: str
    name: str = Field(min_length=1)
    kind: PartnerKind
    endpoint: str  # URL of the partner's $process-message
    accepts: list[str]  # event codes, optionally "code|version"

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

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("endpoint must be an http(s) URL")
        return value

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
    """Lookup by SOR (the address) or EAN; `require_accepts` guards every send."""

    def __init__(self, entries: list[DirectoryEntry]) -> None:
        self._entries = list(entries)
        self._by_sor = {e.sor: e for e in self._entries}
        self._by_ean = {e.ean: e for e in self._entries}

    @classmethod
    def load(cls, path: str | Path) -> Directory:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DirectoryError([f"cannot read {path}: {type(exc).__name__}"]) from None
        rows = data.get("entries") if isinstance(data, dict) else data
        if not isinstance(rows, list):
            raise DirectoryError(["file must hold a list of entries (or an object with 'entries')"])
        return cls.from_rows(rows)

    @classmethod
    def from_rows(cls, rows: list) -> Directory:
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
        return cls(entries)

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

    def require_accepts(self, sor: str, kind: str) -> DirectoryEntry:
        entry = self.get(sor)
        if not entry.accepts_kind(kind):
            raise NotAccepted(f"{entry.name} (SOR {sor}) does not accept {message_label(kind)} messages ({kind})")
        return entry


def load_default_directory() -> Directory:
    from careflow.settings import get_settings

    return Directory.load(get_settings().directory_path)
