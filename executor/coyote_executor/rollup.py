"""The hourly rollup of fills (``fill_hours``), kept in the transaction that writes the fills.

Each row sums one book's fills in one UTC hour and carries the book's running totals at the
hour's end (see :class:`~coyote_executor.models.FillHour`). :func:`roll_up` adds a step's fills:
for the books touched it reads the rows from the earliest hour touched on (usually just the
current hour's) and the last row before, in a couple of statements for all books at once,
recomputes them in Python with exact decimals, and writes them back.
One executor owns an account at a time, so no two writers touch a book's rows at once.

:func:`rebuild` rewrites the whole table from the fills, in the same arithmetic, for databases
written before the rollup existed and for data loaded by other means (bench/reports.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from coyote_executor import bulk
from coyote_executor.models import FillHour

HOUR_MS = 3_600_000
ZERO = Decimal(0)
_TABLE: sa.Table = FillHour.__table__  # type: ignore[attr-defined]
_HOURLY = (
    "bought",
    "sold",
    "paid",
    "received",
    "fees",
    "realized",
    "gains",
    "losses",
    "wins",
    "closes",
    "fills",
)
_RUNNING = ("cum_quantity", "cum_cash", "cum_fees", "cum_realized")

BookKey = tuple[str, str, str]
"""(account id, bot id, symbol)."""
Totals = tuple[Decimal, Decimal, Decimal, Decimal]
"""Running totals: net quantity, net cash before fees, fees, realised PnL."""


def hour_of(ts_ms: int) -> int:
    """The start of the UTC hour holding ``ts_ms``."""
    return ts_ms - ts_ms % HOUR_MS


@dataclasses.dataclass(slots=True)
class FillFacts:
    """What the rollup needs of one fill."""

    account_id: str
    bot_id: str
    symbol: str
    ts_ms: int
    fill_id: str
    buy: bool
    quantity: Decimal
    price: Decimal
    fee: Decimal
    realized: Decimal

    @classmethod
    def of_row(cls, row: sa.RowMapping | Mapping[str, Any]) -> FillFacts:
        """From a ``fills`` row (as the store inserts it or reads it back)."""
        return cls(
            row["account_id"],
            row["bot_id"],
            row["symbol"],
            row["ts_ms"],
            row["fill_id"],
            row["side"] == "buy",
            Decimal(row["quantity"]),
            Decimal(row["price"]),
            Decimal(row["fee"]),
            Decimal(row["realized_pnl"]),
        )


@dataclasses.dataclass(slots=True)
class _Hour:
    """One hour of one book: its sums, its last trade, and its running totals."""

    bought: Decimal = ZERO
    sold: Decimal = ZERO
    paid: Decimal = ZERO
    received: Decimal = ZERO
    fees: Decimal = ZERO
    realized: Decimal = ZERO
    gains: Decimal = ZERO
    losses: Decimal = ZERO
    wins: int = 0
    closes: int = 0
    fills: int = 0
    last_ts_ms: int = 0
    last_fill_id: str = ""
    last_price: Decimal = ZERO
    cum_quantity: Decimal = ZERO
    cum_cash: Decimal = ZERO
    cum_fees: Decimal = ZERO
    cum_realized: Decimal = ZERO

    def add(self, fill: FillFacts) -> None:
        """Adds a fill to the hour's sums (not to the running totals)."""
        notional = fill.quantity * fill.price
        if fill.buy:
            self.bought += fill.quantity
            self.paid += notional
        else:
            self.sold += fill.quantity
            self.received += notional
        self.fees += fill.fee
        self.realized += fill.realized
        if fill.realized > 0:
            self.gains += fill.realized
            self.wins += 1
        elif fill.realized < 0:
            self.losses += fill.realized
        if fill.realized != 0:
            self.closes += 1
        self.fills += 1
        if (fill.ts_ms, fill.fill_id) > (self.last_ts_ms, self.last_fill_id):
            self.last_ts_ms, self.last_fill_id = fill.ts_ms, fill.fill_id
            self.last_price = fill.price

    def running_delta(self) -> Totals:
        """What the hour's sums add to the running totals."""
        return (
            self.bought - self.sold,
            self.received - self.paid,
            self.fees,
            self.realized,
        )

    def merge(self, other: _Hour) -> None:
        """Adds another part of the same hour's sums (not the running totals)."""
        for name in _HOURLY:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        if (other.last_ts_ms, other.last_fill_id) > (self.last_ts_ms, self.last_fill_id):
            self.last_ts_ms, self.last_fill_id = other.last_ts_ms, other.last_fill_id
            self.last_price = other.last_price

    def set_running(self, totals: Totals) -> None:
        self.cum_quantity, self.cum_cash, self.cum_fees, self.cum_realized = totals

    def running(self) -> Totals:
        return self.cum_quantity, self.cum_cash, self.cum_fees, self.cum_realized

    def row(self, key: BookKey, hour_ms: int) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        return {
            "account_id": key[0],
            "bot_id": key[1],
            "symbol": key[2],
            "hour_ms": hour_ms,
            **values,
        }


