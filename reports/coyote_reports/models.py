"""What the reports answer: the JSON shapes of ``/v1/reports``.

Money, quantities and prices are exact decimals, written as strings in JSON; times are integer
milliseconds since the Unix epoch (UTC); ``account`` and ``bot`` are names within the caller's
organisation (an account's name, a deployment's name).
"""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel, Field


class PnlPoint(BaseModel):
    """The PnL from the range's start to the end of one bucket (labelled by the bucket's start).

    ``realized`` is the PnL closed by fills since the start, before fees; ``unrealized`` the
    change since the start in the value of open positions over their cost, each marked at the
    organisation's last traded price in its symbol; ``net = realized + unrealized - fees``, the
    change in equity.
    """

    ts_ms: int
    realized: Decimal
    unrealized: Decimal
    fees: Decimal
    net: Decimal


class PnlTotals(BaseModel):
    realized: Decimal
    unrealized: Decimal
    fees: Decimal
    net: Decimal


class PnlSeries(BaseModel):
    bucket: str
    start_ms: int
    end_ms: int
    points: list[PnlPoint]
    total: PnlTotals
    """The last point's values: the whole range's PnL."""


class EquityPoint(BaseModel):
    ts_ms: int
    equity: Decimal
    """Capital plus net PnL since the range's start."""
    drawdown: Decimal
    """Equity minus its running peak (zero or negative)."""
    drawdown_pct: float
    """``drawdown`` as a percentage of the peak (zero or negative; 0 when the peak is not
    positive)."""


class EquityCurve(BaseModel):
    bucket: str
    start_ms: int
    end_ms: int
    capital: Decimal
    """The capital the curve starts from: the deployment's allocation for a bot, the account's
    capital for an account, the sum of the accounts' for an organisation."""
    points: list[EquityPoint]


class PositionRow(BaseModel):
    account: str
    bot: str
    symbol: str
    quantity: Decimal
    """Signed: negative is short."""
    average_price: Decimal
    realized_pnl: Decimal
    """Closed PnL of this position's history, before fees."""
    mark: Decimal | None
    """The price it is valued at: the organisation's last traded price."""
    unrealized_pnl: Decimal | None


class Positions(BaseModel):
    as_of_ms: int
    positions: list[PositionRow]


class OrderRow(BaseModel):
    order_id: str
    account: str
    bot: str
    symbol: str
    side: str
    order_type: str
    time_in_force: str
    quantity: Decimal
    limit_price: Decimal | None
    stop_price: Decimal | None
    reduce_only: bool
    status: str
    filled_quantity: Decimal
    average_price: Decimal | None
    reject_code: str | None
    reject_reason: str | None
    created_ms: int
    updated_ms: int


class FillRow(BaseModel):
    fill_id: str
    order_id: str
    account: str
    bot: str
    symbol: str
    side: str
    quantity: Decimal
    price: Decimal
    fee: Decimal
    fee_currency: str | None
    realized_pnl: Decimal
    ts_ms: int


class OrderPage(BaseModel):
    items: list[OrderRow]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next (older) page.")


class SymbolActivity(BaseModel):
    """What a scope did in one symbol over a range: its orders (created in the range) by their
    status now, and its fills (made in the range)."""

    symbol: str
    orders: dict[str, int]
    """Order counts by status: ``new``, ``filled``, ``canceled``, ``rejected`` …"""
    fills: int
    bought: Decimal
    sold: Decimal
    realized: Decimal
    """Realised PnL of the range's fills, before fees."""
    fees: Decimal


class FillPage(BaseModel):
    items: list[FillRow]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next (older) page.")


class BotMetrics(BaseModel):
    """A bot's performance over the range. Ratios need capital: they are null without it."""

    bot: str
    account: str
    capital: Decimal | None
    realized: Decimal
    unrealized: Decimal
    fees: Decimal
    net: Decimal
    return_pct: float | None
    sharpe: float | None
    """Annualised from the equity curve's steps (a step per bucket; 365 days a year)."""
    sortino: float | None
    max_drawdown_pct: float | None
    win_rate_pct: float | None
    """Share of closing fills (those that realised PnL) with a gain, before fees."""
    profit_factor: float | None
    """Gains over losses of the closing fills; null without a loss."""
    turnover: float | None
    """Traded notional over capital."""
    traded_notional: Decimal
    trades: int
    """Closing fills."""
    fills: int


class Metrics(BaseModel):
    bucket: str
    start_ms: int
    end_ms: int
    bots: list[BotMetrics]


class RejectionReason(BaseModel):
    code: str
    count: int
    last_reason: str | None
    last_ms: int


class Rejections(BaseModel):
    start_ms: int
    end_ms: int
    total: int
    reasons: list[RejectionReason]


class Statement(BaseModel):
    """A day's or a month's report."""

    period: str
    label: str
    """``2026-11-24`` or ``2026-11``."""
    start_ms: int
    end_ms: int
    pnl: PnlTotals
    bots: list[BotMetrics]
    rejections: Rejections
    orders: int
    fills: int
