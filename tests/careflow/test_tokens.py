"""JWTs: verified against the JWKS with issuer, audience, lifetime, role and SOR checked; every
forgery is refused. Real keys (EC and RSA), real PyJWT, no mocks."""

from __future__ import annotations

import json
import os
import time
from datetime import timedelta
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from careflow import tokens
from careflow.auth import InvalidToken, Role
from careflow.settings import Settings
from careflow.tokens import (
    DEV_AUDIENCE,
    DEV_ISSUER,
    JwksKeys,
    TokenPolicy,
    TokenVerifier,
    dev_issuer,
    dev_jwks_path,
    verifier_from_settings,
)

ISSUER, AUDIENCE = "https://idp.region.example/realms/health", "careflow-api"


def _jwks(path: Path, *keys: tuple[str, object]) -> str:
    entries = []
    for kid, private in keys:
        algorithm = (
            jwt.algorithms.ECAlgorithm
            if isinstance(private, ec.EllipticCurvePrivateKey)
            else jwt.algorithms.RSAAlgorithm
        )
        entries.append({**json.loads(algorithm.to_jwk(private.public_key())), "kid": kid})  # type: ignore[union-attr]
    path.write_text(json.dumps({"keys": entries}))
    return str(path)


@pytest.fixture
def idp(tmp_path: Path) -> dict:
    """A regional identity provider's keys: one EC, one RSA, both in its JWKS."""
    ec_key, rsa_key = (
        ec.generate_private_key(ec.SECP256R1()),
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
    )
    jwks = _jwks(tmp_path / "jwks.json", ("ec-1", ec_key), ("rsa-1", rsa_key))
    policy = TokenPolicy(
        issuer=ISSUER,
        audience=AUDIENCE,
        max_lifetime=timedelta(hours=1),
        role_claim="realm_access.roles",
        role_prefix="careflow-",
        sor_claim="org_sor",
    )
    return {"ec": ec_key, "rsa": rsa_key, "verifier": TokenVerifier(JwksKeys(jwks), policy)}


def _sign(key: object, kid: str = "ec-1", algorithm: str = "ES256", **changes: object) -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user-17",
        "iat": now,
        "exp": now + 300,
        "realm_access": {"roles": ["careflow-partner", "offline_access"]},
        "org_sor": "200000000000001",
    }
    claims.update(changes)
    return jwt.encode(
        {k: v for k, v in claims.items() if v is not None}, key, algorithm=algorithm, headers={"kid": kid}
    )


