"""The executor's durable record: PostgreSQL in production, SQLite embedded.

All writes of one step go through :meth:`Store.apply` in a single transaction, so the database
always holds a consistent picture: an intent's decision with its order, an order's new state
with its fills, positions, balances and reports. The executor calls it from a worker thread
(the database drivers are synchronous) and never publishes a report the database has not
committed.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import uuid
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlmodel import SQLModel

from coyote_executor import bulk, rollup
from coyote_executor.models import (
    RETIRED_INDEXES,
    TABLES,
    Balance,
    Fill,
    FillHour,
    Intent,
    Order,
    Position,
    Report,
)
from coyote_executor.orders import FillEvent, LiveOrder
from coyote_sdk import protocol
from coyote_sdk.portfolio import FillTotals
from coyote_sdk.portfolio import Position as Book
from coyote_sdk.protocol import ExecutionReport, NewOrder, OrderStatus, OrderType, Side, TimeInForce
from coyote_sdk.sqlite import use_wal

log = logging.getLogger(__name__)

_SCHEMA_LOCK = 0x636F796F7465  # "coyote": the PostgreSQL advisory lock of create_schema

ZERO = Decimal(0)
_MUTABLE = (
    "status",
    "quantity",
    "limit_price",
    "stop_price",
    "filled_quantity",
    "average_price",
    "broker_order_id",
    "reject_code",
    "reject_reason",
    "updated_ms",
    "version",
)
_OPEN = [s.value for s in OrderStatus if not s.is_terminal]


@dataclasses.dataclass(slots=True)
class Changes:
    """Everything one step of the executor writes, committed together."""

    intents: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    new_orders: list[LiveOrder] = dataclasses.field(default_factory=list)
    updated_orders: dict[str, LiveOrder] = dataclasses.field(default_factory=dict)
    fills: list[FillEvent] = dataclasses.field(default_factory=list)
    reports: list[ExecutionReport] = dataclasses.field(default_factory=list)
    traceparents: dict[uuid.UUID, str] = dataclasses.field(default_factory=dict)
    """The ``traceparent`` each report (by report id) is published with, if any."""
    bodies: dict[uuid.UUID, bytes] = dataclasses.field(default_factory=dict)
    """Each report encoded (by report id), as recorded and published: encoded once."""
    with_offsets: bool = True
    """Whether the reports go out in the Kafka transaction that commits the offsets of the
    intents that caused them (then a redelivered intent re-publishes them), or are late events
    published from the table afterwards (the outbox)."""

    def __bool__(self) -> bool:
        return bool(
            self.intents or self.new_orders or self.updated_orders or self.fills or self.reports
        )

    def body(self, report: ExecutionReport) -> bytes:
        """``report`` encoded (one of :attr:`reports`)."""
        body = self.bodies.get(report.report_id)
        if body is None:
            body = self.bodies[report.report_id] = protocol.encode(report)
        return body

    def update(self, order: LiveOrder) -> None:
        """Records ``order``'s new state; its row's version goes up by one when written."""
        if order.key not in self.updated_orders:
            order.version += 1
        self.updated_orders[order.key] = order

    def frozen(self) -> Changes:
        """These changes with copies of their orders: written later, by another task, they
        are written as they are now, whatever happens to the live orders meanwhile."""
        return dataclasses.replace(
            self,
            new_orders=[copy.copy(order) for order in self.new_orders],
            updated_orders={key: copy.copy(order) for key, order in self.updated_orders.items()},
        )


class OrdersChangedMeanwhile(Exception):
    """An update of :meth:`Store.apply` found an order's row at another version than the one
    its changes were made from: another writer (a fenced predecessor's late commit) changed
    it. Nothing of the changes was written."""


IDLE_IN_TRANSACTION_MS = 10_000
"""PostgreSQL ends a session of the executor that stays idle inside a transaction this long."""
LOCK_TIMEOUT_MS = 5_000
"""A statement of the executor waiting this long for a row lock fails (and is retried)."""
STALE_TRANSACTION_S = 20
"""An executor's transaction open this long belongs to a frozen process (a step's last well
under a second): :meth:`Store.end_stale_transactions` ends its session."""
APPLICATION_NAME = "coyote-executor"
"""How the executor's PostgreSQL sessions name themselves (``pg_stat_activity``)."""
REBUILDING_APPLICATION_NAME = "coyote-executor-rebuild"
"""The name of a session while it rebuilds the derived state: a long transaction on purpose,
which :meth:`Store.end_stale_transactions` leaves alone."""


