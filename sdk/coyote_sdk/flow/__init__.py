"""CoyoteFlow: one YAML file describing a whole deployment.

Connections, accounts and their risk limits, and units (bots, executors, feeds, AI agents)
grouped in modules, in one file checked against a JSON Schema (``coyoteflow.schema.json``,
published as ``docs/schemas/coyoteflow.schema.json``). From it, the *CoyoteCompiler* writes a
Docker Compose file, a values file for the Helm chart or plain Kubernetes manifests, and
:func:`apply` makes a control plane match it::

    from coyote_sdk.flow import apply, compile_flow, load_flow, plan

    flow = load_flow("examples/flows/demo.yaml")        # FlowError lists every problem
    print(compile_flow(flow, "compose"))
    with ControlPlaneClient.from_config() as client:
        print(plan(flow, client).render())
        apply(flow, client)

See docs/coyoteflow.md.
"""

from __future__ import annotations

from coyote_sdk.flow._apply import ApplyError, Change, FieldChange, Plan, PlanError, apply, plan
from coyote_sdk.flow._compile import TARGETS, CompileError, compile_flow
from coyote_sdk.flow._load import Flow, FlowError, Problem, load_flow, load_flow_text, schema

__all__ = [
    # reading
    "Flow",
    "FlowError",
    "Problem",
    "load_flow",
    "load_flow_text",
    "schema",
    # compiling
    "TARGETS",
    "CompileError",
    "compile_flow",
    # applying
    "ApplyError",
    "Change",
    "FieldChange",
    "Plan",
    "PlanError",
    "apply",
    "plan",
]
