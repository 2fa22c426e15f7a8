"""deploy/ cannot rot silently: no Docker engine or cluster runs here, so the files are
checked instead — generated from the platform's list of services, the compose file valid
against the Compose Specification, every Kubernetes object valid against the API schemas
(unknown fields refused), the Dockerfile clean under hadolint, and every PAYMESH_ variable
they set a real setting that loads."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from pydantic import BaseModel

from paymesh.kernel.config import Settings
from paymesh.platform import SERVICE_MODULES

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
BIN = Path(sys.executable).parent
KUBERNETES_VERSION = kubernetes_validate.latest_version()


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    return loaded


def kubernetes() -> list[dict[str, Any]]:
    return list(yaml.safe_load_all((DEPLOY / "kubernetes" / "paymesh.yaml").read_text()))


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def check_compose(path: Path) -> subprocess.CompletedProcess[str]:
    return run(str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path))


def test_the_files_are_what_the_generator_makes() -> None:
    result = run(sys.executable, str(DEPLOY / "generate.py"), "--check")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_compose_file_follows_the_compose_specification(tmp_path: Path) -> None:
    result = check_compose(DEPLOY / "docker-compose.yml")
    assert result.returncode == 0, result.stdout + result.stderr

    broken = compose()
    broken["services"]["gateway"]["restart_policy"] = "always"  # not a service attribute
    path = tmp_path / "broken.yml"
    path.write_text(yaml.safe_dump(broken))
    assert check_compose(path).returncode != 0  # the check can fail


def test_every_kubernetes_object_is_valid_for_a_recent_cluster() -> None:
    objects = kubernetes()
    for manifest in objects:
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)

    deployment = copy.deepcopy(next(o for o in objects if o["kind"] == "Deployment"))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_every_service_runs_with_probes_and_the_gateway_in_front() -> None:
    services = [*SERVICE_MODULES, "gateway"]
    composed = compose()["services"]
    objects = kubernetes()
    deployments = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Deployment"}
    exposed = {o["metadata"]["name"] for o in objects if o["kind"] == "Service"}
    for name in services:
        assert composed[name]["command"][:2] == ["serve", name]
        container = deployments[f"paymesh-{name}"]["spec"]["template"]["spec"]["containers"][0]
        assert container["args"][:2] == ["serve", name]
        assert container["livenessProbe"]["httpGet"]["path"] == "/health"
        assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
        assert f"paymesh-{name}" in exposed
    assert composed["gateway"]["ports"] == ["8000:8000"]
    scaled = {
        o["spec"]["scaleTargetRef"]["name"]
        for o in objects
        if o["kind"] == "HorizontalPodAutoscaler"
    }
    assert scaled == {"paymesh-gateway", "paymesh-payments", "paymesh-ledger"}
    assert any(
        o["kind"] == "Job" and o["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"]
        for o in objects
    )


def test_the_dockerfile_is_clean_under_hadolint() -> None:
    result = run(str(BIN / "hadolint"), "--failure-threshold", "info", str(DEPLOY / "Dockerfile"))
    assert result.returncode == 0, result.stdout + result.stderr


def _is_setting(name: str) -> bool:
    rest = name.removeprefix("PAYMESH_").lower()
    fields = Settings.model_fields
    if rest in fields:
        return True
    section, _, field = rest.partition("_")
    annotation = fields[section].annotation if section in fields else None
    return (
        isinstance(annotation, type)
        and issubclass(annotation, BaseModel)
        and field in annotation.model_fields
    )


def _paymesh_variables() -> dict[str, str]:
    variables: dict[str, str] = {}
    for service in compose()["services"].values():
        for name, value in (service.get("environment") or {}).items():
            if name.startswith("PAYMESH_"):
                variables[name] = str(value)
    for manifest in kubernetes():
        for key in ("data", "stringData"):
            for name, value in (manifest.get(key) or {}).items():
                if name.startswith("PAYMESH_"):
                    variables.setdefault(name, str(value))
    return variables


def test_every_variable_is_a_setting_that_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    variables = _paymesh_variables()
    assert {"PAYMESH_BROKER_URL", "PAYMESH_REDIS_URL", "PAYMESH_DATABASE_URL"} <= set(variables)
    unknown = sorted(name for name in variables if not _is_setting(name))
    assert unknown == []
    assert not _is_setting("PAYMESH_IDENTITY_BASE_URL")  # the check can fail

    for name in list(os.environ):
        if name.startswith("PAYMESH_"):
            monkeypatch.delenv(name)
    placeholders = {
        "PAYMESH_SIGNING_SECRET": "a-real-secret-of-the-deployment-32-bytes-long",
        "PAYMESH_DATABASE_URL": "postgresql://paymesh:secret@postgres:5432/paymesh",
        "PAYMESH_BROKER_URL": "amqp://paymesh:secret@rabbitmq:5672/",
    }
    for name, value in variables.items():
        monkeypatch.setenv(name, placeholders.get(name, value))
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.env == "production"
    assert settings.events.broker_namespace == "paymesh"
    assert settings.service("ledger").base_url == "http://ledger:8000"