class Store:
    """Orders, fills, positions, balances and reports in one SQL database.

    Args:
        url: A SQLAlchemy URL: ``sqlite:///path.db`` or ``postgresql+psycopg://...``
            (``postgresql://`` is taken to mean psycopg 3).
    """

    def __init__(self, url: str, *, connect_args: dict[str, Any] | None = None) -> None:
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
        self.url = url
        connect_args = dict(connect_args or {})
        if url.startswith("postgresql"):
            # A process frozen inside a transaction (a zombie: paused, then replaced by another
            # instance) would hold its row locks, and block its successor, for as long as it
            # is frozen. The executor never idles inside a transaction: the server ends one
            # that does, and the zombie's next write fails.
            # Added to the URL's own options (a search_path, say), which connect_args would
            # otherwise replace.
            from_url = sa.make_url(url).query.get("options")
            from_url = from_url[-1] if isinstance(from_url, tuple) else from_url
            idle = (
                f"-c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_MS} "
                f"-c lock_timeout={LOCK_TIMEOUT_MS}"
            )
            connect_args.setdefault("options", f"{from_url} {idle}" if from_url else idle)
            connect_args.setdefault("application_name", APPLICATION_NAME)
        self.engine = sa.create_engine(url, connect_args=connect_args, pool_pre_ping=True)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self.timescale = False

    def end_stale_transactions(self) -> list[int]:
        """Ends the PostgreSQL sessions of executors whose transaction has been open for
        :data:`STALE_TRANSACTION_S`; answers their process ids.

        A process frozen in the middle of a pipelined statement (psycopg sends many rows and
        one ``Sync``) is neither idle in its transaction nor running a statement, so no server
        time-out ends it, and its row locks block the instance that took its accounts over
        (its statements fail on :data:`LOCK_TIMEOUT_MS` and are retried). No live executor
        keeps a transaction open that long, so such a session is a zombie's: ending it rolls
        its transaction back, and its next write fails.
        """
        if self.engine.dialect.name != "postgresql":
            return []
        with self.engine.connect() as conn:
            pids = list(
                conn.execute(
                    sa.text(
                        "SELECT pid FROM pg_stat_activity WHERE application_name = :name "
                        "AND datname = current_database() AND pid <> pg_backend_pid() "
                        "AND xact_start < now() - make_interval(secs => :age)"
                    ),
                    {"name": APPLICATION_NAME, "age": STALE_TRANSACTION_S},
                ).scalars()
            )
            for pid in pids:
                conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        return pids

    def create_schema(self) -> None:
        """Creates missing tables; on PostgreSQL with TimescaleDB, ``fills`` becomes a
        hypertable. Idempotent, and safe for executors starting at once on a new database (a
        deployment's replicas): they take turns (on PostgreSQL an advisory lock, on SQLite the
        write lock), as two ``CREATE TABLE`` of one name at once fail."""
        tables = [getattr(t, "__table__") for t in TABLES]  # noqa: B009 - untyped attribute
        postgresql = self.engine.dialect.name == "postgresql"
        with self.engine.begin() as conn:
            if not postgresql:  # SQLite
                # The database's write lock from the start (pysqlite would begin the
                # transaction only at the first row written, after the checks).
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            if postgresql:
                # However long the other one takes (deriving the rollup of a big database can
                # take minutes); the lock time-out holds again for the tables.
                conn.execute(sa.text("SET LOCAL lock_timeout = 0"))
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK})
                conn.execute(sa.text(f"SET LOCAL lock_timeout = {LOCK_TIMEOUT_MS}"))
            SQLModel.metadata.create_all(conn, tables=tables)
            _add_missing_columns(conn, tables)
            for name in RETIRED_INDEXES:
                conn.execute(sa.text(f"DROP INDEX IF EXISTS {name}"))
            # Indexes added since a table was created (create_all skips existing tables).
            for table in tables:
                for index in table.indexes:
                    index.create(conn, checkfirst=True)
            # A database from before the rollup: derive it (and the books) from the fills once.
            hours = FillHour.__table__  # type: ignore[attr-defined]
            fills = Fill.__table__  # type: ignore[attr-defined]
            if (
                conn.execute(sa.select(hours.c.hour_ms).limit(1)).first() is None
                and conn.execute(sa.select(fills.c.ts_ms).limit(1)).first() is not None
            ):
                log.info("deriving the hourly rollup of the fills recorded so far")
                self._rebuild_derived(conn)
            if not postgresql:
                return
            available = conn.execute(
                sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'")
            ).first()
            if available is None:
                log.info("TimescaleDB is not available: fills stay a plain table")
                return
            conn.execute(sa.text("CREATE EXTENSION IF NOT EXISTS timescaledb"))
            conn.execute(
                sa.text(
                    "SELECT create_hypertable('fills', 'ts_ms', chunk_time_interval => 86400000, "
                    "if_not_exists => TRUE, migrate_data => TRUE)"
                )
            )
            self.timescale = True

    def close(self) -> None:
        self.engine.dispose()

    # -- reads -----------------------------------------------------------------------------

    def known_intents(self, intent_ids: Sequence[str]) -> dict[str, tuple[int | None, int | None]]:
        """Which of ``intent_ids`` the executor has already decided on, with the partition and
        offset of the record that carried each."""
        if not intent_ids:
            return {}
        table = Intent.__table__  # type: ignore[attr-defined]
        with self.engine.connect() as conn:
            # One statement text whatever the number of ids (an IN list of 500 parameters was
            # parsed anew, and never prepared, at every step).
            rows = bulk.select_rows(
                conn,
                table,
                ("intent_id",),
                [(intent_id,) for intent_id in intent_ids],
                columns=[table.c.intent_id, table.c.source_partition, table.c.source_offset],
            )
            return {row.intent_id: (row.source_partition, row.source_offset) for row in rows}

    def reports_of_intents(self, intent_ids: Sequence[str]) -> list[tuple[str, bytes, str | None]]:
        """The reports recorded for publication with ``intent_ids``' offsets (account id,
        body, traceparent), oldest first."""
        if not intent_ids:
            return []
        table = Report.__table__  # type: ignore[attr-defined]
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(table.c.account_id, table.c.body, table.c.traceparent)
                .where(table.c.intent_id.in_(list(intent_ids)), table.c.with_offsets.is_(True))
                .order_by(table.c.report_id)
            )
            return [(row[0], bytes(row[1]), row[2]) for row in rows]

    def unpublished_reports(self, limit: int = 1000) -> list[tuple[str, str, bytes, str | None]]:
        """Reports written but not yet published: (report id, account id, body, traceparent)."""
        table = Report.__table__  # type: ignore[attr-defined]
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(table.c.report_id, table.c.account_id, table.c.body, table.c.traceparent)
                .where(table.c.published.is_(False))
                .order_by(table.c.report_id)
                .limit(limit)
            )
            return [(row[0], row[1], bytes(row[2]), row[3]) for row in rows]

    def mark_published(self, report_ids: Iterable[str]) -> None:
        ids = list(report_ids)
        if not ids:
            return
        table = Report.__table__  # type: ignore[attr-defined]
        with self.engine.begin() as conn:
            conn.execute(table.update().where(table.c.report_id.in_(ids)).values(published=True))

    def open_orders(self, account_ids: Iterable[str]) -> list[LiveOrder]:
        """Every order of the accounts that is not terminal (``pending_new`` included)."""
        table = Order.__table__  # type: ignore[attr-defined]
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(table).where(
                    table.c.account_id.in_(list(account_ids)), table.c.status.in_(_OPEN)
                )
            ).mappings()
            return [_live_order(row) for row in rows]

    def positions(self, account_id: str) -> list[Position]:
        """The account's positions per bot and symbol, flat ones included."""
        table = Position.__table__  # type: ignore[attr-defined]
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(table).where(table.c.account_id == account_id)).mappings()
            return [Position.model_validate(dict(row)) for row in rows]

    def fills_since(
        self, account_id: str, ts_ms: int
    ) -> list[tuple[str, str, Decimal, Decimal, Decimal]]:
        """The account's fills from ``ts_ms`` on, as (bot, symbol, signed quantity, price, fee):
        the quantity is positive for a purchase."""
        fills = Fill.__table__  # type: ignore[attr-defined]
        query = sa.select(
            fills.c.bot_id,
            fills.c.symbol,
            fills.c.side,
            fills.c.quantity,
            fills.c.price,
            fills.c.fee,
        ).where(fills.c.account_id == account_id, fills.c.ts_ms >= ts_ms)
        with self.engine.connect() as conn:
            return [
                (bot, symbol, quantity if side == "buy" else -quantity, price, fee or ZERO)
                for bot, symbol, side, quantity, price, fee in conn.execute(query)
            ]

    def verify_positions(self, account_id: str) -> list[str]:
        """Recomputes every position of the account from its fills; returns each mismatch."""
        fills = Fill.__table__  # type: ignore[attr-defined]
        net: dict[tuple[str, str], Decimal] = {}
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(fills.c.bot_id, fills.c.symbol, fills.c.side, fills.c.quantity).where(
                    fills.c.account_id == account_id
                )
            )
            for bot_id, symbol, side, quantity in rows:
                signed = quantity if side == "buy" else -quantity
                net[(bot_id, symbol)] = net.get((bot_id, symbol), ZERO) + signed
        problems = []
        stored = {(p.bot_id, p.symbol): p for p in self.positions(account_id)}
        for key in sorted(set(net) | set(stored)):
            derived = net.get(key, ZERO)
            recorded = stored[key].quantity if key in stored else ZERO
            if derived != recorded:
                problems.append(
                    f"{account_id}/{key[0]}/{key[1]}: position {recorded} "
                    f"but fills sum to {derived}"
                )
        return problems

    # -- writes ----------------------------------------------------------------------------

    def rebuild_derived(self) -> None:
        """Rewrites the state derived from the fills (positions, balances, the hourly rollup)
        from the fills alone, in one transaction: for fills written by other means than
        :meth:`apply` (bulk loads, repairs). The executor must not run meanwhile.

        Each fill's ``realized_pnl`` is taken as booked (it records the order fills were
        booked in, which average cost depends on): fills loaded by other means must carry it.
        """
        with self.engine.begin() as conn:
            self._rebuild_derived(conn)

    @staticmethod
    def _rebuild_derived(conn: sa.Connection) -> None:
        if conn.dialect.name == "postgresql":  # minutes on a large database: not a zombie's
            conn.execute(sa.text(f"SET LOCAL application_name = '{REBUILDING_APPLICATION_NAME}'"))
        fills = Fill.__table__  # type: ignore[attr-defined]
        positions = Position.__table__  # type: ignore[attr-defined]
        balances = Balance.__table__  # type: ignore[attr-defined]
        # A book is summed, not replayed (Book.of_totals): average cost depends on the order
        # fills were booked in, which the executor's steps decide (a broker's late fill is
        # booked after fills of a later time) and no column records but the realised PnL each
        # fill booked (which the rollup and the reports sum too).
        books: dict[tuple[str, str, str], FillTotals] = {}
        last_fill_ms: dict[tuple[str, str, str], int] = {}
        cash: dict[tuple[str, str], tuple[Decimal, Decimal, int]] = {}
        query = sa.select(
            fills.c.account_id,
            fills.c.bot_id,
            fills.c.symbol,
            fills.c.side,
            fills.c.quantity,
            fills.c.price,
            fills.c.fee,
            fills.c.realized_pnl,
            fills.c.ts_ms,
        )
        rows = conn.execute(query.execution_options(yield_per=10_000))
        for account_id, bot_id, symbol, side, quantity, price, fee, realized, ts_ms in rows:
            key = (account_id, bot_id, symbol)
            totals = books.get(key)
            if totals is None:
                totals = books[key] = FillTotals()
            totals.add(side, quantity, price, realized)
            last_fill_ms[key] = max(last_fill_ms.get(key, 0), ts_ms)
            signed = quantity if side == "buy" else -quantity
            flow, fees, last = cash.get((account_id, bot_id), (ZERO, ZERO, 0))
            cash[(account_id, bot_id)] = (flow - signed * price - fee, fees + fee, max(last, ts_ms))
        conn.execute(positions.delete())
        conn.execute(balances.delete())
        if books:
            position_rows = []
            for (account_id, bot_id, symbol), totals in books.items():
                book = totals.position(symbol)
                position_rows.append(
                    {
                        "account_id": account_id,
                        "bot_id": bot_id,
                        "symbol": symbol,
                        "quantity": book.quantity,
                        "average_price": book.average_price,
                        "realized_pnl": book.realized_pnl,
                        "updated_ms": last_fill_ms[(account_id, bot_id, symbol)],
                    }
                )
            conn.execute(positions.insert(), position_rows)
            conn.execute(
                balances.insert(),
                [
                    {"account_id": a, "bot_id": b, "cash": c, "fees": f, "updated_ms": ts}
                    for (a, b), (c, f, ts) in cash.items()
                ],
            )
        rollup.rebuild(conn, fills)

    def apply(self, changes: Changes) -> None:
        """Writes ``changes`` in one transaction."""
        if not changes:
            return
        with self.engine.begin() as conn:
            bulk.insert_rows(conn, Intent.__table__, changes.intents)  # type: ignore[attr-defined]
            bulk.insert_rows(
                conn,
                Order.__table__,  # type: ignore[attr-defined]
                [_order_row(order) for order in changes.new_orders],
            )
            new = _ids(changes.new_orders)
            updated = [
                {"order_id": key, **_mutable(o)}
                for key, o in changes.updated_orders.items()
                if key not in new
            ]
            written = bulk.update_rows(
                conn,
                Order.__table__,  # type: ignore[attr-defined]
                ("order_id",),
                _MUTABLE,
                updated,
                version="version",
            )
            if written != len(updated):
                raise OrdersChangedMeanwhile(
                    f"{len(updated) - written} of {len(updated)} orders were changed by another "
                    "writer since this executor read them"
                )
            if changes.fills:
                self._book_fills(conn, changes.fills)
            bulk.insert_rows(
                conn,
                Report.__table__,  # type: ignore[attr-defined]
                [
                    {
                        "report_id": str(r.report_id),
                        "intent_id": str(r.intent_id),
                        "order_id": str(r.order_id),
                        "account_id": r.account_id,
                        "ts_ms": r.ts_ms,
                        "exec_type": r.exec_type.value,
                        "body": changes.body(r),
                        "with_offsets": changes.with_offsets,
                        "published": changes.with_offsets,
                        "traceparent": changes.traceparents.get(r.report_id),
                    }
                    for r in changes.reports
                ],
            )

    def _book_fills(self, conn: sa.Connection, fills: list[FillEvent]) -> None:
        positions = Position.__table__  # type: ignore[attr-defined]
        balances = Balance.__table__  # type: ignore[attr-defined]
        keys = {
            (f.order.intent.account_id, f.order.intent.bot_id, f.order.intent.symbol) for f in fills
        }
        # Each book as a row of the positions table (a plain dict: a table model costs ~20 us
        # to build and its attributes ~1 us each to set).
        books: dict[tuple[str, str, str], dict[str, Any]] = {}
        stored = bulk.select_rows(conn, positions, ("account_id", "bot_id", "symbol"), list(keys))
        for row in stored.mappings():
            books[(row["account_id"], row["bot_id"], row["symbol"])] = dict(row)
        existing = set(books)
        cash: dict[tuple[str, str], tuple[Decimal, Decimal, int]] = {}
        rows = []
        for event_ in fills:
            intent, fill = event_.order.intent, event_.fill
            key = (intent.account_id, intent.bot_id, intent.symbol)
            position = books.get(key)
            if position is None:
                position = books[key] = {
                    "account_id": key[0],
                    "bot_id": key[1],
                    "symbol": key[2],
                    "quantity": ZERO,
                    "average_price": ZERO,
                    "realized_pnl": ZERO,
                    "updated_ms": 0,
                }
            book = Book(
                intent.symbol,
                position["quantity"],
                position["average_price"],
                position["realized_pnl"],
            )
            signed = fill.quantity if intent.side is Side.BUY else -fill.quantity
            realized = book.book(signed, fill.price)
            position["quantity"] = book.quantity
            position["average_price"] = book.average_price
            position["realized_pnl"] = book.realized_pnl
            position["updated_ms"] = max(position["updated_ms"], fill.ts_ms)
            flow, fees, ts = cash.get((key[0], key[1]), (ZERO, ZERO, 0))
            cash[(key[0], key[1])] = (
                flow - signed * fill.price - fill.fee,
                fees + fill.fee,
                max(ts, fill.ts_ms),
            )
            rows.append(
                {
                    "account_id": intent.account_id,
                    "fill_id": fill.fill_id,
                    "ts_ms": fill.ts_ms,
                    "order_id": event_.order.key,
                    "bot_id": intent.bot_id,
                    "symbol": intent.symbol,
                    "side": intent.side.value,
                    "quantity": fill.quantity,
                    "price": fill.price,
                    "fee": fill.fee,
                    "fee_currency": fill.fee_currency,
                    "realized_pnl": realized,
                }
            )
        bulk.insert_rows(conn, Fill.__table__, rows)  # type: ignore[attr-defined]
        rollup.roll_up(conn, [rollup.FillFacts.of_row(row) for row in rows])
        bulk.insert_rows(conn, positions, [p for k, p in books.items() if k not in existing])
        bulk.update_rows(
            conn,
            positions,
            ("account_id", "bot_id", "symbol"),
            ("quantity", "average_price", "realized_pnl", "updated_ms"),
            [p for k, p in books.items() if k in existing],
        )
        current = {
            (row.account_id, row.bot_id): (row.cash, row.fees, row.updated_ms)
            for row in bulk.select_rows(
                conn,
                balances,
                ("account_id", "bot_id"),
                list(cash),
                columns=[
                    balances.c[name]
                    for name in ("account_id", "bot_id", "cash", "fees", "updated_ms")
                ],
            )
        }
        bulk.insert_rows(
            conn,
            balances,
            [
                {"account_id": a, "bot_id": b, "cash": flow, "fees": fees, "updated_ms": ts}
                for (a, b), (flow, fees, ts) in cash.items()
                if (a, b) not in current
            ],
        )
        bulk.update_rows(
            conn,
            balances,
            ("account_id", "bot_id"),
            ("cash", "fees", "updated_ms"),
            [
                {
                    "account_id": a,
                    "bot_id": b,
                    "cash": current[(a, b)][0] + flow,
                    "fees": current[(a, b)][1] + fees,
                    # The latest fill's time, as a position's: a late fill is of an earlier one.
                    "updated_ms": max(current[(a, b)][2], ts),
                }
                for (a, b), (flow, fees, ts) in cash.items()
                if (a, b) in current
            ],
        )


