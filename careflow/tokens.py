"""Standard bearer tokens: JWTs from an identity provider, verified against its JWKS (RS256/ES256),
issuer and audience checked, lifetimes bounded; role and organisation (SOR) from configurable claims.

In dev, careflow is its own identity provider: a local EC key in the data dir (`dev_issuer`), made
only by `careflow dev`, `careflow token` in dev mode and the tests. Its key ids start with
`careflow-dev-`, and a JWKS holding one is refused outside dev mode.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from careflow.auth import InvalidToken, Principal, Role

if TYPE_CHECKING:
    from careflow.settings import Settings

ALGORITHMS = ("RS256", "ES256")
DEV_ISSUER = "careflow-dev"
DEV_AUDIENCE = "careflow"
DEV_KID_PREFIX = "careflow-dev-"
DEV_KEY_FILE = "dev-signing-key.pem"
DEV_JWKS_FILE = "dev-jwks.json"
# Highest first: a token naming several careflow roles acts as the highest of them.
ROLE_ORDER = (Role.ADMIN, Role.COORDINATOR, Role.CLINICIAN, Role.PARTNER)


@dataclass(frozen=True)
class TokenPolicy:
    """What a valid token must be (from Settings: CAREFLOW_JWT_*)."""

    issuer: str
    audience: str
    max_lifetime: timedelta
    role_claim: str = "roles"
    sor_claim: str = "sor"
    role_prefix: str = ""
    leeway: timedelta = timedelta(seconds=30)


def _claim(claims: dict[str, Any], path: str) -> Any:
    """A claim by name, or by dotted path into nested claims (e.g. Keycloak's `realm_access.roles`)."""
    if path in claims:
        return claims[path]
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


JWKS_LIFESPAN = 300  # seconds a JWKS fetched from a URL is used before it is fetched again


class NotAtHand(Exception):
    """The key must be fetched first (a JWKS URL whose cached set does not have it, or is too old)."""


class JwksKeys:
    """Verification keys by key id, from a JWKS file (re-read when it changes) or URL (cached)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._client = (
            jwt.PyJWKClient(source, cache_keys=True, lifespan=JWKS_LIFESPAN, timeout=10)
            if source.startswith(("https://", "http://"))
            else None
        )
        self._mtime: float | None = None
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched: dict[str, tuple[jwt.PyJWK, float]] = {}  # URL keys by id, with when they were fetched

    def key_ids(self) -> list[str]:
        if self._client is not None:
            return [k.key_id for k in self._client.get_signing_keys() if k.key_id]
        self._reload()
        return list(self._keys)

    def _reload(self) -> None:
        path = Path(self.source)
        mtime = path.stat().st_mtime
        if mtime != self._mtime:
            keys = jwt.PyJWKSet.from_dict(json.loads(path.read_text())).keys
            self._keys = {k.key_id: k for k in keys if k.key_id}
            self._mtime = mtime

    def get(self, kid: str) -> jwt.PyJWK | None:
        """The key, fetching the JWKS when it comes from a URL and the cached set is stale."""
        if self._client is not None:
            try:
                key = self._client.get_signing_key(kid)
            except jwt.PyJWKClientError:
                return None
            self._fetched[kid] = (key, time.monotonic())
            return key
        self._reload()
        return self._keys.get(kid)

    def at_hand(self, kid: str) -> jwt.PyJWK | None:
        """The key without network I/O (a JWKS file is a stat away; a URL's keys as fetched within
        JWKS_LIFESPAN), or NotAtHand: then `get` fetches it."""
        if self._client is None:
            return self.get(kid)
        key, fetched = self._fetched.get(kid, (None, 0.0))
        if key is None or time.monotonic() - fetched > JWKS_LIFESPAN:
            raise NotAtHand(kid)
        return key


VERIFIED_KEPT = 1024  # tokens whose signature was checked, kept with their principal (per process)


class TokenVerifier:
    """Verifies bearer tokens. A partner or a user sends the same token with every request until it
    expires, and the signature check (ECDSA or RSA) is most of a verification's cost: a token that
    verified is remembered, with the key that verified it, until it expires. It is verified again
    when that key is no longer the one its key id names (the JWKS file changed, a URL's keys were
    fetched anew or left the cache), and at most VERIFIED_KEPT tokens are remembered (the oldest
    are forgotten first)."""

    def __init__(self, keys: JwksKeys, policy: TokenPolicy, *, accept_dev_keys: bool = False) -> None:
        self.keys, self.policy, self.accept_dev_keys = keys, policy, accept_dev_keys
        self._verified: dict[str, tuple[Principal, jwt.PyJWK]] = {}
        self._lock = threading.Lock()  # `verify` runs in threads, `verify_at_hand` on the event loop

    def verify(self, token: str) -> Principal:
        """The token's principal, or InvalidToken. May fetch the identity provider's keys."""
        return self._verify(token, self.keys.get)

    def verify_at_hand(self, token: str) -> Principal | None:
        """The same without network I/O, for the event loop; None when the key must be fetched first
        (then `verify`, in a thread)."""
        try:
            return self._verify(token, self.keys.at_hand)
        except NotAtHand:
            return None

    def _verify(self, token: str, lookup: Callable[[str], jwt.PyJWK | None]) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except (jwt.PyJWTError, ValueError, TypeError):
            raise InvalidToken("malformed token") from None
        algorithm, kid = header.get("alg"), header.get("kid")
        if algorithm not in ALGORITHMS:
            raise InvalidToken(f"algorithm {algorithm!r} not accepted (RS256 or ES256)")
        if isinstance(kid, str) and kid.startswith(DEV_KID_PREFIX) and not self.accept_dev_keys:
            raise InvalidToken("signed by a dev key (refused outside dev mode)")
        key = lookup(kid) if isinstance(kid, str) else None
        if key is None:
            raise InvalidToken("signed by an unknown key")
        with self._lock:
            known = self._verified.get(token)
        if known is not None:
            principal, verified_by = known
            if verified_by is key and time.time() <= principal.expires_at + self.policy.leeway.total_seconds():
                return principal
        principal = self._principal(self._claims(token, key, algorithm))
        with self._lock:
            self._verified.pop(token, None)
            while len(self._verified) >= VERIFIED_KEPT:
                del self._verified[next(iter(self._verified))]
            self._verified[token] = (principal, key)
        return principal

    def _claims(self, token: str, key: jwt.PyJWK, algorithm: str) -> dict[str, Any]:
        """The token's claims once its signature, issuer, audience and lifetime are checked."""
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[algorithm],
                audience=self.policy.audience,
                issuer=self.policy.issuer,
                leeway=self.policy.leeway,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("token expired") from None
        except jwt.InvalidAudienceError:
            raise InvalidToken("token is for another audience") from None
        except jwt.InvalidIssuerError:
            raise InvalidToken("token from another issuer") from None
        except jwt.InvalidSignatureError:
            raise InvalidToken("bad signature") from None
        except (jwt.PyJWTError, ValueError, TypeError):
            raise InvalidToken("malformed token") from None
        return claims

    def _principal(self, claims: dict[str, Any]) -> Principal:
        exp, iat = claims["exp"], claims["iat"]
        if not isinstance(exp, (int, float)) or not isinstance(iat, (int, float)):
            raise InvalidToken("malformed token")
        if exp - iat > self.policy.max_lifetime.total_seconds():
            raise InvalidToken(f"token lifetime longer than {int(self.policy.max_lifetime.total_seconds())} s")
        raw_roles = _claim(claims, self.policy.role_claim)
        names = (
            {raw_roles}
            if isinstance(raw_roles, str)
            else {r for r in raw_roles if isinstance(r, str)}
            if isinstance(raw_roles, list)
            else set()
        )
        prefix = self.policy.role_prefix
        wanted = {n[len(prefix) :] for n in names if n.startswith(prefix)}
        role = next((r for r in ROLE_ORDER if r.value in wanted), None)
        if role is None:
            raise InvalidToken("the token names no careflow role")
        sor = _claim(claims, self.policy.sor_claim)
        organisations = (
            [sor] if isinstance(sor, str) else [s for s in sor if isinstance(s, str)] if isinstance(sor, list) else []
        )
        if role in (Role.PARTNER, Role.CLINICIAN) and (len(organisations) != 1 or organisations[0] == "*"):
            # A partner is one organisation; a clinician acts for one (refers from it, sees its pathways).
            raise InvalidToken(f"a {role.value} token must carry exactly one organisation (SOR)")
        subject = claims["sub"]
        if not isinstance(subject, str) or not subject or len(subject) > 200:
            raise InvalidToken("malformed subject")
        return Principal(
            subject=subject,
            role=role,
            sor=organisations[0] if organisations else None,
            organisations=organisations,
            expires_at=int(exp),
        )


def verifier_from_settings(settings: Settings) -> TokenVerifier:
    """The API's verifier: the configured identity provider, or in dev careflow's own dev key."""
    jwks, issuer, audience = settings.jwks.strip(), settings.jwt_issuer, settings.jwt_audience
    if settings.is_dev:
        if not jwks:
            dev_issuer(settings.data_dir, create=True)
            jwks = str(dev_jwks_path(settings.data_dir))
        issuer, audience = issuer or DEV_ISSUER, audience or DEV_AUDIENCE
    keys = JwksKeys(jwks)
    if not settings.is_dev and keys._client is None and any(kid.startswith(DEV_KID_PREFIX) for kid in keys.key_ids()):
        from careflow.settings import UnsafeConfiguration

        raise UnsafeConfiguration(f"CAREFLOW_JWKS ({jwks}) holds careflow's dev key: refused outside dev mode")
    policy = TokenPolicy(
        issuer=issuer,
        audience=audience,
        max_lifetime=settings.token_max_lifetime,
        role_claim=settings.jwt_role_claim,
        sor_claim=settings.jwt_sor_claim,
        role_prefix=settings.jwt_role_prefix,
    )
    return TokenVerifier(keys, policy, accept_dev_keys=settings.is_dev)


# ----- the dev identity provider ------------------------------------------------------------


class DevIssuer:
    """Signs dev tokens with the local key (ES256), in the shape the dev verifier expects."""

    def __init__(self, private_key: ec.EllipticCurvePrivateKey, kid: str) -> None:
        self.private_key, self.kid = private_key, kid

    def issue(
        self,
        role: Role,
        *,
        sor: str | None = None,
        subject: str | None = None,
        ttl: timedelta = timedelta(hours=1),
        issuer: str = DEV_ISSUER,
        audience: str = DEV_AUDIENCE,
    ) -> str:
        if role in (Role.PARTNER, Role.CLINICIAN) and not sor:
            raise ValueError(f"a {role.value} token must carry the organisation's SOR code")
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": issuer,
            "aud": audience,
            "sub": subject or f"dev-{role.value}",
            "iat": now,
            "nbf": now,
            "exp": now + int(ttl.total_seconds()),
            "jti": str(uuid.uuid4()),
            "roles": [role.value],
        }
        if sor:
            claims["sor"] = sor
        return jwt.encode(claims, self.private_key, algorithm="ES256", headers={"kid": self.kid})


