"""Danish identifier systems (CPR, replacement CPR, SOR, EAN/GLN) and their format checks."""

from __future__ import annotations

import re

CPR_SYSTEM = "urn:oid:1.2.208.176.1.2"
# Replacement CPR ("erstatnings-CPR") is issued per region/authority under this arc,
# e.g. urn:oid:1.2.208.176.1.6.1.1 in MedCom's own examples.
REPLACEMENT_CPR_PREFIX = "urn:oid:1.2.208.176.1.6.1."
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
_REPLACEMENT_SYSTEM = re.compile(re.escape(REPLACEMENT_CPR_PREFIX) + r"\d+")
_SOR = re.compile(r"\d{6,18}")
_GLN = re.compile(r"\d{13}")


def _valid_day_month(value: str) -> bool:
    day, month = int(value[0:2]), int(value[2:4])
    return 1 <= day <= 31 and 1 <= month <= 12


def is_valid_cpr(value: object) -> bool:
    """10 digits, DDMMYY + 4; day 01-31 and month 01-12 (modulus 11 was dropped in 2007)."""
    return isinstance(value, str) and _CPR.fullmatch(value) is not None and _valid_day_month(value)


def is_replacement_cpr_system(system: object) -> bool:
    return isinstance(system, str) and _REPLACEMENT_SYSTEM.fullmatch(system) is not None


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
    return isinstance(value, str) and _GLN.fullmatch(value) is not None and gln_check_digit(value[:12]) == int(value[12])
