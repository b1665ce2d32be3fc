"""Order lifecycle: the state machine, and execution reports from broker order states.

States (``coyote_sdk.protocol.OrderStatus``) and the moves between them::

    pending_new ──accepted──▶ new ──trade──▶ partially_filled ──trade──▶ filled
         │                     │  ╲                │
         │                     │   ╲replaced (stays new / partially_filled)
         ├──rejected──▶ rejected│                  │
         │                      ├──canceled──▶ canceled ◀──canceled──┤
         │                      └──expired───▶ expired  ◀──expired───┘
         └──(a market order may go straight to trade: accepted is reported first)

``pending_new`` is written to the database before the order is sent: it means "may be at the
broker". Every later state is learnt from a :class:`~coyote_executor.brokers.base.BrokerOrderState`
— the answer of a call, an update the broker pushed, or a lookup during reconciliation — and
:func:`advance` turns the difference between what was recorded and what the broker says into the
protocol's execution reports. Terminal states never change again; a state that would move an
order backwards (a stale answer) produces nothing.
"""

from __future__ import annotations

import dataclasses
import uuid
from decimal import Decimal

from coyote_executor.brokers.base import BrokerFill, BrokerOrderState
from coyote_sdk.protocol import (
    ExecType,
    ExecutionReport,
    NewOrder,
    OrderIntent,
    OrderStatus,
    report_for,
)

ZERO = Decimal(0)


@dataclasses.dataclass(slots=True)
class LiveOrder:
    """An order as the executor tracks it: the placing intent plus what changed since."""

    intent: NewOrder
    status: OrderStatus = OrderStatus.PENDING_NEW
    quantity: Decimal = ZERO
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    filled_quantity: Decimal = ZERO
    average_price: Decimal | None = None
    broker_order_id: str | None = None
    reject_code: str | None = None
    reject_reason: str | None = None
    updated_ms: int = 0
    traceparent: str | None = None
    """The W3C trace context of the span that placed the order: its later events (fills,
    cancels, found by reconciliation) are traced as its children."""
    version: int = 0
    """The version of the order's row once the changes made to it so far are written
    (:meth:`coyote_executor.store.Changes.update` counts them)."""
    key: str = dataclasses.field(init=False)
    """The order id as text: the broker's client order id and the key of the order's rows
    (made once: ``str`` of a UUID costs ~0.6 us, and an order needed it ten times)."""

    def __post_init__(self) -> None:
        self.key = str(self.intent.intent_id)

    @classmethod
    def placed(cls, intent: NewOrder, now_ms: int, *, traceparent: str | None = None) -> LiveOrder:
        return cls(
            intent,
            quantity=intent.quantity,
            limit_price=intent.limit_price,
            stop_price=intent.stop_price,
            updated_ms=now_ms,
            traceparent=traceparent,
        )

    @property
    def order_id(self) -> uuid.UUID:
        return self.intent.intent_id

    @property
    def is_open(self) -> bool:
        return not self.status.is_terminal

    @property
    def leaves_quantity(self) -> Decimal:
        return ZERO if self.status.is_terminal else self.quantity - self.filled_quantity


@dataclasses.dataclass(frozen=True, slots=True)
class FillEvent:
    """A fill learnt from the broker, to be recorded with the report that announces it."""

    order: LiveOrder
    fill: BrokerFill
    report: ExecutionReport


@dataclasses.dataclass(slots=True)
class Advance:
    """What one broker state changed: the reports to publish and the fills to record."""

    reports: list[ExecutionReport] = dataclasses.field(default_factory=list)
    fills: list[FillEvent] = dataclasses.field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.reports)


def reject(
    order: LiveOrder,
    code: str,
    reason: str,
    now_ms: int,
    *,
    cause: OrderIntent | None = None,
) -> ExecutionReport:
    """Moves a pending order to ``rejected`` (risk, decoding or the broker said no)."""
    order.status = OrderStatus.REJECTED
    order.reject_code, order.reject_reason = code, reason
    order.updated_ms = now_ms
    return _report(
        order, ExecType.REJECTED, now_ms, cause=cause, reject_code=code, reject_reason=reason
    )


