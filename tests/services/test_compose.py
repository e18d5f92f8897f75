"""docker-compose.yml: valid for a real Compose implementation, and consistent with the project.

No Docker engine runs here; ``docker-compose config`` (Debian's docker-compose
package, Compose 1.29) parses, validates and resolves the file without one.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from revsync._job import settings_from_env
from revsync.config import DEFAULTS, resolve
from services.api.settings import ENV_VARS, from_env
from services.processes import run
from tests.conftest import REQUIRE_SERVICES, ROOT

COMPOSE = ROOT / "docker-compose.yml"
INSTALL = "apt-get install -y --no-install-recommends docker-compose"


def _compose() -> str:
    binary = shutil.which("docker-compose")
    if binary is None:
        msg = f"docker-compose is not installed ({INSTALL})"
        if REQUIRE_SERVICES:
            pytest.fail(f"{msg}, and REVSYNC_REQUIRE_SERVICES=1 forbids skipping")
        pytest.skip(msg)
    return binary


def _run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    # A clean environment: the file's own defaults must make it valid.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("REVSYNC_", "JWT_", "POSTGRES_", "COMPOSE_"))
    }
    return run([_compose(), *args], cwd=cwd, env=env)


@pytest.fixture(scope="module")
def resolved() -> dict[str, Any]:
    proc = _run("-f", str(COMPOSE), "config")
    assert proc.returncode == 0, proc.stderr
    config: dict[str, Any] = yaml.safe_load(proc.stdout)
    return config


def _api_services(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: svc
        for name, svc in config["services"].items()
        if "services.api.app:app" in _argv(svc.get("command"))
    }


def _argv(command: Any) -> list[str]:
    if command is None:
        return []
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def _bind_port(argv: list[str]) -> int:
    bind = argv[argv.index("--bind") + 1]
    return int(bind.rpartition(":")[2])


def test_compose_config_is_valid() -> None:
    proc = _run("-f", str(COMPOSE), "config", "-q")
    assert proc.returncode == 0, proc.stderr


def test_validator_rejects_an_invalid_file(tmp_path: Path) -> None:
    """The validator is real: it refuses what Compose would refuse."""
    bad = tmp_path / "docker-compose.yml"
    text = COMPOSE.read_text().replace(
        "condition: service_completed_successfully", "condition: when_it_feels_like_it", 1
    )
    bad.write_text(text)
    assert _run("-f", str(bad), "config", "-q", cwd=tmp_path).returncode != 0
    bad.write_text("services:\n  x:\n    image: redis\n    healthcheck: {intervall: 5s}\n")
    assert _run("-f", str(bad), "config", "-q", cwd=tmp_path).returncode != 0


def test_services_and_order(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    assert {"redis", "postgres", "resync", "lb"} <= set(services)
    apis = _api_services(resolved)
    assert len(apis) == 3
    for name, svc in apis.items():
        deps = svc["depends_on"]
        assert deps["resync"]["condition"] == "service_completed_successfully", name
        assert deps["redis"]["condition"] == "service_healthy"
        assert deps["postgres"]["condition"] == "service_healthy"
        port = _bind_port(_argv(svc["command"]))
        test = " ".join(svc["healthcheck"]["test"])
        assert f"127.0.0.1:{port}/readyz" in test, name
    for name in apis:
        assert resolved["services"]["lb"]["depends_on"][name]["condition"] == "service_healthy"
    resync = services["resync"]
    assert set(resync["depends_on"]) == {"redis", "postgres"}
    assert services["redis"]["healthcheck"]
    assert services["postgres"]["healthcheck"]


def test_builds_dockerfiles_and_commands_exist(resolved: dict[str, Any]) -> None:
    built = {n: s for n, s in resolved["services"].items() if "build" in s}
    assert set(built) == {"resync", *_api_services(resolved)}
    for name, svc in built.items():
        context = Path(svc["build"]["context"])
        assert context.resolve() == ROOT, name
        dockerfile = context / svc["build"].get("dockerfile", "Dockerfile")
        assert dockerfile.is_file(), dockerfile
        _check_dockerfile(dockerfile, context)
    # The job's command works as written (its options are accepted).
    argv = _argv(resolved["services"]["resync"]["command"])
    assert argv[:3] == ["python", "-m", "services.resync"]
    assert (ROOT / "services" / "resync" / "__main__.py").is_file()
    help_run = run([sys.executable, *argv[1:], "--help"], timeout=30)
    assert help_run.returncode == 0, help_run.stderr
    for svc in _api_services(resolved).values():
        argv = _argv(svc["command"])
        assert argv[0] == "hypercorn"
        assert (ROOT / "services" / "api" / "app.py").is_file()
        assert re.search(
            r"^\s*app = create_app\(\)", (ROOT / "services/api/app.py").read_text(), re.M
        )


def _check_dockerfile(dockerfile: Path, context: Path) -> None:
    text = dockerfile.read_text()
    for line in text.splitlines():
        words = line.split()
        if words[:1] == ["COPY"]:
            for source in words[1:-1]:
                if not source.startswith("--"):
                    assert (context / source).exists(), f"{dockerfile}: COPY {source} missing"
    assert "services.api.app:app" in text
    exposed = re.search(r"^EXPOSE (\d+)", text, re.M)
    assert exposed is not None
    cmd = re.search(r"^CMD (\[.*\])", text, re.M)
    assert cmd is not None
    port = _bind_port(yaml.safe_load(cmd[1]))
    assert port == int(exposed[1])
    # The image's HEALTHCHECK is liveness (tests/deploy/test_image.py); compose gates on /readyz.
    assert f"127.0.0.1:{port}/healthz" in text
    assert "'.[postgres,services]'" in text  # the extras the services need


def test_environment_agrees_with_the_services(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    pg = services["postgres"]["environment"]
    for name, svc in _api_services(resolved).items():
        env = {k: str(v) for k, v in svc["environment"].items()}
        unknown = set(env) - ENV_VARS
        assert not unknown, f"{name} sets variables the api never reads: {unknown}"
        settings = from_env(env)  # the node's own checks (secret length, admin token, ...)
        assert settings.admin_token is not None
        revsync_keys = {k: v for k, v in settings.config.items() if k in DEFAULTS}
        resolved_settings = resolve(revsync_keys, {})
        assert resolved_settings.node_id == name
        _check_urls(env, services, pg)
        assert env["REVSYNC_CHANNEL"] == services["resync"]["environment"]["REVSYNC_CHANNEL"]
    job_env = {k: str(v) for k, v in services["resync"]["environment"].items()}
    assert set(job_env) <= set(DEFAULTS), set(job_env) - set(DEFAULTS)
    settings_from_env(job_env)
    _check_urls(job_env, services, pg)
    api_stores = {
        svc["environment"]["REVSYNC_STORE_URL"] for svc in _api_services(resolved).values()
    }
    assert api_stores == {job_env["REVSYNC_STORE_URL"]}, "the job must prepare the nodes' store"


def _check_urls(env: dict[str, str], services: dict[str, Any], pg: dict[str, Any]) -> None:
    redis = urlsplit(env["REVSYNC_REDIS_URL"])
    assert redis.hostname in services
    assert redis.port == 6379
    store = urlsplit(env["REVSYNC_STORE_URL"])
    assert store.scheme == "postgresql"
    assert store.hostname == "postgres"
    assert store.port == 5432
    assert store.username == pg["POSTGRES_USER"]
    assert store.password == pg["POSTGRES_PASSWORD"]
    assert store.path.lstrip("/") == pg["POSTGRES_DB"]


def test_load_balancer_points_at_the_nodes(resolved: dict[str, Any]) -> None:
    lb = resolved["services"]["lb"]
    volumes = lb["volumes"]
    sources = [v.split(":")[0] if isinstance(v, str) else v["source"] for v in volumes]
    conf_path = Path(sources[0])
    conf_path = conf_path if conf_path.is_absolute() else ROOT / conf_path
    assert conf_path.is_file()
    conf = conf_path.read_text()
    servers = set(re.findall(r"^\s*server\s+([\w.-]+):(\d+)", conf, re.M))
    expected = {
        (name, str(_bind_port(_argv(svc["command"]))))
        for name, svc in _api_services(resolved).items()
    }
    assert servers == expected
    listen = re.search(r"^\s*listen\s+(\d+);", conf, re.M)
    assert listen is not None
    ports = lb["ports"]
    targets = {
        str(p["target"]) if isinstance(p, dict) else str(p).rpartition(":")[2] for p in ports
    }
    assert listen[1] in targets
    assert "proxy_pass http://revsync_api" in conf
