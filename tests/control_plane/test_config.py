"""The supervisor's Kubernetes settings, from the environment the Helm chart gives the control
plane to the bot pods the backend launches (the API server mocked with respx, as in
test_kubernetes.py)."""

from __future__ import annotations

import json
from pathlib import Path

import certifi
import httpx
import pytest
import respx
from pydantic import ValidationError

from coyote_control_plane.config import Settings
from coyote_control_plane.main import make_backend
from coyote_control_plane.supervisor.backends import RuntimeSpec
from coyote_control_plane.supervisor.kubernetes import KubernetesBackend, deployment_name

pytestmark = pytest.mark.unit

API = "https://10.96.0.1:443"
NS = "coyote-bots"
DIGEST = "sha256:" + "ab" * 32
RESOURCES = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}}


@pytest.fixture
def in_a_pod(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A pod's service account mounted at ``tmp_path`` (where ``in_cluster`` reads it)."""
    (tmp_path / "token").write_text("sa-token\n")
    (tmp_path / "ca.crt").write_text(Path(certifi.where()).read_text())
    (tmp_path / "namespace").write_text("coyote")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    defaults = KubernetesBackend.in_cluster.__func__.__kwdefaults__  # type: ignore[attr-defined]
    monkeypatch.setitem(defaults, "secrets_dir", tmp_path)
    return tmp_path


def chart_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """What the chart's control plane ConfigMap sets."""
    for key, value in {
        "COYOTE_CONTROL_PLANE_SUPERVISOR__BACKEND": "kubernetes",
        "COYOTE_CONTROL_PLANE_SUPERVISOR__KUBERNETES_NAMESPACE": NS,
        "COYOTE_CONTROL_PLANE_SUPERVISOR__KUBERNETES_IMAGE": "ghcr.io/coyote/coyote-bot:0.1.0",
        "COYOTE_CONTROL_PLANE_SUPERVISOR__KUBERNETES_SERVICE_ACCOUNT": "coyote-bot",
        "COYOTE_CONTROL_PLANE_SUPERVISOR__KUBERNETES_RESOURCES": json.dumps(RESOURCES),
        "COYOTE_CONTROL_PLANE_SUPERVISOR__KUBERNETES_IMAGE_PULL_POLICY": "Always",
        "COYOTE_CONTROL_PLANE_SUPERVISOR__REDIS_ACL_SECRET": "k" * 48,
        "COYOTE_KAFKA_BOOTSTRAP": "kafka:9092",
        "COYOTE_REDIS_URL": "redis://redis:6379/0",
    }.items():
        monkeypatch.setenv(key, value)


def test_kubernetes_settings_are_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    chart_environment(monkeypatch)

    supervisor = Settings().supervisor

    assert supervisor.kubernetes_service_account == "coyote-bot"
    assert supervisor.kubernetes_resources == RESOURCES
    assert supervisor.kubernetes_image_pull_policy == "Always"


def test_kubernetes_settings_default_to_no_account_no_resources(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("COYOTE_CONTROL_PLANE_SUPERVISOR__KUBERNETES_SERVICE_ACCOUNT", raising=False)
    monkeypatch.delenv("COYOTE_CONTROL_PLANE_SUPERVISOR__KUBERNETES_RESOURCES", raising=False)

    supervisor = Settings().supervisor

    assert supervisor.kubernetes_service_account is None
    assert supervisor.kubernetes_resources is None
    assert supervisor.kubernetes_image_pull_policy == "IfNotPresent"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("KUBERNETES_RESOURCES", '{"request": {"cpu": "1"}}', "got 'request'"),
        ("KUBERNETES_RESOURCES", '{"limits": "1Gi"}', "kubernetes_resources.limits must map"),
        ("KUBERNETES_IMAGE_PULL_POLICY", "Sometimes", "IfNotPresent"),
    ],
)
def test_bad_kubernetes_settings_are_refused_with_the_value_named(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(f"COYOTE_CONTROL_PLANE_SUPERVISOR__{variable}", value)

    with pytest.raises(ValidationError, match=message):
        Settings()


def test_make_backend_gives_bot_pods_the_account_resources_and_pull_policy(
    in_a_pod: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chart_environment(monkeypatch)
    settings = Settings()
    backend = make_backend(settings, settings.stack.endpoints())
    assert isinstance(backend, KubernetesBackend)
    spec = RuntimeSpec(
        runtime_id="acme.sma-live",
        account_id="acme.paper",
        venue="demo",
        bundle=b"\x1f\x8b a bundle",
        digest=DIGEST,
        params={},
        capital="1000",
        release=DIGEST,
    )
    name = deployment_name(spec.runtime_id)
    try:
        with respx.mock(base_url=API, assert_all_called=False) as api:
            api.post(f"/api/v1/namespaces/{NS}/configmaps").respond(201, json={})
            created = api.post(f"/apis/apps/v1/namespaces/{NS}/deployments").mock(
                side_effect=lambda request: httpx.Response(201, content=request.content)
            )

            assert backend.launch(spec) == name

        body = json.loads(created.calls.last.request.content)
    finally:
        backend.close()

    pod = body["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["serviceAccountName"] == "coyote-bot"
    assert container["resources"] == RESOURCES
    assert container["imagePullPolicy"] == "Always"
    assert container["image"] == "ghcr.io/coyote/coyote-bot:0.1.0"
    # Redis comes per runtime, from a Secret (the supervisor's secret_env), never as a value.
    assert container["env"] == [{"name": "COYOTE_KAFKA_BOOTSTRAP", "value": "kafka:9092"}]


def test_the_kubernetes_backend_needs_the_redis_acl_secret_unless_acls_are_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    chart_environment(monkeypatch)
    monkeypatch.delenv("COYOTE_CONTROL_PLANE_SUPERVISOR__REDIS_ACL_SECRET")

    with pytest.raises(ValidationError, match="SUPERVISOR__REDIS_ACL_SECRET must be set"):
        Settings()
    monkeypatch.setenv("COYOTE_CONTROL_PLANE_SUPERVISOR__REDIS_ACL", "false")
    assert Settings().supervisor.redis_acl is False
