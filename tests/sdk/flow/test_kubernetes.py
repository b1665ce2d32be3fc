"""The helm-values and kubernetes targets: values golden files, and every object of the chart
rendered with them valid against Kubernetes' OpenAPI schemas (kubernetes-validate, strict:
no unknown field)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from coyote_sdk.flow import CompileError, Flow, compile_flow, load_flow, load_flow_text
from coyote_sdk.flow._helm import check_objects, find_helm
from tests.sdk.flow.conftest import DEMO, FLOWS, GOLDEN, REPO, assert_golden

pytestmark = pytest.mark.unit

CHART = REPO / "helm" / "coyote"
KUBERNETES_VERSIONS = ("1.27", "1.36")
"""The chart's oldest Kubernetes (Chart.yaml's kubeVersion) and the one helm is built for."""


def demo_on_kubernetes() -> Flow:
    """The demo with a random walk instead of the replay of this machine's files."""
    text = DEMO.read_text().replace(
        "        source: replay\n        venue: demo-fx\n        files: [../data/EURUSD.csv]\n"
        "        barsPerSecond: 20\n",
        "        source: random-walk\n        venue: demo-fx\n        symbols: {EURUSD: 1.08}\n",
    )
    text = text.replace(
        "        rebase: true        # the first bar opens when the feed starts\n", ""
    )
    return load_flow_text(text, path=DEMO)


def external_without_agents() -> Flow:
    text = (FLOWS / "external.yaml").read_text()
    return load_flow_text(
        text.replace("  - name: agents\n", "  - name: agents\n    enabled: false\n"),
        path=FLOWS / "external.yaml",
    )


FLOWS_ON_KUBERNETES = {
    "demo": demo_on_kubernetes,
    "external": external_without_agents,
    "cluster": lambda: load_flow(FLOWS / "cluster.yaml"),
}


@pytest.fixture(scope="module")
def helm() -> Path:
    try:
        return find_helm(REPO / ".coyote" / "tools" / "bin" / "helm")
    except CompileError as exc:
        pytest.fail(f"{exc} (scripts/bootstrap.sh installs it)")


@pytest.mark.parametrize("name", sorted(FLOWS_ON_KUBERNETES))
def test_helm_values_match_their_golden_file(name: str) -> None:
    values = compile_flow(FLOWS_ON_KUBERNETES[name](), "helm-values", source=f"{name}.yaml")

    assert_golden(
        GOLDEN / f"{name}.values.yaml",
        values,
        regenerate="COYOTE_UPDATE_GOLDEN=1 .venv/bin/pytest tests/sdk/flow",
    )


def test_secrets_become_the_charts_existing_secret_references() -> None:
    values = yaml.safe_load(compile_flow(load_flow(FLOWS / "cluster.yaml"), "helm-values"))

    assert values["redis"]["auth"] == {
        "enabled": True,
        "existingSecret": "coyote-redis",
        "existingSecretPasswordKey": "redis-password",
    }
    assert values["postgresql"] == {
        "enabled": False,
        "auth": {
            "existingSecret": "coyote-database",
            "existingSecretPasswordKey": "password",
            "username": "coyote",
            "database": "trading",
        },
        "external": {"host": "db.data.svc", "port": 5432, "sslMode": "verify-full"},
    }
    assert values["vault"] == {
        "enabled": False,
        "external": {"addr": "https://vault.security.svc:8200"},
        "auth": {"method": "kubernetes"},
    }


def test_what_the_chart_cannot_run_is_refused_by_name() -> None:
    with pytest.raises(CompileError, match="agent unit 'risk-watcher': the chart runs no agent"):
        compile_flow(load_flow(FLOWS / "external.yaml"), "helm-values")
    with pytest.raises(CompileError, match="feed 'eurusd-replay': a replay feed reads files"):
        compile_flow(load_flow(DEMO), "helm-values")


def _render(flow: Flow, helm: Path) -> list[dict[str, Any]]:
    text = compile_flow(flow, "kubernetes", chart=CHART, helm=helm)
    return [d for d in yaml.safe_load_all(text) if d]


