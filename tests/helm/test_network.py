"""The NetworkPolicies, evaluated as Kubernetes evaluates them: a connection is allowed when
the source's egress and the destination's ingress both allow it (a pod no policy selects for a
direction is open in that direction). Bots may reach Redis, Kafka and DNS, and nothing else.

The bot pods are those the supervisor's Kubernetes backend really makes (its own Deployment
body), so the policies are checked against the labels the backend sets, not a copy of them.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from typing import Any

import pytest

from coyote_control_plane.supervisor.backends import RuntimeSpec
from coyote_control_plane.supervisor.kubernetes import KubernetesBackend
from tests.helm.conftest import Objects, of_kind, pod_labels, pod_spec, workloads

pytestmark = pytest.mark.unit

DIGEST = "sha256:" + "ab" * 32


@dataclasses.dataclass(frozen=True)
class Pod:
    name: str
    namespace: str
    labels: dict[str, str]
    ports: dict[str, int] = dataclasses.field(default_factory=dict)
    ip: str = "10.244.0.10"


@dataclasses.dataclass(frozen=True)
class Address:
    """Something outside the cluster's pods: a broker API, an external service."""

    ip: str


Endpoint = Pod | Address


def label_match(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    selector = selector or {}
    assert set(selector) <= {"matchLabels"}, "the evaluator reads matchLabels only"
    return (selector.get("matchLabels") or {}).items() <= labels.items()


def peer_matches(peer: dict[str, Any], other: Endpoint, policy_namespace: str) -> bool:
    if "ipBlock" in peer:
        block = peer["ipBlock"]
        ip = ipaddress.ip_address(other.ip)
        return ip in ipaddress.ip_network(block["cidr"]) and not any(
            ip in ipaddress.ip_network(e) for e in block.get("except") or []
        )
    if not isinstance(other, Pod):
        return False
    if "namespaceSelector" in peer:
        namespace_labels = {"kubernetes.io/metadata.name": other.namespace}
        if not label_match(peer["namespaceSelector"], namespace_labels):
            return False
    elif other.namespace != policy_namespace:
        return False
    return "podSelector" not in peer or label_match(peer["podSelector"], other.labels)


def port_matches(rule: dict[str, Any], port: int, destination: Endpoint) -> bool:
    ports = rule.get("ports")
    if not ports:
        return True
    for entry in ports:
        wanted = entry["port"]
        if isinstance(wanted, str):  # a named port of the destination pod
            wanted = destination.ports.get(wanted) if isinstance(destination, Pod) else None
        if wanted == port and entry.get("protocol", "TCP") == "TCP":
            return True
    return False


def direction_allows(
    policies: Objects, pod: Pod, other: Endpoint, port: int, direction: str, destination: Endpoint
) -> bool:
    key, peers_key = ("egress", "to") if direction == "Egress" else ("ingress", "from")
    selecting = [
        p
        for p in policies
        if p["metadata"]["namespace"] == pod.namespace
        and label_match(p["spec"]["podSelector"], pod.labels)
        and direction in p["spec"]["policyTypes"]
    ]
    if not selecting:
        return True
    for policy in selecting:
        for rule in policy["spec"].get(key) or []:
            peers = rule.get(peers_key)
            if (
                not peers or any(peer_matches(p, other, pod.namespace) for p in peers)
            ) and port_matches(rule, port, destination):
                return True
    return False


def allowed(policies: Objects, source: Pod, destination: Endpoint, port: int) -> bool:
    """Whether ``source`` may open a TCP connection to ``destination`` on ``port``."""
    egress = direction_allows(policies, source, destination, port, "Egress", destination)
    ingress = not isinstance(destination, Pod) or direction_allows(
        policies, destination, source, port, "Ingress", destination
    )
    return egress and ingress


# -- the pods ----------------------------------------------------------------------------------


def pods(objects: Objects) -> dict[str, Pod]:
    """A pod of every workload the chart renders, by workload name."""
    found: dict[str, Pod] = {}
    for workload in workloads(objects):
        spec = pod_spec(workload)
        ports = {
            p["name"]: p["containerPort"]
            for c in spec["containers"]
            for p in c.get("ports") or []
            if "name" in p
        }
        name = workload["metadata"]["name"]
        found[name] = Pod(name, workload["metadata"]["namespace"], pod_labels(workload), ports)
    return found


def bot_pod(namespace: str) -> Pod:
    """A bot's pod, with the labels the Kubernetes backend gives it."""
    backend = KubernetesBackend(
        api_url="https://k8s.test:6443", namespace=namespace, image="ghcr.io/coyote/coyote-bot:1"
    )
    try:
        spec = RuntimeSpec(
            runtime_id="acme.sma-live",
            account_id="acme.paper",
            venue="demo",
            bundle=b"bundle",
            digest=DIGEST,
            params={},
            capital="1000",
            release=DIGEST,
        )
        deployment = backend._deployment("coyote-bot-x", "coyote-bundle-x", spec)
    finally:
        backend.close()
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    return Pod("bot", namespace, labels)


@pytest.fixture(scope="module")
def default_pods(default_objects: Objects) -> dict[str, Pod]:
    found = pods(default_objects)
    found["bot"] = bot_pod("coyote")
    return found


@pytest.fixture(scope="module")
def production_pods(production_objects: Objects) -> dict[str, Pod]:
    found = pods(production_objects)
    found["bot"] = bot_pod("coyote-bots")
    return found


def policies(objects: Objects) -> Objects:
    return of_kind(objects, "NetworkPolicy")


# -- bundled services --------------------------------------------------------------------------


def test_a_bot_reaches_redis_and_kafka(default_objects: Objects, default_pods: dict) -> None:
    bot = default_pods["bot"]
    rules = policies(default_objects)

    assert allowed(rules, bot, default_pods["coyote-redis"], 6379)
    assert allowed(rules, bot, default_pods["coyote-kafka"], 9092)
    assert allowed(rules, bot, Address("10.96.0.10"), 53)


@pytest.mark.parametrize(("target", "port"), [("coyote-postgresql", 5432), ("coyote-vault", 8200)])
def test_a_bot_cannot_reach_the_database_or_vault(
    default_objects: Objects, default_pods: dict, target: str, port: int
) -> None:
    rules = policies(default_objects)
    bot = default_pods["bot"]

    assert not allowed(rules, bot, default_pods[target], port)
    # Neither on any other port, nor the executors, nor the control plane.
    assert not allowed(rules, bot, default_pods[target], 443)
    assert not allowed(rules, bot, default_pods["coyote-executor"], 8410)
    assert not allowed(rules, bot, default_pods["coyote-control-plane"], 8400)


def test_a_bot_cannot_reach_the_internet_or_the_kubernetes_api(
    default_objects: Objects, default_pods: dict
) -> None:
    rules = policies(default_objects)
    bot = default_pods["bot"]

    assert not allowed(rules, bot, Address("93.184.216.34"), 443)
    assert not allowed(rules, bot, Address("10.96.0.1"), 443)
    assert not allowed(rules, bot, Address("10.0.0.5"), 6443)


def test_nothing_reaches_a_bot(default_objects: Objects, default_pods: dict) -> None:
    rules = policies(default_objects)

    for name in ("coyote-control-plane", "coyote-executor", "coyote-kafka"):
        assert not allowed(rules, default_pods[name], default_pods["bot"], 8080)


def test_the_database_accepts_only_the_control_plane_reports_and_executors(
    default_objects: Objects, default_pods: dict
) -> None:
    rules = policies(default_objects)
    database = default_pods["coyote-postgresql"]

    for name in ("coyote-control-plane", "coyote-reports", "coyote-executor"):
        assert allowed(rules, default_pods[name], database, 5432), name
    for name in ("coyote-redis", "coyote-kafka", "bot"):
        assert not allowed(rules, default_pods[name], database, 5432), name


def test_vault_accepts_only_the_control_plane_and_executors(
    default_objects: Objects, default_pods: dict
) -> None:
    rules = policies(default_objects)
    vault = default_pods["coyote-vault"]

    assert allowed(rules, default_pods["coyote-control-plane"], vault, 8200)
    assert allowed(rules, default_pods["coyote-executor"], vault, 8200)
    assert not allowed(rules, default_pods["coyote-reports"], vault, 8200)
    assert not allowed(rules, default_pods["bot"], vault, 8200)


def test_executors_reach_their_services_and_the_brokers(
    default_objects: Objects, default_pods: dict
) -> None:
    rules = policies(default_objects)
    executor = default_pods["coyote-executor"]

    for target, port in (
        ("coyote-postgresql", 5432),
        ("coyote-kafka", 9092),
        ("coyote-redis", 6379),
        ("coyote-vault", 8200),
    ):
        assert allowed(rules, executor, default_pods[target], port), target
    assert allowed(rules, executor, Address("104.16.0.1"), 443)  # a broker's API
    assert not allowed(rules, executor, Address("104.16.0.1"), 80)


def test_the_control_plane_reaches_its_services_and_the_kubernetes_api(
    default_objects: Objects, default_pods: dict
) -> None:
    rules = policies(default_objects)
    control_plane = default_pods["coyote-control-plane"]

    for target, port in (
        ("coyote-postgresql", 5432),
        ("coyote-kafka", 9092),
        ("coyote-redis", 6379),
        ("coyote-vault", 8200),
    ):
        assert allowed(rules, control_plane, default_pods[target], port), target
    assert allowed(rules, control_plane, Address("10.96.0.1"), 443)
    assert allowed(rules, control_plane, Address("172.18.0.2"), 6443)
    assert not allowed(rules, control_plane, Address("93.184.216.34"), 80)


def test_the_control_plane_is_reachable_on_its_http_port_only(
    default_objects: Objects, default_pods: dict
) -> None:
    rules = policies(default_objects)
    outsider = Pod("ingress", "ingress-nginx", {"app": "ingress-nginx"})

    assert allowed(rules, outsider, default_pods["coyote-control-plane"], 8400)
    assert not allowed(rules, outsider, default_pods["coyote-control-plane"], 22)


# -- external services (production) ------------------------------------------------------------


EXTERNAL = {
    "kafka": (Address("10.30.0.11"), 9092),
    "redis": (Address("10.30.0.12"), 6379),
    "postgresql": (Address("10.30.0.13"), 5432),
    "vault": (Address("10.20.0.5"), 8200),
}


def test_with_external_services_a_bot_reaches_only_redis_and_kafka(
    production_objects: Objects, production_pods: dict
) -> None:
    rules = policies(production_objects)
    bot = production_pods["bot"]

    assert bot.namespace == "coyote-bots"
    assert allowed(rules, bot, *EXTERNAL["kafka"])
    assert allowed(rules, bot, *EXTERNAL["redis"])
    assert not allowed(rules, bot, *EXTERNAL["postgresql"])
    assert not allowed(rules, bot, *EXTERNAL["vault"])
    assert not allowed(rules, bot, Address("93.184.216.34"), 443)
    # The bots' policy lives in their namespace and selects the backend's labels.
    (bots_policy,) = [p for p in rules if p["metadata"]["namespace"] == "coyote-bots"]
    assert bots_policy["spec"]["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "coyote-bot",
        "app.kubernetes.io/managed-by": "coyote",
    }


def test_with_external_services_executors_and_control_plane_reach_them(
    production_objects: Objects, production_pods: dict
) -> None:
    rules = policies(production_objects)

    for name in ("coyote-executor", "coyote-control-plane"):
        for service in ("kafka", "redis", "postgresql", "vault"):
            assert allowed(rules, production_pods[name], *EXTERNAL[service]), (name, service)
    # Vault is known by address in production: elsewhere is refused.
    assert not allowed(rules, production_pods["coyote-executor"], Address("10.99.0.1"), 8200)
    assert not allowed(rules, production_pods["coyote-reports"], *EXTERNAL["vault"])


def test_in_production_only_the_ingress_controller_and_prometheus_reach_the_api(
    production_objects: Objects, production_pods: dict
) -> None:
    rules = policies(production_objects)
    control_plane = production_pods["coyote-control-plane"]

    ingress = Pod("nginx", "ingress-nginx", {"app": "nginx"})
    prometheus = Pod("prometheus", "monitoring", {"app": "prometheus"})
    stranger = Pod("x", "default", {"app": "x"})
    assert allowed(rules, ingress, control_plane, 8400)
    assert allowed(rules, prometheus, control_plane, 8400)
    assert not allowed(rules, stranger, control_plane, 8400)
    assert allowed(rules, prometheus, production_pods["coyote-executor"], 8410)
    assert not allowed(rules, stranger, production_pods["coyote-executor"], 8410)


def test_every_coyote_pod_is_selected_by_a_policy_in_both_directions(objects: Objects) -> None:
    rules = policies(objects)
    for pod in pods(objects).values():
        for direction in ("Ingress", "Egress"):
            assert any(
                p["metadata"]["namespace"] == pod.namespace
                and label_match(p["spec"]["podSelector"], pod.labels)
                and direction in p["spec"]["policyTypes"]
                for p in rules
            ), (pod.name, direction)


def test_the_bundled_kafka_reaches_its_own_listener(
    default_objects: Objects, default_pods: dict
) -> None:
    # Transaction markers (the executors' transactions) go through the inter-broker listener.
    kafka = default_pods["coyote-kafka"]

    assert allowed(policies(default_objects), kafka, kafka, 9092)
    assert not allowed(policies(default_objects), kafka, default_pods["coyote-postgresql"], 5432)
