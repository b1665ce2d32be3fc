"""The chart lints, renders objects the Kubernetes API accepts (its OpenAPI schemas, offline),
refuses bad values with every error at once, and documents every value."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.helm.conftest import (
    CHART,
    KUBE_VERSION,
    PRODUCTION,
    Objects,
    named,
    of_kind,
    run_helm,
    template_args,
)

pytestmark = pytest.mark.unit

CUSTOM_RESOURCES = {"ServiceMonitor"}
"""Kinds outside Kubernetes' own schemas, checked by hand below."""


@pytest.mark.parametrize("values", [None, PRODUCTION], ids=["default", "production"])
def test_helm_lint_passes_strictly(helm: Path, values: Path | None) -> None:
    args = ["lint", str(CHART), "--strict", "--kube-version", KUBE_VERSION]
    if values is not None:
        args += ["--values", str(values)]

    answer = run_helm(helm, *args)

    assert answer.returncode == 0, answer.stdout + answer.stderr
    assert "0 chart(s) failed" in answer.stdout


def test_every_object_is_valid_against_the_kubernetes_schemas(objects: Objects) -> None:
    problems = []
    for obj in objects:
        if obj["kind"] in CUSTOM_RESOURCES:
            continue
        try:
            # Strict: an unknown field (a typo, a misplaced key) is an error, not ignored.
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            problems.append(f"{obj['kind']}/{obj['metadata']['name']}: {exc.message}")
    assert problems == []


