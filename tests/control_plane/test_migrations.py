"""The migrations make exactly the tables the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

import coyote_control_plane.models  # noqa: F401 - the tables
import coyote_executor.models  # noqa: F401 - another service's tables, which must be ignored
from coyote_control_plane.db import include_object, make_engine, migrate


def _differences(engine: sa.Engine) -> list[object]:
    with engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "include_object": include_object}
        )
        return list(compare_metadata(context, SQLModel.metadata))


@pytest.mark.unit
def test_sqlite_schema_from_migrations_matches_the_models(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'cp.db'}")
    migrate(engine)
    assert _differences(engine) == []
    migrate(engine)  # a second run is a no-op


@pytest.mark.integration
def test_postgres_schema_from_migrations_matches_the_models(postgres: sa.Engine) -> None:
    migrate(postgres)
    assert _differences(postgres) == []