def advance(
    order: LiveOrder,
    state: BrokerOrderState,
    now_ms: int,
    *,
    cause: OrderIntent | None = None,
) -> Advance:
    """Brings ``order`` up to ``state`` and returns the reports of every step on the way.

    Args:
        order: The recorded order; updated in place.
        state: What the broker says now.
        now_ms: The time of the reports.
        cause: The cancel or replace intent that asked for this state, if any; the reports of
            its own outcome (canceled, replaced) name it as their ``intent_id``.
    """
    result = Advance()
    if order.status.is_terminal:
        return result
    if state.broker_order_id:
        order.broker_order_id = state.broker_order_id
    if state.status is OrderStatus.REJECTED:
        if order.status is OrderStatus.PENDING_NEW:
            result.reports.append(
                reject(
                    order,
                    state.reject_code or "broker.rejected",
                    state.reject_reason or "refused by the broker",
                    now_ms,
                )
            )
        return result
    if state.status is OrderStatus.PENDING_NEW:
        return result

    if order.status is OrderStatus.PENDING_NEW:
        order.status = OrderStatus.NEW
        order.updated_ms = now_ms
        result.reports.append(_report(order, ExecType.ACCEPTED, now_ms))

    if (
        state.quantity != order.quantity
        or (state.limit_price is not None and state.limit_price != order.limit_price)
        or (state.stop_price is not None and state.stop_price != order.stop_price)
    ) and not state.status.is_terminal:
        order.quantity = state.quantity
        order.limit_price = (
            state.limit_price if state.limit_price is not None else order.limit_price
        )
        order.stop_price = state.stop_price if state.stop_price is not None else order.stop_price
        order.updated_ms = now_ms
        result.reports.append(_report(order, ExecType.REPLACED, now_ms, cause=cause))

    for fill in _new_fills(order, state):
        order.average_price = _average(
            order.filled_quantity, order.average_price, fill.quantity, fill.price
        )
        order.filled_quantity += fill.quantity
        done = order.filled_quantity >= order.quantity
        order.status = OrderStatus.FILLED if done else OrderStatus.PARTIALLY_FILLED
        order.updated_ms = now_ms
        report = _report(
            order,
            ExecType.TRADE,
            fill.ts_ms or now_ms,
            last_quantity=fill.quantity,
            last_price=fill.price,
            fee=fill.fee,
            fee_currency=fill.fee_currency,
            fill_id=fill.fill_id,
        )
        result.reports.append(report)
        result.fills.append(FillEvent(order, fill, report))

    if state.status in (OrderStatus.CANCELED, OrderStatus.EXPIRED) and not order.status.is_terminal:
        order.status = state.status
        order.updated_ms = now_ms
        exec_type = ExecType.CANCELED if state.status is OrderStatus.CANCELED else ExecType.EXPIRED
        result.reports.append(_report(order, exec_type, now_ms, cause=cause))
    return result


def _new_fills(order: LiveOrder, state: BrokerOrderState) -> list[BrokerFill]:
    """The fills in ``state`` that ``order`` has not booked yet.

    Brokers list fills in the order they happened, so the ones already booked are those whose
    running total stays within the recorded filled quantity. A broker that reports only
    cumulative numbers gets one synthetic fill for the increase, priced so that the average
    comes out as the broker says.
    """
    if state.filled_quantity <= order.filled_quantity and not state.fills:
        return []
    if state.fills:
        fresh, running = [], ZERO
        for fill in state.fills:
            running += fill.quantity
            if running > order.filled_quantity:
                fresh.append(fill)
        return fresh
    delta = state.filled_quantity - order.filled_quantity
    average = state.average_price
    if average is None:
        return []
    paid_before = order.filled_quantity * (order.average_price or ZERO)
    price = (state.filled_quantity * average - paid_before) / delta
    key = state.broker_order_id or state.client_order_id
    return [
        BrokerFill(
            fill_id=f"{key}:{state.filled_quantity}",
            quantity=delta,
            price=price,
            ts_ms=state.ts_ms,
        )
    ]


def _average(
    filled: Decimal, average: Decimal | None, quantity: Decimal, price: Decimal
) -> Decimal:
    if not filled or average is None:
        return price
    return (filled * average + quantity * price) / (filled + quantity)


def _report(
    order: LiveOrder,
    exec_type: ExecType,
    ts_ms: int,
    *,
    cause: OrderIntent | None = None,
    **fields: object,
) -> ExecutionReport:
    return report_for(
        order.intent,
        exec_type,
        order.status,
        cause=cause,
        ts_ms=ts_ms,
        quantity=order.quantity,
        filled_quantity=order.filled_quantity,
        average_price=order.average_price,
        broker_order_id=order.broker_order_id,
        **fields,
    )