def _hours(fills: Iterable[FillFacts]) -> dict[BookKey, dict[int, _Hour]]:
    books: dict[BookKey, dict[int, _Hour]] = {}
    for fill in fills:
        hours = books.setdefault((fill.account_id, fill.bot_id, fill.symbol), {})
        hours.setdefault(hour_of(fill.ts_ms), _Hour()).add(fill)
    return books


def _plus(a: Totals, b: Totals) -> Totals:
    return (a[0] + b[0], a[1] + b[1], a[2] + b[2], a[3] + b[3])


def _minus(a: Totals, b: Totals) -> Totals:
    return (a[0] - b[0], a[1] - b[1], a[2] - b[2], a[3] - b[3])


def _from_row(row: sa.RowMapping | Mapping[str, Any]) -> _Hour:
    hour = _Hour()
    for field in dataclasses.fields(_Hour):
        value = row[field.name]
        setattr(hour, field.name, Decimal(value) if isinstance(field.default, Decimal) else value)
    return hour


_SEEKS_PER_STATEMENT = 400
"""Books per UNION ALL (SQLite allows 500 terms in a compound statement)."""


def _book_where(key: BookKey) -> list[sa.ColumnElement[bool]]:
    t = _TABLE
    return [t.c.account_id == key[0], t.c.bot_id == key[1], t.c.symbol == key[2]]


def _key_of(row: sa.RowMapping | sa.Row[Any]) -> BookKey:
    return (row.account_id, row.bot_id, row.symbol)


def _stored_from(
    conn: sa.Connection, keys: list[BookKey], first: int
) -> tuple[dict[BookKey, dict[int, _Hour]], dict[BookKey, Totals]]:
    """The rows of the books ``keys`` from hour ``first`` on, and each book's running totals
    before that hour: one statement, and a second for books with no row at that hour yet,
    whatever the number of books."""
    t = _TABLE
    stored: dict[BookKey, dict[int, _Hour]] = {}
    rows = bulk.select_rows(conn, t, ("account_id", "bot_id", "symbol"), keys, t.c.hour_ms >= first)
    for row in rows.mappings():
        stored.setdefault(_key_of(row), {})[row["hour_ms"]] = _from_row(row)
    # A book with a row for hour ``first`` (the usual case: the current hour, after its first
    # fill) has its totals before that hour in the row: its running totals less its own sums.
    before: dict[BookKey, Totals] = {}
    unknown = []
    for key in keys:
        hour = stored.get(key, {}).get(first)
        if hour is None:
            unknown.append(key)
        else:
            before[key] = _minus(hour.running(), hour.running_delta())
    # The others' last row before: an index seek per book (ORDER BY ... LIMIT 1), all in one
    # UNION ALL; a GROUP BY with max() would read every earlier hour of every book.
    for at in range(0, len(unknown), _SEEKS_PER_STATEMENT):
        seeks = [
            sa.select(t.c.account_id, t.c.bot_id, t.c.symbol, *(t.c[name] for name in _RUNNING))
            .where(*_book_where(key), t.c.hour_ms < first)
            .order_by(t.c.hour_ms.desc())
            .limit(1)
            .subquery()
            .select()
            for key in unknown[at : at + _SEEKS_PER_STATEMENT]
        ]
        for last in conn.execute(sa.union_all(*seeks) if len(seeks) > 1 else seeks[0]):
            before[_key_of(last)] = (
                Decimal(last.cum_quantity),
                Decimal(last.cum_cash),
                Decimal(last.cum_fees),
                Decimal(last.cum_realized),
            )
    return stored, before