def dev_jwks_path(data_dir: Path) -> Path:
    return Path(data_dir) / DEV_JWKS_FILE


def dev_issuer(data_dir: Path, *, create: bool) -> DevIssuer:
    """The dev signing key in `data_dir` (made when `create`), its public JWKS written beside it."""
    key_path = Path(data_dir) / DEV_KEY_FILE
    if not key_path.exists():
        if not create:
            raise FileNotFoundError(
                f"no dev signing key in {data_dir}: start `careflow dev` first (outside dev, tokens come from your "
                "identity provider)"
            )
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        tmp = key_path.with_suffix(f".{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(pem)
        try:
            os.link(tmp, key_path)  # first writer wins when several processes start at once
        except FileExistsError:
            pass
        tmp.unlink()
    private_key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    assert isinstance(private_key, ec.EllipticCurvePrivateKey)
    public = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private_key.public_key()))
    kid = (
        DEV_KID_PREFIX
        + jwt.utils.base64url_encode(
            private_key.public_key().public_bytes(
                serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint
            )
        ).decode()[:16]
    )
    jwks_path = dev_jwks_path(data_dir)
    document = json.dumps({"keys": [{**public, "kid": kid, "use": "sig", "alg": "ES256"}]}, indent=2)
    if not jwks_path.exists() or jwks_path.read_text() != document:
        tmp = jwks_path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(document)
        tmp.replace(jwks_path)
    return DevIssuer(private_key, kid)


