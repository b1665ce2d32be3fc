"""What every command module of the CLI shares: the Typer apps, consoles and small helpers."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from coyote_sdk.config import StackSettings
from coyote_sdk.dev import Stack

app = typer.Typer(
    name="coyote-sdk",
    help="Write, test and run Coyote trading bots.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
dev_app = typer.Typer(
    help="The local stack of real services: Kafka, Redis Stack, PostgreSQL, OpenBao.",
    no_args_is_help=True,
)
protocol_app = typer.Typer(help="The wire protocol.", no_args_is_help=True)
feed_app = typer.Typer(help="Market-data feeds into RedisTimeSeries.", no_args_is_help=True)
app.add_typer(dev_app, name="dev")
app.add_typer(feed_app, name="feed")
app.add_typer(protocol_app, name="protocol")

console = Console()
errors = Console(stderr=True)

ServicesArg = Annotated[
    list[str] | None,
    typer.Argument(help="Services to act on (kafka, redis, postgres, vault); default all."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def local_stack() -> Stack:
    try:
        return Stack(StackSettings())
    except ValueError as exc:  # a bad COYOTE_* variable
        report_error(exc)
        raise typer.Exit(2) from exc


def report_error(problem: object) -> None:
    """Prints an error; its text is escaped, so brackets in it (a TOML section, a list) show."""
    errors.print(f"[red]error:[/red] {escape(str(problem))}", highlight=False, soft_wrap=True)


def say(line: str) -> None:
    console.print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] {line}", highlight=False, soft_wrap=True)


def format_day(ts_ms: int) -> str:
    moment = datetime.fromtimestamp(ts_ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%d %H:%M" if moment.hour or moment.minute else "%Y-%m-%d")
