"""Security defaults of everything the chart renders: non-root, read-only containers without
capabilities and with resources; secrets only through secretKeyRef; RBAC exactly what the
supervisor's Kubernetes backend needs."""

from __future__ import annotations

import base64
import json
import re
import textwrap
from collections.abc import Callable

import pytest
import yaml

from coyote_control_plane.supervisor import kubernetes
from tests.helm.conftest import (
    PRODUCTION,
    Objects,
    containers,
    env_of,
    named,
    of_kind,
    pod_spec,
    workloads,
)

pytestmark = pytest.mark.unit

CLEAR_PASSWORD_IN_URL = re.compile(r"://[^/@\s:]*:(?!\$\()[^@\s]+@")
"""A URL with a password that is not a $(VAR) reference."""


def test_every_pod_runs_as_a_numeric_non_root_user_with_seccomp(objects: Objects) -> None:
    for workload in workloads(objects):
        context = pod_spec(workload)["securityContext"]
        name = workload["metadata"]["name"]
        assert context["runAsNonRoot"] is True, name
        assert isinstance(context["runAsUser"], int) and context["runAsUser"] > 0, name
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}, name


def test_every_container_is_read_only_unprivileged_and_drops_all_capabilities(
    objects: Objects,
) -> None:
    checked = 0
    for workload in workloads(objects):
        for container in containers(workload):
            where = f"{workload['metadata']['name']}/{container['name']}"
            context = container["securityContext"]
            assert context["runAsNonRoot"] is True, where
            assert context["runAsUser"] > 0, where
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context.get("privileged", False) is False, where
            assert context["capabilities"] == {"drop": ["ALL"]}, where
            assert "add" not in context["capabilities"], where
            checked += 1
    assert checked >= 4


def test_every_container_has_cpu_and_memory_requests_and_a_memory_limit(
    objects: Objects,
) -> None:
    for workload in workloads(objects):
        for container in containers(workload):
            where = f"{workload['metadata']['name']}/{container['name']}"
            resources = container["resources"]
            assert {"cpu", "memory"} <= set(resources["requests"]), where
            assert "memory" in resources["limits"], where


def test_a_writable_volume_backs_tmp_in_every_container(objects: Objects) -> None:
    for workload in workloads(objects):
        for container in containers(workload):
            mounts = {m["mountPath"] for m in container.get("volumeMounts") or []}
            assert "/tmp" in mounts, f"{workload['metadata']['name']}/{container['name']}"


def test_the_control_plane_home_is_a_writable_volume(objects: Objects) -> None:
    deployment = named(objects, "Deployment", "coyote-control-plane")
    (container,) = pod_spec(deployment)["containers"]

    home = env_of(container)["COYOTE_HOME"]["value"]
    assert home in {m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec(deployment)["volumes"]}
    mount = next(m for m in container["volumeMounts"] if m["mountPath"] == home)
    assert "emptyDir" in volumes[mount["name"]]


def test_pods_get_an_api_token_only_when_they_use_it(objects: Objects) -> None:
    tokens = {
        w["metadata"]["name"]: pod_spec(w).get("automountServiceAccountToken")
        for w in workloads(objects)
    }
    # The supervisor calls the Kubernetes API.
    assert tokens.pop("coyote-control-plane") is True
    # The bundled OpenBao reviews tokens for its Kubernetes auth method.
    tokens.pop("coyote-vault", None)
    # The executors: see the next test.
    tokens.pop("coyote-executor")
    # Everything else gets none.
    assert set(tokens.values()) == {False}
    for sa in of_kind(objects, "ServiceAccount"):
        assert sa["automountServiceAccountToken"] is False, sa["metadata"]["name"]


def test_executors_mount_their_own_token_only_for_vaults_kubernetes_login(
    default_objects: Objects, production_objects: Objects
) -> None:
    # Default: Vault's Kubernetes login presents the pod's own service-account token.
    default = pod_spec(named(default_objects, "StatefulSet", "coyote-executor"))
    assert default["automountServiceAccountToken"] is True
    # Production: a projected token for Vault's audience, and no API token at all.
    production = pod_spec(named(production_objects, "StatefulSet", "coyote-executor"))
    assert production["automountServiceAccountToken"] is False
    (source,) = next(v for v in production["volumes"] if v["name"] == "vault-token")["projected"][
        "sources"
    ]
    assert source["serviceAccountToken"]["audience"] == "vault"
    env = env_of(production["containers"][0])
    assert env["COYOTE_VAULT_KUBERNETES_TOKEN_PATH"]["value"] == (
        "/var/run/secrets/coyote/vault/token"
    )


# -- secrets ---------------------------------------------------------------------------------


