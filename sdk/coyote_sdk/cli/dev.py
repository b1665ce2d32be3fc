"""`coyote-sdk dev`: the local stack."""

from __future__ import annotations

import dataclasses
import json
import shlex
import sys
import time
from typing import Annotated

import typer
from rich.table import Table

from coyote_sdk.cli._common import (
    JsonOpt,
    ServicesArg,
    console,
    dev_app,
    local_stack,
    report_error,
    say,
)
from coyote_sdk.dev import Health, Stack, StackError


@dev_app.command("up")
def dev_up(services: ServicesArg = None) -> None:
    """Start the local stack (or the named services) and wait until it is healthy.

    Idempotent: running services are left alone. A service given by URL
    (`COYOTE_KAFKA_BOOTSTRAP`, `COYOTE_REDIS_URL`, `COYOTE_DATABASE_URL`, `COYOTE_VAULT_ADDR`)
    is checked, not started.

    Example: `coyote-sdk dev up` or `coyote-sdk dev up redis kafka`
    """
    stack = local_stack()
    console.print("[bold]effective configuration[/bold]")
    console.print(stack.settings.describe(), highlight=False)
    try:
        stack.up(services, progress=say)
    except StackError as exc:
        report_error(exc)
        raise typer.Exit(1) from exc
    _print_status(stack, services, as_json=False)


@dev_app.command("down")
def dev_down(services: ServicesArg = None) -> None:
    """Stop the local stack's services and every process they started.

    Example: `coyote-sdk dev down`
    """
    stack = local_stack()
    try:
        stack.down(services, progress=say)
    except StackError as exc:
        report_error(exc)
        raise typer.Exit(1) from exc


@dev_app.command("status")
def dev_status(services: ServicesArg = None, as_json: JsonOpt = False) -> None:
    """Show each service, its address and health. Exits 1 unless all are healthy.

    Example: `coyote-sdk dev status --json`
    """
    stack = local_stack()
    try:
        healthy = _print_status(stack, services, as_json=as_json)
    except StackError as exc:
        report_error(exc)
        raise typer.Exit(2) from exc
    if not healthy:
        raise typer.Exit(1)


def _print_status(stack: Stack, services: list[str] | None, *, as_json: bool) -> bool:
    rows = stack.status(services)
    if as_json:
        print(json.dumps([dataclasses.asdict(row) for row in rows], indent=2))
    else:
        table = Table("service", "mode", "address", "health", "pid", "log")
        for column in table.columns:
            column.overflow = "fold"
        colour = {Health.HEALTHY: "green", Health.UNHEALTHY: "red", Health.STOPPED: "yellow"}
        for row in rows:
            table.add_row(
                row.name,
                row.mode,
                row.address,
                f"[{colour[row.health]}]{row.health.value}[/]",
                str(row.pid or ""),
                row.log or "",
            )
        console.print(table)
    return all(row.health is Health.HEALTHY for row in rows)


@dev_app.command("logs")
def dev_logs(
    service: Annotated[str, typer.Argument(help="kafka, redis, postgres or vault.")],
    lines: Annotated[int, typer.Option("--lines", "-n", help="How many lines.")] = 50,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing.")] = False,
) -> None:
    """Print the end of a local service's log.

    Example: `coyote-sdk dev logs kafka -n 100 -f`
    """
    stack = local_stack()
    try:
        for line in stack.log_lines(service, lines):
            print(line)
    except StackError as exc:
        report_error(exc)
        raise typer.Exit(2) from exc
    if follow:
        path = stack.services[service].log_path
        with path.open("r", errors="replace") as f:
            f.seek(0, 2)
            try:
                while True:
                    line = f.readline()
                    if line:
                        sys.stdout.write(line)
                        sys.stdout.flush()
                    else:
                        time.sleep(0.2)
            except KeyboardInterrupt:
                pass


@dev_app.command("env")
def dev_env() -> None:
    """Print shell `export` lines with the stack's addresses.

    Example: `eval "$(coyote-sdk dev env)"`
    """
    endpoints = local_stack().settings.endpoints()
    for name, value in (
        ("COYOTE_KAFKA_BOOTSTRAP", endpoints.kafka_bootstrap),
        ("COYOTE_REDIS_URL", endpoints.redis_url),
        ("COYOTE_DATABASE_URL", endpoints.database_url),
        ("COYOTE_VAULT_ADDR", endpoints.vault_addr),
        ("COYOTE_VAULT_TOKEN", endpoints.vault_token),
    ):
        print(f"export {name}={shlex.quote(value)}")
