"""What each component is given: probes on its health routes, disruption budgets, the
executors' StatefulSet, the reports Deployment, feeds, the bot runtime's settings for the
supervisor, and checksums that restart pods when their configuration changes."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from pydantic import BaseModel

from coyote_control_plane.config import Settings
from coyote_executor.config import Settings as ExecutorSettings
from coyote_sdk.config import StackSettings
from tests.helm.conftest import (
    Objects,
    env_of,
    named,
    of_kind,
    pod_labels,
    pod_spec,
)

pytestmark = pytest.mark.unit


def container_of(objects: Objects, kind: str, name: str) -> dict:
    return pod_spec(named(objects, kind, name))["containers"][0]


def probe_path(container: dict, probe: str) -> tuple[str, int]:
    """The path and port number a probe asks."""
    get = container[probe]["httpGet"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    return get["path"], ports.get(get["port"], get["port"])


@pytest.mark.parametrize(
    ("kind", "name", "port"),
    [
        ("Deployment", "coyote-control-plane", 8400),
        ("Deployment", "coyote-reports", 8400),
        ("StatefulSet", "coyote-executor", 8410),
    ],
)
def test_services_are_probed_on_their_health_routes(
    objects: Objects, kind: str, name: str, port: int
) -> None:
    container = container_of(objects, kind, name)

    assert probe_path(container, "livenessProbe") == ("/healthz", port)
    assert probe_path(container, "readinessProbe") == ("/readyz", port)
    if "startupProbe" in container:
        assert probe_path(container, "startupProbe") == ("/healthz", port)


def test_the_executor_serves_its_health_port_where_it_is_probed(objects: Objects) -> None:
    container = container_of(objects, "StatefulSet", "coyote-executor")

    assert env_of(container)["COYOTE_EXECUTOR_HEALTH_PORT"]["value"] == "8410"
    assert {"name": "health", "containerPort": 8410, "protocol": "TCP"} in container["ports"]


@pytest.mark.parametrize(
    ("kind", "name"),
    [
        ("Deployment", "coyote-control-plane"),
        ("Deployment", "coyote-reports"),
        ("StatefulSet", "coyote-executor"),
    ],
)
def test_every_service_has_a_disruption_budget_selecting_its_pods(
    objects: Objects, kind: str, name: str
) -> None:
    workload = named(objects, kind, name)
    budgets = [
        pdb
        for pdb in of_kind(objects, "PodDisruptionBudget")
        if pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels(workload).items()
    ]

    assert len(budgets) == 1
    spec = budgets[0]["spec"]
    assert spec.get("maxUnavailable") == 1 or spec.get("minAvailable")


def test_executors_are_a_statefulset_whose_pod_name_is_the_instance_id(objects: Objects) -> None:
    executors = named(objects, "StatefulSet", "coyote-executor")
    container = pod_spec(executors)["containers"][0]

    assert executors["spec"]["serviceName"] == "coyote-executor-headless"
    named(objects, "Service", "coyote-executor-headless")
    assert env_of(container)["COYOTE_EXECUTOR_INSTANCE_ID"]["valueFrom"] == {
        "fieldRef": {"fieldPath": "metadata.name"}
    }
    assert container["args"] == ["run", "--accounts", "/etc/coyote/accounts/accounts.toml"]


def test_executors_prefer_different_nodes_by_default(default_objects: Objects) -> None:
    spec = pod_spec(named(default_objects, "StatefulSet", "coyote-executor"))

    (term,) = spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "coyote",
        "app.kubernetes.io/instance": "coyote",
        "app.kubernetes.io/component": "executor",
    }


def test_three_production_executors_require_different_nodes(production_objects: Objects) -> None:
    executors = named(production_objects, "StatefulSet", "coyote-executor")
    spec = pod_spec(executors)

    assert executors["spec"]["replicas"] == 3
    (term,) = spec["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == "executor"
    assert term["topologyKey"] == "kubernetes.io/hostname"


def test_the_accounts_file_comes_from_a_config_map_or_an_existing_one(
    default_objects: Objects, production_objects: Objects
) -> None:
    for rendered, configmap in (
        (default_objects, "coyote-executor-accounts"),
        (production_objects, "coyote-accounts"),
    ):
        spec = pod_spec(named(rendered, "StatefulSet", "coyote-executor"))
        volume = next(v for v in spec["volumes"] if v["name"] == "accounts")
        assert volume["configMap"]["name"] == configmap
    data = named(default_objects, "ConfigMap", "coyote-executor-accounts")["data"]
    assert '[accounts."demo.paper"]' in data["accounts.toml"]
    names = {c["metadata"]["name"] for c in of_kind(production_objects, "ConfigMap")}
    assert "coyote-executor-accounts" not in names


def test_changed_configuration_changes_the_pods_checksums(
    render: Callable[..., Objects],
) -> None:
    before, after = render(), render(sets=("controlPlane.supervisor.intervalSeconds=2",))
    edited = render(sets=("executor.accounts=[accounts]",))

    def annotations(rendered: Objects, kind: str, name: str) -> dict:
        return named(rendered, kind, name)["spec"]["template"]["metadata"]["annotations"]

    cp = "coyote-control-plane"
    assert (
        annotations(before, "Deployment", cp)["checksum/config"]
        != annotations(after, "Deployment", cp)["checksum/config"]
    )
    assert (
        annotations(before, "StatefulSet", "coyote-executor")["checksum/accounts"]
        != annotations(edited, "StatefulSet", "coyote-executor")["checksum/accounts"]
    )


# -- the control plane and the supervisor --------------------------------------------------------


def test_the_supervisor_is_told_how_to_run_bots(
    production_objects: Objects, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = named(production_objects, "ConfigMap", "coyote-control-plane")["data"]
    for key, value in data.items():
        monkeypatch.setenv(key, value)
    # What the container's secretKeyRef adds from the Secret (see test_security.py).
    monkeypatch.setenv("COYOTE_CONTROL_PLANE_SUPERVISOR__REDIS_ACL_SECRET", "from-the-secret")

    supervisor = Settings().supervisor

    assert supervisor.backend == "kubernetes"
    assert supervisor.redis_acl is True
    assert supervisor.kubernetes_namespace == "coyote-bots"
    assert supervisor.kubernetes_image == "ghcr.io/coyote/coyote-bot:0.1.0"
    assert supervisor.kubernetes_service_account == "coyote-bot"
    assert supervisor.kubernetes_image_pull_policy == "IfNotPresent"
    assert supervisor.kubernetes_resources == {
        "requests": {"cpu": "100m", "memory": "256Mi"},
        "limits": {"cpu": "500m", "memory": "512Mi"},
    }
    deployment = named(production_objects, "Deployment", "coyote-control-plane")
    envfrom = pod_spec(deployment)["containers"][0]["envFrom"]
    assert {"configMapRef": {"name": "coyote-control-plane"}} in envfrom


def test_the_control_plane_finds_every_service(default_objects: Objects) -> None:
    env = env_of(container_of(default_objects, "Deployment", "coyote-control-plane"))

    assert env["COYOTE_KAFKA_BOOTSTRAP"]["value"] == "coyote-kafka.coyote.svc.cluster.local:9092"
    assert env["COYOTE_REDIS_URL"]["value"] == (
        "redis://:$(COYOTE_REDIS_PASSWORD)@coyote-redis.coyote.svc.cluster.local:6379/0"
    )
    assert env["COYOTE_VAULT_ADDR"]["value"] == "http://coyote-vault.coyote.svc.cluster.local:8200"
    assert env["COYOTE_VAULT_KUBERNETES_ROLE"]["value"] == "coyote-control-plane"
    url = "postgresql+psycopg://coyote:$(COYOTE_DATABASE_PASSWORD)@coyote-postgresql.coyote"
    assert env["COYOTE_CONTROL_PLANE_DATABASE_URL"]["value"].startswith(url)
    assert (
        env["COYOTE_CONTROL_PLANE_REPORTS__DATABASE_URL"]["value"]
        == env["COYOTE_CONTROL_PLANE_DATABASE_URL"]["value"]
    )
    container = container_of(default_objects, "Deployment", "coyote-control-plane")
    assert container["command"] == ["coyote-control-plane"]
    assert container["args"] == ["serve", "--host", "0.0.0.0", "--port", "8400"]


def test_reports_serve_the_same_app_without_supervisor_or_migrations(objects: Objects) -> None:
    reports = container_of(objects, "Deployment", "coyote-reports")
    control_plane = container_of(objects, "Deployment", "coyote-control-plane")
    env = env_of(reports)

    assert reports["image"] == control_plane["image"]
    assert reports["args"] == control_plane["args"]
    assert env["COYOTE_CONTROL_PLANE_SUPERVISOR__BACKEND"]["value"] == "none"
    assert env["COYOTE_CONTROL_PLANE_AUTO_MIGRATE"]["value"] == "false"
    assert "COYOTE_VAULT_ADDR" not in env
    assert pod_spec(named(objects, "Deployment", "coyote-reports"))["serviceAccountName"] == (
        "coyote-reports"
    )


def test_the_ingress_sends_reports_to_their_deployment_over_tls(
    production_objects: Objects,
) -> None:
    (ingress,) = of_kind(production_objects, "Ingress")
    (rule,) = ingress["spec"]["rules"]
    routes = {p["path"]: p["backend"]["service"]["name"] for p in rule["http"]["paths"]}

    assert rule["host"] == "coyote.example.com"
    assert routes == {"/v1/reports": "coyote-reports", "/": "coyote-control-plane"}
    assert ingress["spec"]["tls"] == [
        {"hosts": ["coyote.example.com"], "secretName": "coyote-example-com-tls"}
    ]


def test_the_cookie_is_secure_behind_https(production_objects: Objects) -> None:
    data = named(production_objects, "ConfigMap", "coyote-control-plane")["data"]

    assert data["COYOTE_CONTROL_PLANE_COOKIE_SECURE"] == "true"


# -- feeds and topics --------------------------------------------------------------------------


def test_each_feed_is_a_deployment_of_the_bot_image(render: Callable[..., Objects]) -> None:
    rendered = render(
        sets=(
            "feeds[0].name=eurusd",
            "feeds[0].args={random-walk,EURUSD=1.08,--venue,demo-fx}",
            "feeds[1].name=btc",
            "feeds[1].args={binance,BTCUSDT}",
        )
    )

    feed = named(rendered, "Deployment", "coyote-feed-eurusd")
    container = pod_spec(feed)["containers"][0]
    assert container["image"] == "ghcr.io/coyote/coyote-bot:0.1.0"
    assert container["command"] == ["coyote-sdk", "feed"]
    assert container["args"] == ["random-walk", "EURUSD=1.08", "--venue", "demo-fx"]
    assert feed["spec"]["strategy"] == {"type": "Recreate"}
    named(rendered, "Deployment", "coyote-feed-btc")
    named(rendered, "NetworkPolicy", "coyote-feeds")


def test_the_topics_job_creates_the_protocols_topics(production_objects: Objects) -> None:
    (job,) = of_kind(production_objects, "Job")
    container = pod_spec(job)["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    script = container["args"][0]

    from coyote_sdk import protocol

    for topic in protocol.TOPICS:
        assert f"ensure {topic.name} " in script
    assert env["INTENTS_PARTITIONS"] == "12"
    assert env["REPLICATION_FACTOR"] == "3"
    assert env["MIN_ISR"] == "2"
    assert env["BOOTSTRAP"].startswith("kafka-0.kafka.data.svc.cluster.local:9092")
    assert job["metadata"]["name"] == "coyote-kafka-topics-1"


def test_values_production_is_what_its_name_says(production_objects: Objects) -> None:
    kinds = {o["kind"] for o in production_objects}

    # External Kafka, Redis, PostgreSQL and Vault: none of them is installed.
    assert not {"kafka", "redis", "postgresql", "vault"} & {
        o["metadata"]["labels"].get("app.kubernetes.io/name") for o in production_objects
    }
    assert "ServiceMonitor" in kinds and "Ingress" in kinds
    env = env_of(container_of(production_objects, "StatefulSet", "coyote-executor"))
    assert env["COYOTE_VAULT_ADDR"]["value"] == "https://vault.example.com:8200"
    assert env["COYOTE_VAULT_AUTH"]["value"] == "kubernetes"


# -- the environment is the components' settings -----------------------------------------------

EXPANSION_ONLY = {"COYOTE_DATABASE_PASSWORD", "COYOTE_REDIS_PASSWORD"}
"""Variables the chart defines only for $(VAR) expansion in URLs."""


def setting_names(model: type[BaseModel], prefix: str) -> set[str]:
    """The environment variables a settings class reads (nested groups with ``__``)."""
    names = set()
    for name, field in model.model_fields.items():
        kind = field.annotation
        if isinstance(kind, type) and issubclass(kind, StackSettings):
            names |= setting_names(kind, "COYOTE_")
        elif isinstance(kind, type) and issubclass(kind, BaseModel):
            names |= setting_names(kind, f"{prefix}{name.upper()}__")
        else:
            names.add(f"{prefix}{name.upper()}")
    return names


def environment(objects: Objects, container: dict) -> dict[str, str]:
    """The container's environment as the kubelet builds it: ConfigMaps, secrets (a stand-in
    value), the pod's name, and $(VAR) references expanded."""
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        if "configMapRef" in source:
            env.update(named(objects, "ConfigMap", source["configMapRef"]["name"])["data"])
    for entry in container.get("env") or []:
        if "value" in entry:
            env[entry["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env[m[1]], entry["value"])
        elif "secretKeyRef" in entry["valueFrom"]:
            env[entry["name"]] = "s3cret"
        else:
            env[entry["name"]] = "coyote-executor-0"
    return env


@pytest.mark.parametrize(
    ("kind", "name", "settings"),
    [
        ("Deployment", "coyote-control-plane", Settings),
        ("Deployment", "coyote-reports", Settings),
        ("StatefulSet", "coyote-executor", ExecutorSettings),
    ],
)
def test_every_variable_is_a_setting_the_component_reads(
    objects: Objects,
    monkeypatch: pytest.MonkeyPatch,
    kind: str,
    name: str,
    settings: type[BaseModel],
) -> None:
    prefix = "COYOTE_EXECUTOR_" if settings is ExecutorSettings else "COYOTE_CONTROL_PLANE_"
    env = environment(objects, container_of(objects, kind, name))

    unknown = set(env) - setting_names(settings, prefix) - EXPANSION_ONLY
    assert sorted(unknown) == []
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    parsed = settings()  # the values parse, too
    stack = parsed.stack  # type: ignore[attr-defined]
    assert stack.redis_url.startswith("redis://")
    if isinstance(parsed, ExecutorSettings):
        assert parsed.instance_id == "coyote-executor-0"
        assert parsed.health_port == 8410
        assert ":s3cret@" in parsed.database_url
    else:
        assert isinstance(parsed, Settings)
        assert ":s3cret@" in parsed.database_url
        assert parsed.reports.database_url == parsed.database_url
        assert str(stack.home) == "/var/lib/coyote"
