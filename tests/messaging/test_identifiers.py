"""Property tests of the identifier checks: CPR day/month, GS1 check digit."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from messaging.identifiers import gln_check_digit, is_valid_cpr, is_valid_gln, is_valid_replacement_cpr

digits = st.text(alphabet="0123456789", min_size=1, max_size=1)


@given(day=st.integers(0, 99), month=st.integers(0, 99), year=st.integers(0, 99), serial=st.integers(0, 9999))
def test_cpr_valid_exactly_when_day_and_month_are(day: int, month: int, year: int, serial: int) -> None:
    cpr = f"{day:02d}{month:02d}{year:02d}{serial:04d}"
    assert is_valid_cpr(cpr) == (1 <= day <= 31 and 1 <= month <= 12)


@given(st.text(max_size=12))
def test_cpr_needs_ten_digits(text: str) -> None:
    if not (len(text) == 10 and text.isascii() and text.isdigit()):
        assert not is_valid_cpr(text)


def test_replacement_cpr_format() -> None:
    assert is_valid_replacement_cpr("0703921VJ4")
    assert not is_valid_replacement_cpr("0713921VJ4")  # month 13
    assert not is_valid_replacement_cpr("0703921vj")


@given(st.text(alphabet="0123456789", min_size=12, max_size=12))
def test_gln_with_its_check_digit_is_valid(first12: str) -> None:
    assert is_valid_gln(first12 + str(gln_check_digit(first12)))


@given(st.text(alphabet="0123456789", min_size=12, max_size=12), st.integers(0, 12), st.integers(1, 9))
def test_changing_any_one_gln_digit_invalidates_it(first12: str, position: int, shift: int) -> None:
    gln = first12 + str(gln_check_digit(first12))
    changed = gln[:position] + str((int(gln[position]) + shift) % 10) + gln[position + 1 :]
    assert changed != gln
    assert not is_valid_gln(changed)


def test_medcom_example_glns_are_valid() -> None:
    assert all(is_valid_gln(g) for g in ("5790001348120", "5790000209354", "5790000127092"))
    assert not is_valid_gln("579000134812")  # 12 digits
