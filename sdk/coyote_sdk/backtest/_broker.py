"""A simulated broker that fills orders against bars and answers with execution reports.

It speaks the same protocol as a real broker seen through the executor: intents in, the
protocol's execution reports out, so the bot and its portfolio cannot tell the difference.
"""

from __future__ import annotations

import dataclasses
import uuid
from decimal import Decimal
from typing import Literal

from coyote_sdk.protocol import (
    Bar,
    CancelAll,
    CancelOrder,
    ExecType,
    ExecutionReport,
    NewOrder,
    OrderIntent,
    OrderStatus,
    OrderType,
    ReplaceOrder,
    Side,
    TimeInForce,
    report_for,
)

ZERO = Decimal(0)
BPS = Decimal(10_000)

FillAt = Literal["next_open", "close"]


@dataclasses.dataclass(frozen=True)
class FillModel:
    """How the simulated broker fills.

    Attributes:
        fill_at: ``next_open`` fills a market order at the open of the bar after the one it
            was placed on (no look-ahead); ``close`` fills it at the close of the bar it was
            placed on.
        commission: A fraction of notional charged per fill (0.002 = 0.2 %).
        slippage_bps: Adverse slippage on market and stop fills, in basis points.
    """

    fill_at: FillAt = "next_open"
    commission: Decimal = ZERO
    slippage_bps: Decimal = ZERO

    def __post_init__(self) -> None:
        if self.fill_at not in ("next_open", "close"):
            raise ValueError(f"fill_at must be 'next_open' or 'close', got {self.fill_at!r}")
        if self.commission < 0 or self.slippage_bps < 0:
            raise ValueError("commission and slippage_bps must not be negative")


@dataclasses.dataclass
class _Working:
    intent: NewOrder
    quantity: Decimal
    limit_price: Decimal | None
    stop_price: Decimal | None
    triggered: bool = False
    placed_ts: int = 0
    bars_seen: int = 0


