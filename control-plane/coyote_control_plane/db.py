"""The database: engine, sessions and migrations (Alembic, in ``migrations/``).

SQLite is the embedded default, PostgreSQL the production database. The schema is only ever
made by migrations, never by ``create_all``, so the embedded database and production agree.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine
from sqlmodel import Session

from coyote_control_plane.models import TABLES
from coyote_sdk.sqlite import use_wal

MIGRATIONS = Path(__file__).parent / "migrations"


def make_engine(url: str, *, schema: str | None = None, **kwargs: Any) -> Engine:
    """An engine for ``url``; ``schema`` sets PostgreSQL's search path (tests use their own)."""
    connect_args: dict[str, Any] = {}
    if url.startswith("sqlite"):
        database = url.split("///", 1)[-1]
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        # The API's thread pool and the supervisor's thread share the engine.
        connect_args["check_same_thread"] = False
    elif schema is not None:
        connect_args["options"] = f"-csearch_path={schema}"
    engine = sa.create_engine(url, connect_args=connect_args, pool_pre_ping=True, **kwargs)
    if url.startswith("sqlite"):
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    use_wal(connection)
    connection.execute("PRAGMA foreign_keys=ON")


def include_object(
    obj: object, name: str | None, type_: str, _reflected: bool, _compare_to: object
) -> bool:
    """Alembic's filter: only the control plane's tables. SQLModel's metadata also holds those
    of any other service imported in the same process (the executor's), and a database may be
    shared with them."""
    if type_ == "table":
        return name in TABLES
    table = getattr(obj, "table", None)
    return table is None or table.name in TABLES


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def migrate(engine: Engine, revision: str = "head") -> None:
    """Brings the schema up to ``revision`` (the newest by default)."""
    with engine.begin() as connection:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def sessions(engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as session:
        yield session
