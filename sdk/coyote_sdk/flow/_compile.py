"""The CoyoteCompiler: a flow into a Docker Compose file, a values file for the Helm chart, or
plain Kubernetes manifests (the chart rendered with those values)."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from coyote_sdk.flow._load import Flow

TARGETS: Final = ("compose", "helm-values", "kubernetes")


class CompileError(Exception):
    """The flow cannot be compiled for the target: it uses what the target cannot express,
    helm or the chart is missing, or the chart refused the values (``refused``)."""

    def __init__(self, message: str, *, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused


def compile_flow(
    flow: Flow,
    target: str,
    *,
    output_dir: Path | None = None,
    chart: Path | None = None,
    helm: Path | None = None,
    namespace: str | None = None,
    source: str = "",
) -> str:
    """Compiles a flow.

    Args:
        flow: A flow from :func:`~coyote_sdk.flow.load_flow`.
        target: ``compose``, ``helm-values`` or ``kubernetes``.
        output_dir: compose: the folder the file will be written to (relative paths in it
            are relative to that folder); the flow's folder by default.
        chart: kubernetes: the chart (default ``helm/coyote`` in the working directory).
        helm: kubernetes: the helm binary (default ``.coyote/tools/bin/helm``, else ``helm``
            on the PATH).
        namespace: kubernetes: the namespace of the objects (default: the flow's name).
        source: How the header comment names the flow file.

    Returns:
        The file's text: YAML (several documents for ``kubernetes``).

    Raises:
        ValueError: An unknown target.
        CompileError: The target's tools or chart are missing, or the chart refused.
    """
    if target == "compose":
        from coyote_sdk.flow._compose import compile_compose

        return compile_compose(flow, output_dir=output_dir, source=source)
    if target == "helm-values":
        from coyote_sdk.flow._helm import compile_helm_values

        return compile_helm_values(flow, source=source)
    if target == "kubernetes":
        from coyote_sdk.flow._helm import compile_kubernetes

        return compile_kubernetes(flow, chart=chart, helm=helm, namespace=namespace, source=source)
    raise ValueError(f"unknown target {target!r}; one of {', '.join(TARGETS)}")
