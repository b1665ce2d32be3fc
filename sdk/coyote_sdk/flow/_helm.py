"""The ``helm-values`` and ``kubernetes`` targets: a values file for the chart ``helm/coyote``,
and the chart rendered with it (``helm template``), so the chart stays the one place that knows
Kubernetes objects.

The values hold only what the flow decides — images, connections, the executors' accounts
file and replicas, feeds, labels — and leave every other setting to the chart's defaults.
Secrets become the chart's ``existingSecret`` references: the Kubernetes Secret ``name`` and
its ``key`` of each ``secretRef``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

from coyote_sdk.flow._common import (
    COYOTE_IMAGES,
    executor_accounts,
    to_toml,
    to_yaml,
)
from coyote_sdk.flow._compile import CompileError
from coyote_sdk.flow._load import Flow

DEFAULT_CHART: Final = Path("helm/coyote")
KUBERNETES_VERSION: Final = "1.27"
"""The oldest Kubernetes the chart supports (Chart.yaml's kubeVersion): rendered objects are
checked against its API schemas."""
DEFAULT_HELM: Final = Path(".coyote/tools/bin/helm")
FLOW_LABEL: Final = "coyote.dev/flow"


def helm_values(flow: Flow) -> dict[str, Any]:
    """The chart's values for ``flow`` (only those the flow decides)."""
    values: dict[str, Any] = {
        "commonLabels": {**(flow.data["metadata"].get("labels") or {}), FLOW_LABEL: flow.name}
    }
    images = flow.data.get("images")
    control_plane: dict[str, Any] = {}
    executor: dict[str, Any] = {}
    bot_runtime: dict[str, Any] = {}
    for section, component in (
        (control_plane, "control-plane"),
        (executor, "executor"),
        (bot_runtime, "bot"),
    ):
        if images and ("registry" in images or "tag" in images):
            section["image"] = _image(images, component)
    settings = flow.data.get("controlPlane") or {}
    if "replicas" in settings:
        control_plane["replicaCount"] = settings["replicas"]
    if flow.mode == "dev":
        control_plane["cookieSecure"] = False  # dev clusters serve the dashboard over HTTP
    executors = flow.units("executor")
    if not executors:
        raise CompileError(
            "the chart always runs executors: add a unit {kind: executor, name: executor}"
        )
    executor["replicaCount"] = executors[0].get("replicas", 1)
    executor["accounts"] = to_toml(executor_accounts(flow))
    values["controlPlane"] = control_plane
    values["executor"] = executor
    if bot_runtime:
        values["botRuntime"] = bot_runtime
    values["feeds"] = [_feed(unit) for unit in flow.units("feed")]
    agents = flow.units("agent")
    if agents:
        raise CompileError(
            f"agent unit {agents[0]['name']!r}: the chart runs no agent units yet; disable its "
            "module (enabled: false) for Kubernetes, or use the compose target"
        )
    connections = flow.connections
    values["kafka"] = _kafka(connections["kafka"])
    values["redis"] = _redis(connections["redis"])
    values["postgresql"] = _postgresql(connections["database"])
    values["vault"] = _vault(connections["vault"])
    return values


def _image(images: dict[str, Any], component: str) -> dict[str, Any]:
    registry = str(images.get("registry", "ghcr.io/coyote")).rstrip("/")
    host, _, prefix = registry.partition("/")
    name = COYOTE_IMAGES[component][0]
    image = {"registry": host, "repository": f"{prefix}/{name}" if prefix else name}
    if "tag" in images:
        image["tag"] = str(images["tag"])
    return image


def _feed(unit: dict[str, Any]) -> dict[str, Any]:
    from coyote_sdk.flow._compose import feed_arguments

    if unit["source"] == "replay":
        raise CompileError(
            f"feed {unit['name']!r}: a replay feed reads files from this machine and the chart "
            "mounts none; on Kubernetes use a random-walk or binance feed, or replay from a "
            "machine that reaches Redis (`coyote-sdk feed replay`)"
        )
    args, _ = feed_arguments(unit)
    return {"name": unit["name"], "args": args}


def _kafka(kafka: Any) -> dict[str, Any]:
    if kafka == "installed":
        return {"enabled": True}
    return {"enabled": False, "external": {"bootstrapServers": kafka["bootstrap"]}}


def _redis(redis: Any) -> dict[str, Any]:
    if redis == "installed":
        return {"enabled": True}
    values: dict[str, Any] = {"enabled": False, "external": {"url": redis["url"]}}
    if "passwordFrom" in redis:
        ref = redis["passwordFrom"]["secretRef"]
        values["auth"] = {
            "enabled": True,
            "existingSecret": ref["name"],
            "existingSecretPasswordKey": ref["key"],
        }
    else:
        values["auth"] = {"enabled": False}
    return values


def _postgresql(database: Any) -> dict[str, Any]:
    if database == "installed":
        return {"enabled": True}
    if "urlFrom" in database:
        ref = database["urlFrom"]["secretRef"]
        return {
            "enabled": False,
            "auth": {"existingSecret": ref["name"]},
            "external": {"existingSecretUrlKey": ref["key"]},
        }
    if "passwordFrom" not in database:
        raise CompileError(
            "connections.database: the chart takes the database password from a Secret: add "
            "passwordFrom: {secretRef: ...} (or give the whole URL as urlFrom)"
        )
    url = urlsplit(database["url"])
    ref = database["passwordFrom"]["secretRef"]
    external: dict[str, Any] = {"host": url.hostname or "", "port": url.port or 5432}
    sslmode = parse_qs(url.query).get("sslmode")
    if sslmode:
        external["sslMode"] = sslmode[0]
    auth: dict[str, Any] = {"existingSecret": ref["name"], "existingSecretPasswordKey": ref["key"]}
    if url.username:
        auth["username"] = url.username
    if url.path.strip("/"):
        auth["database"] = url.path.strip("/")
    return {"enabled": False, "auth": auth, "external": external}


def _vault(vault: Any) -> dict[str, Any]:
    if vault == "installed":
        return {"enabled": True}
    values: dict[str, Any] = {"enabled": False, "external": {"addr": vault["addr"]}}
    if "tokenFrom" in vault:
        ref = vault["tokenFrom"]["secretRef"]
        values["auth"] = {
            "method": "token",
            "existingSecret": ref["name"],
            "existingSecretTokenKey": ref["key"],
        }
    else:
        values["auth"] = {"method": "kubernetes"}
    return values


def compile_helm_values(flow: Flow, *, source: str = "") -> str:
    """The values file of ``flow`` for the chart ``helm/coyote``."""
    header = (
        f"Generated by `coyote-sdk flow compile {source or flow.path.name} --target "
        "helm-values`:\n"
        "edit the flow, not this file. Values for the chart helm/coyote; every value not set "
        "here keeps\nthe chart's default. Bots are deployed by `coyote-sdk flow apply`."
    )
    return to_yaml(helm_values(flow), header=header)


def find_helm(helm: Path | None = None) -> Path:
    """The helm binary: ``helm`` if given, else ``.coyote/tools/bin/helm``, else the PATH's."""
    if helm is not None:
        if not (helm.is_file() and os.access(helm, os.X_OK)):
            raise CompileError(f"{helm} is not an executable helm binary")
        return helm
    if DEFAULT_HELM.is_file() and os.access(DEFAULT_HELM, os.X_OK):
        return DEFAULT_HELM
    found = shutil.which("helm")
    if found:
        return Path(found)
    raise CompileError(
        "helm is not installed: the kubernetes target renders the chart with `helm template`. "
        "Run scripts/bootstrap.sh (it installs helm into .coyote/tools/bin), or give --helm PATH"
    )


def compile_kubernetes(
    flow: Flow,
    *,
    chart: Path | None = None,
    helm: Path | None = None,
    namespace: str | None = None,
    source: str = "",
) -> str:
    """Plain Kubernetes manifests: the chart rendered with the flow's values.

    The release is named after the flow, in the namespace of the same name unless given.

    Raises:
        CompileError: helm or the chart is missing, or the chart refused the values (its
            message, naming each bad value, is in the error).
    """
    chart = chart or DEFAULT_CHART
    if not (chart / "Chart.yaml").is_file():
        raise CompileError(
            f"no chart at {chart} (no Chart.yaml): run from the repository root or give --chart"
        )
    binary = find_helm(helm)
    values = compile_helm_values(flow, source=source)
    with tempfile.TemporaryDirectory(prefix="coyote-flow-") as folder:
        values_file = Path(folder) / "values.yaml"
        values_file.write_text(values, encoding="utf-8")
        command = [
            str(binary),
            "template",
            flow.name,
            str(chart),
            "--namespace",
            namespace or flow.name,
            "--values",
            str(values_file),
        ]
        try:
            rendered = subprocess.run(
                command, capture_output=True, text=True, timeout=120, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise CompileError(f"{binary} template failed: {exc}") from exc
    if rendered.returncode != 0:
        raise CompileError(
            f"helm template refused the flow's values:\n{rendered.stderr.strip()}", refused=True
        )
    check_objects(rendered.stdout)
    header = (
        f"# Generated by `coyote-sdk flow compile {source or flow.path.name} --target "
        "kubernetes`:\n"
        f"# the chart {chart} rendered with the flow's values (`--target helm-values`).\n"
    )
    return header + rendered.stdout


def check_objects(manifests: str, version: str = KUBERNETES_VERSION) -> None:
    """Checks every object against Kubernetes' OpenAPI schemas, offline and strictly (no
    unknown field), with ``kubernetes-validate`` when it is installed (a development
    dependency of the workspace; without it the objects are left to the API server).

    Raises:
        CompileError: naming the object, the field and what is wrong.
    """
    try:
        import kubernetes_validate
    except ImportError:
        return
    import yaml

    problems = []
    for item in yaml.safe_load_all(manifests):
        if not item:
            continue
        name = f"{item.get('kind')}/{(item.get('metadata') or {}).get('name')}"
        try:
            kubernetes_validate.validate(item, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path) or "(the object)"
            problems.append(f"{name}: {where}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError:
            continue  # a custom resource (ServiceMonitor): no schema to check it against
    if problems:
        raise CompileError(
            f"the rendered objects are not valid for Kubernetes {version}:\n" + "\n".join(problems),
            refused=True,
        )
