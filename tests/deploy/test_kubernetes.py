"""deploy/kubernetes: every manifest valid against Kubernetes' own schemas, offline,
and consistent with the image, the api node and each other.

``kubernetes-validate`` (a dev dependency) bundles the OpenAPI schemas of each
Kubernetes release, so nothing is fetched.  The ServiceMonitor is a Prometheus
Operator CRD with no bundled schema: its fields are asserted here one by one.
"""

from __future__ import annotations

import copy
import re
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate
import pytest
import yaml

from revsync._job import settings_from_env
from revsync.config import DEFAULTS
from services.api.settings import ENV_VARS, from_env
from services.processes import run
from tests.conftest import ROOT

K8S = ROOT / "deploy" / "kubernetes"
DOCKERFILE = ROOT / "services" / "Dockerfile"
# The oldest release still in wide use and the newest the package bundles.
VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
CRDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}
SECRET_WORDS = ("SECRET", "KEY", "TOKEN", "PASSWORD", "URL")

Doc = dict[str, Any]


def _files() -> list[Path]:
    return sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def _docs() -> list[Doc]:
    return [d for p in _files() for d in yaml.safe_load_all(p.read_text()) if d]


def _one(kind: str, name: str | None = None) -> Doc:
    found = [d for d in _docs() if d["kind"] == kind and name in (None, d["metadata"]["name"])]
    assert len(found) == 1, (kind, name, len(found))
    return found[0]


