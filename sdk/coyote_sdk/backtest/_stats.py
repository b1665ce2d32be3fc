"""Round trips and performance statistics of a backtest."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from decimal import Decimal

from coyote_sdk.performance import max_drawdown, returns, sharpe_sortino
from coyote_sdk.portfolio import Fill
from coyote_sdk.protocol import Side

ZERO = Decimal(0)
_YEAR_MS = 365.25 * 86_400_000
_DAY_YEARS = 1 / 365.25


@dataclasses.dataclass
class RoundTrip:
    """A trade from flat to flat (or to a flip) in one symbol."""

    symbol: str
    direction: str
    """``long`` or ``short``."""
    entry_ts_ms: int
    entry_price: Decimal
    """Average price of the fills that built the position."""
    quantity: Decimal
    """The largest size the position reached."""
    exit_ts_ms: int | None = None
    exit_price: Decimal | None = None
    """Average price of the fills that closed it (None while open)."""
    pnl: Decimal = ZERO
    """Realised PnL net of every fee of the round trip."""
    fees: Decimal = ZERO
    _entry_notional: Decimal = ZERO
    _entry_quantity: Decimal = ZERO
    _exit_notional: Decimal = ZERO
    _exit_quantity: Decimal = ZERO

    @property
    def is_open(self) -> bool:
        return self.exit_ts_ms is None

    @property
    def return_pct(self) -> float:
        cost = self._entry_notional
        return float(self.pnl / cost * 100) if cost else 0.0


class TradeTracker:
    """Cuts a stream of fills into round trips."""

    def __init__(self) -> None:
        self.trades: list[RoundTrip] = []
        self._open: dict[str, RoundTrip] = {}

    def add(self, fill: Fill) -> None:
        signed = fill.quantity if fill.side is Side.BUY else -fill.quantity
        after = fill.position_after
        before = after - signed
        fee_per_unit = fill.fee / fill.quantity
        remaining = fill.quantity
        trip = self._open.get(fill.symbol)
        if trip is not None:
            if (signed > 0) == (before > 0):  # adds to the open trip
                self._grow(trip, fill, remaining, fee_per_unit * remaining)
                return
            closing = min(fill.quantity, abs(before))
            fee = fee_per_unit * closing
            trip._exit_notional += closing * fill.price
            trip._exit_quantity += closing
            trip.fees += fee
            trip.pnl += fill.realized_pnl - fee
            remaining -= closing
            if after != 0 and (after > 0) == (before > 0):
                return  # reduced, still open
            trip.exit_ts_ms = fill.ts_ms
            trip.exit_price = trip._exit_notional / trip._exit_quantity
            del self._open[fill.symbol]
        if remaining > 0 and after != 0:
            trip = RoundTrip(
                symbol=fill.symbol,
                direction="long" if after > 0 else "short",
                entry_ts_ms=fill.ts_ms,
                entry_price=fill.price,
                quantity=ZERO,
            )
            self._grow(trip, fill, remaining, fee_per_unit * remaining)
            self._open[fill.symbol] = trip
            self.trades.append(trip)

    @staticmethod
    def _grow(trip: RoundTrip, fill: Fill, quantity: Decimal, fee: Decimal) -> None:
        trip._entry_notional += quantity * fill.price
        trip._entry_quantity += quantity
        trip.entry_price = trip._entry_notional / trip._entry_quantity
        trip.quantity = max(trip.quantity, abs(fill.position_after))
        trip.fees += fee
        trip.pnl -= fee

    def close_open(self, marks: Mapping[str, Decimal], ts_ms: int) -> None:
        """Leaves open trips open, but values their PnL at ``marks`` for the statistics."""
        del ts_ms
        for trip in self._open.values():
            mark = marks.get(trip.symbol)
            if mark is None:
                continue
            held = trip._entry_quantity - trip._exit_quantity
            sign = 1 if trip.direction == "long" else -1
            trip.pnl += held * (mark - trip.entry_price) * sign


@dataclasses.dataclass(frozen=True)
class Statistics:
    start_equity: Decimal
    end_equity: Decimal
    return_pct: float
    cagr_pct: float
    sharpe: float
    sortino: float
    max_drawdown_pct: float
    trades: int
    win_rate_pct: float
    exposure_pct: float
    fees: Decimal
    years: float

    def as_rows(self) -> list[tuple[str, str]]:
        return [
            ("Start equity", f"{self.start_equity:,.2f}"),
            ("End equity", f"{self.end_equity:,.2f}"),
            ("Return", f"{self.return_pct:.2f} %"),
            ("CAGR", f"{self.cagr_pct:.2f} %"),
            ("Sharpe", f"{self.sharpe:.2f}"),
            ("Sortino", f"{self.sortino:.2f}"),
            ("Max drawdown", f"{self.max_drawdown_pct:.2f} %"),
            ("Trades", str(self.trades)),
            ("Win rate", f"{self.win_rate_pct:.1f} %"),
            ("Exposure", f"{self.exposure_pct:.1f} %"),
            ("Fees", f"{self.fees:,.2f}"),
            ("Duration", f"{self.years:.2f} years"),
        ]


def statistics(
    start: Decimal,
    equity: Sequence[tuple[int, Decimal]],
    trades: Sequence[RoundTrip],
    exposed_bars: int,
    fills: Sequence[Fill],
) -> Statistics:
    """Return, CAGR, Sharpe and Sortino (annualised at the data's own bar frequency), max
    drawdown, number of trades, win rate and exposure. CAGR is 0 for a run shorter than a day."""
    values = [float(e) for _, e in equity]
    end = equity[-1][1] if equity else start
    years = (equity[-1][0] - equity[0][0]) / _YEAR_MS if len(equity) > 1 else 0.0
    growth = float(end / start) if start else 0.0
    # Annualising less than a day of trading (a backtest on ticks) means nothing, and
    # overflows: CAGR is left at 0 then.
    cagr = (growth ** (1 / years) - 1) * 100 if years >= _DAY_YEARS and growth > 0 else 0.0
    per_year = (len(values) - 1) / years if years > 0 else 0.0
    sharpe, sortino = sharpe_sortino(returns(values), per_year)
    worst_drawdown = max_drawdown(values)
    closed = [t for t in trades if not t.is_open]
    wins = sum(1 for t in closed if t.pnl > 0)
    return Statistics(
        start_equity=start,
        end_equity=end,
        return_pct=(growth - 1) * 100,
        cagr_pct=cagr,
        sharpe=sharpe,
        sortino=sortino,
        max_drawdown_pct=worst_drawdown * 100,
        trades=len(trades),
        win_rate_pct=wins / len(closed) * 100 if closed else 0.0,
        exposure_pct=exposed_bars / len(values) * 100 if values else 0.0,
        fees=sum((f.fee for f in fills), ZERO),
        years=years,
    )