class SimulatedBroker:
    """Keeps working orders and fills them as bars arrive.

    Args:
        model: Fill timing, commission and slippage.
        positions: The account's positions by symbol, kept by the caller; read for
            reduce-only orders.
    """

    def __init__(self, model: FillModel, positions: dict[str, Decimal]) -> None:
        self.model = model
        self._positions = positions
        self._working: dict[uuid.UUID, _Working] = {}
        self._fills = 0

    @property
    def working_orders(self) -> int:
        return len(self._working)

    # -- intents ---------------------------------------------------------------------------

    def submit(self, intent: OrderIntent, bar: Bar | None) -> list[ExecutionReport]:
        """Takes an intent placed during ``bar`` (the latest bar of its symbol, if any)."""
        if isinstance(intent, NewOrder):
            return self._new(intent, bar)
        if isinstance(intent, CancelOrder):
            return self._cancel(intent, intent.order_id, intent.ts_ms)
        if isinstance(intent, CancelAll):
            reports: list[ExecutionReport] = []
            for order_id, working in list(self._working.items()):
                if intent.symbol in (None, working.intent.symbol):
                    reports += self._cancel(intent, order_id, intent.ts_ms)
            return reports
        return self._replace(intent)

    def _new(self, intent: NewOrder, bar: Bar | None) -> list[ExecutionReport]:
        if intent.reduce_only and not self._reduces(intent.symbol, intent.side, intent.quantity):
            return [
                self._report(
                    intent,
                    intent,
                    ExecType.REJECTED,
                    OrderStatus.REJECTED,
                    reject_code="order.reduce_only",
                    reject_reason="a reduce-only order would increase the position",
                )
            ]
        working = _Working(
            intent, intent.quantity, intent.limit_price, intent.stop_price, placed_ts=intent.ts_ms
        )
        reports = [self._report(intent, intent, ExecType.ACCEPTED, OrderStatus.NEW)]
        if (
            intent.order_type is OrderType.MARKET
            and self.model.fill_at == "close"
            and bar is not None
        ):
            reports.append(self._fill(working, self._slipped(intent.side, bar.close), bar.ts_ms))
            return reports
        self._working[intent.intent_id] = working
        return reports

    def _cancel(
        self, intent: OrderIntent, order_id: uuid.UUID, ts_ms: int
    ) -> list[ExecutionReport]:
        working = self._working.pop(order_id, None)
        if working is None:
            return []
        return [
            self._report(
                working.intent, intent, ExecType.CANCELED, OrderStatus.CANCELED, ts_ms=ts_ms
            )
        ]

    def _replace(self, intent: ReplaceOrder) -> list[ExecutionReport]:
        working = self._working.get(intent.order_id)
        if working is None:
            return []
        if intent.quantity is not None:
            working.quantity = intent.quantity
        if intent.limit_price is not None:
            working.limit_price = intent.limit_price
        if intent.stop_price is not None:
            working.stop_price = intent.stop_price
        return [
            self._report(
                working.intent,
                intent,
                ExecType.REPLACED,
                OrderStatus.NEW,
                quantity=working.quantity,
            )
        ]

    # -- matching --------------------------------------------------------------------------

    def on_bar(self, bar: Bar) -> list[ExecutionReport]:
        """Fills, expires or keeps each working order of ``bar.symbol`` against ``bar``."""
        reports: list[ExecutionReport] = []
        for order_id, working in list(self._working.items()):
            intent = working.intent
            if intent.symbol != bar.symbol or intent.ts_ms > bar.ts_ms:
                continue
            if intent.time_in_force is TimeInForce.DAY and _day(bar.ts_ms) > _day(
                working.placed_ts
            ):
                del self._working[order_id]
                reports.append(
                    self._report(
                        intent, intent, ExecType.EXPIRED, OrderStatus.EXPIRED, ts_ms=bar.ts_ms
                    )
                )
                continue
            price = self._match(working, bar)
            working.bars_seen += 1
            if price is not None:
                if intent.reduce_only and not self._reduces(
                    intent.symbol, intent.side, working.quantity
                ):
                    del self._working[order_id]
                    reports.append(
                        self._report(
                            intent, intent, ExecType.CANCELED, OrderStatus.CANCELED, ts_ms=bar.ts_ms
                        )
                    )
                    continue
                del self._working[order_id]
                reports.append(self._fill(working, price, bar.ts_ms))
            elif intent.time_in_force in (TimeInForce.IOC, TimeInForce.FOK):
                # Immediate orders get one bar: the first the broker could have filled them on.
                del self._working[order_id]
                reports.append(
                    self._report(
                        intent, intent, ExecType.EXPIRED, OrderStatus.EXPIRED, ts_ms=bar.ts_ms
                    )
                )
        return reports

    def _match(self, working: _Working, bar: Bar) -> Decimal | None:
        """The fill price of ``working`` on ``bar``, or None if it does not fill."""
        side = working.intent.side
        buy = side is Side.BUY
        order_type = working.intent.order_type
        if order_type is OrderType.MARKET:
            return self._slipped(side, bar.open)
        if order_type in (OrderType.STOP, OrderType.STOP_LIMIT) and not working.triggered:
            stop = working.stop_price
            assert stop is not None
            if (buy and bar.open >= stop) or (not buy and bar.open <= stop):
                trigger = bar.open  # gapped through the stop
            elif (buy and bar.high >= stop) or (not buy and bar.low <= stop):
                trigger = stop
            else:
                return None
            working.triggered = True
            if order_type is OrderType.STOP:
                return self._slipped(side, trigger)
            limit = working.limit_price
            assert limit is not None
            if (buy and trigger <= limit) or (not buy and trigger >= limit):
                return trigger
            if (buy and bar.low <= limit) or (not buy and bar.high >= limit):
                return limit
            return None
        limit = working.limit_price
        assert limit is not None
        if buy:
            if bar.open <= limit:
                return bar.open
            return limit if bar.low <= limit else None
        if bar.open >= limit:
            return bar.open
        return limit if bar.high >= limit else None

    def _slipped(self, side: Side, price: Decimal) -> Decimal:
        if not self.model.slippage_bps:
            return price
        factor = self.model.slippage_bps / BPS
        return price * (1 + factor) if side is Side.BUY else price * (1 - factor)

    def _reduces(self, symbol: str, side: Side, quantity: Decimal) -> bool:
        held = self._positions.get(symbol, ZERO)
        return (held > 0 and side is Side.SELL and quantity <= held) or (
            held < 0 and side is Side.BUY and quantity <= -held
        )

    # -- reports ---------------------------------------------------------------------------

    def _fill(self, working: _Working, price: Decimal, ts_ms: int) -> ExecutionReport:
        quantity = working.quantity
        self._fills += 1
        return report_for(
            working.intent,
            ExecType.TRADE,
            OrderStatus.FILLED,
            ts_ms=ts_ms,
            quantity=quantity,
            filled_quantity=quantity,
            last_quantity=quantity,
            last_price=price,
            average_price=price,
            fee=quantity * price * self.model.commission,
            fill_id=f"sim-{self._fills}",
        )

    @staticmethod
    def _report(
        order: NewOrder,
        cause: OrderIntent,
        exec_type: ExecType,
        status: OrderStatus,
        **fields: object,
    ) -> ExecutionReport:
        return report_for(order, exec_type, status, cause=cause, **fields)  # type: ignore[arg-type]


def _day(ts_ms: int) -> int:
    return ts_ms // 86_400_000
