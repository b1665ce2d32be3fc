"""The ``coyote-sdk`` command line: one module per command group, assembled here."""

from __future__ import annotations

from typing import Annotated

import typer

from coyote_sdk._version import __version__

# Importing the command modules registers their commands on the apps.
from coyote_sdk.cli import backtest, dev, feeds, flow, live, platform, projects, protocol  # noqa: F401
from coyote_sdk.cli._common import app, console


@app.callback(invoke_without_command=True)
def _main(
    version: Annotated[bool, typer.Option("--version", help="Print the version.")] = False,
) -> None:
    if version:
        console.print(__version__)
        raise typer.Exit()


def main() -> None:
    app()


__all__ = ["app", "main"]
