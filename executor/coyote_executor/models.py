"""The executor's tables: intents, orders, fills, positions, balances and execution reports.

The executor owns these tables; the reports service reads them. Quantities and prices are exact
decimals: ``NUMERIC`` on PostgreSQL, decimal text on SQLite (whose numbers are binary floats).
Timestamps are integer milliseconds, as on the wire.

Positions, balances and the hourly rollup of fills (``fill_hours``) are derived state: each is
updated in the transaction that records the fills changing it,
:meth:`coyote_executor.store.Store.verify_positions` recomputes positions from the fills to prove
it, and :meth:`coyote_executor.store.Store.rebuild_derived` rewrites all three from the fills.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlmodel import Field, SQLModel

# -- COLUMN TYPES ----------------------------------------------------------------------------


class ExactDecimal(sa.types.TypeDecorator[Decimal]):
    """A decimal stored without loss: ``NUMERIC`` where the database has it, text elsewhere."""

    impl = sa.String(64)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(sa.Numeric(asdecimal=True))
        return dialect.type_descriptor(sa.String(64))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if dialect.name == "postgresql":
            return value
        return str(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return value if isinstance(value, Decimal) else Decimal(value)


def _decimal(*, nullable: bool = False, default: Decimal | None = None) -> Any:
    return Field(default=default, sa_type=ExactDecimal, nullable=nullable)


# -- TABLES ----------------------------------------------------------------------------------


class Intent(SQLModel, table=True):
    """Every intent the executor decided on, with the decision: the dedupe record.

    A rejected intent keeps its reason code here, next to the intent itself.
    """

    __tablename__ = "intents"
    __table_args__ = (
        sa.Index("ix_intents_bot_received", "bot_id", "received_ms"),
        # The reports' rejections: a few percent of the intents, so on PostgreSQL only those.
        sa.Index(
            "ix_intents_rejected",
            "account_id",
            "received_ms",
            postgresql_where=sa.text("accepted IS false"),
        ),
    )

    intent_id: str = Field(primary_key=True, max_length=36)
    account_id: str = Field(index=True, max_length=64)
    bot_id: str = Field(max_length=64)
    action: str = Field(max_length=16)
    order_id: str | None = Field(default=None, max_length=36)
    """The order it placed or acted on."""
    accepted: bool
    reject_code: str | None = Field(default=None, max_length=64)
    reject_reason: str | None = None
    received_ms: int = Field(sa_type=sa.BigInteger)
    body: str
    """The intent as received (JSON)."""
    source_partition: int | None = None
    source_offset: int | None = Field(default=None, sa_type=sa.BigInteger)
    """The Kafka record that carried it: the same record seen again means the step that decided
    it never committed (its reports are published again); another record with the same intent
    id is a duplicate message, ignored."""


class Order(SQLModel, table=True):
    """An order; ``order_id`` is the placing intent's id and the broker's client order id.

    It is written with status ``pending_new`` *before* the order is sent, so after a crash the
    executor knows which orders may be at the broker and asks the broker about them by id.
    """

    __tablename__ = "orders"
    __table_args__ = (
        sa.Index("ix_orders_account_status", "account_id", "status"),
        sa.Index("ix_orders_account_created", "account_id", "created_ms"),
        sa.Index("ix_orders_bot_created", "bot_id", "created_ms"),
    )

    order_id: str = Field(primary_key=True, max_length=36)
    account_id: str = Field(max_length=64)
    bot_id: str = Field(max_length=64)
    symbol: str = Field(max_length=32)
    side: str = Field(max_length=4)
    order_type: str = Field(max_length=16)
    time_in_force: str = Field(max_length=4)
    quantity: Decimal = _decimal()
    limit_price: Decimal | None = _decimal(nullable=True)
    stop_price: Decimal | None = _decimal(nullable=True)
    reduce_only: bool = False
    status: str = Field(max_length=20)
    filled_quantity: Decimal = _decimal(default=Decimal(0))
    average_price: Decimal | None = _decimal(nullable=True)
    broker_order_id: str | None = Field(default=None, max_length=64)
    reject_code: str | None = Field(default=None, max_length=64)
    reject_reason: str | None = None
    created_ms: int = Field(sa_type=sa.BigInteger)
    updated_ms: int = Field(sa_type=sa.BigInteger)
    bar_ts_ms: int | None = Field(default=None, sa_type=sa.BigInteger)
    traceparent: str | None = Field(default=None, max_length=55)
    """The W3C trace context of the span that placed the order (OpenTelemetry): its later
    fills and cancels are traced in the same trace. Added after the table; None in older rows."""
    version: int | None = None
    """How many times the row was updated: each update names the version it replaces, so that
    an executor whose picture of the order is out of date (a fenced predecessor committing a
    transaction late) changes nothing. Added after the table; None in older rows counts as 0."""


class Fill(SQLModel, table=True):
    """One execution; a TimescaleDB hypertable on ``ts_ms`` when the extension is there."""

    __tablename__ = "fills"
    __table_args__ = (
        sa.Index("ix_fills_account_ts", "account_id", "ts_ms"),
        # The reports' per-bot series and pages. On PostgreSQL it carries every column the
        # series sums, so a bot's PnL is an index-only scan (bench/reports.py: a year of a busy
        # bot's fills is spread over the whole table, one heap page per fill otherwise).
        sa.Index(
            "ix_fills_bot_ts",
            "bot_id",
            "ts_ms",
            postgresql_include=[
                "account_id",
                "symbol",
                "side",
                "quantity",
                "price",
                "fee",
                "realized_pnl",
            ],
        ),
        # The reports' marks: the organisation's last trade in a symbol per bucket, and the
        # price of the fills at given (symbol, ts_ms).
        sa.Index("ix_fills_account_symbol_ts", "account_id", "symbol", "ts_ms"),
        sa.Index("ix_fills_symbol_ts", "symbol", "ts_ms"),
    )

    account_id: str = Field(primary_key=True, max_length=64)
    fill_id: str = Field(primary_key=True, max_length=64)
    ts_ms: int = Field(primary_key=True, sa_type=sa.BigInteger)
    order_id: str = Field(index=True, max_length=36)
    bot_id: str = Field(max_length=64)
    symbol: str = Field(max_length=32)
    side: str = Field(max_length=4)
    quantity: Decimal = _decimal()
    price: Decimal = _decimal()
    fee: Decimal = _decimal(default=Decimal(0))
    fee_currency: str | None = Field(default=None, max_length=8)
    realized_pnl: Decimal = _decimal(default=Decimal(0))


class Position(SQLModel, table=True):
    """A bot's position in a symbol on an account (its sub-ledger), at average cost."""

    __tablename__ = "positions"

    account_id: str = Field(primary_key=True, max_length=64)
    bot_id: str = Field(primary_key=True, max_length=64)
    symbol: str = Field(primary_key=True, max_length=32)
    quantity: Decimal = _decimal(default=Decimal(0))
    average_price: Decimal = _decimal(default=Decimal(0))
    realized_pnl: Decimal = _decimal(default=Decimal(0))
    updated_ms: int = Field(default=0, sa_type=sa.BigInteger)