def test_a_provider_token_with_configured_claim_names_is_accepted(idp: dict) -> None:
    assert idp["verifier"].verify_at_hand(_sign(idp["ec"])).role is Role.PARTNER  # a JWKS file: always at hand
    for key, kid, algorithm in ((idp["ec"], "ec-1", "ES256"), (idp["rsa"], "rsa-1", "RS256")):
        principal = idp["verifier"].verify(_sign(key, kid, algorithm))
        assert (principal.subject, principal.role, principal.sor) == ("user-17", Role.PARTNER, "200000000000001")


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("expired", "expired"),
        ("wrong-issuer", "another issuer"),
        ("wrong-audience", "another audience"),
        ("wrong-key", "bad signature"),
        ("unknown-kid", "unknown key"),
        ("forged-payload", "bad signature"),
        ("alg-none", "not accepted"),
        ("hs256-with-public-key", "not accepted"),
        ("too-long-lifetime", "lifetime"),
        ("partner-without-sor", "SOR"),
        ("no-careflow-role", "no careflow role"),
        ("no-exp", "malformed"),
        ("garbage", "malformed"),
        ("non-ascii", "malformed"),
    ],
)
def test_forged_and_invalid_tokens_are_refused(idp: dict, case: str, message: str) -> None:
    now = int(time.time())
    other = ec.generate_private_key(ec.SECP256R1())
    token = {
        "expired": lambda: _sign(idp["ec"], iat=now - 7200, exp=now - 3600),
        "wrong-issuer": lambda: _sign(idp["ec"], iss="https://evil.example"),
        "wrong-audience": lambda: _sign(idp["ec"], aud="another-api"),
        "wrong-key": lambda: _sign(other),  # right kid, someone else's key
        "unknown-kid": lambda: _sign(other, kid="attacker"),
        "forged-payload": lambda: _forge(_sign(idp["ec"]), {"realm_access": {"roles": ["careflow-admin"]}}),
        "alg-none": lambda: jwt.encode(
            {"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "iat": now, "exp": now + 60},
            None,
            algorithm="none",
            headers={"kid": "ec-1"},
        ),
        "hs256-with-public-key": lambda: _hs256(now),
        "too-long-lifetime": lambda: _sign(idp["ec"], exp=now + 30 * 86400),
        "partner-without-sor": lambda: _sign(idp["ec"], org_sor=None),
        "no-careflow-role": lambda: _sign(idp["ec"], realm_access={"roles": ["offline_access"]}),
        "no-exp": lambda: _sign(idp["ec"], exp=None),
        "garbage": lambda: "cf1.forged.token",
        "non-ascii": lambda: "eyJæøå.blåbær.grød",
    }[case]()
    with pytest.raises(InvalidToken, match=message):
        idp["verifier"].verify(token)


def _forge(token: str, claims: dict) -> str:
    header, payload, signature = token.split(".")
    body = json.loads(jwt.utils.base64url_decode(payload))
    body.update(claims)
    return ".".join([header, jwt.utils.base64url_encode(json.dumps(body).encode()).decode(), signature])


def _hs256(now: int) -> str:
    # The classic confusion attack: HMAC "signed" with the public key. Built by hand, as PyJWT
    # (rightly) refuses to make it.
    import hashlib
    import hmac

    header = jwt.utils.base64url_encode(json.dumps({"alg": "HS256", "kid": "ec-1", "typ": "JWT"}).encode())
    body = jwt.utils.base64url_encode(
        json.dumps({"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "iat": now, "exp": now + 60}).encode()
    )
    signature = jwt.utils.base64url_encode(hmac.new(b"public key", header + b"." + body, hashlib.sha256).digest())
    return b".".join([header, body, signature]).decode()


def test_admin_and_coordinator_roles_and_several_organisations(idp: dict) -> None:
    coordinator = idp["verifier"].verify(
        _sign(
            idp["ec"], realm_access={"roles": ["careflow-coordinator"]}, org_sor=["100000000000001", "200000000000001"]
        )
    )
    assert coordinator.role is Role.COORDINATOR and coordinator.organisations == ["100000000000001", "200000000000001"]
    admin = idp["verifier"].verify(_sign(idp["ec"], realm_access={"roles": ["careflow-partner", "careflow-admin"]}))
    assert admin.role is Role.ADMIN


def test_dev_key_tokens_and_their_refusal_outside_dev(tmp_path: Path) -> None:
    issuer = dev_issuer(tmp_path, create=True)
    assert (tmp_path / "dev-signing-key.pem").stat().st_mode & 0o077 == 0, "the dev key is private to its owner"
    assert dev_issuer(tmp_path, create=True).kid == issuer.kid, "made once, then reused"
    dev = verifier_from_settings(Settings(env="dev", data_dir=tmp_path))
    assert dev.verify(issuer.issue(Role.PARTNER, sor="200000000000001")).sor == "200000000000001"
    with pytest.raises(ValueError, match="SOR"):
        issuer.issue(Role.PARTNER)
    # A production API pointed at the dev JWKS does not start; tokens signed with a dev key id are refused.
    from careflow.settings import UnsafeConfiguration

    with pytest.raises(UnsafeConfiguration, match="dev key"):
        verifier_from_settings(
            Settings(
                env="production",
                data_dir=tmp_path,
                jwks=str(dev_jwks_path(tmp_path)),
                jwt_issuer=DEV_ISSUER,
                jwt_audience=DEV_AUDIENCE,
            )
        )
    with pytest.raises(FileNotFoundError, match="careflow dev"):
        dev_issuer(tmp_path / "elsewhere", create=False)


def test_a_jwks_served_over_http_is_fetched_and_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The identity provider's JWKS endpoint, as a real HTTP server on loopback."""
    import functools
    import http.server
    import threading

    key = ec.generate_private_key(ec.SECP256R1())
    _jwks(tmp_path / "certs", ("idp-key-1", key))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/certs"
        verifier = TokenVerifier(
            JwksKeys(url), TokenPolicy(issuer=ISSUER, audience=AUDIENCE, max_lifetime=timedelta(hours=1))
        )
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "c-1",
            "iat": now,
            "exp": now + 300,
            "roles": ["coordinator"],
            "sor": ["200000000000001"],
        }
        token = jwt.encode(claims, key, algorithm="ES256", headers={"kid": "idp-key-1"})
        assert verifier.verify_at_hand(token) is None, "the key is not fetched yet: the API verifies in a thread"
        assert verifier.verify(token).role is Role.COORDINATOR
        principal = verifier.verify_at_hand(token)  # fetched: now on the event loop, no I/O
        assert principal is not None and principal.role is Role.COORDINATOR
        with pytest.raises(InvalidToken, match="bad signature"):  # at hand or not, the signature is checked
            verifier.verify_at_hand(
                jwt.encode(
                    claims, ec.generate_private_key(ec.SECP256R1()), algorithm="ES256", headers={"kid": "idp-key-1"}
                )
            )
        with monkeypatch.context() as later:  # past the cache lifetime: fetched again first
            started = time.monotonic()
            later.setattr(tokens.time, "monotonic", lambda: started + tokens.JWKS_LIFESPAN + 1)
            assert verifier.verify_at_hand(token) is None
        with pytest.raises(InvalidToken, match="unknown key"):
            verifier.verify(
                jwt.encode(
                    claims, ec.generate_private_key(ec.SECP256R1()), algorithm="ES256", headers={"kid": "idp-key-2"}
                )
            )
    finally:
        server.shutdown()


def _count_signature_checks(verifier: TokenVerifier, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    checked: list[str] = []
    claims = verifier._claims

    def counting(token: str, key: object, algorithm: str) -> dict:
        checked.append(token)
        return claims(token, key, algorithm)  # type: ignore[arg-type]

    monkeypatch.setattr(verifier, "_claims", counting)
    return checked


def test_a_token_that_verified_is_not_checked_again_until_it_expires(
    idp: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    verifier: TokenVerifier = idp["verifier"]
    checked = _count_signature_checks(verifier, monkeypatch)
    token = _sign(idp["ec"], exp=int(time.time()) + 60)
    first = verifier.verify(token)
    assert verifier.verify(token) == first and verifier.verify_at_hand(token) == first
    assert checked == [token], "one signature check for three requests"
    # Past its expiry and the leeway it is checked again (PyJWT, on its own clock, then refuses it).
    now = time.time()
    monkeypatch.setattr(tokens.time, "time", lambda: now + 60 + 31)
    verifier.verify(token)
    assert checked == [token, token]


def test_a_remembered_token_is_refused_once_its_key_leaves_the_jwks(
    idp: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    verifier: TokenVerifier = idp["verifier"]
    token = _sign(idp["ec"])
    verifier.verify(token)
    # The identity provider rotates: the EC key is gone, another key takes its id.
    replacement = ec.generate_private_key(ec.SECP256R1())
    _jwks(tmp_path / "jwks.json", ("ec-1", replacement))
    os.utime(tmp_path / "jwks.json", (time.time() + 5, time.time() + 5))  # a new mtime, however fast the test
    with pytest.raises(InvalidToken, match="bad signature"):
        verifier.verify(token)
    _jwks(tmp_path / "jwks.json", ("rsa-1", idp["rsa"]))
    os.utime(tmp_path / "jwks.json", (time.time() + 10, time.time() + 10))
    with pytest.raises(InvalidToken, match="unknown key"):
        verifier.verify(token)


def test_remembered_tokens_are_bounded(idp: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokens, "VERIFIED_KEPT", 3)
    verifier: TokenVerifier = idp["verifier"]
    checked = _count_signature_checks(verifier, monkeypatch)
    issued = [_sign(idp["ec"], sub=f"user-{i}") for i in range(5)]
    for token in issued:
        verifier.verify(token)
    assert len(verifier._verified) == 3
    verifier.verify(issued[0])  # forgotten: checked again
    verifier.verify(issued[4])  # remembered
    assert checked == [*issued, issued[0]]