def intent_row(
    intent: protocol.OrderIntent,
    body: bytes,
    now_ms: int,
    *,
    order_id: str | None,
    reject_code: str | None = None,
    reject_reason: str | None = None,
    source: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """The ``intents`` row recording the decision on ``intent`` (carried by the record at
    ``source``: partition, offset)."""
    return {
        "intent_id": str(intent.intent_id),
        "account_id": intent.account_id,
        "bot_id": intent.bot_id,
        "action": type(intent).__struct_config__.tag,
        "order_id": order_id,
        "accepted": reject_code is None,
        "reject_code": reject_code,
        "reject_reason": reject_reason,
        "received_ms": now_ms,
        "body": body.decode(errors="replace"),
        "source_partition": source[0] if source else None,
        "source_offset": source[1] if source else None,
    }


def _ids(orders: list[LiveOrder]) -> set[str]:
    return {o.key for o in orders}


def _mutable(order: LiveOrder) -> dict[str, Any]:
    return {
        "status": order.status.value,
        "quantity": order.quantity,
        "limit_price": order.limit_price,
        "stop_price": order.stop_price,
        "filled_quantity": order.filled_quantity,
        "average_price": order.average_price,
        "broker_order_id": order.broker_order_id,
        "reject_code": order.reject_code,
        "reject_reason": order.reject_reason,
        "updated_ms": order.updated_ms,
        "version": order.version,
    }


def _order_row(order: LiveOrder) -> dict[str, Any]:
    intent = order.intent
    return {
        "order_id": order.key,
        "account_id": intent.account_id,
        "bot_id": intent.bot_id,
        "symbol": intent.symbol,
        "side": intent.side.value,
        "order_type": intent.order_type.value,
        "time_in_force": intent.time_in_force.value,
        "reduce_only": intent.reduce_only,
        "created_ms": intent.ts_ms,
        "bar_ts_ms": intent.bar_ts_ms,
        "traceparent": order.traceparent,
        **_mutable(order),
    }


def _live_order(row: Any) -> LiveOrder:
    intent = NewOrder(
        intent_id=uuid.UUID(row["order_id"]),
        ts_ms=row["created_ms"],
        account_id=row["account_id"],
        bot_id=row["bot_id"],
        symbol=row["symbol"],
        side=Side(row["side"]),
        quantity=row["quantity"],
        order_type=OrderType(row["order_type"]),
        limit_price=row["limit_price"],
        stop_price=row["stop_price"],
        time_in_force=TimeInForce(row["time_in_force"]),
        reduce_only=row["reduce_only"],
        bar_ts_ms=row["bar_ts_ms"],
    )
    return LiveOrder(
        intent,
        status=OrderStatus(row["status"]),
        quantity=row["quantity"],
        limit_price=row["limit_price"],
        stop_price=row["stop_price"],
        filled_quantity=row["filled_quantity"],
        average_price=row["average_price"],
        broker_order_id=row["broker_order_id"],
        reject_code=row["reject_code"],
        reject_reason=row["reject_reason"],
        updated_ms=row["updated_ms"],
        traceparent=row["traceparent"],
        version=row["version"] or 0,
    )


def _add_missing_columns(conn: sa.Connection, tables: Sequence[sa.Table]) -> None:
    """Adds the nullable columns a table gained since the database was created (create_all
    skips existing tables): ``ALTER TABLE … ADD COLUMN`` on SQLite and PostgreSQL alike, so a
    database of an older executor keeps working, its old rows holding NULL there."""
    inspector = sa.inspect(conn)
    quote = conn.dialect.identifier_preparer.quote
    for table in tables:
        if not inspector.has_table(table.name):
            continue
        present = {column["name"] for column in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in present:
                continue
            if not column.nullable or column.primary_key:
                raise RuntimeError(
                    f"table {table.name} lacks column {column.name}, which cannot be added "
                    "to existing rows (not nullable): migrate the database by hand"
                )
            log.info("adding column %s.%s", table.name, column.name)
            # IF NOT EXISTS: two executors starting at once on PostgreSQL both get here.
            guard = "IF NOT EXISTS " if conn.dialect.name == "postgresql" else ""
            conn.execute(
                sa.text(
                    f"ALTER TABLE {quote(table.name)} ADD COLUMN {guard}{quote(column.name)} "
                    f"{column.type.compile(dialect=conn.dialect)}"
                )
            )


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers (the reports service) run beside the writer; NORMAL sync in WAL mode
    # survives a process crash (kill -9) without an fsync per transaction.
    use_wal(dbapi_connection)
    dbapi_connection.execute("PRAGMA synchronous=NORMAL")
