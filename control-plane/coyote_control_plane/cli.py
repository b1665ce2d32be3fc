"""``coyote-control-plane``: serve the API, migrate the database, bootstrap an organisation."""

from __future__ import annotations

import json
from typing import Annotated

import typer

app = typer.Typer(
    name="coyote-control-plane",
    help="Coyote's control plane: bots, releases, deployments, supervisor, users.",
    no_args_is_help=True,
)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default from settings).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8400).")] = None,
) -> None:
    """Run the API with its supervisor (settings from COYOTE_CONTROL_PLANE_*).

    Example: `coyote-control-plane serve --port 8400`
    """
    import uvicorn

    from coyote_control_plane.config import Settings
    from coyote_control_plane.main import GRACEFUL_SHUTDOWN_S, create_app
    from coyote_sdk.logs import configure_logging

    configure_logging()
    settings = Settings()
    typer.echo(settings.describe(), err=True)
    uvicorn.run(
        create_app(settings),
        host=host or settings.host,
        port=port or settings.port,
        log_config=None,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )


@app.command()
def migrate() -> None:
    """Bring the database schema up to date (the server also does it at start-up)."""
    from coyote_control_plane.config import Settings
    from coyote_control_plane.db import make_engine
    from coyote_control_plane.db import migrate as upgrade

    settings = Settings()
    upgrade(make_engine(settings.database_url, schema=settings.database_schema))
    typer.echo("schema is up to date")


@app.command()
def bootstrap(
    org: Annotated[str, typer.Option(help="The organisation's slug, e.g. acme.")],
    email: Annotated[str, typer.Option(help="Its first admin's email.")],
    name: Annotated[str | None, typer.Option(help="Display name of the organisation.")] = None,
    password: Annotated[
        str | None, typer.Option(help="Admin's dashboard password (12+ characters).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Create an organisation and its admin; prints an admin API key (shown once).

    Example: `coyote-control-plane bootstrap --org acme --email ops@acme.example`
    """
    from sqlmodel import Session

    from coyote_control_plane.bootstrap import BootstrapError, create_organization
    from coyote_control_plane.config import Settings
    from coyote_control_plane.db import make_engine
    from coyote_control_plane.db import migrate as upgrade

    settings = Settings()
    engine = make_engine(settings.database_url, schema=settings.database_schema)
    upgrade(engine)
    if password is not None and len(password) < 12:
        typer.echo("error: the password needs 12 characters or more", err=True)
        raise typer.Exit(2)
    with Session(engine) as session:
        try:
            _, _, key = create_organization(
                session, slug=org, name=name or org, admin_email=email, admin_password=password
            )
        except BootstrapError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from exc
    if as_json:
        typer.echo(json.dumps({"org": org, "email": email, "api_key": key}))
    else:
        typer.echo(f"organisation {org} made; admin {email}\nAPI key (shown once): {key}")


@app.command()
def openapi() -> None:
    """Print the OpenAPI schema."""
    from coyote_control_plane.main import create_app

    typer.echo(json.dumps(create_app().openapi(), indent=2))


def main() -> None:
    app()