class Balance(SQLModel, table=True):
    """A bot's cash flows on an account: what its fills paid and received, and fees."""

    __tablename__ = "balances"

    account_id: str = Field(primary_key=True, max_length=64)
    bot_id: str = Field(primary_key=True, max_length=64)
    cash: Decimal = _decimal(default=Decimal(0))
    """Net cash from fills (sells minus buys minus fees), in the account's currency."""
    fees: Decimal = _decimal(default=Decimal(0))
    updated_ms: int = Field(default=0, sa_type=sa.BigInteger)


class Report(SQLModel, table=True):
    """Every execution report, as published: replayed verbatim after a crash."""

    __tablename__ = "execution_reports"
    __table_args__ = (
        # The outbox: the few late events not yet published, not the millions that were.
        sa.Index(
            "ix_execution_reports_pending",
            "report_id",
            postgresql_where=sa.text("published IS false"),
            sqlite_where=sa.text("published IS 0"),
        ),
    )

    report_id: str = Field(primary_key=True, max_length=36)
    intent_id: str = Field(index=True, max_length=36)
    order_id: str = Field(max_length=36)
    account_id: str = Field(max_length=64)
    ts_ms: int = Field(sa_type=sa.BigInteger)
    exec_type: str = Field(max_length=16)
    body: bytes = Field(sa_type=sa.LargeBinary)
    with_offsets: bool = True
    """Published in the Kafka transaction that commits its intent's offset (and again if that
    intent is redelivered); otherwise a late event, published from this table."""
    published: bool = True
    """False until a late event's report has been published."""
    traceparent: str | None = Field(default=None, max_length=55)
    """The ``traceparent`` header the report is published with (added after the table)."""


