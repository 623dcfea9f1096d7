"""Danish identifier systems (CPR, replacement CPR, SOR, EAN/GLN) and their format checks."""

from __future__ import annotations

import re

CPR_SYSTEM = "urn:oid:1.2.208.176.1.2"
# Replacement CPR ("erstatnings-CPR") is issued per authority under this arc, and by the regions
# under deeper arcs of it: X-eCPR .1, D-eCPR .3, and regional D-eCPR issuers .3.177 and on (DK-core).
REPLACEMENT_CPR_ARC = "urn:oid:1.2.208.176.1.6.1"
REPLACEMENT_CPR_PREFIX = REPLACEMENT_CPR_ARC + "."
# The issuers named in DK-core; any other numeric arc under REPLACEMENT_CPR_ARC is accepted too,
# since a new regional issuer must not make its patients' messages unreadable.
REPLACEMENT_CPR_ISSUERS: dict[str, str] = {
    REPLACEMENT_CPR_PREFIX + "1": "X-eCPR (national)",
    REPLACEMENT_CPR_PREFIX + "3": "D-eCPR",
    REPLACEMENT_CPR_PREFIX + "3.177": "D-eCPR Region Sjælland",
    REPLACEMENT_CPR_PREFIX + "3.179": "D-eCPR Region Nordjylland",
    REPLACEMENT_CPR_PREFIX + "3.181": "D-eCPR Region Midtjylland",
    REPLACEMENT_CPR_PREFIX + "3.183": "D-eCPR Region Syddanmark",
    REPLACEMENT_CPR_PREFIX + "3.187": "D-eCPR Region Hovedstaden",
}
SOR_SYSTEM = "urn:oid:1.2.208.176.1.1"
# MedCom messaging uses https; the newer DK-core uses http. Both mean the same GS1 GLN.
GLN_SYSTEMS = ("https://www.gs1.org/gln", "http://www.gs1.org/gln")
GLN_SYSTEM = GLN_SYSTEMS[0]
# The SOR register's public lookup; MedCom examples use it as MessageHeader endpoint.
SOR_ENDPOINT_PREFIX = "https://sor2.sum.dsdn.dk/#id="
# Plain URIs such as urn:uuid:... as identifier values.
URI_SYSTEM = "urn:ietf:rfc:3986"

_CPR = re.compile(r"\d{10}")
_REPLACEMENT_CPR = re.compile(r"\d{6}[0-9A-Z]{4}")
# one or more arcs below the replacement-CPR arc; OID arcs have no leading zeros
_REPLACEMENT_SYSTEM = re.compile(re.escape(REPLACEMENT_CPR_ARC) + r"(?:\.(?:0|[1-9]\d*))+")
_SOR = re.compile(r"\d{6,18}")
_GLN = re.compile(r"\d{13}")


def _valid_day_month(value: str) -> bool:
    day, month = int(value[0:2]), int(value[2:4])
    return 1 <= day <= 31 and 1 <= month <= 12


def is_valid_cpr(value: object) -> bool:
    """10 digits, DDMMYY + 4; day 01-31 and month 01-12 (modulus 11 was dropped in 2007)."""
    return isinstance(value, str) and _CPR.fullmatch(value) is not None and _valid_day_month(value)


def is_replacement_cpr_system(system: object) -> bool:
    """A replacement-CPR issuer: any arc (and sub-arc) under urn:oid:1.2.208.176.1.6.1."""
    return isinstance(system, str) and _REPLACEMENT_SYSTEM.fullmatch(system) is not None


def replacement_cpr_issuer(system: object) -> str | None:
    """The issuer's name for a known replacement-CPR system, "replacement CPR" for an unnamed
    arc under the replacement arc, None for anything else."""
    if not is_replacement_cpr_system(system):
        return None
    return REPLACEMENT_CPR_ISSUERS.get(system, "replacement CPR")  # type: ignore[arg-type]


def is_valid_replacement_cpr(value: object) -> bool:
    """DDMMYY + four letters/digits, as in MedCom's examples (e.g. 0703921VJ4)."""
    return isinstance(value, str) and _REPLACEMENT_CPR.fullmatch(value) is not None and _valid_day_month(value)


def is_valid_sor(value: object) -> bool:
    return isinstance(value, str) and _SOR.fullmatch(value) is not None


def gln_check_digit(first12: str) -> int:
    """GS1 mod-10: weights 3,1,3,... from the right of the 12 data digits."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(first12)))
    return (10 - total % 10) % 10


def is_valid_gln(value: object) -> bool:
    return (
        isinstance(value, str) and _GLN.fullmatch(value) is not None and gln_check_digit(value[:12]) == int(value[12])
    )
