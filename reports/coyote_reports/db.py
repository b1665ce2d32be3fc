"""The reports' connection to the executor's database, and the SQL that differs by database.

The executor stores quantities and prices as ``NUMERIC`` on PostgreSQL and as decimal text on
SQLite, whose own ``sum()`` would turn them into binary floats. So on SQLite the engine gets two
exact aggregates, ``dsum(x)`` and ``dsumprod(x, y)`` (the sum of ``x * y``), computed with
:class:`decimal.Decimal`; PostgreSQL's ``sum`` is exact already. Both databases then give the
same numbers to the last digit.

Time buckets are ``time_bucket`` on TimescaleDB, ``date_bin`` on plain PostgreSQL, and integer
flooring of the millisecond timestamps on SQLite: all three align buckets on the Unix epoch
(UTC), so a 1-day bucket runs from midnight UTC.
"""

from __future__ import annotations

import dataclasses
import decimal
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from coyote_sdk.sqlite import BUSY_TIMEOUT_MS

__all__ = ["Dialect", "make_engine"]

_CONTEXT = decimal.Context(prec=60)
"""Enough digits that no sum of 64-character decimals is rounded."""


class _DecimalSum:
    def __init__(self) -> None:
        self.total: Decimal | None = None

    def step(self, value: str | float | int | None) -> None:
        if value is not None:
            self.total = _CONTEXT.add(self.total or Decimal(0), Decimal(str(value)))

    def finalize(self) -> str | None:
        return None if self.total is None else str(self.total)


class _DecimalSumOfProducts:
    def __init__(self) -> None:
        self.total: Decimal | None = None

    def step(self, x: str | float | int | None, y: str | float | int | None) -> None:
        if x is not None and y is not None:
            product = _CONTEXT.multiply(Decimal(str(x)), Decimal(str(y)))
            self.total = _CONTEXT.add(self.total or Decimal(0), product)

    def finalize(self) -> str | None:
        return None if self.total is None else str(self.total)


def _sqlite_functions(connection: Any, _record: Any) -> None:
    connection.create_aggregate("dsum", 1, _DecimalSum)
    connection.create_aggregate("dsumprod", 2, _DecimalSumOfProducts)
    connection.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")


def make_engine(url: str, *, schema: str | None = None) -> Engine:
    """A read engine on the executor's database (``sqlite:///…`` or ``postgresql://…``).

    Args:
        url: As the executor's ``COYOTE_EXECUTOR_DATABASE_URL``.
        schema: PostgreSQL schema (search path) of the tables, when not the default.
    """
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    connect_args: dict[str, Any] = {}
    if url.startswith("sqlite"):
        database = url.split("///", 1)[-1]
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        connect_args["check_same_thread"] = False
    elif schema is not None:
        connect_args["options"] = f"-csearch_path={schema}"
    engine = sa.create_engine(url, connect_args=connect_args, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_functions)
    return engine


@dataclasses.dataclass(frozen=True)
class Dialect:
    """The SQL of one database: exact sums, sign tests and time buckets."""

    name: str
    timescale: bool = False

    @classmethod
    def of(cls, engine: Engine) -> Dialect:
        timescale = False
        if engine.dialect.name == "postgresql":
            with engine.connect() as conn:
                timescale = (
                    conn.execute(
                        sa.text("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")
                    ).first()
                    is not None
                )
        return cls(engine.dialect.name, timescale)

    @property
    def exact(self) -> bool:
        """Whether the database's own ``sum`` is exact on the executor's decimal columns."""
        return self.name == "postgresql"

    def sum(self, value: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
        return sa.func.sum(value) if self.exact else sa.func.dsum(value)

    def sum_product(
        self, x: sa.ColumnElement[Any], y: sa.ColumnElement[Any]
    ) -> sa.ColumnElement[Any]:
        return sa.func.sum(x * y) if self.exact else sa.func.dsumprod(x, y)

    def positive(self, value: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
        # SQLite compares decimal text to a number as text; its REAL keeps the sign exactly.
        return value > 0 if self.exact else sa.cast(value, sa.Float) > 0

    def negative(self, value: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
        return value < 0 if self.exact else sa.cast(value, sa.Float) < 0

    def bucket(self, ts_ms: sa.ColumnElement[int], width_ms: int) -> sa.ColumnElement[int]:
        """The start (ms) of the epoch-aligned bucket of ``width_ms`` holding ``ts_ms``."""
        width = int(width_ms)  # inlined into the SQL: an integer, never user text
        if self.timescale:
            return sa.func.time_bucket(sa.literal_column(f"{width}::bigint"), ts_ms)
        if self.name == "postgresql":
            binned = sa.func.date_bin(
                sa.literal_column(f"interval '{width} milliseconds'"),
                sa.func.to_timestamp(ts_ms / sa.literal_column("1000.0")),
                sa.literal_column("timestamptz '1970-01-01 00:00:00+00'"),
            )
            return sa.cast(sa.extract("epoch", binned) * 1000, sa.BigInteger)
        return ts_ms - ts_ms % width