# ----- partner tokens for the simulated partners ---------------------------------------------

PARTNER_TOKENS_FILE = "simulator-tokens.json"


def write_partner_tokens(path: Path, issuer: DevIssuer, sors: list[str], ttl: timedelta = timedelta(hours=1)) -> None:
    """Tokens for the simulated partners, one per SOR, as a file the simulator reads: it is handed
    tokens, never the key (`careflow dev` rewrites the file well before they expire)."""
    document = {sor: issuer.issue(Role.PARTNER, sor=sor, subject=f"simulator-{sor}", ttl=ttl) for sor in sors}
    tmp = Path(path).with_suffix(f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(document, out)
    tmp.replace(path)


class PartnerTokenFile:
    """The simulator's side: the token for a SOR, from the file (re-read when it changes)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._mtime: float | None = None
        self._tokens: dict[str, str] = {}

    def __call__(self, sor: str) -> str:
        try:
            mtime = self.path.stat().st_mtime
            if mtime != self._mtime:
                self._tokens, self._mtime = json.loads(self.path.read_text()), mtime
        except (OSError, ValueError):
            raise LookupError(f"no readable partner tokens at {self.path}") from None
        if sor not in self._tokens:
            raise LookupError(f"no partner token for SOR {sor} in {self.path}")
        return self._tokens[sor]
