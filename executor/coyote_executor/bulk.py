"""Many rows in one statement: what a step of the executor writes, at the database's speed.

A step writes some six rows an intent (the intent, its order, the order's new state, a fill, two
reports). Through SQLAlchemy's ``executemany`` each row pays the statement's parameter
processing in Python and an ``INSERT``/``UPDATE`` executed on the server; on PostgreSQL these
helpers send the rows with ``COPY`` (inserts) and as arrays to one ``UPDATE … FROM unnest(…)``
(updates), in the caller's transaction, and read rows by many keys as a join with arrays of
keys, one statement text whatever their number (so its plan is prepared once). SQLite, embedded
and local, keeps ``executemany`` and row-value ``IN``.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, cast

import psycopg
import sqlalchemy as sa
from psycopg import sql
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import ARRAY


def insert_rows(conn: sa.Connection, table: sa.Table, rows: Sequence[Mapping[str, Any]]) -> None:
    """Inserts ``rows`` (by column name; a missing column takes its default) into ``table``."""
    if not rows:
        return
    if conn.dialect.name != "postgresql":
        conn.execute(table.insert(), rows)
        return
    columns = _defaults(table)
    with (
        _driver_cursor(conn, f"COPY {table.name}") as cursor,
        cursor.copy(_copy_statement(table)) as copy,
    ):
        for row in rows:
            copy.write_row([row.get(name, default) for name, default in columns])


def update_rows(
    conn: sa.Connection,
    table: sa.Table,
    keys: Sequence[str],
    values: Sequence[str],
    rows: Sequence[Mapping[str, Any]],
    *,
    version: str | None = None,
) -> int:
    """Sets the columns ``values`` of the rows of ``table`` whose columns ``keys`` match each of
    ``rows`` (a mapping holding both); returns how many rows changed.

    With ``version`` (one of ``values``, an integer column), a row changes only if its version
    (NULL counting as 0) is one less than the one given for it: optimistic concurrency, an
    update made from an out-of-date read changes nothing (and is missing from the count)."""
    if not rows:
        return 0
    if conn.dialect.name != "postgresql":
        where = [table.c[key] == sa.bindparam(f"k_{key}") for key in keys]
        if version is not None:
            where.append(sa.func.coalesce(table.c[version], 0) == sa.bindparam(f"v_{version}") - 1)
        result = conn.execute(
            table.update()
            .where(*where)
            .values({name: sa.bindparam(f"v_{name}") for name in values}),
            [
                {
                    **{f"k_{key}": row[key] for key in keys},
                    **{f"v_{name}": row[name] for name in values},
                }
                for row in rows
            ],
        )
        return result.rowcount
    statement, arrays = _update_statement(table, tuple(keys), tuple(values), version)
    with _driver_cursor(conn, f"UPDATE {table.name}") as cursor:
        cursor.execute(statement, [[row[name] for row in rows] for name in arrays])
        return cursor.rowcount


def select_rows(
    conn: sa.Connection,
    table: sa.Table,
    keys: Sequence[str],
    values: Sequence[tuple[Any, ...]],
    *where: sa.ColumnElement[bool],
    columns: Sequence[sa.ColumnElement[Any]] | None = None,
) -> sa.CursorResult[Any]:
    """The rows of ``table`` (``columns`` of them, all by default) whose columns ``keys`` equal
    one of ``values`` (tuples in the order of ``keys``) and that meet ``where``."""
    query = sa.select(*(columns if columns is not None else table.columns))
    if conn.dialect.name != "postgresql":
        match = sa.tuple_(*(table.c[key] for key in keys)).in_(list(values))
        return conn.execute(query.where(match, *where))
    wanted = (
        sa.func.unnest(
            *(
                sa.bindparam(
                    f"k_{key}", [value[i] for value in values], type_=ARRAY(table.c[key].type)
                )
                for i, key in enumerate(keys)
            )
        )
        .table_valued(*keys, name="wanted")
        .render_derived()
    )
    return conn.execute(
        query.join_from(
            table, wanted, sa.and_(*(table.c[key] == wanted.c[key] for key in keys))
        ).where(*where)
    )


@contextlib.contextmanager
def _driver_cursor(conn: sa.Connection, what: str) -> Iterator[psycopg.Cursor[Any]]:
    """A cursor of ``conn``'s psycopg connection, in its transaction, whose errors come out as
    SQLAlchemy's would (``OperationalError``, ``IntegrityError``…; a lost connection
    invalidated): what the executor tells outages, zombies and bugs apart by."""
    driver = conn.connection.driver_connection
    assert isinstance(driver, psycopg.Connection)
    try:
        with driver.cursor() as cursor:
            yield cursor
    except psycopg.Error as exc:
        # psycopg's errors are the DB-API errors SQLAlchemy's stubs name abstractly.
        lost = conn.dialect.is_disconnect(cast(Any, exc), conn.connection, None)
        if lost:
            conn.invalidate(exc)
        raise sa.exc.DBAPIError.instance(
            what, None, exc, psycopg.Error, connection_invalidated=lost, dialect=conn.dialect
        ) from exc


@functools.cache
def _defaults(table: sa.Table) -> tuple[tuple[str, Any], ...]:
    """Each column's name and the value a row without it gets (its scalar default, or NULL)."""
    return tuple(
        (
            column.name,
            column.default.arg  # type: ignore[attr-defined]
            if column.default is not None and column.default.is_scalar
            else None,
        )
        for column in table.columns
    )


def _name(table: sa.Table) -> sql.Composable:
    if table.schema:
        return sql.Identifier(table.schema, table.name)
    return sql.Identifier(table.name)


@functools.cache
def _copy_statement(table: sa.Table) -> sql.Composed:
    return sql.SQL("COPY {} ({}) FROM STDIN").format(
        _name(table), sql.SQL(", ").join(sql.Identifier(c.name) for c in table.columns)
    )


@functools.cache
def _update_statement(
    table: sa.Table, keys: tuple[str, ...], values: tuple[str, ...], version: str | None
) -> tuple[sql.Composed, tuple[str, ...]]:
    """``UPDATE table SET v = new.v … FROM unnest(%s::type[], …) AS new(…) WHERE key = new.key``
    (and ``coalesce(version, 0) = new.version - 1``), and the column whose array each parameter
    is."""
    dialect = postgresql.dialect()
    arrays = (*keys, *values)
    new = sql.SQL(", ").join(
        sql.SQL("%s::{}[]").format(sql.SQL(table.c[name].type.compile(dialect=dialect)))
        for name in arrays
    )
    statement = sql.SQL(
        "UPDATE {table} AS t SET {sets} FROM unnest({new}) AS new ({names}) WHERE {match}"
    ).format(
        table=_name(table),
        sets=sql.SQL(", ").join(
            sql.SQL("{0} = new.{0}").format(sql.Identifier(name)) for name in values
        ),
        new=new,
        names=sql.SQL(", ").join(sql.Identifier(name) for name in arrays),
        match=sql.SQL(" AND ").join(
            [
                *(sql.SQL("t.{0} = new.{0}").format(sql.Identifier(key)) for key in keys),
                *(
                    [sql.SQL("coalesce(t.{0}, 0) = new.{0} - 1").format(sql.Identifier(version))]
                    if version is not None
                    else []
                ),
            ]
        ),
    )
    return statement, arrays
