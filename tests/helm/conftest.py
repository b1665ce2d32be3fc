"""The chart rendered by the real helm binary (``scripts/bootstrap.sh`` installs it into
``.coyote/tools/bin``): the default values and ``values-production.yaml``, in a namespace of
their own."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "coyote"
PRODUCTION = CHART / "values-production.yaml"
NAMESPACE = "coyote"
RELEASE = "coyote"
KUBE_VERSION = "1.36.0"
"""The Kubernetes version rendered for and validated against (kubernetes-validate's schemas)."""

WORKLOADS = ("Deployment", "StatefulSet", "Job", "DaemonSet", "CronJob")

Objects = list[dict[str, Any]]


def helm_binary() -> Path | None:
    local = REPO / ".coyote" / "tools" / "bin" / "helm"
    if local.is_file() and os.access(local, os.X_OK):
        return local
    found = shutil.which("helm")
    return Path(found) if found else None


@pytest.fixture(scope="session")
def helm() -> Path:
    binary = helm_binary()
    if binary is None:
        pytest.skip(
            "helm is not installed: scripts/bootstrap.sh installs it into .coyote/tools/bin "
            "(go install helm.sh/helm/v3/cmd/helm from the Go module proxy)"
        )
    return binary


def run_helm(helm: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(helm), *args], capture_output=True, text=True, timeout=120, check=False, cwd=REPO
    )


def template_args(*values: Path, sets: tuple[str, ...] = ()) -> list[str]:
    args = [
        "template",
        RELEASE,
        str(CHART),
        "--namespace",
        NAMESPACE,
        "--kube-version",
        KUBE_VERSION,
    ]
    for path in values:
        args += ["--values", str(path)]
    for assignment in sets:
        args += ["--set", assignment]
    return args


@pytest.fixture(scope="session")
def render(helm: Path) -> Callable[..., Objects]:
    """Renders the chart with values files and ``--set`` assignments; fails on helm's error."""

    def render(*values: Path, sets: tuple[str, ...] = ()) -> Objects:
        answer = run_helm(helm, *template_args(*values, sets=sets))
        assert answer.returncode == 0, answer.stderr
        return [doc for doc in yaml.safe_load_all(answer.stdout) if doc]

    return render


@pytest.fixture(scope="session")
def default_objects(render: Callable[..., Objects]) -> Objects:
    return render()


@pytest.fixture(scope="session")
def production_objects(render: Callable[..., Objects]) -> Objects:
    return render(PRODUCTION)


@pytest.fixture(scope="session", params=["default", "production"])
def objects(request: pytest.FixtureRequest) -> Objects:
    """Each rendering in turn: the tests of the policies hold for both."""
    return request.getfixturevalue(f"{request.param}_objects")


# -- reading rendered objects ------------------------------------------------------------------


def of_kind(objects: Objects, kind: str) -> Objects:
    return [o for o in objects if o["kind"] == kind]


def named(objects: Objects, kind: str, name: str) -> dict[str, Any]:
    found = [o for o in of_kind(objects, kind) if o["metadata"]["name"] == name]
    assert found, (
        f"no {kind} {name}; have {[o['metadata']['name'] for o in of_kind(objects, kind)]}"
    )
    return found[0]


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    spec = workload["spec"]
    if workload["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec["template"]["spec"]


def pod_labels(workload: dict[str, Any]) -> dict[str, str]:
    return workload["spec"]["template"]["metadata"]["labels"]


def containers(workload: dict[str, Any]) -> Iterator[dict[str, Any]]:
    spec = pod_spec(workload)
    yield from spec.get("initContainers") or []
    yield from spec["containers"]


def workloads(objects: Objects) -> Objects:
    return [o for o in objects if o["kind"] in WORKLOADS]


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in container.get("env") or []}


def component(objects: Objects, kind: str, name: str) -> dict[str, Any]:
    """A workload of the release by its component name (``control-plane``, ``executor`` ...)."""
    return named(objects, kind, f"{RELEASE}-{name}")