def test_every_credential_reaches_a_container_through_a_secret_key_ref(objects: Objects) -> None:
    for workload in workloads(objects):
        for container in containers(workload):
            for name, entry in env_of(container).items():
                where = f"{workload['metadata']['name']}/{container['name']}: {name}"
                if re.search(r"PASSWORD|TOKEN|SECRET", name) and not name.endswith("_PATH"):
                    assert "secretKeyRef" in entry.get("valueFrom", {}), where
                value = entry.get("value", "")
                assert not CLEAR_PASSWORD_IN_URL.search(value), where


def test_database_urls_refer_to_the_password_variable_defined_before_them(
    objects: Objects,
) -> None:
    seen = 0
    for workload in workloads(objects):
        for container in containers(workload):
            names = [e["name"] for e in container.get("env") or []]
            for index, entry in enumerate(container.get("env") or []):
                for reference in re.findall(r"\$\((\w+)\)", entry.get("value", "")):
                    # Kubernetes expands $(VAR) only from variables listed earlier.
                    assert reference in names[:index], f"{entry['name']} uses {reference}"
                    seen += 1
    assert seen >= 3


def test_default_secrets_are_generated_and_appear_nowhere_else(default_objects: Objects) -> None:
    secrets = of_kind(default_objects, "Secret")
    assert {s["metadata"]["name"] for s in secrets} == {
        "coyote-postgresql",
        "coyote-redis",
        "coyote-control-plane-redis-acl",
    }
    values = [
        base64.b64decode(value).decode()
        for secret in secrets
        for value in (secret.get("data") or {}).values()
    ]
    assert all(len(value) >= 24 for value in values)
    elsewhere = yaml.safe_dump_all([o for o in default_objects if o["kind"] != "Secret"])
    for value in values:
        assert value not in elsewhere


def test_production_renders_no_secret_and_reads_the_existing_ones(
    production_objects: Objects,
) -> None:
    assert of_kind(production_objects, "Secret") == []
    executor = pod_spec(named(production_objects, "StatefulSet", "coyote-executor"))
    env = env_of(executor["containers"][0])
    assert env["COYOTE_DATABASE_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "coyote-database",
        "key": "password",
    }
    assert env["COYOTE_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "coyote-redis",
        "key": "redis-password",
    }
    assert env["COYOTE_EXECUTOR_DATABASE_URL"]["value"] == (
        "postgresql+psycopg://coyote:$(COYOTE_DATABASE_PASSWORD)"
        "@timescaledb.data.svc.cluster.local:5432/coyote?sslmode=require"
    )
    assert env["COYOTE_VAULT_AUTH"]["value"] == "kubernetes"
    assert "COYOTE_VAULT_TOKEN" not in env


def test_the_supervisor_derives_bot_passwords_from_a_key_in_a_secret(
    default_objects: Objects, production_objects: Objects, render: Callable[..., Objects]
) -> None:
    for rendered, secret in (
        (default_objects, "coyote-control-plane-redis-acl"),
        (production_objects, "coyote-redis-acl"),
    ):
        deployment = named(rendered, "Deployment", "coyote-control-plane")
        env = env_of(pod_spec(deployment)["containers"][0])
        assert env["COYOTE_CONTROL_PLANE_SUPERVISOR__REDIS_ACL_SECRET"]["valueFrom"] == {
            "secretKeyRef": {"name": secret, "key": "redis-acl-key"}
        }
        config = named(rendered, "ConfigMap", "coyote-control-plane")["data"]
        assert config["COYOTE_CONTROL_PLANE_SUPERVISOR__REDIS_ACL"] == "true"
    # The API-only replicas derive nothing.
    reports = env_of(
        pod_spec(named(default_objects, "Deployment", "coyote-reports"))["containers"][0]
    )
    assert "COYOTE_CONTROL_PLANE_SUPERVISOR__REDIS_ACL_SECRET" not in reports

    off = render(sets=("controlPlane.supervisor.redisAcl.enabled=false",))

    control_plane = pod_spec(named(off, "Deployment", "coyote-control-plane"))["containers"][0]
    assert "COYOTE_CONTROL_PLANE_SUPERVISOR__REDIS_ACL_SECRET" not in env_of(control_plane)
    assert "coyote-control-plane-redis-acl" not in {
        s["metadata"]["name"] for s in of_kind(off, "Secret")
    }
    config = named(off, "ConfigMap", "coyote-control-plane")["data"]
    assert config["COYOTE_CONTROL_PLANE_SUPERVISOR__REDIS_ACL"] == "false"


def test_no_config_map_holds_a_credential(objects: Objects) -> None:
    for configmap in of_kind(objects, "ConfigMap"):
        for key, value in (configmap.get("data") or {}).items():
            where = f"{configmap['metadata']['name']}: {key}"
            assert not re.search(r"PASSWORD|TOKEN", key), where
            assert not CLEAR_PASSWORD_IN_URL.search(value), where
            assert not re.search(r"(?im)^\s*(requirepass|password|token)\s*[=\s]", value), where


