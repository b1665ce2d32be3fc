"""`coyote-sdk init` and `coyote-sdk bundle`: bot projects and their bundles."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from coyote_sdk.cli._common import (
    JsonOpt,
    app,
    console,
    report_error,
)


@app.command("init")
def init(
    name: Annotated[str, typer.Argument(help="The bot's name, also its folder.")],
    directory: Annotated[Path, typer.Option(help="Where to create the folder.")] = Path("."),
) -> None:
    """Create a bot project: bot, test, requirements and README.

    Example: `coyote-sdk init breakout && cd breakout && pytest`
    """
    import re
    from importlib import resources
    from string import Template

    if not re.fullmatch(r"[a-z][a-z0-9_-]{0,63}", name):
        report_error(
            f"{name!r} is not a bot name: lower case letters, digits, - and _, "
            "starting with a letter"
        )
        raise typer.Exit(2)
    target = directory / name
    if target.exists():
        report_error(f"{target} already exists; nothing was written")
        raise typer.Exit(2)
    words = re.split(r"[-_]", name)
    values = {
        "name": name,
        "title": " ".join(words).capitalize(),
        "class_name": "".join(w.capitalize() for w in words) or "MyBot",
    }
    target.mkdir(parents=True)
    templates = resources.files("coyote_sdk").joinpath("templates", "bot")
    for template in templates.iterdir():
        if template.name.endswith(".tmpl"):
            text = Template(template.read_text()).substitute(values)
            (target / template.name.removesuffix(".tmpl")).write_text(text)
    console.print(f"created {target}/ (bot.py, test_bot.py, requirements.txt, README.md)")


@app.command("bundle")
def bundle_command(
    bot_file: Annotated[Path, typer.Argument(help="The Python file of the bot.")],
    name: Annotated[str | None, typer.Option(help="Bundle name; default the file's.")] = None,
    bot_name: Annotated[
        str | None, typer.Option("--bot", help="The bot class, if the file has several.")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Where to write the archive.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Build a bot's bundle (what push uploads) and print its digest.

    Example: `coyote-sdk bundle examples/sma_cross.py --out sma.tar.gz`
    """
    from coyote_sdk.bundles import BundleError, build_bundle

    try:
        built = build_bundle(bot_file, name=name, bot_class=bot_name)
    except BundleError as exc:
        report_error(exc)
        raise typer.Exit(2) from exc
    target = out or Path(f"{built.manifest.name}.coyote-bundle.tar.gz")
    target.write_bytes(built.data)
    if as_json:
        print(
            json.dumps(
                {
                    "digest": built.digest,
                    "path": str(target),
                    "bytes": len(built.data),
                    "entry_point": built.manifest.entry_point,
                }
            )
        )
        return
    console.print(f"{target}  {built.digest}  ({len(built.data)} bytes)", highlight=False)
    for file in built.manifest.files:
        console.print(f"  {file.path}  {file.size} bytes", highlight=False)