class FillHour(SQLModel, table=True):
    """The fills of one book (account, bot, symbol) in one UTC hour, summed: the rollup the
    reports read instead of the fills (bench/reports.py: a month's PnL of a bot in a few
    milliseconds over 10 million fills, an organisation's in a few tens).

    Two kinds of columns. The hour's own sums (``bought`` … ``fills``, and its last trade) give
    a report's buckets of an hour or more by grouping rows. The running totals (``cum_*``) are
    the book as of the hour's end, all hours before included, so a report's opening state is
    one row per book: the last before its start. A fill written late, into an earlier hour,
    adds to that hour and to the running totals of every later hour of its book.
    """

    __tablename__ = "fill_hours"
    __table_args__ = (
        # The marks: the organisation's last trade in a symbol, per hour and before a time.
        sa.Index("ix_fill_hours_account_symbol_hour", "account_id", "symbol", "hour_ms"),
        # A bot's rows in a range, whatever its account.
        sa.Index("ix_fill_hours_bot_hour", "bot_id", "hour_ms"),
    )

    account_id: str = Field(primary_key=True, max_length=64)
    bot_id: str = Field(primary_key=True, max_length=64)
    symbol: str = Field(primary_key=True, max_length=32)
    hour_ms: int = Field(primary_key=True, sa_type=sa.BigInteger)
    """The hour's start, UTC, in epoch milliseconds."""
    bought: Decimal = _decimal(default=Decimal(0))
    """Quantity bought in the hour."""
    sold: Decimal = _decimal(default=Decimal(0))
    paid: Decimal = _decimal(default=Decimal(0))
    """Notional of the hour's buys (quantity x price)."""
    received: Decimal = _decimal(default=Decimal(0))
    """Notional of the hour's sells."""
    fees: Decimal = _decimal(default=Decimal(0))
    realized: Decimal = _decimal(default=Decimal(0))
    gains: Decimal = _decimal(default=Decimal(0))
    """Sum of the positive realised PnL of the hour's fills."""
    losses: Decimal = _decimal(default=Decimal(0))
    """Sum of the negative realised PnL of the hour's fills."""
    wins: int = 0
    """Fills with a positive realised PnL."""
    closes: int = 0
    """Fills with a non-zero realised PnL."""
    fills: int = 0
    last_ts_ms: int = Field(default=0, sa_type=sa.BigInteger)
    last_fill_id: str = Field(default="", max_length=64)
    last_price: Decimal = _decimal(default=Decimal(0))
    """The price of the hour's last fill (by time, then fill id): the book's mark then."""
    cum_quantity: Decimal = _decimal(default=Decimal(0))
    """Net quantity held at the hour's end (buys minus sells since the first fill)."""
    cum_cash: Decimal = _decimal(default=Decimal(0))
    """Net cash from fills at the hour's end, before fees (sells minus buys)."""
    cum_fees: Decimal = _decimal(default=Decimal(0))
    cum_realized: Decimal = _decimal(default=Decimal(0))


TABLES = (Intent, Order, Fill, Position, Balance, Report, FillHour)

RETIRED_INDEXES = ("ix_execution_reports_unpublished", "ix_execution_reports_order_id")
"""Indexes earlier versions created, dropped by ``Store.create_schema``: each cost every write
of its table and no query uses it any more."""
