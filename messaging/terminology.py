"""MedCom code systems (read from the terminology folder's .fsh files) and careflow's own event codes.

The .fsh files are parsed once per folder and cached: validation runs on the API hot path.
When the folder is absent a packaged snapshot (data/medcom-terminology.json) is used instead.
Regenerate that snapshot with `python -m messaging.terminology`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

MEDCOM_CS_BASE = "http://medcomfhir.dk/ig/terminology/CodeSystem/"
MEDCOM_VS_BASE = "http://medcomfhir.dk/ig/terminology/ValueSet/"
MEDCOM_EVENT_SYSTEM = MEDCOM_CS_BASE + "medcom-messaging-eventCodes"
MEDCOM_ACTIVITY_SYSTEM = MEDCOM_CS_BASE + "medcom-messaging-activityCodes"
MEDCOM_ERROR_SYSTEM = MEDCOM_CS_BASE + "medcom-acknowledgement-error-codes"
MEDCOM_DESTINATION_USE_SYSTEM = MEDCOM_CS_BASE + "medcom-messaging-destinationUse"
DESTINATION_USE_EXTENSION = (
    "http://medcomfhir.dk/ig/messaging/StructureDefinition/medcom-messaging-destinationUseExtension"
)
# HL7's generic message error codes, which MedCom's issue-details value set also allows.
HL7_OPERATION_OUTCOME_SYSTEM = "http://terminology.hl7.org/CodeSystem/operation-outcome"

# careflow's own MedCom-style message types (no released MedCom FHIR standard yet). This is the
# one place that names their code system: when MedCom releases codes, swap the URL (and codes).
# Which types use it, and which may carry carbon copies, each type says (messaging/types/).
CAREFLOW_EVENT_SYSTEM = "https://careflow.dk/fhir/CodeSystem/careflow-eventCodes"

_PACKAGED = Path(__file__).resolve().parent / "data" / "medcom-terminology.json"


def event_system_for(code: str) -> str:
    """The event code system of a registered message type (UnknownMessageType otherwise)."""
    from messaging.types import MESSAGE_TYPES  # the type modules import this module

    return MESSAGE_TYPES.get(code).system


def __getattr__(name: str) -> frozenset[str]:
    # Former constants, now read from the registry (a type may be registered after import).
    if name == "CAREFLOW_KINDS":
        from messaging.types import MESSAGE_TYPES

        return frozenset(t.code for t in MESSAGE_TYPES if t.system == CAREFLOW_EVENT_SYSTEM)
    if name == "CC_ALLOWED_EVENT_CODES":
        from messaging.types import MESSAGE_TYPES

        return frozenset(t.code for t in MESSAGE_TYPES if t.carbon_copy)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True)
class CodeSystem:
    url: str
    id: str
    case_sensitive: bool
    codes: frozenset[str]  # lower-cased when the system is case-insensitive

    def has(self, code: object) -> bool:
        if not isinstance(code, str):
            return False
        return (code if self.case_sensitive else code.lower()) in self.codes


@dataclass(frozen=True)
class Terminology:
    code_systems: dict[str, CodeSystem]
    # value set id -> (system url, code) pairs it includes explicitly
    value_sets: dict[str, frozenset[tuple[str, str]]] = field(default_factory=dict)
    source: str = ""

    def has(self, system: object, code: object) -> bool:
        cs = self.code_systems.get(system) if isinstance(system, str) else None
        return cs is not None and cs.has(code)

    @property
    def activity_systems(self) -> dict[str, CodeSystem]:
        """Every MedCom activity code system: several .fsh files define activity codes."""
        return {url: cs for url, cs in self.code_systems.items() if "activit" in cs.id.lower()}

    def is_activity(self, system: object, code: object) -> bool:
        if not isinstance(system, str) or not isinstance(code, str):
            return False
        if any(cs.has(code) for url, cs in self.activity_systems.items() if url == system):
            return True
        # value sets of activities (e.g. CareCommunication's) may include codes of other systems
        return any((system, code) in pairs for vs_id, pairs in self.value_sets.items() if "activit" in vs_id.lower())

    def to_json(self) -> dict:
        return {
            "codeSystems": [
                {"url": cs.url, "id": cs.id, "caseSensitive": cs.case_sensitive, "codes": sorted(cs.codes)}
                for cs in self.code_systems.values()
            ],
            "valueSets": {vs: sorted([list(p) for p in pairs]) for vs, pairs in self.value_sets.items()},
        }

    @classmethod
    def from_json(cls, data: dict, source: str = "") -> Terminology:
        systems = {
            c["url"]: CodeSystem(c["url"], c["id"], c["caseSensitive"], frozenset(c["codes"]))
            for c in data["codeSystems"]
        }
        value_sets = {vs: frozenset((s, c) for s, c in pairs) for vs, pairs in data.get("valueSets", {}).items()}
        return cls(systems, value_sets, source)


_BLOCK = re.compile(r"^(CodeSystem|ValueSet|Instance|Alias|Profile|Extension|Logical|RuleSet|Mapping):\s*(\S+)", re.M)
_CONCEPT = re.compile(r'^\s*\*\s+#("[^"]+"|[^\s"]+)', re.M)
_VS_FROM = re.compile(r'#("[^"]+"|[^\s"]+)\s+from\s+system\s+(\S+)')
_VS_NAMED = re.compile(r"^\*\s+([A-Za-z$][\w$]*)#(\S+)", re.M)


def _parse_fsh(text: str, into_cs: dict[str, dict], into_vs: dict[str, list[tuple[str, str]]]) -> None:
    starts = [(m.start(), m.group(1), m.group(2)) for m in _BLOCK.finditer(text)]
    for i, (pos, kind, name) in enumerate(starts):
        body = text[pos : starts[i + 1][0] if i + 1 < len(starts) else len(text)]
        ident = re.search(r"^Id:\s*(\S+)", body, re.M)
        block_id = ident.group(1) if ident else name
        if kind == "CodeSystem":
            url = re.search(r'^\*\s+\^url\s*=\s*"([^"]+)"', body, re.M)
            case = re.search(r"^\*\s+\^caseSensitive\s*=\s*(true|false)", body, re.M)
            into_cs[block_id] = {
                "name": name,
                "id": block_id,
                "url": url.group(1) if url else MEDCOM_CS_BASE + block_id,
                "caseSensitive": bool(case and case.group(1) == "true"),
                "codes": [c.strip('"') for c in _CONCEPT.findall(body)],
            }
        elif kind == "ValueSet":
            pairs: list[tuple[str, str]] = []
            # `* exclude ...` lines take codes out; only includes are of interest here
            included = "\n".join(line for line in body.splitlines() if not line.lstrip("* ").startswith("exclude"))
            for code, system in _VS_FROM.findall(included):
                pairs.append((system, code.strip('"')))
            for system_name, code in _VS_NAMED.findall(body):
                pairs.append((system_name, code.strip('"')))
            compose_system = None
            for line in body.splitlines():
                m = re.search(r'\^compose\.include\[[+=]\]\.system\s*=\s*"([^"]+)"', line)
                if m:
                    compose_system = m.group(1)
                m = re.search(r"\^compose\.include\[=\]\.concept\[\+\]\.code\s*=\s*#(\S+)", line)
                if m and compose_system:
                    pairs.append((compose_system, m.group(1)))
            into_vs[block_id] = pairs


def parse_folder(folder: Path) -> Terminology:
    raw_cs: dict[str, dict] = {}
    raw_vs: dict[str, list[tuple[str, str]]] = {}
    for path in sorted(folder.glob("*.fsh")):
        _parse_fsh(path.read_text(encoding="utf-8"), raw_cs, raw_vs)
    by_name = {c["name"]: c["url"] for c in raw_cs.values()} | {c["id"]: c["url"] for c in raw_cs.values()}
    systems = {}
    for c in raw_cs.values():
        codes = c["codes"] if c["caseSensitive"] else [code.lower() for code in c["codes"]]
        systems[c["url"]] = CodeSystem(c["url"], c["id"], c["caseSensitive"], frozenset(codes))
    value_sets = {}
    for vs_id, pairs in raw_vs.items():
        resolved = set()
        for system, code in pairs:
            url = by_name.get(system, system)
            if url.startswith("http") or url.startswith("urn:"):
                resolved.add((url, code))
        value_sets[vs_id] = frozenset(resolved)
    return Terminology(systems, value_sets, source=str(folder))


@lru_cache(maxsize=8)
def load_terminology(folder: Path | None) -> Terminology:
    """The MedCom terminology of `folder`, or the packaged snapshot when it has no .fsh files."""
    if folder is not None and folder.is_dir() and any(folder.glob("*.fsh")):
        return parse_folder(folder)
    return Terminology.from_json(json.loads(_PACKAGED.read_text(encoding="utf-8")), source=str(_PACKAGED))


def get_terminology() -> Terminology:
    from careflow.settings import get_settings

    return load_terminology(get_settings().medcom_terminology_dir)


def main() -> None:
    """Refresh the packaged snapshot from the settings' terminology folder."""
    from careflow.settings import get_settings

    terminology = parse_folder(get_settings().medcom_terminology_dir)
    _PACKAGED.write_text(json.dumps(terminology.to_json(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {_PACKAGED} ({len(terminology.code_systems)} code systems)")


if __name__ == "__main__":
    main()


# careflow's tag on the MessageHeaders it builds: which pathway the message belongs to.
CAREFLOW_PATHWAY_TAG_SYSTEM = "https://careflow.dk/fhir/CodeSystem/careflow-pathways"
