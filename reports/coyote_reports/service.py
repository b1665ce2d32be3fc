"""The reports, computed from the executor's tables: PnL, equity, positions, orders, fills,
per-bot metrics and risk rejections of one organisation.

Every query is bounded to a :class:`Scope`: an organisation's accounts (their ids are
``<org>.<name>``, so the scope is a key range on the indexed ``account_id``), optionally one
account and one bot. Nothing outside the scope is read, marks included.

PnL follows the mark-to-market identity: the PnL of a book is its net cash from fills plus the
value of what it holds at the mark. The database sums cash, quantities, fees and realised PnL
per time bucket and symbol in one grouped query (the heavy part, on the ``(bot_id, ts_ms)`` or
``(account_id, ts_ms)`` index); Python then walks the buckets in order, keeping the running
position of each symbol and its mark, the last price traded in scope up to that bucket.
"""

from __future__ import annotations

import base64
import binascii
import calendar
import contextlib
import dataclasses
import datetime as dt
import json
import math
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from coyote_executor.models import Fill, FillHour, Intent, Order, Position
from coyote_executor.rollup import HOUR_MS
from coyote_reports.db import Dialect
from coyote_reports.models import (
    BotMetrics,
    EquityCurve,
    EquityPoint,
    FillPage,
    FillRow,
    Metrics,
    OrderPage,
    OrderRow,
    PnlPoint,
    PnlSeries,
    PnlTotals,
    PositionRow,
    Positions,
    RejectionReason,
    Rejections,
    Statement,
    SymbolActivity,
)
from coyote_sdk.performance import max_drawdown, returns, sharpe_sortino
from coyote_sdk.portfolio import FillTotals
from coyote_sdk.portfolio import Position as Book
from coyote_sdk.protocol import Timeframe, now_ms

__all__ = ["MAX_PAGE", "MAX_POINTS", "Reports", "ReportsError", "Scope"]

ZERO = Decimal(0)
MAX_POINTS = 10_000
"""Most buckets one series may have: ask for a wider bucket beyond."""
MAX_PAGE = 1_000
_YEAR_MS = 365 * 86_400_000
_FILLS: sa.Table = Fill.__table__  # type: ignore[attr-defined]
_ORDERS: sa.Table = Order.__table__  # type: ignore[attr-defined]
_INTENTS: sa.Table = Intent.__table__  # type: ignore[attr-defined]
_POSITIONS: sa.Table = Position.__table__  # type: ignore[attr-defined]
_HOURS: sa.Table = FillHour.__table__  # type: ignore[attr-defined]
_PageT = TypeVar("_PageT", OrderPage, FillPage)
_BEFORE = -1
"""The group of the fills before a range's start: its opening state."""


