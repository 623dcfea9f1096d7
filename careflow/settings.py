"""One settings object for every careflow process (env prefix CAREFLOW_)."""

from __future__ import annotations

import base64
import binascii
from datetime import timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

T = TypeVar("T", bound=BaseModel)

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Dev-only secrets, published here: used only when CAREFLOW_ENV is "dev" (which `careflow dev` and
# the tests set), refused everywhere else.
DEV_SESSION_SECRET = "dev-session-secret-not-for-production"
DEV_CODEC_KEYS = "dev1:Y2FyZWZsb3ctZGV2LWtleS1ub3QtZm9yLXByb2QhISE="  # 32 bytes, base64
DEV_CPR_HASH_KEY = "dev-cpr-hash-key-not-for-production"
DEV_SECRETS = {"session_secret": DEV_SESSION_SECRET, "codec_keys": DEV_CODEC_KEYS, "cpr_hash_key": DEV_CPR_HASH_KEY}
# Values that say "fill me in": a secret containing one of them is a placeholder, not a secret.
PLACEHOLDER_WORDS = (
    "change-me",
    "changeme",
    "change_me",
    "placeholder",
    "not-for-prod",
    "replace",
    "example",
    "dummy",
    "secret",
    "password",
    "xxxx",
    "todo",
    "dev-",
)
MIN_SECRET_CHARS = 32
# Which secrets each long-running process needs (the worker and simulator hold no token material).
PROCESS_SECRETS = {
    "api": ("session_secret", "codec_keys", "cpr_hash_key"),
    "worker": ("codec_keys",),
    "audit": ("cpr_hash_key",),
    "keys": ("codec_keys",),
}


class UnsafeConfiguration(Exception):
    """A start outside dev mode with a missing, placeholder or too-short secret; names the variables."""


# careflow's own pathways beside the referral (workflows/registry.py BUILT_IN), one module each: the
# MedCom pathways. Names only: settings import nothing of careflow's own.


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CAREFLOW_", env_nested_delimiter="__")

    # "dev" only for `careflow dev` and the tests; anything else (unset too) is production.
    env: str = "production"
    data_dir: Path = PROJECT_ROOT / "data"
    database_url: str = ""  # empty: SQLite file under data_dir

    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    temporal_ui_port: int = 8233
    # TLS to Temporal (a cluster outside this machine): CA for a private PKI; cert + key for mTLS.
    temporal_tls: bool = False
    temporal_tls_ca: Path | None = None
    temporal_tls_cert: Path | None = None
    temporal_tls_key: Path | None = None
    temporal_tls_server_name: str = ""
    task_queue: str = "careflow"

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    public_url: str = "http://127.0.0.1:8000"
    # Comma-separated proxy addresses whose X-Forwarded-Proto/For are believed (HSTS and Secure
    # cookies behind a TLS-terminating proxy); none by default.
    trusted_proxies: str = ""
    # Browser origins allowed to call /codec (the Temporal UI); empty: the local dev UI's.
    temporal_ui_origins: str = ""
    # SHA-256 (hex) of the per-run codec credential `careflow dev` gives its Temporal UI (api/routes/
    # codec.py, DevUiCodecCredential); dev only: set outside dev, the API refuses to start.
    codec_ui_credential_sha256: str = ""
    max_message_bytes: int = 5 * 1024 * 1024  # an inbound MedCom message
    max_codec_bytes: int = 4 * 1024 * 1024  # a batch of Temporal payloads to encode or decode
    simulator_host: str = "127.0.0.1"
    simulator_tokens_file: Path | None = None  # the simulated partners' tokens; default data_dir/simulator-tokens.json
    simulator_port: int = 8100

    # Bearer tokens: JWTs from the identity provider (careflow.tokens). Empty in dev: careflow's own
    # dev key in data_dir.
    jwks: str = ""  # path of a JWKS file, or its https URL
    jwt_issuer: str = ""
    jwt_audience: str = ""
    jwt_role_claim: str = "roles"  # a name, or a dotted path such as realm_access.roles
    jwt_role_prefix: str = ""  # e.g. "careflow-" when the provider's roles are careflow-coordinator, …
    jwt_sor_claim: str = "sor"
    token_max_lifetime: timedelta = timedelta(hours=1)
    # Secrets: empty means unset; in dev mode the published dev values fill them in.
    session_secret: str = ""  # signs the console's session cookie
    # "kid:base64key,kid:base64key"; the first is used to encrypt, all can decrypt.
    codec_keys: str = ""
    cpr_hash_key: str = ""

    directory_path: Path = PROJECT_ROOT / "messaging" / "data" / "demo-directory.json"
    # "vans" or "process-message": every directory entry with an endpoint for it uses that transport,
    # whatever its own says (`careflow dev --transport vans`, the e2e tests over VANS); "": each its own.
    partner_transport: Literal["", "process-message", "vans"] = ""
    # The largest VANSEnvelope careflow takes in (MedCom allows 100 MB wrapped; a deployment may say less).
    max_envelope_bytes: int = 20 * 1024 * 1024
    medcom_examples_dir: Path = PROJECT_ROOT.parent / "shared" / "medcom-examples"
    medcom_terminology_dir: Path = PROJECT_ROOT.parent / "shared" / "medcom-terminology"

    # Per-pathway timing overrides, merged over each pathway's own defaults: any field of its
    # timings model, e.g. CAREFLOW_PATHWAYS__REFERRAL__ACK_TIMEOUT=PT1M; a hyphenated name takes
    # underscores (CAREFLOW_PATHWAYS__LAB_ORDER__RESULT_DEADLINE=P3D).
    pathways: dict[str, dict[str, Any]] = Field(default_factory=dict)
    # Modules with more pathway declarations than the built-in ones (JSON list in the environment).
    pathway_modules: list[str] = Field(default_factory=list)
    # Legal deadline rules (careflow.deadlines): a JSON rule book with every version; empty: the
    # rules careflow ships. A new version applies to pathways started from its valid_from day.
    deadline_rules_path: Path | None = None

    # Outbound HTTP to partner systems
    send_timeout: timedelta = timedelta(seconds=10)
    # Requests to one partner endpoint at once, per process; more wait their turn (careflow/httpclient.py).
    http_in_flight: int = Field(default=8, ge=1)
    relay_interval: timedelta = timedelta(seconds=2)
    reconcile_interval: timedelta = timedelta(minutes=1)
    # The worker's memory knob: at most this many workflows kept in memory (≈ 140 KB each, sandboxed;
    # docs/capacity.md). Keep it above the pathways in flight at once (a reply or deadline being
    # worked on): below that, evicted workflows replay and throughput falls by two thirds. A pathway
    # waiting days for a reply need not be cached: it replays its few dozen events when woken.
    # 500 keeps the worker's memory flat from 1,000 to 10,000 open pathways (issue 12; a cache of
    # 1,000 has not yet turned over at 1,000 open, and RSS still rises 10 % past it) and is above
    # the 300 pathways the throughput benchmark has in flight at saturation.
    max_cached_workflows: int = Field(default=500, ge=1)
    # Collections of the youngest generation every this many allocations (Python's default: 700;
    # 0 keeps it). careflow/heap.py says why larger; benchmarks/RESULTS.md (round 6) what it saves.
    gc_young_threshold: int = Field(default=10_000, ge=0)

    # Operations (README "Running in production"). The API migrates at start unless told not to:
    # a deployment runs `careflow setup` once instead, before API and workers.
    migrate_on_start: bool = True
    metrics_host: str = "127.0.0.1"
    worker_metrics_port: int = 0  # careflow's worker metrics (Prometheus); 0: not served
    temporal_metrics_port: int = 0  # the Temporal SDK's runtime metrics of the worker; 0: not served
    otlp_endpoint: str = ""  # OTLP/HTTP collector for traces, e.g. http://otel-collector:4318; empty: no tracing
    log_format: str = "text"  # "json": one JSON object per line, with trace and span ids
    # /readyz: a worker that has not polled for this long is gone (idle workers long-poll ~1 min);
    # an inbound message undelivered for this long means the relay is not keeping up.
    worker_stale_after: timedelta = timedelta(minutes=2, seconds=30)
    relay_backlog_threshold: timedelta = timedelta(minutes=1)

    # Fault-injection hook for tests/faults: the API exits (os._exit) with this probability right
    # after storing an inbound message and before delivering it. Honoured only when env == "dev".
    test_crash_after_store_ratio: float = 0.0

    @model_validator(mode="after")
    def _dev_defaults(self) -> Settings:
        if self.is_dev:
            for name, value in DEV_SECRETS.items():
                if not getattr(self, name):
                    setattr(self, name, value)
        return self

    @property
    def is_dev(self) -> bool:
        return self.env == "dev"

    def refuse_unsafe(self, process: str) -> None:
        """Stop a production start whose secrets or identity provider are missing or not real."""
        if self.is_dev:
            return
        problems = [p for name in PROCESS_SECRETS.get(process, ()) if (p := _secret_problem(name, getattr(self, name)))]
        if process == "api":
            for name in ("jwks", "jwt_issuer", "jwt_audience"):
                if not getattr(self, name).strip():
                    problems.append(
                        f"CAREFLOW_{name.upper()} is not set (the identity provider's {name.removeprefix('jwt_')})"
                    )
            if self.jwt_issuer == "careflow-dev":
                problems.append("CAREFLOW_JWT_ISSUER is careflow's dev issuer")
            if self.codec_ui_credential_sha256.strip():
                problems.append(
                    "CAREFLOW_CODEC_UI_CREDENTIAL_SHA256 is the dev Temporal UI's codec credential "
                    "(dev only; a deployment's UI passes its OIDC access token)"
                )
            if self.jwks.strip().startswith("http://"):
                problems.append("CAREFLOW_JWKS must be an https URL (or a file): keys fetched in clear can be swapped")
        if problems:
            raise UnsafeConfiguration(
                f"careflow {process} refuses to start outside dev mode (CAREFLOW_ENV={self.env or '(unset)'}): "
                + "; ".join(problems)
            )

    @property
    def codec_cors_origins(self) -> list[str]:
        if self.temporal_ui_origins.strip():
            return [o.strip() for o in self.temporal_ui_origins.split(",") if o.strip()]
        return [f"http://127.0.0.1:{self.temporal_ui_port}", f"http://localhost:{self.temporal_ui_port}"]

    @property
    def proxies(self) -> list[str]:
        return [p.strip() for p in self.trusted_proxies.split(",") if p.strip()]

    @property
    def sqlalchemy_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'careflow.db'}"

    def timings(self, pathway: str, model: type[T]) -> T:
        """A pathway's timings: its model's defaults with this deployment's overrides."""
        overrides: dict[str, Any] = {}
        for key in {pathway, pathway.lower(), pathway.replace("-", "_").lower()}:
            overrides.update(self.pathways.get(key, {}))
        unknown = sorted(set(overrides) - set(model.model_fields))
        if unknown:
            raise ValueError(
                f"CAREFLOW_PATHWAYS__{pathway.replace('-', '_').upper()}__…: {model.__name__} has no timing "
                f"{', '.join(unknown)} (it has {', '.join(model.model_fields)})"
            )
        try:
            return model.model_validate(overrides)
        except ValidationError as err:
            fields = ", ".join(".".join(str(p) for p in e["loc"]) for e in err.errors())
            raise ValueError(
                f"CAREFLOW_PATHWAYS__{pathway.replace('-', '_').upper()}__…: invalid {fields}: {err.errors()[0]['msg']}"
            ) from None