def test_every_object_has_a_name_labels_and_the_right_namespace(objects: Objects) -> None:
    for obj in objects:
        metadata = obj["metadata"]
        assert re.fullmatch(r"[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?", metadata["name"])
        assert metadata["labels"]["app.kubernetes.io/instance"] == "coyote"
        if obj["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            assert metadata["namespace"] in ("coyote", "coyote-bots"), obj["kind"]


def test_service_monitors_scrape_metrics_of_existing_service_ports(
    production_objects: Objects,
) -> None:
    monitors = of_kind(production_objects, "ServiceMonitor")
    services = of_kind(production_objects, "Service")

    assert {m["metadata"]["name"] for m in monitors} == {
        "coyote-control-plane",
        "coyote-reports",
        "coyote-executor",
    }
    for monitor in monitors:
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        spec = monitor["spec"]
        assert set(spec) <= {"jobLabel", "namespaceSelector", "selector", "endpoints"}
        assert spec["namespaceSelector"] == {"matchNames": ["coyote"]}
        wanted = spec["selector"]["matchLabels"]
        matching = [s for s in services if wanted.items() <= s["metadata"]["labels"].items()]
        assert len(matching) == 1, monitor["metadata"]["name"]
        port_names = {p["name"] for p in matching[0]["spec"]["ports"]}
        for endpoint in spec["endpoints"]:
            assert set(endpoint) <= {"port", "path", "interval", "scrapeTimeout"}
            assert endpoint["port"] in port_names
            assert endpoint["path"] == "/metrics"
            assert re.fullmatch(r"\d+[smh]", endpoint["interval"])


def test_service_monitors_are_off_by_default(default_objects: Objects) -> None:
    assert of_kind(default_objects, "ServiceMonitor") == []


# -- coyote.validateValues ---------------------------------------------------------------------


def fails(helm: Path, *sets: str, values: tuple[Path, ...] = ()) -> str:
    answer = run_helm(helm, *template_args(*values, sets=sets))
    assert answer.returncode != 0, "the chart accepted the values"
    return answer.stderr


def test_more_executors_than_intent_partitions_is_refused(helm: Path) -> None:
    error = fails(helm, "executor.replicaCount=7", "kafka.intentsTopicPartitions=6")

    assert (
        "executor.replicaCount: 7 executors but the intents topic has 6 partitions "
        "(kafka.intentsTopicPartitions)"
    ) in error
    assert "Use at most 6 executors" in error


def test_as_many_executors_as_partitions_is_accepted(render: Callable[..., Objects]) -> None:
    rendered = render(sets=("executor.replicaCount=6", "kafka.intentsTopicPartitions=6"))

    assert named(rendered, "StatefulSet", "coyote-executor")["spec"]["replicas"] == 6


def test_every_value_error_is_reported_at_once(helm: Path) -> None:
    error = fails(
        helm,
        "executor.replicaCount=20",
        "kafka.enabled=false",
        "redis.enabled=false",
        "postgresql.enabled=false",
        "vault.enabled=false",
        "vault.auth.method=token",
        "feeds[0].name=Not_A_Label",
    )

    for value in (
        "executor.replicaCount",
        "kafka.external.bootstrapServers",
        "redis.external.url",
        "postgresql.auth.existingSecret",
        "postgresql.external.host",
        "vault.external.addr",
        "vault.auth.existingSecret",
        "feeds[0].name",
        "feeds[0].args",
    ):
        assert f"{value}:" in error, value
    assert error.count("VALUES VALIDATION") == 1


def test_an_external_redis_url_with_a_password_is_refused(helm: Path) -> None:
    error = fails(helm, "redis.enabled=false", "redis.external.url=redis://:hunter2@redis:6379/0")

    assert "redis.external.url: must not hold credentials" in error


def test_feed_names_must_be_unique(helm: Path) -> None:
    error = fails(
        helm,
        "feeds[0].name=fx",
        "feeds[0].args={random-walk,EURUSD}",
        "feeds[1].name=fx",
        "feeds[1].args={random-walk,GBPUSD}",
    )

    assert 'feeds[1].name: "fx" is used by another feed' in error


def test_closing_ingress_to_nobody_is_refused(helm: Path) -> None:
    error = fails(helm, "networkPolicy.allowExternal=false")

    assert "networkPolicy.ingressFrom:" in error


# -- values documented -------------------------------------------------------------------------


def leaves(values: Any, prefix: str = "") -> Iterator[str]:
    """Dotted paths of a values tree's leaves (lists and empty maps are leaves)."""
    if isinstance(values, dict) and values:
        for key, value in values.items():
            yield from leaves(value, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix


@pytest.mark.parametrize(
    "values_file",
    [CHART / "values.yaml", *sorted(CHART.glob("charts/*/values.yaml"))],
    ids=lambda path: str(path.relative_to(CHART)),
)
def test_every_value_is_documented_with_a_param(values_file: Path) -> None:
    text = values_file.read_text()
    params = set(re.findall(r"^\s*## @param ([\w.\[\]-]+) \S", text, flags=re.MULTILINE))
    paths = set(leaves(yaml.safe_load(text)))

    def documented(path: str) -> bool:
        parts = path.split(".")
        return any(".".join(parts[:n]) in params for n in range(1, len(parts) + 1))

    assert sorted(p for p in paths if not documented(p)) == []
    # ... and no @param names a value that does not exist.
    prefixes = {".".join(p.split(".")[:n]) for p in paths for n in range(1, p.count(".") + 2)}
    assert sorted(params - prefixes) == []


VARIANTS = {
    "no-reports-no-policies": ("reports.enabled=false", "networkPolicy.enabled=false"),
    "feeds-and-monitors": (
        "feeds[0].name=eurusd",
        "feeds[0].args={random-walk,EURUSD=1.08}",
        "feeds[0].resources.requests.cpu=50m",
        "feeds[0].resources.requests.memory=64Mi",
        "feeds[0].resources.limits.memory=128Mi",
        "metrics.serviceMonitor.enabled=true",
        "controlPlane.ingress.enabled=true",
    ),
    "vault-audience-and-token-secret-for-redis": (
        "vault.auth.kubernetes.audience=vault",
        "redis.auth.existingSecret=my-redis",
        "postgresql.auth.existingSecret=my-db",
    ),
    "api-only-hard-affinity-digest": (
        "controlPlane.supervisor.backend=none",
        "controlPlane.podAntiAffinityPreset=hard",
        "executor.image.digest=sha256:" + "a" * 64,
        "global.imageRegistry=registry.internal",
        "global.imagePullSecrets={regcred}",
        "commonLabels.team=trading",
        "commonAnnotations.owner=ops",
    ),
    "redis-without-auth-and-schema": (
        "redis.auth.enabled=false",
        "controlPlane.databaseSchema=control_plane",
        "kafka.provisioning.enabled=false",
    ),
}


@pytest.mark.parametrize("sets", VARIANTS.values(), ids=VARIANTS.keys())
def test_other_values_render_valid_objects_too(
    render: Callable[..., Objects], sets: tuple[str, ...]
) -> None:
    rendered = render(sets=sets)

    for obj in rendered:
        if obj["kind"] not in CUSTOM_RESOURCES:
            kubernetes_validate.validate(obj, KUBE_VERSION, strict=True)
    assert rendered
