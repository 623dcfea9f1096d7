"""Fail closed: outside `careflow dev` and the tests, a start with a missing, placeholder, published
dev or too-short secret stops at once with a message naming the variable (real processes)."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import pytest

from careflow.settings import DEV_CODEC_KEYS, DEV_CPR_HASH_KEY, DEV_SESSION_SECRET, Settings, UnsafeConfiguration

ROOT = Path(__file__).resolve().parents[2]
GOOD = {
    "CAREFLOW_SESSION_SECRET": base64.urlsafe_b64encode(os.urandom(33)).decode(),
    "CAREFLOW_CODEC_KEYS": "k1:" + base64.b64encode(os.urandom(32)).decode(),
    "CAREFLOW_CPR_HASH_KEY": base64.urlsafe_b64encode(os.urandom(33)).decode(),
}


def careflow(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """`careflow …` with none of the caller's CAREFLOW_* settings (so CAREFLOW_ENV is unset unless given)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CAREFLOW_")}
    clean.update({"CAREFLOW_DATA_DIR": str(tmp_path), "CAREFLOW_TEMPORAL_ADDRESS": "127.0.0.1:1", **env})
    return subprocess.run(
        [sys.executable, "-m", "careflow", *args], env=clean, cwd=ROOT, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("command", ["api", "worker"])
def test_an_unset_careflow_env_is_production_and_missing_secrets_stop_the_start(tmp_path: Path, command: str) -> None:
    result = careflow(tmp_path, command)
    assert result.returncode == 2, result.stderr
    assert "CAREFLOW_CODEC_KEYS is not set" in result.stderr
    if command == "api":
        assert "CAREFLOW_SESSION_SECRET is not set" in result.stderr and "CAREFLOW_JWKS is not set" in result.stderr
    else:
        assert "SESSION_SECRET" not in result.stderr, "the worker holds no session or token material"


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("CAREFLOW_SESSION_SECRET", "change-me", "too short"),
        ("CAREFLOW_SESSION_SECRET", "change-me-change-me-change-me-change-me", "placeholder"),
        ("CAREFLOW_SESSION_SECRET", DEV_SESSION_SECRET, "published dev value"),
        ("CAREFLOW_CPR_HASH_KEY", DEV_CPR_HASH_KEY, "published dev value"),
        ("CAREFLOW_CODEC_KEYS", DEV_CODEC_KEYS, "published dev value"),
        ("CAREFLOW_CODEC_KEYS", "k1:change-me-32-bytes-base64", "not base64"),
        ("CAREFLOW_CODEC_KEYS", "k1:" + base64.b64encode(b"\0" * 32).decode(), "not random"),
        ("CAREFLOW_CODEC_KEYS", "k1:" + base64.b64encode(os.urandom(16)).decode(), "32 random bytes"),
    ],
)
def test_placeholder_dev_and_short_secrets_are_refused(tmp_path: Path, variable: str, value: str, says: str) -> None:
    result = careflow(
        tmp_path,
        "api",
        CAREFLOW_ENV="production",
        **{**GOOD, variable: value},
        CAREFLOW_JWKS="/nonexistent",
        CAREFLOW_JWT_ISSUER="https://idp",
        CAREFLOW_JWT_AUDIENCE="careflow",
    )
    assert result.returncode == 2
    assert variable in result.stderr and says in result.stderr, result.stderr
    assert value not in result.stderr or len(value) < 12, "the refusal does not echo the secret"


def test_a_jwks_over_plain_http_is_refused(tmp_path: Path) -> None:
    result = careflow(
        tmp_path,
        "api",
        CAREFLOW_ENV="production",
        **GOOD,
        CAREFLOW_JWKS="http://idp.example/certs",
        CAREFLOW_JWT_ISSUER="https://idp",
        CAREFLOW_JWT_AUDIENCE="careflow",
    )
    assert result.returncode == 2 and "CAREFLOW_JWKS must be an https URL" in result.stderr


def test_real_secrets_and_an_identity_provider_pass(tmp_path: Path) -> None:
    settings = Settings(
        env="production",
        session_secret=GOOD["CAREFLOW_SESSION_SECRET"],
        codec_keys=GOOD["CAREFLOW_CODEC_KEYS"],
        cpr_hash_key=GOOD["CAREFLOW_CPR_HASH_KEY"],
        jwks="https://idp.example/jwks",
        jwt_issuer="https://idp.example",
        jwt_audience="careflow",
    )
    settings.refuse_unsafe("api")
    settings.refuse_unsafe("worker")
    assert Settings(env="production").codec_keys == "", "no dev value fills in outside dev"


def test_the_app_factory_refuses_too(tmp_path: Path) -> None:
    """uvicorn's factory path (`api.main:create_app`) refuses before anything listens."""
    from api.main import create_app

    with pytest.raises(UnsafeConfiguration, match="CAREFLOW_CPR_HASH_KEY"):
        create_app(Settings(env="production", data_dir=tmp_path))


def test_dev_tokens_need_the_dev_stack(tmp_path: Path) -> None:
    refused = careflow(tmp_path, "token", "--role", "admin")
    assert refused.returncode == 2 and "careflow dev" in refused.stderr and refused.stdout == ""
    made = careflow(tmp_path, "token", "--role", "admin", CAREFLOW_ENV="dev")
    assert made.returncode == 0 and made.stdout.count(".") == 2 and made.stdout.endswith("\n")
    again = careflow(tmp_path, "token", "--role", "coordinator")  # the stack's key exists now: works from any shell
    assert again.returncode == 0, again.stderr


def test_compose_and_dockerfile_carry_no_accepted_secret() -> None:
    compose = (ROOT / "docker-compose.yml").read_text()
    for variable in ("CAREFLOW_SESSION_SECRET", "CAREFLOW_CODEC_KEYS", "CAREFLOW_CPR_HASH_KEY"):
        line = next(line for line in compose.splitlines() if line.strip().startswith(f"{variable}:"))
        assert f"${{{variable}:?" in line, f"{variable} must come from the operator's environment: {line.strip()}"
    assert "change-me" not in compose and "TOKEN_SECRET" not in compose
    assert "CAREFLOW_ENV" not in (ROOT / "Dockerfile").read_text() or "dev" not in (ROOT / "Dockerfile").read_text()