@pytest.mark.parametrize("name", sorted(FLOWS_ON_KUBERNETES))
def test_every_rendered_object_is_valid_kubernetes(name: str, helm: Path) -> None:
    objects = _render(FLOWS_ON_KUBERNETES[name](), helm)

    assert objects
    for version in KUBERNETES_VERSIONS:
        for item in objects:
            try:
                kubernetes_validate.validate(item, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                where = "/".join(str(p) for p in exc.path)
                pytest.fail(
                    f"{item['kind']}/{item['metadata']['name']} is invalid for Kubernetes "
                    f"{version} at {where}: {exc.message}"
                )


def test_the_rendered_objects_are_the_flows(helm: Path) -> None:
    objects = _render(load_flow(FLOWS / "cluster.yaml"), helm)
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for item in objects:
        by_kind.setdefault(item["kind"], []).append(item)

    executors = [s for s in by_kind["StatefulSet"] if "executor" in s["metadata"]["name"]]
    assert [s["spec"]["replicas"] for s in executors] == [3]
    assert all(
        o["metadata"]["namespace"] == "acme-live" for o in objects if "namespace" in o["metadata"]
    )
    assert all(o["metadata"]["labels"]["coyote.dev/flow"] == "acme-live" for o in objects)
    accounts = "\n".join(
        value
        for config in by_kind["ConfigMap"]
        for value in (config.get("data") or {}).values()
        if "[accounts." in value
    )
    assert '[accounts."acme.alpaca-live"]' in accounts
    feeds = [
        d for d in by_kind["Deployment"] if d["metadata"].get("labels", {}).get("coyote.dev/feed")
    ]
    assert [f["spec"]["template"]["spec"]["containers"][0]["args"] for f in feeds] == [
        ["binance", "BTCUSDT", "--venue", "crypto"]
    ]
    # Bots are deployments of the control plane, made by `flow apply`: not chart objects.
    assert not any("goog-sma" in o["metadata"]["name"] for o in objects)
    # Neither installed service is rendered: all four are external.
    assert not by_kind.get("StatefulSet", []) or all(
        "executor" in s["metadata"]["name"] for s in by_kind["StatefulSet"]
    )


def test_a_missing_chart_or_helm_is_said_clearly(tmp_path: Path) -> None:
    flow = demo_on_kubernetes()

    with pytest.raises(CompileError, match=r"no chart at .*Chart\.yaml"):
        compile_flow(flow, "kubernetes", chart=tmp_path)
    with pytest.raises(CompileError, match="is not an executable helm binary"):
        compile_flow(flow, "kubernetes", chart=CHART, helm=tmp_path / "helm")


def test_values_the_chart_refuses_fail_with_its_message(tmp_path: Path) -> None:
    refusing = tmp_path / "helm"
    refusing.write_text(
        "#!/bin/sh\necho 'Error: VALUES VALIDATION: executor.replicaCount: too many' >&2\nexit 1\n"
    )
    refusing.chmod(0o755)

    with pytest.raises(CompileError, match=r"executor\.replicaCount: too many") as caught:
        compile_flow(demo_on_kubernetes(), "kubernetes", chart=CHART, helm=refusing)
    assert caught.value.refused


def _paths(values: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    if not isinstance(values, dict) or prefix in {("commonLabels",)}:
        return [prefix]
    return [path for key, value in values.items() for path in _paths(value, (*prefix, key))]


@pytest.mark.parametrize("name", sorted(FLOWS_ON_KUBERNETES))
def test_every_value_set_is_a_value_of_the_chart(name: str) -> None:
    chart_values = yaml.safe_load((CHART / "values.yaml").read_text())
    values = yaml.safe_load(compile_flow(FLOWS_ON_KUBERNETES[name](), "helm-values"))

    for path in _paths(values):
        node = chart_values
        for key in path:
            assert isinstance(node, dict) and key in node, (
                f"{'.'.join(path)} is not a value of helm/coyote (values.yaml)"
            )
            node = node[key]


def test_the_kubernetes_target_refuses_an_invalid_object_naming_it_and_its_field() -> None:
    manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: accounts, colour: red}\n"

    with pytest.raises(CompileError, match=r"ConfigMap/accounts: metadata: .*'colour'"):
        check_objects(manifest)
