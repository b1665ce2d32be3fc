"""`coyote-sdk flow validate | compile | apply | schema`: CoyoteFlow files (docs/coyoteflow.md).

Exit codes: 0 done; 1 the control plane refused or could not be reached, or the chart refused
the values; 2 the flow file is invalid or a local input or tool is missing (nothing was
changed).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from coyote_sdk.cli._common import JsonOpt, app, console, errors, report_error

if TYPE_CHECKING:
    from coyote_sdk.flow import Flow, Plan

flow_app = typer.Typer(
    help="CoyoteFlow: one YAML file describing a whole deployment (docs/coyoteflow.md).",
    no_args_is_help=True,
)
app.add_typer(flow_app, name="flow")

FlowArg = Annotated[Path, typer.Argument(help="The flow file (YAML).")]
_STYLES = {
    "create": "green",
    "update": "yellow",
    "delete": "red",
    "conflict": "bold red",
    "unchanged": "dim",
    "untracked": "cyan",
}


def _print_json(data: object) -> None:
    print(json.dumps(data, indent=2))


def _load(path: Path, *, as_json: bool = False) -> Flow:
    """The flow, or exit 2 listing every problem as ``file:line:column: field: message``."""
    from coyote_sdk.flow import FlowError, load_flow

    try:
        return load_flow(path)
    except FlowError as exc:
        if as_json:
            _print_json(
                {"file": str(path), "valid": False, "problems": [p.to_dict() for p in exc.problems]}
            )
        else:
            for problem in exc.problems:
                errors.print(
                    f"[red]error:[/red] {escape(str(problem))}", highlight=False, soft_wrap=True
                )
            noun = "problem" if len(exc.problems) == 1 else "problems"
            errors.print(f"{len(exc.problems)} {noun} in {escape(str(path))}", highlight=False)
        raise typer.Exit(2) from exc


@flow_app.command("validate")
def validate(path: FlowArg, as_json: JsonOpt = False) -> None:
    """Check a flow against the CoyoteFlow schema and its semantic rules.

    Every problem is printed as `file:line:column: field: message`; the exit code is 2 when
    there is any.

    Example: `coyote-sdk flow validate examples/flows/demo.yaml`
    """
    flow = _load(path, as_json=as_json)
    units = flow.units()
    if as_json:
        _print_json(
            {
                "file": str(path),
                "valid": True,
                "problems": [],
                "name": flow.name,
                "mode": flow.mode,
                "accounts": [a["name"] for a in flow.accounts],
                "units": [{"kind": u["kind"], "name": u["name"]} for u in units],
            }
        )
        return
    counts = [_count(len(flow.accounts), "account")] + [
        _count(sum(u["kind"] == kind for u in units), kind)
        for kind in ("bot", "executor", "feed", "agent")
        if any(u["kind"] == kind for u in units)
    ]
    console.print(
        f"[green]valid[/green]: flow {escape(flow.name)} ({flow.mode}) for organisation "
        f"{escape(flow.organization)}: {', '.join(counts)}",
        highlight=False,
    )


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


@flow_app.command("compile")
def compile_command(
    path: FlowArg,
    target: Annotated[
        str,
        typer.Option(
            "--target", "-t", help="compose, kubernetes or helm-values.", show_default=False
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write here instead of standard output."),
    ] = None,
    chart: Annotated[
        Path | None,
        typer.Option(help="kubernetes: the chart (default helm/coyote in the working directory)."),
    ] = None,
    helm: Annotated[
        Path | None,
        typer.Option(
            help="kubernetes: the helm binary (default .coyote/tools/bin/helm, else PATH)."
        ),
    ] = None,
    namespace: Annotated[
        str | None,
        typer.Option(help="kubernetes: the objects' namespace (default: the flow's name)."),
    ] = None,
) -> None:
    """Compile a flow: a Docker Compose file, the chart's values, or Kubernetes manifests.

    `kubernetes` renders the chart (`helm template`) with the `helm-values` output, so the chart
    stays the one place that knows Kubernetes objects. Bots are not compiled: `flow apply`
    deploys them to the control plane.

    Example: `coyote-sdk flow compile examples/flows/demo.yaml -t compose -o docker-compose.yml`
    """
    from coyote_sdk.flow import TARGETS, CompileError, compile_flow

    if target not in TARGETS:
        report_error(f"--target takes one of {', '.join(TARGETS)}, not {target!r}")
        raise typer.Exit(2)
    flow = _load(path)
    try:
        text = compile_flow(
            flow,
            target,
            output_dir=(output.parent if output else Path.cwd()).resolve(),
            chart=chart,
            helm=helm,
            namespace=namespace,
            source=str(path),
        )
    except CompileError as exc:
        report_error(exc)
        raise typer.Exit(1 if exc.refused else 2) from exc
    if output is None:
        sys.stdout.write(text)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        report_error(f"cannot write {output}: {exc.strerror or exc}")
        raise typer.Exit(2) from exc
    console.print(f"wrote {escape(str(output))} ({target})", highlight=False)


@flow_app.command("apply")
def apply_command(
    path: FlowArg,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would change, change nothing.")
    ] = False,
    prune: Annotated[
        bool,
        typer.Option(
            "--prune",
            help="Also stop and delete the deployments, and delete the accounts, that the file "
            "does not name.",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Make the control plane match a flow: accounts, risk limits, bots and deployments.

    Prints the plan — every object with `+` create, `~` update, `=` unchanged, `-` delete,
    `!` conflict, `?` not in the file — with each changed field, then carries it out unless
    `--dry-run`. Applying the same file again changes nothing. Objects the file does not name
    are kept unless `--prune`. Needs a login with admin rights (accounts) and risk rights
    (limits, capital): an admin key has both.

    Example: `coyote-sdk flow apply examples/flows/demo.yaml --dry-run`
    """
    from coyote_sdk.cli.platform import _api
    from coyote_sdk.flow import ApplyError, PlanError, apply, plan

    flow = _load(path)
    with _api() as client:
        try:
            planned = plan(flow, client, prune=prune)
        except PlanError as exc:
            report_error(exc)
            raise typer.Exit(2) from exc
        if not as_json:
            _print_plan(planned)
        if planned.conflicts:
            if as_json:
                _print_json({**planned.to_dict(), "applied": False})
            report_error("the plan has conflicts: nothing was changed")
            raise typer.Exit(1)
        if dry_run or not planned.changed:
            if as_json:
                _print_json({**planned.to_dict(), "applied": False})
            elif dry_run:
                console.print("[dim]dry run: nothing was changed[/dim]")
            return
        progress = (
            None if as_json else (lambda step: console.print(f"  {escape(step)}", highlight=False))
        )
        try:
            apply(flow, client, prune=prune, planned=planned, progress=progress)
        except ApplyError as exc:
            report_error(f"{exc} (done before it: {len(exc.done)} steps; apply again to go on)")
            raise typer.Exit(1) from exc
    if as_json:
        _print_json({**planned.to_dict(), "applied": True})
        return
    console.print(f"[green]applied[/green] {len(planned.changed)} changes", highlight=False)


def _print_plan(planned: Plan) -> None:
    lines = planned.render().splitlines()
    console.print(escape(lines[0]), highlight=False, style="bold")
    actions = iter(c.action for c in planned.changes)
    for line in lines[1:-1]:
        if line.startswith("    "):
            console.print(escape(line), highlight=False, soft_wrap=True)
            continue
        style = _STYLES[next(actions)]
        console.print(f"[{style}]{escape(line)}[/{style}]", highlight=False, soft_wrap=True)
    console.print(escape(lines[-1]), highlight=False)


@flow_app.command("schema")
def schema_command() -> None:
    """Print the CoyoteFlow JSON Schema (Draft 2020-12), as published in docs/schemas/.

    Example: `coyote-sdk flow schema > docs/schemas/coyoteflow.schema.json`
    """
    from coyote_sdk.flow._load import schema_text

    sys.stdout.write(schema_text())
