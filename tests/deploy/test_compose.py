"""docker-compose.yml as an operator reads it: `docker-compose config` accepts it with a generated env
file and refuses it without one, and the deployment rules hold. No image is pulled here."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from careflow.settings import DEV_CODEC_KEYS, DEV_CPR_HASH_KEY, DEV_SESSION_SECRET
from messaging import Directory

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKER_COMPOSE = shutil.which("docker-compose")
PATCH_TAG = re.compile(r"^[\w./-]+:v?\d+\.\d+\.\d+([-.][\w.-]+)?$")
# PostgreSQL numbers its releases major.minor since 10: 16.6 is as pinned as a version gets.
POSTGRES_TAG = re.compile(r"^postgres:\d{2,}\.\d+([-.][\w.-]+)?$")
SECRET_NAME = re.compile(r"PASSWORD|PWD|SECRET|_KEYS?$|DATABASE_URL")
CAREFLOW_IMAGE = "careflow:"
# The one long-running service without a shell to probe with is the collector: see its healthcheck.
ONE_SHOT = {"temporal-schema", "setup"}

needs_compose = pytest.mark.skipif(
    DOCKER_COMPOSE is None and os.environ.get("CI") != "true",
    reason="docker-compose not installed (Debian package `docker-compose`; .ci/run installs it)",
)


def compose_config(env_file: Path) -> subprocess.CompletedProcess:
    assert DOCKER_COMPOSE, "docker-compose must be installed under CI=true (.ci/run installs it)"
    # Nothing of the caller's environment may stand in for the env file.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp")}
    return subprocess.run(
        [DOCKER_COMPOSE, "--project-directory", str(ROOT), "-f", str(COMPOSE), "--env-file", str(env_file), "config"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
    )


@pytest.fixture(scope="module")
def secrets_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("compose") / "careflow.env"
    path.write_text(
        subprocess.run(
            [sys.executable, "-m", "careflow", "secrets"], capture_output=True, text=True, check=True, cwd=ROOT
        ).stdout
    )
    return path


@pytest.fixture(scope="module")
def resolved(secrets_file: Path) -> dict:
    result = compose_config(secrets_file)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@needs_compose
def test_config_takes_its_secrets_from_the_env_file(resolved: dict, secrets_file: Path) -> None:
    values = dict(
        line.split("=", 1) for line in secrets_file.read_text().splitlines() if line and not line.startswith("#")
    )
    api = resolved["services"]["api"]["environment"]
    assert api["CAREFLOW_SESSION_SECRET"] == values["CAREFLOW_SESSION_SECRET"]
    assert api["CAREFLOW_CODEC_KEYS"] == values["CAREFLOW_CODEC_KEYS"]
    assert values["CAREFLOW_DB_PASSWORD"] in api["CAREFLOW_DATABASE_URL"]
    assert resolved["services"]["temporal"]["environment"]["POSTGRES_PWD"] == values["TEMPORAL_DB_PASSWORD"]


@needs_compose
def test_config_refuses_to_start_without_real_secrets() -> None:
    result = compose_config(ROOT / ".env.example")
    assert result.returncode != 0
    assert "careflow secrets" in result.stderr


def test_no_secret_is_written_in_the_file(raw: dict) -> None:
    text = COMPOSE.read_text()
    for dev in (DEV_SESSION_SECRET, DEV_CODEC_KEYS, DEV_CPR_HASH_KEY, "change-me", "changeme"):
        assert dev not in text
    for name, service in raw["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if SECRET_NAME.search(key):
                assert "${" in str(value) and ":?" in str(value), (
                    f"{name}: {key} must be a required reference into the env file"
                )


def test_images_are_pinned_to_patch_releases(raw: dict) -> None:
    images = {name: service.get("image") or raw["x-careflow"]["image"] for name, service in raw["services"].items()}
    assert all(images.values())
    for name, image in images.items():
        assert PATCH_TAG.match(image) or POSTGRES_TAG.match(image), f"{name}: {image} is not pinned to a patch release"
    assert not any("auto-setup" in image for image in images.values()), "temporalio/auto-setup is deprecated"
    assert images["temporal"].startswith("temporalio/server:") and images["temporal-schema"].startswith(
        "temporalio/admin-tools:"
    )


@needs_compose
def test_every_long_running_service_has_a_healthcheck(resolved: dict) -> None:
    for name, service in resolved["services"].items():
        if name in ONE_SHOT:
            assert service.get("restart") == "no", f"{name} is a one-shot job"
            continue
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"


@needs_compose
def test_every_careflow_service_waits_for_setup(resolved: dict) -> None:
    careflow = {name for name, service in resolved["services"].items() if service["image"].startswith(CAREFLOW_IMAGE)}
    assert careflow == {"setup", "api", "worker", "simulator"}
    for name in careflow - {"setup"}:
        assert resolved["services"][name]["depends_on"]["setup"]["condition"] == "service_completed_successfully", name
    assert resolved["services"]["setup"]["command"] == ["careflow", "setup"]
    setup_needs = resolved["services"]["setup"]["depends_on"]
    assert (
        setup_needs["careflow-db"]["condition"] == "service_healthy"
        and setup_needs["temporal"]["condition"] == "service_healthy"
    )
    assert (
        resolved["services"]["temporal"]["depends_on"]["temporal-schema"]["condition"]
        == "service_completed_successfully"
    )
    # The API does not migrate by itself: setup did, once.
    assert resolved["services"]["api"]["environment"]["CAREFLOW_MIGRATE_ON_START"] == "false"


@needs_compose
def test_scaled_out_with_partners_and_observability(resolved: dict) -> None:
    services = resolved["services"]
    assert services["api"]["deploy"]["replicas"] == 2 and services["worker"]["deploy"]["replicas"] == 2
    assert {"simulator", "prometheus", "otel-collector", "temporal-ui"} <= set(services)
    assert services["temporal-ui"]["environment"]["TEMPORAL_CODEC_ENDPOINT"].endswith("/codec")
    assert services["worker"]["environment"]["CAREFLOW_WORKER_METRICS_PORT"] == "9464"
    # Prometheus scrapes every replica on the ports the services serve.
    prometheus = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    targets = {job["job_name"]: (job.get("dns_sd_configs") or [{}])[0] for job in prometheus["scrape_configs"]}
    assert (targets["careflow-api"]["names"], targets["careflow-api"]["port"]) == (["api"], 8000)
    assert (targets["careflow-worker"]["names"], targets["careflow-worker"]["port"]) == (
        ["worker"],
        int(services["worker"]["environment"]["CAREFLOW_WORKER_METRICS_PORT"]),
    )
    assert targets["temporal-sdk"]["port"] == int(services["worker"]["environment"]["CAREFLOW_TEMPORAL_METRICS_PORT"])
    collector = yaml.safe_load((ROOT / "deploy" / "otel" / "collector.yaml").read_text())
    assert collector["service"]["pipelines"]["traces"]["receivers"] == ["otlp"]


def test_compose_directory_is_the_demo_directory_pointed_at_the_containers() -> None:
    demo = json.loads((ROOT / "messaging" / "data" / "demo-directory.json").read_text())["entries"]
    deployed = json.loads((ROOT / "deploy" / "directory.json").read_text())["entries"]
    rewritten = [
        {
            **e,
            **{
                key: e[key]
                .replace("http://127.0.0.1:8000", "http://api:8000")
                .replace("http://127.0.0.1:8100", "http://simulator:8100")
                for key in ("endpoint", "vans_endpoint")
                if e.get(key)
            },
        }
        for e in demo
    ]
    assert deployed == rewritten
    directory = Directory.load(ROOT / "deploy" / "directory.json")
    assert directory.get("200000000000001").endpoint.startswith("http://simulator:8100/")
    assert directory.get("100000000000001").endpoint.startswith("http://api:8000/")


def test_the_image_carries_every_package_careflow_installs() -> None:
    """The Dockerfile copies each package pyproject.toml installs (exchange/ was once missing)."""
    import re
    import tomllib

    root = Path(__file__).resolve().parents[2]
    include = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {pattern.rstrip("*") for pattern in include}
    copied = set(re.findall(r"^COPY (\w+) \1$", (root / "Dockerfile").read_text(), flags=re.M))
    assert packages <= copied, f"the Dockerfile does not copy {sorted(packages - copied)}"