def test_a_vault_token_comes_from_an_existing_secret(render: Callable[..., Objects]) -> None:
    rendered = render(sets=("vault.auth.method=token", "vault.auth.existingSecret=coyote-vault"))

    executor = pod_spec(named(rendered, "StatefulSet", "coyote-executor"))
    env = env_of(executor["containers"][0])
    assert env["COYOTE_VAULT_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        "name": "coyote-vault",
        "key": "token",
    }
    assert executor["automountServiceAccountToken"] is False


def test_a_whole_database_url_can_come_from_a_secret(render: Callable[..., Objects]) -> None:
    rendered = render(
        PRODUCTION,
        sets=("postgresql.external.existingSecretUrlKey=url", "postgresql.external.host="),
    )

    deployment = pod_spec(named(rendered, "Deployment", "coyote-control-plane"))
    env = env_of(deployment["containers"][0])
    for name in ("COYOTE_CONTROL_PLANE_DATABASE_URL", "COYOTE_CONTROL_PLANE_REPORTS__DATABASE_URL"):
        assert env[name]["valueFrom"]["secretKeyRef"] == {"name": "coyote-database", "key": "url"}
    assert "COYOTE_DATABASE_PASSWORD" not in env


# -- RBAC --------------------------------------------------------------------------------------


def backend_rules() -> list[dict[str, list[str]]]:
    """The Role the Kubernetes backend's docstring asks for: the source of truth."""
    doc = kubernetes.__doc__ or ""
    block = doc.split("(a ``Role``, not a ``ClusterRole``)::", 1)[1]
    lines = []
    for line in block.splitlines()[1:]:
        if line.strip() and not line.startswith("    "):
            break
        lines.append(line)
    return yaml.safe_load(textwrap.dedent("\n".join(lines)))


def normalised(rules: list[dict[str, list[str]]]) -> list[str]:
    return sorted(
        json.dumps({k: sorted(rule[k]) for k in ("apiGroups", "resources", "verbs")})
        for rule in rules
    )


def test_the_supervisors_role_is_exactly_what_the_kubernetes_backend_needs(
    objects: Objects,
) -> None:
    (role,) = of_kind(objects, "Role")
    expected = backend_rules()

    assert len(expected) == 5
    assert normalised(role["rules"]) == normalised(expected)
    assert all(set(rule) == {"apiGroups", "resources", "verbs"} for rule in role["rules"])


def test_the_role_is_bound_to_the_control_plane_in_the_bots_namespace(
    default_objects: Objects, production_objects: Objects
) -> None:
    for rendered, bots_namespace in (
        (default_objects, "coyote"),
        (production_objects, "coyote-bots"),
    ):
        (role,) = of_kind(rendered, "Role")
        (binding,) = of_kind(rendered, "RoleBinding")
        assert role["metadata"]["namespace"] == bots_namespace
        assert binding["metadata"]["namespace"] == bots_namespace
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": role["metadata"]["name"],
        }
        deployment = named(rendered, "Deployment", "coyote-control-plane")
        assert binding["subjects"] == [
            {
                "kind": "ServiceAccount",
                "name": pod_spec(deployment)["serviceAccountName"],
                "namespace": "coyote",
            }
        ]


def test_no_cluster_wide_permission_but_openbaos_token_reviews(objects: Objects) -> None:
    assert of_kind(objects, "ClusterRole") == []
    for binding in of_kind(objects, "ClusterRoleBinding"):
        assert binding["roleRef"]["name"] == "system:auth-delegator"
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "coyote-vault", "namespace": "coyote"}
        ]


def test_the_bots_service_account_has_no_role_and_no_token(objects: Objects) -> None:
    bots = [
        sa for sa in of_kind(objects, "ServiceAccount") if sa["metadata"]["name"] == "coyote-bot"
    ]
    (account,) = bots
    assert account["automountServiceAccountToken"] is False
    for binding in of_kind(objects, "RoleBinding") + of_kind(objects, "ClusterRoleBinding"):
        assert all(s["name"] != "coyote-bot" for s in binding["subjects"])


def test_bots_can_run_without_a_service_account_of_their_own(
    render: Callable[..., Objects],
) -> None:
    rendered = render(sets=("botRuntime.serviceAccount.create=false",))

    data = named(rendered, "ConfigMap", "coyote-control-plane")["data"]
    # The supervisor names no account: the backend then mounts no token in bot pods.
    assert "COYOTE_CONTROL_PLANE_SUPERVISOR__KUBERNETES_SERVICE_ACCOUNT" not in data
    assert "coyote-bot" not in {
        sa["metadata"]["name"] for sa in of_kind(rendered, "ServiceAccount")
    }