def roll_up(conn: sa.Connection, fills: Iterable[FillFacts]) -> None:
    """Adds ``fills`` (new ones, never written before) to the rollup, in ``conn``'s
    transaction.

    A handful of statements whatever the number of books touched: the books are read together
    (grouped by the first hour they touch, nearly always the current one for all) and written
    together."""
    t = _TABLE
    zero: Totals = (ZERO, ZERO, ZERO, ZERO)
    books = _hours(fills)
    by_first: dict[int, list[BookKey]] = {}
    for key, new in books.items():
        by_first.setdefault(min(new), []).append(key)
    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    for first, keys in by_first.items():
        stored_of, before = _stored_from(conn, keys, first)
        for key in keys:
            new = books[key]
            stored = stored_of.get(key, {})
            running = before.get(key, zero)
            for hour_ms in sorted(stored.keys() | new.keys()):
                hour = stored.get(hour_ms)
                added = new.get(hour_ms)
                if hour is None:
                    hour = added
                    assert hour is not None
                elif added is not None:
                    hour.merge(added)
                # The running totals are rebuilt along the touched hours: the last row before
                # plus each hour's sums, old fills and new alike.
                running = _plus(running, hour.running_delta())
                hour.set_running(running)
                (updates if hour_ms in stored else inserts).append(hour.row(key, hour_ms))
    bulk.insert_rows(conn, t, inserts)
    bulk.update_rows(
        conn,
        t,
        ("account_id", "bot_id", "symbol", "hour_ms"),
        (*_HOURLY, *_LAST, *_RUNNING),
        updates,
    )


_LAST = ("last_ts_ms", "last_fill_id", "last_price")


def rebuild(conn: sa.Connection, fills: sa.Table, *, batch: int = 10_000) -> int:
    """Rewrites the rollup from ``fills``; answers how many rows it wrote."""
    conn.execute(_TABLE.delete())
    query = sa.select(
        fills.c.account_id,
        fills.c.bot_id,
        fills.c.symbol,
        fills.c.ts_ms,
        fills.c.fill_id,
        fills.c.side,
        fills.c.quantity,
        fills.c.price,
        fills.c.fee,
        fills.c.realized_pnl,
    ).order_by(fills.c.account_id, fills.c.bot_id, fills.c.symbol, fills.c.ts_ms, fills.c.fill_id)
    written = 0
    pending: list[dict[str, Any]] = []
    # The fills stream through a second connection (a server-side cursor on PostgreSQL), as
    # one connection cannot write while it streams; the fills are not changed meanwhile.
    with conn.engine.connect() as reader:
        rows = reader.execute(query.execution_options(yield_per=batch)).mappings()
        for row in _rebuilt_rows(FillFacts.of_row(r) for r in rows):
            pending.append(row)
            if len(pending) >= batch:
                conn.execute(_TABLE.insert(), pending)
                written += len(pending)
                pending.clear()
    if pending:
        conn.execute(_TABLE.insert(), pending)
        written += len(pending)
    return written


def _rebuilt_rows(fills: Iterator[FillFacts]) -> Iterator[dict[str, Any]]:
    # Fills come ordered by book, then time: one book's hours at a time, in order.
    key: BookKey | None = None
    hour_ms = 0
    hour = _Hour()
    running = (ZERO, ZERO, ZERO, ZERO)
    for fill in fills:
        fill_key = (fill.account_id, fill.bot_id, fill.symbol)
        fill_hour = hour_of(fill.ts_ms)
        if fill_key != key or fill_hour != hour_ms:
            if key is not None:
                running = _plus(running, hour.running_delta())
                hour.set_running(running)
                yield hour.row(key, hour_ms)
            if fill_key != key:
                running = (ZERO, ZERO, ZERO, ZERO)
            key, hour_ms, hour = fill_key, fill_hour, _Hour()
        hour.add(fill)
    if key is not None:
        hour.set_running(_plus(running, hour.running_delta()))
        yield hour.row(key, hour_ms)
