"""The Kubernetes runtime backend against the API server's documented JSON (mocked with respx).

Answers are shaped as the Kubernetes API reference shows them: apps/v1 Deployment objects, v1
ConfigMap, v1 PodList with containerStatuses, and v1 Status objects for errors.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import certifi
import httpx
import pytest
import respx

from coyote_control_plane.supervisor import kubernetes
from coyote_control_plane.supervisor.backends import BackendError, LogChunk, RuntimeSpec
from coyote_control_plane.supervisor.kubernetes import (
    KubernetesBackend,
    bundle_configmap_name,
    deployment_name,
    runtime_label,
)

pytestmark = pytest.mark.unit

API = "https://k8s.test:6443"
NS = "coyote-bots"
IMAGE = "ghcr.io/coyote/runtime:1.4.2"
TOKEN = "eyJhbGciOiJSUzI1NiIsImtpZCI6InRlc3QifQ.test.token"
DIGEST = "sha256:" + "ab" * 32
RELEASE = "sha256:" + "cd" * 32
BUNDLE = b"\x1f\x8b\x08\x00 a tiny gzipped tarball"
CONFIGMAP = "coyote-bundle-abababababab"
RUNTIME = "acme.sma-live"
NAME = deployment_name(RUNTIME)
ENV = {"COYOTE_REDIS_URL": "redis://redis:6379/0", "COYOTE_KAFKA_BOOTSTRAP": "kafka:9092"}

DEPLOYMENTS = f"/apis/apps/v1/namespaces/{NS}/deployments"
CONFIGMAPS = f"/api/v1/namespaces/{NS}/configmaps"
SECRETS = f"/api/v1/namespaces/{NS}/secrets"
BOT_REDIS_URL = "redis://coyote-bot%3Aacme.sma-live:d3adb33f@redis:6379/0"
SECRET_ENV = {"COYOTE_REDIS_URL": BOT_REDIS_URL}
"""The runtime's own Redis URL, with its password, as the supervisor hands it over."""
PODS = f"/api/v1/namespaces/{NS}/pods"


def make_spec(**fields: Any) -> RuntimeSpec:
    values: dict[str, Any] = {
        "runtime_id": RUNTIME,
        "account_id": "acme.paper",
        "venue": "demo",
        "bundle": BUNDLE,
        "digest": DIGEST,
        "params": {"fast": 10},
        "capital": "10000",
        "release": RELEASE,
    }
    values.update(fields)
    return RuntimeSpec(**values)


def status(code: int, reason: str, message: str, **details: Any) -> dict[str, Any]:
    """A v1 Status object, as the API server answers a failed request."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": details,
        "code": code,
    }


def not_found(kind: str, name: str, group: str = "apps") -> dict[str, Any]:
    plural = f"{kind}.{group}" if group else kind
    return status(
        404, "NotFound", f'{plural} "{name}" not found', name=name, group=group, kind=kind
    )


def deployment(
    *, replicas: int = 1, resource_version: str = "4711", runtime_id: str = RUNTIME, **extra: Any
) -> dict[str, Any]:
    """An apps/v1 Deployment as GET returns it (metadata, spec and status filled in)."""
    label = runtime_label(runtime_id)
    labels = {
        "app.kubernetes.io/name": "coyote-bot",
        "app.kubernetes.io/managed-by": "coyote",
        "coyote.dev/runtime-id": label,
    }
    metadata: dict[str, Any] = {
        "name": NAME,
        "namespace": NS,
        "uid": "3f1c6a8e-2b8f-4d59-9c1e-0f5e2f6f8a10",
        "resourceVersion": resource_version,
        "generation": 3,
        "creationTimestamp": "2024-05-01T09:00:00Z",
        "labels": labels,
        "annotations": {
            "coyote.dev/runtime-id": runtime_id,
            "coyote.dev/release": RELEASE,
            "deployment.kubernetes.io/revision": "2",
        },
    }
    metadata.update(extra.pop("metadata", {}))
    return {
        "kind": "Deployment",
        "apiVersion": "apps/v1",
        "metadata": metadata,
        "spec": {
            "replicas": replicas,
            "selector": {
                "matchLabels": {
                    "app.kubernetes.io/name": "coyote-bot",
                    "coyote.dev/runtime-id": label,
                }
            },
            "template": {"metadata": {"labels": labels}, "spec": {"containers": []}},
            "strategy": {"type": "Recreate"},
            "revisionHistoryLimit": 2,
            "progressDeadlineSeconds": 600,
        },
        "status": extra.pop(
            "status",
            {
                "observedGeneration": 3,
                "replicas": replicas,
                "updatedReplicas": replicas,
                "readyReplicas": replicas,
                "availableReplicas": replicas,
                "conditions": [
                    {
                        "type": "Available",
                        "status": "True",
                        "reason": "MinimumReplicasAvailable",
                        "message": "Deployment has minimum availability.",
                    }
                ],
            },
        ),
    }


def running_state() -> dict[str, Any]:
    return {"running": {"startedAt": "2024-05-01T09:00:05Z"}}


def pod(
    name: str = f"{NAME}-7d9f8b6c5d-x2k4p",
    *,
    created: str = "2024-05-01T09:00:01Z",
    phase: str = "Running",
    state: dict[str, Any] | None = None,
    last_state: dict[str, Any] | None = None,
    restarts: int = 0,
    container_statuses: bool = True,
    metadata: dict[str, Any] | None = None,
    **status_fields: Any,
) -> dict[str, Any]:
    """A v1 Pod as it appears in a PodList."""
    pod_status: dict[str, Any] = {
        "phase": phase,
        "hostIP": "10.0.1.17",
        "podIP": "10.244.1.23",
        "startTime": created,
        "conditions": [{"type": "PodScheduled", "status": "True"}],
    }
    if container_statuses:
        pod_status["containerStatuses"] = [
            {
                "name": "bot",
                "state": state if state is not None else running_state(),
                "lastState": last_state or {},
                "ready": state is None or "running" in state,
                "restartCount": restarts,
                "image": IMAGE,
                "imageID": "ghcr.io/coyote/runtime@sha256:" + "ef" * 32,
                "containerID": "containerd://" + "12" * 32,
                "started": state is None or "running" in state,
            }
        ]
    pod_status.update(status_fields)
    return {
        "metadata": {
            "name": name,
            "generateName": f"{NAME}-7d9f8b6c5d-",
            "namespace": NS,
            "uid": "a1b2c3d4-0000-4000-8000-000000000001",
            "resourceVersion": "5012",
            "creationTimestamp": created,
            "labels": {
                "app.kubernetes.io/name": "coyote-bot",
                "coyote.dev/runtime-id": runtime_label(RUNTIME),
                "pod-template-hash": "7d9f8b6c5d",
            },
            **(metadata or {}),
        },
        "spec": {"containers": [{"name": "bot", "image": IMAGE}]},
        "status": pod_status,
    }


def pod_list(*pods: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": "PodList",
        "apiVersion": "v1",
        "metadata": {"resourceVersion": "6000"},
        "items": list(pods),
    }


def configmap_created(body: dict[str, Any]) -> dict[str, Any]:
    created = dict(body)
    created["metadata"] = {
        **body["metadata"],
        "uid": "c0ffee00-0000-4000-8000-000000000002",
        "resourceVersion": "4000",
        "creationTimestamp": "2024-05-01T09:00:00Z",
    }
    return created


def echo_created(request: httpx.Request) -> httpx.Response:
    """The API server's 201: the object sent back with server-set metadata."""
    body = json.loads(request.content)
    body["metadata"].update(
        {"uid": "9e8d7c6b-0000-4000-8000-000000000003", "resourceVersion": "4001"}
    )
    return httpx.Response(201, json=body)


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=API, assert_all_called=False) as router:
        yield router


