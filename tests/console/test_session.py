"""The console's session cookie signing and CSRF check, without a server."""

from __future__ import annotations

import time

import pytest

from api.console.session import ConsoleSession, csrf_valid, decode_flash, encode_flash, sign, unsign
from api.console.web import safe_next

SECRET = "test-secret"


def test_signed_payload_round_trips() -> None:
    exp = int(time.time()) + 60
    assert unsign(SECRET, "session", sign(SECRET, "session", {"a": 1, "exp": exp})) == {"a": 1, "exp": exp}


@pytest.mark.parametrize(
    "tamper",
    [
        lambda v: v[:-2] + ("AA" if not v.endswith("AA") else "BB"),  # signature changed
        lambda v: "e30" + v[3:],  # body changed
        lambda v: v.replace(".", ""),  # no signature
        lambda v: "",
        lambda v: "x.y.z",
    ],
)
def test_tampered_values_are_refused(tamper) -> None:  # noqa: ANN001
    value = sign(SECRET, "session", {"exp": int(time.time()) + 60})
    assert unsign(SECRET, "session", tamper(value)) is None


def test_other_secret_or_purpose_is_refused() -> None:
    value = sign(SECRET, "session", {"exp": int(time.time()) + 60})
    assert unsign("another-secret", "session", value) is None
    # A flash cookie can never pass as a session, nor the other way round.
    assert unsign(SECRET, "flash", value) is None


def test_expired_value_is_refused() -> None:
    assert unsign(SECRET, "session", sign(SECRET, "session", {"exp": int(time.time()) - 1})) is None
    assert unsign(SECRET, "session", sign(SECRET, "session", {"no": "expiry"})) is None


def test_session_round_trip_and_expiry_bounded_by_token() -> None:
    soon = int(time.time()) + 120
    session = ConsoleSession.login("coordinator-1", "coordinator", token_expires_at=soon)
    assert session.exp == soon  # never outlives the token it was made from
    decoded = ConsoleSession.decode(SECRET, session.encode(SECRET))
    assert decoded == session and decoded.authenticated
    later = ConsoleSession.login("coordinator-1", "coordinator", token_expires_at=int(time.time()) + 10 * 86400)
    assert later.exp <= int(time.time()) + 8 * 3600


def test_login_gets_a_fresh_csrf_token() -> None:
    anonymous = ConsoleSession.anonymous()
    assert not anonymous.authenticated
    session = ConsoleSession.login("coordinator-1", "coordinator", int(time.time()) + 60)
    assert session.csrf != anonymous.csrf and len(session.csrf) >= 32


def test_role_cannot_be_altered_without_the_key() -> None:
    session = ConsoleSession.login("partner-1", "partner", int(time.time()) + 60)
    body, signature = session.encode(SECRET).split(".")
    forged = sign(
        "guessed-secret", "session", {"csrf": session.csrf, "exp": session.exp, "sub": "partner-1", "role": "admin"}
    )
    assert ConsoleSession.decode(SECRET, forged) is None
    assert ConsoleSession.decode(SECRET, f"{forged.split('.')[0]}.{signature}") is None


def test_csrf_check() -> None:
    session = ConsoleSession.login("coordinator-1", "coordinator", int(time.time()) + 60)
    assert csrf_valid(session, session.csrf)
    assert not csrf_valid(session, None)
    assert not csrf_valid(session, "")
    assert not csrf_valid(session, session.csrf + "x")
    assert not csrf_valid(session, ConsoleSession.anonymous().csrf)
    assert not csrf_valid(None, session.csrf)


def test_flash_round_trip() -> None:
    assert decode_flash(SECRET, encode_flash(SECRET, "error", "refused: the deadline must be in the future")) == (
        "error",
        "refused: the deadline must be in the future",
    )
    assert decode_flash(SECRET, "forged.value") is None


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("/console/flows/abc", "/console/flows/abc"),
        ("https://evil.example/console", "/console/escalations"),
        ("//evil.example/console", "/console/escalations"),
        ("/console\\..\\x", "/console/escalations"),
        ("", "/console/escalations"),
    ],
)
def test_redirects_stay_inside_the_console(url: str, expected: str) -> None:
    assert safe_next(url) == expected


def test_age_is_coarse_and_readable() -> None:
    from api.console.web import age

    assert [age(s) for s in (5, 59, 60, 3599, 7200, 3 * 86400 + 5)] == ["5 s", "59 s", "1 min", "59 min", "2 h", "3 d"]