class ReportsError(ValueError):
    """A request the reports cannot answer: a stable ``code``, a message, the field at fault,
    and the HTTP status that fits (422: the request; 503: the database)."""

    def __init__(
        self, code: str, message: str, *, field: str | None = None, status: int = 422
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field
        self.status = status


@dataclasses.dataclass(frozen=True)
class Scope:
    """Whose trading a report covers: an organisation, optionally one account and one bot.

    Attributes:
        org: The organisation's slug: the prefix of its account and bot ids.
        account: An account's name within the organisation.
        bot: A bot's id within the organisation: a deployment's name.
    """

    org: str
    account: str | None = None
    bot: str | None = None

    def where(self, table: sa.Table) -> list[sa.ColumnElement[bool]]:
        """The conditions that keep ``table``'s rows to this scope."""
        account_id = table.c.account_id
        # "." joins org and name, and "/" is the next character: the org's ids are a key range.
        clauses = [account_id >= f"{self.org}.", account_id < f"{self.org}/"]
        if self.account is not None:
            clauses.append(account_id == f"{self.org}.{self.account}")
        if self.bot is not None:
            clauses.append(table.c.bot_id == f"{self.org}.{self.bot}")
        return clauses

    def name(self, full_id: str) -> str:
        """An account or bot id as the organisation names it (without its slug)."""
        return full_id.removeprefix(f"{self.org}.")


@dataclasses.dataclass
class _Group:
    """Sums of the fills of one (bucket, symbol) — or (book, bucket, symbol)."""

    bought: Decimal = ZERO
    sold: Decimal = ZERO
    paid: Decimal = ZERO
    """Notional of buys."""
    received: Decimal = ZERO
    """Notional of sells."""
    fees: Decimal = ZERO
    realized: Decimal = ZERO
    gains: Decimal = ZERO
    losses: Decimal = ZERO
    wins: int = 0
    closes: int = 0
    fills: int = 0
    last_ts: int = 0


@dataclasses.dataclass
class _Book:
    """The running state of a book while the buckets are walked."""

    held: dict[str, Decimal] = dataclasses.field(default_factory=dict)
    cash: Decimal = ZERO
    """Net cash from fills before fees."""
    fees: Decimal = ZERO
    realized: Decimal = ZERO

    def apply(self, symbol: str, group: _Group) -> None:
        self.held[symbol] = self.held.get(symbol, ZERO) + group.bought - group.sold
        self.cash += group.received - group.paid
        self.fees += group.fees
        self.realized += group.realized

    def unrealized(self, marks: Mapping[str, Decimal]) -> Decimal:
        value = sum((q * marks[s] for s, q in self.held.items() if q and s in marks), ZERO)
        return self.cash + value - self.realized


@dataclasses.dataclass
class _Walk:
    """A book's series over a range, and its activity in the range."""

    points: list[PnlPoint]
    activity: _Group


def _bucket_range(start_ms: int, end_ms: int, bucket: Timeframe) -> range:
    if end_ms <= start_ms:
        raise ReportsError("reports.bad_range", "end must be after start", field="end")
    width = bucket.milliseconds
    first = start_ms - start_ms % width
    buckets = range(first, end_ms, width)
    if len(buckets) > MAX_POINTS:
        raise ReportsError(
            "reports.too_many_points",
            f"{len(buckets)} buckets of {bucket.value} in this range; at most {MAX_POINTS}: "
            "ask for a wider bucket or a shorter range",
            field="bucket",
        )
    return buckets


def default_bucket(start_ms: int, end_ms: int) -> Timeframe:
    """The finest bucket that gives a chart at most ~1,500 points."""
    for bucket in Timeframe:
        if (end_ms - start_ms) / bucket.milliseconds <= 1_500:
            return bucket
    return Timeframe.D1


def _decimal(value: Any) -> Decimal:
    if value is None:
        return ZERO
    return value if isinstance(value, Decimal) else Decimal(str(value))


class Reports:
    """The reports of the trading recorded in one executor database.

    Args:
        engine: The executor's database (:func:`coyote_reports.db.make_engine`).
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._dialect: Dialect | None = None

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sa.Connection]:
        try:
            with self.engine.connect() as conn:
                yield conn
        except (sa.exc.OperationalError, sa.exc.ProgrammingError) as exc:
            text = str(exc.orig)
            if "no such table" in text or "does not exist" in text:
                raise ReportsError(
                    "reports.no_records",
                    "the executor's database has no tables yet: start the executor once",
                    status=503,
                ) from None
            raise ReportsError(
                "reports.database_unavailable",
                "the executor's database cannot be read now",
                status=503,
            ) from exc

    @property
    def dialect(self) -> Dialect:
        if self._dialect is None:
            with self._connect():  # its errors, as every query's
                self._dialect = Dialect.of(self.engine)
        return self._dialect

    # -- PNL AND EQUITY ----------------------------------------------------------------------

    def pnl(
        self, scope: Scope, *, start_ms: int, end_ms: int, bucket: Timeframe | None = None
    ) -> PnlSeries:
        """The scope's PnL from ``start_ms`` to each bucket's end, up to ``end_ms``."""
        bucket = bucket or default_bucket(start_ms, end_ms)
        buckets = _bucket_range(start_ms, end_ms, bucket)
        walks = self._walks(scope, start_ms, end_ms, bucket, buckets, by_book=False)
        points = walks[("", "")].points if walks else [_zero_point(b) for b in buckets]
        last = points[-1]
        return PnlSeries(
            bucket=bucket.value,
            start_ms=start_ms,
            end_ms=end_ms,
            points=points,
            total=PnlTotals(
                realized=last.realized, unrealized=last.unrealized, fees=last.fees, net=last.net
            ),
        )

    def equity(
        self,
        scope: Scope,
        *,
        start_ms: int,
        end_ms: int,
        capital: Decimal,
        bucket: Timeframe | None = None,
    ) -> EquityCurve:
        """Capital plus the scope's net PnL, with its drawdown from the running peak."""
        series = self.pnl(scope, start_ms=start_ms, end_ms=end_ms, bucket=bucket)
        return EquityCurve(
            bucket=series.bucket,
            start_ms=start_ms,
            end_ms=end_ms,
            capital=capital,
            points=_equity_points(capital, series.points),
        )

    def metrics(
        self,
        scope: Scope,
        *,
        start_ms: int,
        end_ms: int,
        capital: Mapping[str, Decimal] | None = None,
        bucket: Timeframe | None = None,
    ) -> Metrics:
        """Each bot's performance over the range.

        Args:
            capital: Each bot's capital by name (a deployment's allocation); return, Sharpe,
                Sortino, drawdown and turnover are null for a bot without.
            bucket: The equity curve's step for the ratios: daily by default, hourly for
                ranges under three days.
        """
        if bucket is None:
            bucket = Timeframe.D1 if end_ms - start_ms >= 3 * 86_400_000 else Timeframe.H1
        buckets = _bucket_range(start_ms, end_ms, bucket)
        walks = self._walks(scope, start_ms, end_ms, bucket, buckets, by_book=True)
        capital = capital or {}
        rows = []
        for (account_id, bot_id), walk in sorted(walks.items(), key=lambda kv: kv[0][::-1]):
            bot = scope.name(bot_id)
            rows.append(
                _bot_metrics(
                    bot,
                    scope.name(account_id),
                    capital.get(bot),
                    walk,
                    _YEAR_MS / bucket.milliseconds,
                )
            )
        return Metrics(bucket=bucket.value, start_ms=start_ms, end_ms=end_ms, bots=rows)

    def _walks(
        self,
        scope: Scope,
        start_ms: int,
        end_ms: int,
        bucket: Timeframe,
        buckets: range,
        *,
        by_book: bool,
    ) -> dict[tuple[str, str], _Walk]:
        groups = self._groups(scope, start_ms, end_ms, bucket, by_book=by_book)
        marks_at = self._marks(scope, groups, start_ms, end_ms, bucket)
        by_key: dict[tuple[str, str], dict[int, list[tuple[str, _Group]]]] = defaultdict(
            lambda: defaultdict(list)
        )
        for (owner, when, symbol), group in groups.items():
            by_key[owner][when].append((symbol, group))
        opening_marks = marks_at.get(_BEFORE, {})
        walks = {}
        for key, per_bucket in by_key.items():
            book = _Book()
            for symbol, group in per_bucket.get(_BEFORE, []):
                book.apply(symbol, group)
            marks = dict(opening_marks)
            realized0, fees0 = book.realized, book.fees
            unrealized0 = book.unrealized(marks)
            activity = _Group()
            points = []
            for start in buckets:
                for symbol, group in per_bucket.get(start, []):
                    book.apply(symbol, group)
                    _accumulate(activity, group)
                marks.update(marks_at.get(start, {}))
                realized = book.realized - realized0
                unrealized = book.unrealized(marks) - unrealized0
                fees = book.fees - fees0
                points.append(
                    PnlPoint(
                        ts_ms=start,
                        realized=realized,
                        unrealized=unrealized,
                        fees=fees,
                        net=realized + unrealized - fees,
                    )
                )
            walks[key] = _Walk(points, activity)
        return walks

    def _groups(
        self, scope: Scope, start_ms: int, end_ms: int, bucket: Timeframe, *, by_book: bool
    ) -> dict[tuple[tuple[str, str], int, str], _Group]:
        """The sums of the scope's fills before ``end_ms`` per (book, bucket, symbol); fills
        before ``start_ms`` fall in one group, :data:`_BEFORE`, with the book's totals.

        Whole hours come from the executor's hourly rollup (``fill_hours``): the opening state
        is one row per book, the last before the range's start hour, and buckets of an hour or
        more sum the range's hour rows. Only what is left (the part of an hour before the
        start, partial hours at the range's ends, and buckets under an hour) is summed from
        the fills themselves.
        """
        groups: dict[tuple[tuple[str, str], int, str], _Group] = {}
        cut = _hour_of(start_ms)
        with self._connect() as conn:
            accounts = self._accounts(conn, scope)
            if not accounts:
                return groups
            self._add_opening(conn, groups, scope, accounts, cut, by_book=by_book)
            raw = [(cut, start_ms)]
            rolled = _rolled_span(start_ms, end_ms, bucket)
            if rolled is None:
                raw.append((start_ms, end_ms))
            else:
                self._add_rolled(conn, groups, scope, accounts, rolled, bucket, by_book=by_book)
                raw += [(start_ms, rolled[0]), (rolled[1], end_ms)]
            for low, high in raw:
                if low < high:
                    self._add_raw(conn, groups, scope, low, high, start_ms, bucket, by_book=by_book)
        return groups

    @staticmethod
    def _accounts(conn: sa.Connection, scope: Scope) -> list[str]:
        """The scope's accounts that ever traded: each has a position row, flat or not.

        The rollup's queries name them (``account_id IN (…)``) rather than the organisation's
        key range, so PostgreSQL can use the rest of an index after the account."""
        p = _POSITIONS
        query = sa.select(p.c.account_id).where(*scope.where(p)).distinct()
        return sorted(conn.execute(query).scalars())

    @staticmethod
    def _in_rollup(scope: Scope, accounts: Sequence[str]) -> list[sa.ColumnElement[bool]]:
        h = _HOURS
        clauses: list[sa.ColumnElement[bool]] = [h.c.account_id.in_(accounts)]
        if scope.bot is not None:
            clauses.append(h.c.bot_id == f"{scope.org}.{scope.bot}")
        return clauses

    def _add_opening(
        self,
        conn: sa.Connection,
        groups: dict[tuple[tuple[str, str], int, str], _Group],
        scope: Scope,
        accounts: Sequence[str],
        cut: int,
        *,
        by_book: bool,
    ) -> None:
        """Each book's running totals at ``cut`` (an hour's start), from its last hour row
        before: one index probe per book."""
        p, h = _POSITIONS, _HOURS
        latest = (
            sa.select(sa.func.max(h.c.hour_ms))
            .where(
                h.c.account_id == p.c.account_id,
                h.c.bot_id == p.c.bot_id,
                h.c.symbol == p.c.symbol,
                h.c.hour_ms < cut,
            )
            .scalar_subquery()
        )
        books = (
            sa.select(p.c.account_id, p.c.bot_id, p.c.symbol, latest.label("hour_ms"))
            .where(p.c.account_id.in_(accounts), *scope.where(p))
            .subquery()
        )
        query = sa.select(
            h.c.account_id,
            h.c.bot_id,
            h.c.symbol,
            h.c.cum_quantity,
            h.c.cum_cash,
            h.c.cum_fees,
            h.c.cum_realized,
        ).join(
            books,
            sa.and_(
                h.c.account_id == books.c.account_id,
                h.c.bot_id == books.c.bot_id,
                h.c.symbol == books.c.symbol,
                h.c.hour_ms == books.c.hour_ms,
            ),
        )
        for account_id, bot_id, symbol, quantity, cash, fees, realized in conn.execute(query):
            book = (account_id, bot_id) if by_book else ("", "")
            _merge(
                groups,
                (book, _BEFORE, symbol),
                # The book's totals as one group: what it holds, its net cash, fees, realised.
                _Group(
                    bought=_decimal(quantity),
                    received=_decimal(cash),
                    fees=_decimal(fees),
                    realized=_decimal(realized),
                ),
            )

    def _add_rolled(
        self,
        conn: sa.Connection,
        groups: dict[tuple[tuple[str, str], int, str], _Group],
        scope: Scope,
        accounts: Sequence[str],
        span: tuple[int, int],
        bucket: Timeframe,
        *,
        by_book: bool,
    ) -> None:
        """The sums of the hour rows in ``span`` (whole hours) per bucket."""
        d, h = self.dialect, _HOURS
        when = d.bucket(h.c.hour_ms, bucket.milliseconds).label("bucket")
        keys: list[Any] = [h.c.account_id, h.c.bot_id] if by_book else []
        keys += [when, h.c.symbol]
        query = (
            sa.select(
                *keys,
                d.sum(h.c.bought),
                d.sum(h.c.sold),
                d.sum(h.c.paid),
                d.sum(h.c.received),
                d.sum(h.c.fees),
                d.sum(h.c.realized),
                d.sum(h.c.gains),
                d.sum(h.c.losses),
                sa.func.sum(h.c.wins),
                sa.func.sum(h.c.closes),
                sa.func.sum(h.c.fills),
                sa.func.max(h.c.last_ts_ms),
            )
            .where(*self._in_rollup(scope, accounts), h.c.hour_ms >= span[0], h.c.hour_ms < span[1])
            .group_by(*keys)
        )
        self._collect(conn, groups, query, by_book=by_book)

    def _add_raw(
        self,
        conn: sa.Connection,
        groups: dict[tuple[tuple[str, str], int, str], _Group],
        scope: Scope,
        low: int,
        high: int,
        start_ms: int,
        bucket: Timeframe,
        *,
        by_book: bool,
    ) -> None:
        """The sums of the fills from ``low`` to ``high`` per bucket (:data:`_BEFORE` before
        ``start_ms``)."""
        d, f = self.dialect, _FILLS
        is_buy = f.c.side == "buy"
        keys: list[Any] = [f.c.account_id, f.c.bot_id] if by_book else []
        keys += [self._bucket_of(start_ms, bucket), f.c.symbol]
        query = (
            sa.select(
                *keys,
                d.sum(sa.case((is_buy, f.c.quantity))),
                d.sum(sa.case((~is_buy, f.c.quantity))),
                d.sum_product(sa.case((is_buy, f.c.quantity)), f.c.price),
                d.sum_product(sa.case((~is_buy, f.c.quantity)), f.c.price),
                d.sum(f.c.fee),
                d.sum(f.c.realized_pnl),
                d.sum(sa.case((d.positive(f.c.realized_pnl), f.c.realized_pnl))),
                d.sum(sa.case((d.negative(f.c.realized_pnl), f.c.realized_pnl))),
                sa.func.count(sa.case((d.positive(f.c.realized_pnl), 1))),
                sa.func.count(
                    sa.case((d.positive(f.c.realized_pnl) | d.negative(f.c.realized_pnl), 1))
                ),
                sa.func.count(),
                sa.func.max(f.c.ts_ms),
            )
            .where(*scope.where(f), f.c.ts_ms >= low, f.c.ts_ms < high)
            .group_by(*keys)
        )
        self._collect(conn, groups, query, by_book=by_book)

    @staticmethod
    def _collect(
        conn: sa.Connection,
        groups: dict[tuple[tuple[str, str], int, str], _Group],
        query: sa.Select[Any],
        *,
        by_book: bool,
    ) -> None:
        for row in conn.execute(query):
            book = (row[0], row[1]) if by_book else ("", "")
            when_, symbol = row[-14], row[-13]
            values = row[-12:]
            _merge(
                groups,
                (book, int(when_), symbol),
                _Group(
                    bought=_decimal(values[0]),
                    sold=_decimal(values[1]),
                    paid=_decimal(values[2]),
                    received=_decimal(values[3]),
                    fees=_decimal(values[4]),
                    realized=_decimal(values[5]),
                    gains=_decimal(values[6]),
                    losses=_decimal(values[7]),
                    wins=int(values[8] or 0),
                    closes=int(values[9] or 0),
                    fills=int(values[10] or 0),
                    last_ts=int(values[11] or 0),
                ),
            )

    def _bucket_of(self, start_ms: int, bucket: Timeframe) -> sa.Label[int]:
        """A fill's bucket start, or :data:`_BEFORE` for fills before ``start_ms``."""
        ts_ms = _FILLS.c.ts_ms
        return sa.case(
            (ts_ms < start_ms, sa.literal(_BEFORE, sa.BigInteger)),
            else_=self.dialect.bucket(ts_ms, bucket.milliseconds),
        ).label("bucket")

    def _marks(
        self,
        scope: Scope,
        groups: Mapping[tuple[tuple[str, str], int, str], _Group],
        start_ms: int,
        end_ms: int,
        bucket: Timeframe,
    ) -> dict[int, dict[str, Decimal]]:
        """The mark of each symbol traded in ``groups`` at each bucket where it changes: the
        price of the organisation's last fill in that symbol (the latest fill id on a tie).

        Marks belong to the organisation, not to the report's filter, so a bot's PnL is the
        same whether it is asked for alone or within its account or organisation. Like the
        sums, they come from the rollup's hour rows (each knows its last trade) where whole
        hours allow, and from the fills elsewhere.
        """
        symbols = sorted({symbol for (_, _, symbol) in groups})
        if not symbols:
            return {}
        org = Scope(scope.org)
        cut = _hour_of(start_ms)
        # (bucket, symbol) -> the last trade seen: (ts_ms, fill id, price)
        last: dict[tuple[int, str], tuple[int, str, Decimal]] = {}

        def offer(when: int, symbol: str, ts: int, fill_id: str, price: Any) -> None:
            seen = last.get((when, symbol))
            if seen is None or (ts, fill_id) > seen[:2]:
                last[(when, symbol)] = (ts, fill_id, _decimal(price))

        with self._connect() as conn:
            accounts = self._accounts(conn, org)
            for row in self._opening_marks(conn, accounts, symbols, cut):
                offer(_BEFORE, *row)
            rolled = _rolled_span(start_ms, end_ms, bucket)
            raw = [(cut, start_ms)]
            if rolled is None:
                raw.append((start_ms, end_ms))
            else:
                h = _HOURS
                when = self.dialect.bucket(h.c.hour_ms, bucket.milliseconds)
                where = [
                    h.c.account_id.in_(accounts),
                    h.c.symbol.in_(symbols),
                    h.c.hour_ms >= rolled[0],
                    h.c.hour_ms < rolled[1],
                ]
                for row in conn.execute(
                    _last_per_bucket(
                        when, h.c.symbol, h.c.last_ts_ms, h.c.last_fill_id, h.c.last_price, where
                    )
                ):
                    offer(*row)
                raw += [(start_ms, rolled[0]), (rolled[1], end_ms)]
            f = _FILLS
            for low, high in raw:
                if low >= high:
                    continue
                where = [
                    f.c.account_id.in_(accounts),
                    f.c.symbol.in_(symbols),
                    f.c.ts_ms >= low,
                    f.c.ts_ms < high,
                ]
                for row in conn.execute(
                    _last_per_bucket(
                        self._bucket_of(start_ms, bucket),
                        f.c.symbol,
                        f.c.ts_ms,
                        f.c.fill_id,
                        f.c.price,
                        where,
                    )
                ):
                    offer(*row)
        marks: dict[int, dict[str, Decimal]] = defaultdict(dict)
        for (when_, symbol), (_, _, price) in last.items():
            marks[when_][symbol] = price
        return marks

    @staticmethod
    def _opening_marks(
        conn: sa.Connection, accounts: Sequence[str], symbols: Sequence[str], cut: int
    ) -> Iterator[tuple[str, int, str, Any]]:
        """The last trade of each (account, symbol) before ``cut``, from the rollup: its last
        hour row (one index probe each), all bots of that hour."""
        p, h = _POSITIONS, _HOURS
        pairs = (
            sa.select(p.c.account_id, p.c.symbol)
            .where(p.c.account_id.in_(accounts), p.c.symbol.in_(symbols))
            .distinct()
            .subquery()
        )
        hours = sa.select(
            pairs.c.account_id,
            pairs.c.symbol,
            sa.select(sa.func.max(h.c.hour_ms))
            .where(
                h.c.account_id == pairs.c.account_id,
                h.c.symbol == pairs.c.symbol,
                h.c.hour_ms < cut,
            )
            .scalar_subquery()
            .label("hour_ms"),
        ).subquery()
        query = sa.select(h.c.symbol, h.c.last_ts_ms, h.c.last_fill_id, h.c.last_price).join(
            hours,
            sa.and_(
                h.c.account_id == hours.c.account_id,
                h.c.symbol == hours.c.symbol,
                h.c.hour_ms == hours.c.hour_ms,
            ),
        )
        for symbol, ts, fill_id, price in conn.execute(query):  # noqa: UP028 - plain tuples
            yield symbol, ts, fill_id, price

    # -- POSITIONS ---------------------------------------------------------------------------

    def positions(
        self,
        scope: Scope,
        *,
        as_of_ms: int | None = None,
    ) -> Positions:
        """The scope's open positions, now or as they stood at ``as_of_ms``, marked at the
        organisation's last traded price."""
        p, f = _POSITIONS, _FILLS
        books: dict[tuple[str, str, str], Book] = {}
        with self._connect() as conn:
            if as_of_ms is None:
                for row in conn.execute(sa.select(p).where(*scope.where(p))).mappings():
                    books[(row["account_id"], row["bot_id"], row["symbol"])] = Book(
                        row["symbol"],
                        _decimal(row["quantity"]),
                        _decimal(row["average_price"]),
                        _decimal(row["realized_pnl"]),
                    )
            else:
                # Positions then: the sums of the fills up to that time, as the executor booked
                # them (Book.of_totals: a replay by time would book a late fill out of turn).
                query = sa.select(
                    f.c.account_id,
                    f.c.bot_id,
                    f.c.symbol,
                    f.c.side,
                    f.c.quantity,
                    f.c.price,
                    f.c.realized_pnl,
                ).where(*scope.where(f), f.c.ts_ms <= as_of_ms)
                totals: dict[tuple[str, str, str], FillTotals] = {}
                for account_id, bot_id, symbol, side, quantity, price, realized in conn.execute(
                    query
                ):
                    book_totals = totals.get((account_id, bot_id, symbol))
                    if book_totals is None:
                        book_totals = totals[(account_id, bot_id, symbol)] = FillTotals()
                    book_totals.add(side, _decimal(quantity), _decimal(price), _decimal(realized))
                for key, book_totals in totals.items():
                    books[key] = book_totals.position(key[2])
            last = self._last_prices(conn, Scope(scope.org), {k[2] for k in books}, as_of_ms)
        rows = []
        for (account_id, bot_id, symbol), book in sorted(books.items()):
            if not book.quantity:
                continue
            mark = last.get(symbol)
            rows.append(
                PositionRow(
                    account=scope.name(account_id),
                    bot=scope.name(bot_id),
                    symbol=symbol,
                    quantity=book.quantity,
                    average_price=book.average_price,
                    realized_pnl=book.realized_pnl,
                    mark=mark,
                    unrealized_pnl=book.unrealized_pnl(mark) if mark is not None else None,
                )
            )
        return Positions(as_of_ms=as_of_ms if as_of_ms is not None else now_ms(), positions=rows)

    @staticmethod
    def _last_prices(
        conn: sa.Connection, scope: Scope, symbols: set[str], as_of_ms: int | None
    ) -> dict[str, Decimal]:
        if not symbols:
            return {}
        f = _FILLS
        where = [*scope.where(f), f.c.symbol.in_(sorted(symbols))]
        if as_of_ms is not None:
            where.append(f.c.ts_ms <= as_of_ms)
        latest = (
            sa.select(f.c.symbol, sa.func.max(f.c.ts_ms).label("ts_ms"))
            .where(*where)
            .group_by(f.c.symbol)
            .subquery()
        )
        query = (
            sa.select(f.c.symbol, f.c.price)
            .join(latest, sa.and_(f.c.symbol == latest.c.symbol, f.c.ts_ms == latest.c.ts_ms))
            .where(*scope.where(f))
            .order_by(f.c.fill_id)
        )
        return {symbol: _decimal(price) for symbol, price in conn.execute(query)}

    # -- ORDERS AND FILLS --------------------------------------------------------------------

    def orders(
        self,
        scope: Scope,
        *,
        symbol: str | None = None,
        status: str | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> OrderPage:
        """The scope's orders, newest first, a page at a time."""
        o = _ORDERS
        where = self._filters(o, o.c.created_ms, scope, symbol, start_ms, end_ms)
        if status is not None:
            where.append(o.c.status == status)
        rows, next_cursor = self._page(
            where, (o.c.created_ms, o.c.order_id), sa.select(o), limit, cursor
        )
        return OrderPage(items=[_order_row(scope, r) for r in rows], next_cursor=next_cursor)

    def fills(
        self,
        scope: Scope,
        *,
        symbol: str | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> FillPage:
        """The scope's fills, newest first, a page at a time."""
        f = _FILLS
        where = self._filters(f, f.c.ts_ms, scope, symbol, start_ms, end_ms)
        rows, next_cursor = self._page(
            where, (f.c.ts_ms, f.c.account_id, f.c.fill_id), sa.select(f), limit, cursor
        )
        return FillPage(items=[_fill_row(scope, r) for r in rows], next_cursor=next_cursor)

    def iter_orders(self, scope: Scope, **filters: Any) -> Iterator[OrderRow]:
        """Every order of the scope matching ``filters`` (as :meth:`orders`), newest first."""
        return _every(lambda cursor: self.orders(scope, limit=MAX_PAGE, cursor=cursor, **filters))

    def iter_fills(self, scope: Scope, **filters: Any) -> Iterator[FillRow]:
        """Every fill of the scope matching ``filters`` (as :meth:`fills`), newest first."""
        return _every(lambda cursor: self.fills(scope, limit=MAX_PAGE, cursor=cursor, **filters))

    @staticmethod
    def _filters(
        table: sa.Table,
        ts: sa.ColumnElement[int],
        scope: Scope,
        symbol: str | None,
        start_ms: int | None,
        end_ms: int | None,
    ) -> list[sa.ColumnElement[bool]]:
        where = scope.where(table)
        if symbol is not None:
            where.append(table.c.symbol == symbol)
        if start_ms is not None:
            where.append(ts >= start_ms)
        if end_ms is not None:
            where.append(ts < end_ms)
        return where

    def _page(
        self,
        where: list[sa.ColumnElement[bool]],
        keys: Sequence[sa.ColumnElement[Any]],
        query: sa.Select[Any],
        limit: int,
        cursor: str | None,
    ) -> tuple[list[sa.RowMapping], str | None]:
        if not 1 <= limit <= MAX_PAGE:
            raise ReportsError("reports.bad_limit", f"limit must be 1 to {MAX_PAGE}", field="limit")
        if cursor is not None:
            where = [*where, sa.tuple_(*keys) < sa.tuple_(*_decode_cursor(cursor, len(keys)))]
        query = query.where(*where).order_by(*(k.desc() for k in keys)).limit(limit + 1)
        with self._connect() as conn:
            rows = list(conn.execute(query).mappings())
        if len(rows) <= limit:
            return rows, None
        rows = rows[:limit]
        last = rows[-1]
        return rows, _encode_cursor([last[str(k.key)] for k in keys])

    def activity(self, scope: Scope, *, start_ms: int, end_ms: int) -> list[SymbolActivity]:
        """Per symbol, by symbol: the scope's orders created in the range counted by their
        status now, and its fills in the range summed (two grouped queries, however many
        orders)."""
        o, f = _ORDERS, _FILLS
        exact = self.dialect.sum
        orders = (
            sa.select(o.c.symbol, o.c.status, sa.func.count())
            .where(*self._filters(o, o.c.created_ms, scope, None, start_ms, end_ms))
            .group_by(o.c.symbol, o.c.status)
        )
        fills = (
            sa.select(
                f.c.symbol,
                f.c.side,
                sa.func.count(),
                exact(f.c.quantity),
                exact(f.c.realized_pnl),
                exact(f.c.fee),
            )
            .where(*self._filters(f, f.c.ts_ms, scope, None, start_ms, end_ms))
            .group_by(f.c.symbol, f.c.side)
        )
        found: dict[str, SymbolActivity] = {}

        def of(symbol: str) -> SymbolActivity:
            return found.setdefault(
                symbol,
                SymbolActivity(
                    symbol=symbol,
                    orders={},
                    fills=0,
                    bought=ZERO,
                    sold=ZERO,
                    realized=ZERO,
                    fees=ZERO,
                ),
            )

        with self._connect() as conn:
            for symbol, status, count in conn.execute(orders):
                of(symbol).orders[status] = int(count)
            for symbol, side, count, quantity, realized, fees in conn.execute(fills):
                row = of(symbol)
                row.fills += int(count)
                if side == "buy":
                    row.bought += _decimal(quantity)
                else:
                    row.sold += _decimal(quantity)
                row.realized += _decimal(realized)
                row.fees += _decimal(fees)
        return [found[symbol] for symbol in sorted(found)]

    # -- REJECTIONS AND STATEMENTS -----------------------------------------------------------

    def rejections(self, scope: Scope, *, start_ms: int, end_ms: int) -> Rejections:
        """The scope's intents refused (by the risk engine or as invalid), by reason code."""
        i = _INTENTS
        where = [
            *scope.where(i),
            i.c.accepted.is_(False),
            i.c.received_ms >= start_ms,
            i.c.received_ms < end_ms,
        ]
        # One pass: each code's count, and its latest refusal's reason (a NULL code included).
        ranked = (
            sa.select(
                i.c.reject_code,
                i.c.reject_reason,
                i.c.received_ms,
                sa.func.count().over(partition_by=i.c.reject_code).label("n"),
                sa.func.row_number()
                .over(partition_by=i.c.reject_code, order_by=i.c.received_ms.desc())
                .label("latest"),
            )
            .where(*where)
            .subquery()
        )
        query = sa.select(
            ranked.c.reject_code, ranked.c.n, ranked.c.reject_reason, ranked.c.received_ms
        ).where(ranked.c.latest == 1)
        with self._connect() as conn:
            reasons = [
                RejectionReason(
                    code=code or "unknown", count=count, last_reason=reason, last_ms=last_ms
                )
                for code, count, reason, last_ms in conn.execute(query)
            ]
        reasons.sort(key=lambda r: (-r.count, r.code))
        return Rejections(
            start_ms=start_ms,
            end_ms=end_ms,
            total=sum(r.count for r in reasons),
            reasons=reasons,
        )

    def statement(
        self,
        scope: Scope,
        *,
        period: str,
        label: str,
        capital: Mapping[str, Decimal] | None = None,
    ) -> Statement:
        """The report of a day (``label`` ``2026-11-24``) or a month (``2026-11``), UTC."""
        start_ms, end_ms = period_range(period, label)
        bucket = Timeframe.H1 if period == "day" else Timeframe.D1
        series = self.pnl(scope, start_ms=start_ms, end_ms=end_ms, bucket=bucket)
        metrics = self.metrics(
            scope, start_ms=start_ms, end_ms=end_ms, capital=capital, bucket=bucket
        )
        with self._connect() as conn:
            orders = conn.execute(
                sa.select(sa.func.count()).where(
                    *self._filters(_ORDERS, _ORDERS.c.created_ms, scope, None, start_ms, end_ms)
                )
            ).scalar_one()
        return Statement(
            period=period,
            label=label,
            start_ms=start_ms,
            end_ms=end_ms,
            pnl=series.total,
            bots=metrics.bots,
            rejections=self.rejections(scope, start_ms=start_ms, end_ms=end_ms),
            orders=orders,
            fills=sum(b.fills for b in metrics.bots),
        )


def period_range(period: str, label: str) -> tuple[int, int]:
    """The UTC milliseconds a ``day`` (``YYYY-MM-DD``) or ``month`` (``YYYY-MM``) covers."""
    try:
        if period == "day":
            day = dt.date.fromisoformat(label)
            start = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
            end = start + dt.timedelta(days=1)
        elif period == "month":
            year, month = (int(part) for part in label.split("-"))
            start = dt.datetime(year, month, 1, tzinfo=dt.UTC)
            end = start + dt.timedelta(days=calendar.monthrange(year, month)[1])
        else:
            raise ReportsError("reports.bad_period", "period is day or month", field="period")
    except (ValueError, TypeError) as exc:
        if isinstance(exc, ReportsError):
            raise
        example = "2026-11-24" if period == "day" else "2026-11"
        raise ReportsError(
            "reports.bad_date", f"{label!r} is not a {period} like {example}", field="date"
        ) from None
    return int(start.timestamp() * 1000), int(end.timestamp() * 1000)


def _zero_point(ts_ms: int) -> PnlPoint:
    return PnlPoint(ts_ms=ts_ms, realized=ZERO, unrealized=ZERO, fees=ZERO, net=ZERO)


def _hour_of(ts_ms: int) -> int:
    return ts_ms - ts_ms % HOUR_MS


def _rolled_span(start_ms: int, end_ms: int, bucket: Timeframe) -> tuple[int, int] | None:
    """The whole hours of the range, which the rollup answers; ``None`` when there are none or
    the buckets are finer than an hour."""
    if bucket.milliseconds < HOUR_MS:
        return None
    first = -(-start_ms // HOUR_MS) * HOUR_MS
    last = _hour_of(end_ms)
    return (first, last) if first < last else None


def _merge(
    groups: dict[tuple[tuple[str, str], int, str], _Group],
    key: tuple[tuple[str, str], int, str],
    group: _Group,
) -> None:
    """Adds ``group`` into ``groups[key]`` (parts of one bucket from the rollup and fills)."""
    total = groups.get(key)
    if total is None:
        groups[key] = group
        return
    total.bought += group.bought
    total.sold += group.sold
    total.realized += group.realized
    _accumulate(total, group)
    total.last_ts = max(total.last_ts, group.last_ts)


def _last_per_bucket(
    when: sa.ColumnElement[int],
    symbol: sa.ColumnElement[str],
    ts: sa.ColumnElement[int],
    fill_id: sa.ColumnElement[str],
    price: sa.ColumnElement[Any],
    where: Sequence[sa.ColumnElement[bool]],
) -> sa.Select[Any]:
    """(bucket, symbol, ts, fill id, price) of the last trade per bucket and symbol."""
    rank = (
        sa.func.row_number()
        .over(partition_by=[when, symbol], order_by=[ts.desc(), fill_id.desc()])
        .label("rank")
    )
    ranked = (
        sa.select(
            when.label("bucket"),
            symbol.label("symbol"),
            ts.label("ts"),
            fill_id.label("fill_id"),
            price.label("price"),
            rank,
        )
        .where(*where)
        .subquery()
    )
    return sa.select(
        ranked.c.bucket, ranked.c.symbol, ranked.c.ts, ranked.c.fill_id, ranked.c.price
    ).where(ranked.c.rank == 1)


def _accumulate(total: _Group, group: _Group) -> None:
    total.paid += group.paid
    total.received += group.received
    total.fees += group.fees
    total.gains += group.gains
    total.losses += group.losses
    total.wins += group.wins
    total.closes += group.closes
    total.fills += group.fills


def _equity_points(capital: Decimal, points: Sequence[PnlPoint]) -> list[EquityPoint]:
    result = []
    peak: Decimal | None = None
    for point in points:
        equity = capital + point.net
        peak = equity if peak is None else max(peak, equity)
        drawdown = equity - peak
        result.append(
            EquityPoint(
                ts_ms=point.ts_ms,
                equity=equity,
                drawdown=drawdown,
                drawdown_pct=float(drawdown / peak * 100) if peak > 0 else 0.0,
            )
        )
    return result


def _ratio(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _bot_metrics(
    bot: str, account: str, capital: Decimal | None, walk: _Walk, per_year: float
) -> BotMetrics:
    last, activity = walk.points[-1], walk.activity
    notional = activity.paid + activity.received
    metrics: dict[str, Any] = {
        "return_pct": None,
        "sharpe": None,
        "sortino": None,
        "max_drawdown_pct": None,
        "turnover": None,
    }
    if capital:
        equity = [float(p.equity) for p in _equity_points(capital, walk.points)]
        sharpe, sortino = sharpe_sortino(returns([float(capital), *equity]), per_year)
        metrics = {
            "return_pct": float(last.net / capital * 100),
            "sharpe": _ratio(sharpe),
            "sortino": _ratio(sortino),
            "max_drawdown_pct": max_drawdown([float(capital), *equity]) * 100,
            "turnover": float(notional / capital),
        }
    return BotMetrics(
        bot=bot,
        account=account,
        capital=capital,
        realized=last.realized,
        unrealized=last.unrealized,
        fees=last.fees,
        net=last.net,
        win_rate_pct=activity.wins / activity.closes * 100 if activity.closes else None,
        profit_factor=float(activity.gains / -activity.losses) if activity.losses else None,
        traded_notional=notional,
        trades=activity.closes,
        fills=activity.fills,
        **metrics,
    )


def _every(fetch: Callable[[str | None], _PageT]) -> Iterator[Any]:
    """The items of every page ``fetch`` gives, following the cursors."""
    cursor = None
    while True:
        page = fetch(cursor)
        yield from page.items
        if page.next_cursor is None:
            return
        cursor = page.next_cursor


def _encode_cursor(values: Sequence[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(values)).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str, size: int) -> list[Any]:
    try:
        values = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        values = None
    if (
        not isinstance(values, list)
        or len(values) != size
        or not isinstance(values[0], int)
        or not all(isinstance(v, str) for v in values[1:])
    ):
        raise ReportsError(
            "reports.bad_cursor", "not a cursor this listing gave out", field="cursor"
        )
    return values


def _order_row(scope: Scope, row: sa.RowMapping) -> OrderRow:
    values = dict(row)
    values["account"] = scope.name(values.pop("account_id"))
    values["bot"] = scope.name(values.pop("bot_id"))
    return OrderRow.model_validate(values)


def _fill_row(scope: Scope, row: sa.RowMapping) -> FillRow:
    values = dict(row)
    values["account"] = scope.name(values.pop("account_id"))
    values["bot"] = scope.name(values.pop("bot_id"))
    return FillRow.model_validate(values)