@pytest.fixture
def backend() -> Iterator[KubernetesBackend]:
    backend = KubernetesBackend(
        api_url=API,
        namespace=NS,
        image=IMAGE,
        token=TOKEN,
        env=ENV,
        resources={"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}},
    )
    yield backend
    backend.close()


def body_of(request: httpx.Request) -> dict[str, Any]:
    return json.loads(request.content)


def pods_route(api: respx.MockRouter, *pods: dict[str, Any]) -> respx.Route:
    selector = f"app.kubernetes.io/name=coyote-bot,coyote.dev/runtime-id={runtime_label(RUNTIME)}"
    return api.get(PODS, params={"labelSelector": selector}).respond(200, json=pod_list(*pods))


# -- NAMES -----------------------------------------------------------------------------------


def test_deployment_name_of_a_dotted_id_is_mapped_and_hashed() -> None:
    name = deployment_name("acme.sma-live")
    assert re.fullmatch(r"coyote-bot-acme-sma-live--[0-9a-f]{10}", name)


def test_ids_differing_only_in_dot_or_dash_get_different_names() -> None:
    ids = ["acme.sma-live", "acme-sma.live", "acme.sma.live", "acme-sma-live", "ACME.sma-live"]
    names = [deployment_name(runtime_id) for runtime_id in ids]
    labels = [runtime_label(runtime_id) for runtime_id in ids]
    assert len(set(names)) == len(ids)
    assert len(set(labels)) == len(ids)
    # An id that is already a DNS label is used as it is.
    assert deployment_name("acme-sma-live") == "coyote-bot-acme-sma-live"


def test_an_unhashed_name_cannot_equal_a_hashed_one() -> None:
    hashed = deployment_name("acme.sma-live")
    # The id that would spell the hashed name out literally contains "--", so it is hashed too.
    forged = hashed.removeprefix("coyote-bot-")
    assert deployment_name(forged) != hashed
    assert runtime_label(forged) != runtime_label("acme.sma-live")


@pytest.mark.parametrize(
    "runtime_id",
    [
        "acme." + "x" * 120,
        "acme." + "x" * 120 + "y",
        "a" * 52,
        "a" * 53,
        "Org_With.Weird!chars-",
        "...",
        "acme.ünïcode",
    ],
)
def test_names_and_labels_are_valid_and_at_most_63_characters(runtime_id: str) -> None:
    name = deployment_name(runtime_id)
    assert len(name) <= 63
    assert re.fullmatch(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?", name)
    label = runtime_label(runtime_id)
    assert len(label) <= 63
    assert re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?", label)


def test_truncated_ids_sharing_a_prefix_do_not_collide() -> None:
    long_a = "acme." + "x" * 120 + "a"
    long_b = "acme." + "x" * 120 + "b"
    assert deployment_name(long_a) != deployment_name(long_b)
    assert runtime_label(long_a) != runtime_label(long_b)


def test_label_of_a_label_safe_id_is_the_id() -> None:
    assert runtime_label("acme.sma-live") == "acme.sma-live"


def test_bundle_configmap_name_takes_12_hex_digits_and_refuses_other_digests() -> None:
    assert bundle_configmap_name(DIGEST) == CONFIGMAP
    with pytest.raises(BackendError, match="sha256"):
        bundle_configmap_name("md5:abc")


# -- LAUNCH ----------------------------------------------------------------------------------


def test_launch_creates_the_bundle_configmap_and_the_deployment(
    api: respx.MockRouter, backend: KubernetesBackend
) -> None:
    configmap = api.post(CONFIGMAPS).mock(side_effect=echo_created)
    create = api.post(DEPLOYMENTS).mock(side_effect=echo_created)

    spec = make_spec()
    ref = backend.launch(spec)

    assert ref == NAME
    cm_request = configmap.calls.last.request
    assert cm_request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert cm_request.headers["Content-Type"] == "application/json"
    cm = body_of(cm_request)
    assert cm["apiVersion"] == "v1"
    assert cm["kind"] == "ConfigMap"
    assert cm["metadata"]["name"] == CONFIGMAP
    assert cm["metadata"]["namespace"] == NS
    assert cm["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "coyote",
        "coyote.dev/digest-prefix": "abababababab",
    }
    assert cm["immutable"] is True
    assert base64.b64decode(cm["binaryData"]["bundle.tar.gz"]) == BUNDLE
    assert "data" not in cm

    dep = body_of(create.calls.last.request)
    assert dep["apiVersion"] == "apps/v1"
    assert dep["kind"] == "Deployment"
    labels = {
        "app.kubernetes.io/name": "coyote-bot",
        "app.kubernetes.io/managed-by": "coyote",
        "coyote.dev/runtime-id": "acme.sma-live",
    }
    assert dep["metadata"]["name"] == NAME
    assert dep["metadata"]["labels"] == labels
    assert dep["metadata"]["annotations"]["coyote.dev/runtime-id"] == RUNTIME
    assert dep["metadata"]["annotations"]["coyote.dev/release"] == RELEASE
    assert "resourceVersion" not in dep["metadata"]
    assert dep["spec"]["replicas"] == 1
    assert dep["spec"]["strategy"] == {"type": "Recreate"}
    assert dep["spec"]["selector"] == {
        "matchLabels": {"app.kubernetes.io/name": "coyote-bot", "coyote.dev/runtime-id": RUNTIME}
    }
    template = dep["spec"]["template"]
    assert template["metadata"]["labels"] == labels
    pod_spec = template["spec"]
    assert pod_spec["terminationGracePeriodSeconds"] == 30
    assert pod_spec["restartPolicy"] == "Always"
    assert pod_spec["automountServiceAccountToken"] is False
    assert "serviceAccountName" not in pod_spec
    assert pod_spec["volumes"] == [
        {"name": "bundle", "configMap": {"name": CONFIGMAP}},
        {"name": "tmp", "emptyDir": {}},
    ]
    [container] = pod_spec["containers"]
    assert container["name"] == "bot"
    assert container["image"] == IMAGE
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["command"] == ["coyote-sdk"]
    assert container["args"] == spec.command_args("/bundle/bundle.tar.gz")
    assert container["args"][:2] == ["run", "/bundle/bundle.tar.gz"]
    assert container["args"][container["args"].index("--params-json") + 1] == '{"fast": 10}'
    assert container["env"] == [
        {"name": "COYOTE_KAFKA_BOOTSTRAP", "value": "kafka:9092"},
        {"name": "COYOTE_REDIS_URL", "value": "redis://redis:6379/0"},
    ]
    assert container["volumeMounts"] == [
        {"name": "bundle", "mountPath": "/bundle", "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    assert container["securityContext"] == {
        "runAsNonRoot": True,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    assert container["resources"] == {
        "requests": {"cpu": "100m", "memory": "256Mi"},
        "limits": {"memory": "512Mi"},
    }


def test_launch_with_a_service_account_names_it_and_mounts_its_token(
    api: respx.MockRouter,
) -> None:
    api.post(CONFIGMAPS).mock(side_effect=echo_created)
    create = api.post(DEPLOYMENTS).mock(side_effect=echo_created)
    backend = KubernetesBackend(
        api_url=API,
        namespace=NS,
        image=IMAGE,
        service_account="coyote-bot",
        image_pull_policy="Always",
    )
    try:
        backend.launch(make_spec())
    finally:
        backend.close()

    pod_spec = body_of(create.calls.last.request)["spec"]["template"]["spec"]
    assert pod_spec["serviceAccountName"] == "coyote-bot"
    assert pod_spec["automountServiceAccountToken"] is False  # bot code gets no API token
    assert pod_spec["containers"][0]["imagePullPolicy"] == "Always"
    assert "resources" not in pod_spec["containers"][0]
    assert pod_spec["containers"][0]["env"] == []


def test_launch_replaces_an_existing_deployment_with_its_resource_version(
    api: respx.MockRouter, backend: KubernetesBackend
) -> None:
    configmap = api.post(CONFIGMAPS).respond(
        409,
        json=status(
            409,
            "AlreadyExists",
            f'configmaps "{CONFIGMAP}" already exists',
            name=CONFIGMAP,
            kind="configmaps",
        ),
    )
    create = api.post(DEPLOYMENTS).respond(
        409,
        json=status(
            409,
            "AlreadyExists",
            f'deployments.apps "{NAME}" already exists',
            name=NAME,
            group="apps",
            kind="deployments",
        ),
    )
    read = api.get(f"{DEPLOYMENTS}/{NAME}").respond(200, json=deployment(resource_version="8123"))
    replace = api.put(f"{DEPLOYMENTS}/{NAME}").respond(
        200, json=deployment(resource_version="8124")
    )

    ref = backend.launch(make_spec(release="sha256:" + "ee" * 32))

    assert ref == NAME
    assert configmap.call_count == 1
    assert create.call_count == 1
    assert read.call_count == 1
    body = body_of(replace.calls.last.request)
    assert body["metadata"]["resourceVersion"] == "8123"
    assert body["metadata"]["annotations"]["coyote.dev/release"] == "sha256:" + "ee" * 32
    assert body["spec"]["replicas"] == 1
    assert body["spec"]["strategy"] == {"type": "Recreate"}


def test_launch_reads_again_when_the_replace_loses_a_race(
    api: respx.MockRouter, backend: KubernetesBackend
) -> None:
    api.post(CONFIGMAPS).mock(side_effect=echo_created)
    api.post(DEPLOYMENTS).respond(
        409, json=status(409, "AlreadyExists", f'deployments.apps "{NAME}" already exists')
    )
    api.get(f"{DEPLOYMENTS}/{NAME}").mock(
        side_effect=[
            httpx.Response(200, json=deployment(resource_version="1")),
            httpx.Response(200, json=deployment(resource_version="2")),
        ]
    )
    conflict = status(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on deployments.apps "{NAME}": the object has been '
        "modified; please apply your changes to the latest version and try again",
    )
    replace = api.put(f"{DEPLOYMENTS}/{NAME}").mock(
        side_effect=[httpx.Response(409, json=conflict), httpx.Response(200, json=deployment())]
    )

    assert backend.launch(make_spec()) == NAME

    versions = [body_of(call.request)["metadata"]["resourceVersion"] for call in replace.calls]
    assert versions == ["1", "2"]


def test_launch_refuses_to_replace_a_deployment_of_another_runtime(
    api: respx.MockRouter, backend: KubernetesBackend
) -> None:
    api.post(CONFIGMAPS).mock(side_effect=echo_created)
    api.post(DEPLOYMENTS).respond(409, json=status(409, "AlreadyExists", "already exists"))
    api.get(f"{DEPLOYMENTS}/{NAME}").respond(200, json=deployment(runtime_id="someone.else"))
    replace = api.put(f"{DEPLOYMENTS}/{NAME}")

    with pytest.raises(BackendError, match=r"not runtime acme\.sma-live's"):
        backend.launch(make_spec())
    assert not replace.called


def test_launch_refuses_while_the_deployment_is_being_deleted(
    api: respx.MockRouter, backend: KubernetesBackend
) -> None:
    api.post(CONFIGMAPS).mock(side_effect=echo_created)
    api.post(DEPLOYMENTS).respond(409, json=status(409, "AlreadyExists", "already exists"))
    deleting = deployment(metadata={"deletionTimestamp": "2024-05-01T10:00:00Z"})
    api.get(f"{DEPLOYMENTS}/{NAME}").respond(200, json=deleting)

    with pytest.raises(BackendError, match="being deleted"):
        backend.launch(make_spec())


# -- SECRETS ---------------------------------------------------------------------------------


def test_launch_keeps_the_secret_env_in_a_secret_the_pod_references(
    api: respx.MockRouter, backend: KubernetesBackend
) -> None:
    api.post(CONFIGMAPS).mock(side_effect=echo_created)
    secret = api.post(SECRETS).mock(side_effect=echo_created)
    create = api.post(DEPLOYMENTS).mock(side_effect=echo_created)

    backend.launch(make_spec(secret_env=SECRET_ENV))

    # The Secret comes before the Deployment: a pod without its Secret cannot start.
    assert [call.request.url.path for call in api.calls] == [CONFIGMAPS, SECRETS, DEPLOYMENTS]
    stored = body_of(secret.calls.last.request)
    assert stored["kind"] == "Secret" and stored["type"] == "Opaque"
    assert stored["metadata"]["name"] == NAME
    assert stored["metadata"]["annotations"] == {"coyote.dev/runtime-id": RUNTIME}
    assert stored["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "coyote"
    assert base64.b64decode(stored["data"]["COYOTE_REDIS_URL"]).decode() == BOT_REDIS_URL
    sent = create.calls.last.request.content.decode()
    assert "d3adb33f" not in sent  # the password is nowhere in the Deployment
    template = body_of(create.calls.last.request)["spec"]["template"]
    [container] = template["spec"]["containers"]
    # The backend's own COYOTE_REDIS_URL gives way to the runtime's: one entry, from the Secret.
    assert container["env"] == [
        {"name": "COYOTE_KAFKA_BOOTSTRAP", "value": "kafka:9092"},
        {
            "name": "COYOTE_REDIS_URL",
            "valueFrom": {"secretKeyRef": {"name": NAME, "key": "COYOTE_REDIS_URL"}},
        },
    ]
    assert re.fullmatch(
        r"[0-9a-f]{64}", template["metadata"]["annotations"]["coyote.dev/secret-env-sha256"]
    )


def test_launch_replaces_an_existing_secret_without_reading_it(
    api: respx.MockRouter, backend: KubernetesBackend
) -> None:
    api.post(CONFIGMAPS).mock(side_effect=echo_created)
    api.post(SECRETS).respond(
        409, json=status(409, "AlreadyExists", f'secrets "{NAME}" already exists')
    )
    replace = api.put(f"{SECRETS}/{NAME}").mock(side_effect=echo_created)
    read = api.get(f"{SECRETS}/{NAME}")
    api.post(DEPLOYMENTS).mock(side_effect=echo_created)

    backend.launch(make_spec(secret_env=SECRET_ENV))

    body = body_of(replace.calls.last.request)
    assert "resourceVersion" not in body["metadata"]  # Secrets allow unconditional updates
    assert base64.b64decode(body["data"]["COYOTE_REDIS_URL"]).decode() == BOT_REDIS_URL
    assert not read.called


def test_a_changed_secret_env_changes_the_pod_template_and_rolls_the_pod(
    api: respx.MockRouter, backend: KubernetesBackend
) -> None:
    api.post(CONFIGMAPS).mock(side_effect=echo_created)
    api.post(SECRETS).mock(side_effect=echo_created)
    create = api.post(DEPLOYMENTS).mock(side_effect=echo_created)

    backend.launch(make_spec(secret_env=SECRET_ENV))
    backend.launch(make_spec(secret_env=SECRET_ENV))
    backend.launch(make_spec(secret_env={"COYOTE_REDIS_URL": BOT_REDIS_URL + "?x=1"}))

    first, again, changed = (body_of(call.request)["spec"]["template"] for call in create.calls)
    assert first == again
    assert first != changed


def test_a_refused_secret_names_the_missing_rbac_rule(
    api: respx.MockRouter, backend: KubernetesBackend
) -> None:
    api.post(CONFIGMAPS).mock(side_effect=echo_created)
    api.post(SECRETS).respond(403, json=status(403, "Forbidden", "forbidden"))
    create = api.post(DEPLOYMENTS)

    with pytest.raises(BackendError) as raised:
        backend.launch(make_spec(secret_env=SECRET_ENV))

    assert 'resources: ["secrets"], verbs: ["create"]' in str(raised.value)
    assert not create.called  # no pod that could not start


def test_oversize_bundle_is_refused_without_any_request(
    api: respx.MockRouter, backend: KubernetesBackend
) -> None:
    with pytest.raises(BackendError, match="ConfigMaps hold at most 1 MiB"):
        backend.launch(make_spec(bundle=b"\0" * 1_000_001))
    assert not api.calls


def test_a_bundle_of_exactly_the_limit_is_launched(
    api: respx.MockRouter, backend: KubernetesBackend
) -> None:
    api.post(CONFIGMAPS).mock(side_effect=echo_created)
    api.post(DEPLOYMENTS).mock(side_effect=echo_created)
    assert backend.launch(make_spec(bundle=b"\0" * 1_000_000)) == NAME


def test_an_invalid_deployment_reports_the_status_message(
    api: respx.MockRouter, backend: KubernetesBackend
) -> None:
    api.post(CONFIGMAPS).mock(side_effect=echo_created)
    message = (
        f'Deployment.apps "{NAME}" is invalid: spec.template.spec.containers[0].image: '
        "Required value"
    )
    api.post(DEPLOYMENTS).respond(
        422,
        json=status(
            422,
            "Invalid",
            message,
            name=NAME,
            group="apps",
            kind="Deployment",
            causes=[
                {
                    "reason": "FieldValueRequired",
                    "message": "Required value",
                    "field": "spec.template.spec.containers[0].image",
                }
            ],
        ),
    )

    with pytest.raises(BackendError, match=r"422: Invalid: .*containers\[0\]\.image"):
        backend.launch(make_spec())


# -- OBSERVE ---------------------------------------------------------------------------------


def test_observe_a_running_pod(api: respx.MockRouter, backend: KubernetesBackend) -> None:
    api.get(f"{DEPLOYMENTS}/{NAME}").respond(200, json=deployment())
    pods_route(api, pod())

    seen = backend.observe(RUNTIME)

    assert seen.alive is True
    assert seen.ref == NAME
    assert seen.restarts == 0
    assert seen.exit_code is None
    assert seen.detail is None


def test_observe_crash_loop_surfaces_reason_exit_code_and_restarts(
    api: respx.MockRouter, backend: KubernetesBackend
) -> None:
    api.get(f"{DEPLOYMENTS}/{NAME}").respond(200, json=deployment())
    crashing = pod(
        state={
            "waiting": {
                "reason": "CrashLoopBackOff",
                "message": (
                    "back-off 1m20s restarting failed container=bot "
                    f"pod={NAME}-7d9f8b6c5d-x2k4p_{NS}(a1b2c3d4)"
                ),
            }
        },
        last_state={
            "terminated": {
                "exitCode": 1,
                "reason": "Error",
                "startedAt": "2024-05-01T09:04:00Z",
                "finishedAt": "2024-05-01T09:04:02Z",
                "containerID": "containerd://" + "34" * 32,
            }
        },
        restarts=4,
    )
    pods_route(api, crashing)

    seen = backend.observe(RUNTIME)

    assert seen.alive is False
    assert seen.exit_code == 1
    assert seen.restarts == 4
    assert seen.ref == NAME
    assert seen.detail is not None
    assert seen.detail.startswith("CrashLoopBackOff: back-off 1m20s restarting failed container")
    assert "exit code 1" in seen.detail


def test_observe_image_pull_back_off_surfaces(
    api: respx.MockRouter, backend: KubernetesBackend
) -> None:
    api.get(f"{DEPLOYMENTS}/{NAME}").respond(200, json=deployment())
    message = f'Back-off pulling image "{IMAGE}"'
    pods_route(
        api,
        pod(phase="Pending", state={"waiting": {"reason": "ImagePullBackOff", "message": message}}),
    )

    seen = backend.observe(RUNTIME)

    assert seen.alive is False
    assert seen.exit_code is None
    assert seen.detail == f"ImagePullBackOff: {message}"


def test_observe_a_starting_pod_is_alive(api: respx.MockRouter, backend: KubernetesBackend) -> None:
    api.get(f"{DEPLOYMENTS}/{NAME}").respond(200, json=deployment())
    pods_route(api, pod(phase="Pending", state={"waiting": {"reason": "ContainerCreating"}}))

    seen = backend.observe(RUNTIME)

    assert seen.alive is True
    assert seen.detail == "ContainerCreating"


def test_observe_an_unschedulable_pod_says_why(
    api: respx.MockRouter, backend: KubernetesBackend
) -> None:
    api.get(f"{DEPLOYMENTS}/{NAME}").respond(200, json=deployment())
    message = "0/3 nodes are available: 3 Insufficient memory."
    unscheduled = pod(
        phase="Pending",
        container_statuses=False,
        conditions=[
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": message,
            }
        ],
    )
    pods_route(api, unscheduled)

    seen = backend.observe(RUNTIME)

    assert seen.alive is True
    assert seen.detail == f"Unschedulable: {message}"


def test_observe_sums_restarts_and_reads_the_newest_pod(
    api: respx.MockRouter, backend: KubernetesBackend
) -> None:
    api.get(f"{DEPLOYMENTS}/{NAME}").respond(200, json=deployment())
    old = pod(
        f"{NAME}-5b8c9d7f6e-aaaaa",
        created="2024-05-01T08:00:00Z",
        restarts=2,
        metadata={"deletionTimestamp": "2024-05-01T09:00:30Z"},
    )
    new = pod(created="2024-05-01T09:00:01Z", restarts=1)
    pods_route(api, old, new)

    seen = backend.observe(RUNTIME)

    assert seen.alive is True
    assert seen.restarts == 3
    assert seen.detail is None


def test_observe_an_absent_deployment(api: respx.MockRouter, backend: KubernetesBackend) -> None:
    api.get(f"{DEPLOYMENTS}/{NAME}").respond(404, json=not_found("deployments", NAME))
    pods = pods_route(api)

    seen = backend.observe(RUNTIME)

    assert seen.alive is False
    assert seen.ref is None
    assert seen.restarts == 0
    assert not pods.called


def test_observe_a_deployment_scaled_to_zero(
    api: respx.MockRouter, backend: KubernetesBackend
) -> None:
    api.get(f"{DEPLOYMENTS}/{NAME}").respond(
        200, json=deployment(replicas=0, status={"observedGeneration": 4, "replicas": 0})
    )
    pods_route(api)

    seen = backend.observe(RUNTIME)

    assert seen.alive is False
    assert seen.ref == NAME
    assert seen.exit_code is None
    assert seen.detail == "stopped: scaled to 0"


def test_observe_scaled_to_zero_while_the_pod_still_terminates_is_not_alive(
    api: respx.MockRouter, backend: KubernetesBackend
) -> None:
    api.get(f"{DEPLOYMENTS}/{NAME}").respond(200, json=deployment(replicas=0))
    pods_route(api, pod(metadata={"deletionTimestamp": "2024-05-01T10:00:30Z"}))

    seen = backend.observe(RUNTIME)

    assert seen.alive is False
    assert seen.detail == "stopping: scaled to 0"


def test_observe_a_deployment_whose_pods_are_refused(
    api: respx.MockRouter, backend: KubernetesBackend
) -> None:
    message = (
        f'pods "{NAME}-7d9f8b6c5d-x2k4p" is forbidden: exceeded quota: bots, requested: '
        "memory=256Mi, used: memory=2Gi, limited: memory=2Gi"
    )
    api.get(f"{DEPLOYMENTS}/{NAME}").respond(
        200,
        json=deployment(
            status={
                "observedGeneration": 3,
                "unavailableReplicas": 1,
                "conditions": [
                    {
                        "type": "ReplicaFailure",
                        "status": "True",
                        "reason": "FailedCreate",
                        "message": message,
                    }
                ],
            }
        ),
    )
    pods_route(api)

    seen = backend.observe(RUNTIME)

    assert seen.alive is False
    assert seen.detail == f"FailedCreate: {message}"


def test_observe_a_failed_pod_reports_its_termination(
    api: respx.MockRouter, backend: KubernetesBackend
) -> None:
    api.get(f"{DEPLOYMENTS}/{NAME}").respond(200, json=deployment())
    evicted = pod(
        phase="Failed",
        reason="Evicted",
        message="The node was low on resource: memory.",
        state={
            "terminated": {
                "exitCode": 137,
                "reason": "OOMKilled",
                "startedAt": "2024-05-01T09:00:05Z",
                "finishedAt": "2024-05-01T09:30:00Z",
            }
        },
    )
    pods_route(api, evicted)

    seen = backend.observe(RUNTIME)

    assert seen.alive is False
    assert seen.exit_code == 137
    assert seen.detail == "OOMKilled, exit code 137"


# -- TERMINATE / REMOVE ----------------------------------------------------------------------


def test_terminate_scales_to_zero(api: respx.MockRouter, backend: KubernetesBackend) -> None:
    patch = api.patch(f"{DEPLOYMENTS}/{NAME}").respond(200, json=deployment(replicas=0))
    pods = pods_route(api, pod())
    delete = api.delete(url__regex=rf"{PODS}/.*")

    backend.terminate(RUNTIME)

    request = patch.calls.last.request
    assert request.headers["Content-Type"] == "application/merge-patch+json"
    assert body_of(request) == {"spec": {"replicas": 0}}
    assert not pods.called
    assert not delete.called


def test_terminate_force_also_deletes_the_pods_at_once(
    api: respx.MockRouter, backend: KubernetesBackend
) -> None:
    api.patch(f"{DEPLOYMENTS}/{NAME}").respond(200, json=deployment(replicas=0))
    first, second = f"{NAME}-7d9f8b6c5d-x2k4p", f"{NAME}-7d9f8b6c5d-q9w8e"
    pods_route(api, pod(first), pod(second))
    delete_first = api.delete(f"{PODS}/{first}", params={"gracePeriodSeconds": "0"}).respond(
        200, json=pod(first)
    )
    delete_second = api.delete(f"{PODS}/{second}", params={"gracePeriodSeconds": "0"}).respond(
        404, json=not_found("pods", second, group="")
    )

    backend.terminate(RUNTIME, force=True)

    assert delete_first.call_count == 1
    assert delete_second.call_count == 1


def test_terminate_an_absent_deployment_does_nothing(
    api: respx.MockRouter, backend: KubernetesBackend
) -> None:
    api.patch(f"{DEPLOYMENTS}/{NAME}").respond(404, json=not_found("deployments", NAME))
    pods = pods_route(api)

    backend.terminate(RUNTIME, force=True)

    assert not pods.called


def test_remove_deletes_the_deployment_in_the_foreground_and_its_secret(
    api: respx.MockRouter, backend: KubernetesBackend
) -> None:
    delete = api.delete(
        f"{DEPLOYMENTS}/{NAME}", params={"propagationPolicy": "Foreground"}
    ).respond(200, json=deployment(metadata={"deletionTimestamp": "2024-05-01T10:00:00Z"}))
    secret = api.delete(f"{SECRETS}/{NAME}").respond(200, json=status(200, "", ""))
    configmaps = api.delete(url__regex=rf"{CONFIGMAPS}.*")

    backend.remove(RUNTIME)

    assert delete.call_count == 1
    assert secret.call_count == 1
    assert not configmaps.called


def test_remove_an_absent_deployment_and_secret_is_fine(
    api: respx.MockRouter, backend: KubernetesBackend
) -> None:
    api.delete(f"{DEPLOYMENTS}/{NAME}").respond(404, json=not_found("deployments", NAME))
    secret = api.delete(f"{SECRETS}/{NAME}").respond(404, json=not_found("secrets", NAME, ""))

    backend.remove(RUNTIME)

    assert secret.call_count == 1


# -- LOGS ------------------------------------------------------------------------------------


LOG = (
    "2024-05-01T09:00:05.123456789Z starting bot acme.sma-live\n"
    "2024-05-01T09:00:05.200000000Z subscribed demo:AAPL\n"
    "2024-05-01T09:00:06.5Z order sent: buy 10 AAPL\n"
)


def test_logs_tail_strips_timestamps_and_offsets_at_the_last_line(
    api: respx.MockRouter, backend: KubernetesBackend
) -> None:
    pods_route(
        api, pod(f"{NAME}-old", created="2024-05-01T08:00:00Z"), pod(created="2024-05-01T09:00:01Z")
    )
    log = api.get(f"{PODS}/{NAME}-7d9f8b6c5d-x2k4p/log").respond(
        200, text=LOG, headers={"Content-Type": "text/plain"}
    )

    chunk = backend.logs(RUNTIME, tail=50)

    assert chunk == LogChunk(
        lines=["starting bot acme.sma-live", "subscribed demo:AAPL", "order sent: buy 10 AAPL"],
        next_offset=1714554006500,
    )
    params = log.calls.last.request.url.params
    assert params["container"] == "bot"
    assert params["timestamps"] == "true"
    assert params["tailLines"] == "50"
    assert "sinceTime" not in params


def test_logs_follow_returns_only_lines_after_the_offset(
    api: respx.MockRouter, backend: KubernetesBackend
) -> None:
    pods_route(api, pod())
    since = 1714554005123  # the first line's millisecond
    log = api.get(f"{PODS}/{NAME}-7d9f8b6c5d-x2k4p/log").respond(200, text=LOG)

    chunk = backend.logs(RUNTIME, since_offset=since)

    assert chunk.lines == ["subscribed demo:AAPL", "order sent: buy 10 AAPL"]
    assert chunk.next_offset == 1714554006500
    params = log.calls.last.request.url.params
    assert params["sinceTime"] == "2024-05-01T09:00:05Z"
    assert "tailLines" not in params


def test_logs_follow_with_nothing_new_keeps_the_offset(
    api: respx.MockRouter, backend: KubernetesBackend
) -> None:
    pods_route(api, pod())
    api.get(f"{PODS}/{NAME}-7d9f8b6c5d-x2k4p/log").respond(200, text=LOG)

    chunk = backend.logs(RUNTIME, since_offset=1714554006500)

    assert chunk == LogChunk(lines=[], next_offset=1714554006500)


def test_logs_without_a_pod_are_empty(api: respx.MockRouter, backend: KubernetesBackend) -> None:
    pods_route(api)

    assert backend.logs(RUNTIME) == LogChunk(lines=[], next_offset=0)
    assert backend.logs(RUNTIME, since_offset=42) == LogChunk(lines=[], next_offset=42)


def test_logs_of_a_container_not_started_yet_are_empty(
    api: respx.MockRouter, backend: KubernetesBackend
) -> None:
    pods_route(api, pod(phase="Pending", state={"waiting": {"reason": "ContainerCreating"}}))
    message = (
        f'container "bot" in pod "{NAME}-7d9f8b6c5d-x2k4p" is waiting to start: ContainerCreating'
    )
    api.get(f"{PODS}/{NAME}-7d9f8b6c5d-x2k4p/log").respond(
        400, json=status(400, "BadRequest", message)
    )

    assert backend.logs(RUNTIME, since_offset=7) == LogChunk(lines=[], next_offset=7)


def test_logs_follow_cut_by_the_byte_limit_leaves_the_partial_line_for_next_time(
    api: respx.MockRouter, backend: KubernetesBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kubernetes, "_FOLLOW_LIMIT_BYTES", 64)
    pods_route(api, pod())
    cut = "2024-05-01T09:00:05.2Z subscribed demo:AAPL\n2024-05-01T09:00:06.5Z order se"
    log = api.get(f"{PODS}/{NAME}-7d9f8b6c5d-x2k4p/log").respond(200, text=cut)

    chunk = backend.logs(RUNTIME, since_offset=1714554005000)

    assert chunk == LogChunk(lines=["subscribed demo:AAPL"], next_offset=1714554005200)
    assert log.calls.last.request.url.params["limitBytes"] == "64"


# -- ERRORS ----------------------------------------------------------------------------------


def test_forbidden_names_the_missing_rbac_permission(
    api: respx.MockRouter, backend: KubernetesBackend
) -> None:
    message = (
        f'deployments.apps "{NAME}" is forbidden: User '
        '"system:serviceaccount:coyote:control-plane" cannot get resource "deployments" in API '
        f'group "apps" in the namespace "{NS}"'
    )
    api.get(f"{DEPLOYMENTS}/{NAME}").respond(
        403, json=status(403, "Forbidden", message, name=NAME, group="apps", kind="deployments")
    )

    with pytest.raises(BackendError, match=r"RBAC.*may not get deployments") as raised:
        backend.observe(RUNTIME)
    assert 'apiGroups: ["apps"], resources: ["deployments"], verbs: ["get"]' in str(raised.value)
    assert "system:serviceaccount:coyote:control-plane" in str(raised.value)


@pytest.mark.parametrize(
    ("method", "path", "verb", "resource"),
    [
        ("POST", CONFIGMAPS, "create", "configmaps"),
        ("GET", PODS, "list", "pods"),
        ("GET", f"{PODS}/{NAME}-x/log", "get", "pods/log"),
    ],
)
def test_forbidden_verb_and_resource_follow_the_request(
    api: respx.MockRouter,
    backend: KubernetesBackend,
    method: str,
    path: str,
    verb: str,
    resource: str,
) -> None:
    api.route(method=method, path=path).respond(403, json=status(403, "Forbidden", "forbidden"))
    api.route().respond(200, json=pod_list(pod(f"{NAME}-x")))

    def act() -> object:
        return backend.launch(make_spec()) if resource == "configmaps" else backend.logs(RUNTIME)

    with pytest.raises(BackendError, match=f"may not {verb} {resource} "):
        act()


def test_unauthorized_says_the_token_is_refused(
    api: respx.MockRouter, backend: KubernetesBackend
) -> None:
    api.get(f"{DEPLOYMENTS}/{NAME}").respond(401, json=status(401, "Unauthorized", "Unauthorized"))

    with pytest.raises(BackendError, match=r"401 Unauthorized.*get deployments"):
        backend.observe(RUNTIME)


def test_a_server_error_without_a_status_body_is_reported(
    api: respx.MockRouter, backend: KubernetesBackend
) -> None:
    api.get(f"{DEPLOYMENTS}/{NAME}").respond(502, text="<html>Bad Gateway</html>")

    with pytest.raises(BackendError, match="failed with 502: <html>Bad Gateway"):
        backend.observe(RUNTIME)


def test_network_errors_become_backend_errors(
    api: respx.MockRouter, backend: KubernetesBackend
) -> None:
    api.get(f"{DEPLOYMENTS}/{NAME}").mock(side_effect=httpx.ConnectTimeout("timed out"))

    with pytest.raises(BackendError, match=r"unreachable.*ConnectTimeout"):
        backend.observe(RUNTIME)


def test_requests_time_out_after_10_seconds(backend: KubernetesBackend) -> None:
    assert backend._client.timeout == httpx.Timeout(10.0)


# -- IN CLUSTER ------------------------------------------------------------------------------


@pytest.fixture
def service_account(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "token").write_text("first-token\n")
    (tmp_path / "ca.crt").write_text(Path(certifi.where()).read_text())
    (tmp_path / "namespace").write_text("coyote-bots")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    return tmp_path


def test_in_cluster_reads_the_service_account_and_rereads_a_rotated_token(
    service_account: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = KubernetesBackend.in_cluster(image=IMAGE, secrets_dir=service_account)
    try:
        assert backend.api_url == "https://10.96.0.1:443"
        assert backend.namespace == "coyote-bots"
        with respx.mock(base_url="https://10.96.0.1:443") as api:
            route = api.get(f"/apis/apps/v1/namespaces/coyote-bots/deployments/{NAME}").respond(
                404, json=not_found("deployments", NAME)
            )
            backend.observe(RUNTIME)
            assert route.calls.last.request.headers["Authorization"] == "Bearer first-token"

            (service_account / "token").write_text("rotated-token\n")
            monkeypatch.setattr(kubernetes, "_TOKEN_REFRESH_S", 0.0)
            backend.observe(RUNTIME)
            assert route.calls.last.request.headers["Authorization"] == "Bearer rotated-token"
    finally:
        backend.close()


def test_in_cluster_namespace_can_be_given_and_ipv6_hosts_are_bracketed(
    service_account: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "fd00:10:96::1")
    backend = KubernetesBackend.in_cluster(
        image=IMAGE, namespace="bots", env=ENV, secrets_dir=service_account
    )
    try:
        assert backend.api_url == "https://[fd00:10:96::1]:443"
        assert backend.namespace == "bots"
        assert backend.env == ENV
    finally:
        backend.close()


def test_in_cluster_outside_a_pod_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_PORT", raising=False)
    with pytest.raises(BackendError, match="not running in a Kubernetes pod"):
        KubernetesBackend.in_cluster(image=IMAGE, secrets_dir=tmp_path)


def test_in_cluster_without_a_token_is_an_error(
    service_account: Path,
) -> None:
    (service_account / "token").unlink()
    with pytest.raises(BackendError, match="no service-account token"):
        KubernetesBackend.in_cluster(image=IMAGE, secrets_dir=service_account)


def test_backend_identity() -> None:
    assert KubernetesBackend.name == "kubernetes"
    assert KubernetesBackend.restarts_itself is True