def _secret_problem(name: str, value: str) -> str | None:
    variable = f"CAREFLOW_{name.upper()}"
    if not value.strip():
        return f"{variable} is not set"
    if value == DEV_SECRETS.get(name):
        return f"{variable} is the published dev value"
    texts = [value]
    if name == "codec_keys":
        for part in filter(None, (p.strip() for p in value.split(","))):
            try:
                raw = base64.b64decode(part.partition(":")[2], validate=True)
            except (binascii.Error, ValueError):
                return f"{variable}: key {part.partition(':')[0]!r} is not base64"
            if len(raw) != 32:
                return f"{variable}: key {part.partition(':')[0]!r} must be 32 random bytes (base64), not {len(raw)}"
            if part == DEV_CODEC_KEYS or len(set(raw)) < 8:
                return f"{variable}: key {part.partition(':')[0]!r} is the dev key or not random"
            texts.append(raw.decode("latin-1"))
    elif len(value) < MIN_SECRET_CHARS:
        return f"{variable} is too short (at least {MIN_SECRET_CHARS} characters)"
    if any(word in text.lower() for text in texts for word in PLACEHOLDER_WORDS):
        return f"{variable} is a placeholder, not a secret"
    return None


@lru_cache
def get_settings() -> Settings:
    return Settings()