def _container(workload: Doc) -> Doc:
    containers = workload["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: Doc = containers[0]
    return container


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("path", _files(), ids=lambda p: p.name)
def test_every_manifest_is_valid(path: Path, version: str) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert docs, path
    for doc in docs:
        if (doc["apiVersion"], doc["kind"]) in CRDS:
            continue  # test_service_monitor
        kubernetes_validate.validate(doc, version, strict=True)


def test_the_validator_is_strict() -> None:
    """A misspelt field or a wrong type is refused, so a pass means something."""
    deployment = _one("Deployment")
    typo = copy.deepcopy(deployment)
    _container(typo)["readinesProbe"] = _container(typo).pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(typo, VERSIONS[-1], strict=True)
    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["replicas"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(wrong_type, VERSIONS[-1], strict=True)


def test_kustomization_lists_every_file() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    assert sorted(kustomization["resources"]) == [p.name for p in _files()]
    images = {i["name"] for i in kustomization["images"]}
    workloads = [_one("Deployment"), _one("Job")]
    assert {_container(w)["image"] for w in workloads} == images


def _dockerfile_uid() -> int:
    user = re.search(r"^USER\s+(\d+)(?::(\d+))?\s*$", DOCKERFILE.read_text(), re.M)
    assert user is not None, "the image's USER must be numeric for runAsNonRoot"
    return int(user[1])


def _image_cmd() -> list[str]:
    cmd = re.search(r"^CMD\s+(\[.*\])\s*$", DOCKERFILE.read_text(), re.M)
    assert cmd is not None
    argv: list[str] = yaml.safe_load(cmd[1])
    return argv


def _check_hardened(workload: Doc) -> None:
    pod = workload["spec"]["template"]["spec"]
    ctx = pod["securityContext"]
    assert ctx["runAsNonRoot"] is True
    assert ctx["runAsUser"] == _dockerfile_uid()
    assert pod["automountServiceAccountToken"] is False
    container = _container(workload)
    sec = container["securityContext"]
    assert sec["readOnlyRootFilesystem"] is True
    assert sec["allowPrivilegeEscalation"] is False
    assert sec["capabilities"]["drop"] == ["ALL"]
    # The only writable places: emptyDirs at /data (the image's SQLite default) and /tmp.
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert set(mounts) == {"/data", "/tmp"}  # noqa: S108 - an emptyDir of the pod's own
    for name in mounts.values():
        assert "emptyDir" in volumes[name], name
    resources = container["resources"]
    assert resources["requests"]["cpu"]
    assert resources["requests"]["memory"]
    assert resources["limits"]["memory"]


def _env(workload: Doc) -> dict[str, str]:
    """The container's environment as Kubernetes would assemble it from the manifests."""
    container = _container(workload)
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(_one("ConfigMap", source["configMapRef"]["name"])["data"])
        else:
            env.update(_one("Secret", source["secretRef"]["name"])["stringData"])
    for var in container.get("env", []):
        ref = var.get("valueFrom", {})
        if "secretKeyRef" in ref:
            key = ref["secretKeyRef"]
            env[var["name"]] = _one("Secret", key["name"])["stringData"][key["key"]]
        elif "fieldRef" in ref:
            assert ref["fieldRef"]["fieldPath"] == "metadata.name"
            env[var["name"]] = "revsync-api-5d8f7c9b4-x2x7q"
        else:
            env[var["name"]] = var["value"]
    return env


def test_api_deployment(monkeypatch: pytest.MonkeyPatch) -> None:
    deployment = _one("Deployment")
    _check_hardened(deployment)
    container = _container(deployment)
    argv = container["command"]
    assert argv == _image_cmd()
    assert argv[:2] == ["hypercorn", "services.api.app:app"]
    port = int(argv[argv.index("--bind") + 1].rpartition(":")[2])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": port}
    # Liveness on /healthz, readiness on /readyz: an out-of-sync pod leaves the
    # Service but is not restarted.
    for probe, path in (
        ("livenessProbe", "/healthz"),
        ("startupProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
    ):
        assert container[probe]["httpGet"] == {"path": path, "port": "http"}, probe
    assert deployment["spec"]["replicas"] >= 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0

    # The environment builds a node (the node's own checks: secret length, admin
    # token, every REVSYNC_* key), and carries nothing the node does not read.
    env = _env(deployment)
    assert set(env) <= ENV_VARS, set(env) - ENV_VARS
    settings = from_env(env)
    assert settings.admin_token is not None
    assert env["REVSYNC_WAIT_FOR_READY"] == "false"  # else readiness never gets asked
    monkeypatch.setenv("JWT_SECRET_KEY", env["JWT_SECRET_KEY"])  # the import's own app
    from services.api.app import create_app

    app = create_app(env)
    routes = {rule.rule for rule in app.url_map.iter_rules()}
    assert {"/healthz", "/readyz", "/metrics"} <= routes
    assert app.extensions["revsync"].settings.node_id == "revsync-api-5d8f7c9b4-x2x7q"


def test_secrets_stay_in_secrets() -> None:
    config = _one("ConfigMap")["data"]
    leaked = [k for k in config if any(w in k for w in SECRET_WORDS)]
    assert not leaked, f"secret-looking keys in the ConfigMap: {leaked}"
    for doc in _docs():
        if doc["kind"] == "Secret":
            assert all("example-only" in v for v in doc["stringData"].values()), (
                "every shipped secret value must say it is an example"
            )


def test_resync_job() -> None:
    job = _one("Job")
    _check_hardened(job)
    argv = _container(job)["command"]
    assert argv[:3] == ["python", "-m", "services.resync"]
    # The job's options are accepted as written.
    help_run = run([sys.executable, *argv[1:], "--help"], timeout=30)
    assert help_run.returncode == 0, help_run.stderr
    env = _env(job)
    assert set(env) <= set(DEFAULTS), set(env) - set(DEFAULTS)
    settings_from_env(env)  # the job's own validation
    api_env = _env(_one("Deployment"))
    # The job prepares the nodes' store and checks their Redis, as the store's owner.
    job_store = urlsplit(env["REVSYNC_STORE_URL"])
    api_store = urlsplit(api_env["REVSYNC_STORE_URL"])
    assert (job_store.scheme, job_store.hostname, job_store.port, job_store.path) == (
        api_store.scheme,
        api_store.hostname,
        api_store.port,
        api_store.path,
    )
    assert job_store.username != api_store.username
    assert env["REVSYNC_REDIS_URL"] == api_env["REVSYNC_REDIS_URL"]
    assert env["REVSYNC_CHANNEL"] == api_env["REVSYNC_CHANNEL"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] in {"OnFailure", "Never"}


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def test_service_and_disruption_budget_select_the_api_pods() -> None:
    deployment = _one("Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    job_labels = _one("Job")["spec"]["template"]["metadata"]["labels"]
    service = _one("Service")
    assert _selects(service["spec"]["selector"], pod_labels)
    assert not _selects(service["spec"]["selector"], job_labels)
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]
    pdb = _one("PodDisruptionBudget")
    assert _selects(pdb["spec"]["selector"]["matchLabels"], pod_labels)
    assert not _selects(pdb["spec"]["selector"]["matchLabels"], job_labels)
    assert pdb["spec"]["maxUnavailable"] < deployment["spec"]["replicas"]


def test_service_monitor() -> None:
    """No bundled schema for the CRD: every field it has is checked by hand."""
    monitor = _one("ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert set(monitor) == {"apiVersion", "kind", "metadata", "spec"}
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", monitor["metadata"]["name"])
    spec = monitor["spec"]
    assert set(spec) == {"selector", "endpoints"}
    assert set(spec["selector"]) == {"matchLabels"}
    service = _one("Service")
    assert _selects(spec["selector"]["matchLabels"], service["metadata"]["labels"])
    port_names = {p["name"] for p in service["spec"]["ports"]}
    assert spec["endpoints"], "a ServiceMonitor without endpoints scrapes nothing"
    for endpoint in spec["endpoints"]:
        assert set(endpoint) <= {"port", "path", "scheme", "interval", "scrapeTimeout"}
        assert endpoint["port"] in port_names
        assert endpoint["path"] == "/metrics"
        assert endpoint["scheme"] in {"http", "https"}
        interval = _seconds(endpoint["interval"])
        assert 0 < _seconds(endpoint["scrapeTimeout"]) <= interval


def _seconds(duration: str) -> int:
    match = re.fullmatch(r"(\d+)(s|m)", duration)
    assert match is not None, f"not a Prometheus duration: {duration!r}"
    return int(match[1]) * (60 if match[2] == "m" else 1)
