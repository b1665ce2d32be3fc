"""A bot's portfolio, kept from execution reports alone.

The same class serves the backtester and the live runtime: both feed it the protocol's
:class:`~coyote_sdk.protocol.ExecutionReport` messages, so a bot sees the same cash, positions,
open orders and PnL arithmetic everywhere. Positions use average cost; realised PnL is booked
when a position shrinks, and a fill that flips a position closes the old side first.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping
from decimal import Decimal

import msgspec

from coyote_sdk.protocol import ExecType, ExecutionReport, NewOrder, OrderStatus, Side

ZERO = Decimal(0)
REMEMBERED_FILLS = 10_000
"""Fill ids a portfolio remembers to drop a replayed fill: the most recent ones (a report is
republished soon after its first copy, if ever: an executor restarting before it marked it sent)."""


@dataclasses.dataclass
class Position:
    """A signed holding: positive long, negative short."""

    symbol: str
    quantity: Decimal = ZERO
    average_price: Decimal = ZERO
    realized_pnl: Decimal = ZERO
    """Gross of fees; fees are kept in :attr:`Portfolio.fees`."""

    @classmethod
    def of_totals(
        cls, symbol: str, quantity: Decimal, cash: Decimal, realized: Decimal
    ) -> Position:
        """The position its fills left, from their sums alone: net ``quantity``, net ``cash``
        before fees (sells minus buys) and the ``realized`` PnL each fill booked.

        Average cost keeps ``cash + quantity x average_price - realized`` at zero through every
        fill (flips included), so the average price follows from the sums: unlike a replay of
        the fills, this does not depend on the order they are taken in (but for rounding in the
        last of Decimal's 28 digits), only on the order they were booked in, which their
        realised PnL records.
        """
        average = (realized - cash) / quantity if quantity else ZERO
        return cls(symbol, quantity, average, realized)

    def unrealized_pnl(self, mark: Decimal) -> Decimal:
        return self.quantity * (mark - self.average_price)

    @property
    def is_flat(self) -> bool:
        return self.quantity == 0

    def book(self, signed_quantity: Decimal, price: Decimal) -> Decimal:
        """Applies a fill of ``signed_quantity`` (negative sells) at ``price``; returns the
        realised PnL it booked (average cost; a flip closes the old side first)."""
        held = self.quantity
        qty = abs(signed_quantity)
        realized = ZERO
        if held == 0 or (held > 0) == (signed_quantity > 0):
            self.average_price = (abs(held) * self.average_price + qty * price) / (abs(held) + qty)
        else:
            closing = min(qty, abs(held))
            realized = closing * (price - self.average_price) * (1 if held > 0 else -1)
            self.realized_pnl += realized
            if qty > abs(held):  # flipped: the remainder opens at this price
                self.average_price = price
            elif qty == abs(held):
                self.average_price = ZERO
        self.quantity = held + signed_quantity
        return realized


@dataclasses.dataclass
class FillTotals:
    """The running sums of one book's fills that :meth:`Position.of_totals` takes: a position
    rebuilt from stored fills, in any order, as the fills were booked."""

    quantity: Decimal = ZERO
    cash: Decimal = ZERO
    realized: Decimal = ZERO

    def add(self, side: str, quantity: Decimal, price: Decimal, realized: Decimal) -> None:
        """Adds a fill of ``quantity`` (positive) on ``side`` (``"buy"``/``"sell"``) at ``price``
        that booked ``realized``."""
        signed = quantity if side == Side.BUY else -quantity
        self.quantity += signed
        self.cash -= signed * price
        self.realized += realized

    def position(self, symbol: str) -> Position:
        return Position.of_totals(symbol, self.quantity, self.cash, self.realized)


@dataclasses.dataclass
class OpenOrder:
    """An order the broker may still fill."""

    order_id: uuid.UUID
    symbol: str
    side: Side
    quantity: Decimal
    filled_quantity: Decimal
    status: OrderStatus
    intent: NewOrder | None = None
    """The intent that placed it, when this process sent it."""


@dataclasses.dataclass(frozen=True)
class Fill:
    """One execution, with the realised PnL it booked."""

    order_id: uuid.UUID
    ts_ms: int
    symbol: str
    side: Side
    quantity: Decimal
    price: Decimal
    fee: Decimal
    realized_pnl: Decimal
    position_after: Decimal


class Portfolio:
    """Cash, positions, open orders and PnL of one bot on one account.

    Args:
        cash: The starting cash (the bot's capital allocation).
    """

    def __init__(self, cash: Decimal | int | str = ZERO) -> None:
        self.initial_cash = Decimal(cash)
        self.cash = self.initial_cash
        self.fees = ZERO
        self.positions: dict[str, Position] = {}
        self.open_orders: dict[uuid.UUID, OpenOrder] = {}
        self._sent: dict[uuid.UUID, NewOrder] = {}
        self._fill_ids: dict[str, None] = {}
        """The most recent fill ids applied, oldest first (a dict: an ordered set)."""

    def position(self, symbol: str) -> Position:
        """The position in ``symbol`` (flat if none)."""
        position = self.positions.get(symbol)
        if position is None:
            position = self.positions[symbol] = Position(symbol)
        return position

    @property
    def unfinished_orders(self) -> set[uuid.UUID]:
        """Orders not known to be done: open at the broker, or sent by this process and not
        answered yet."""
        return self.open_orders.keys() | self._sent.keys()

    def track(self, intent: NewOrder) -> None:
        """Remembers an order this process sent, so its open order carries its prices."""
        self._sent[intent.intent_id] = intent

    def forget(self, intent_id: uuid.UUID) -> None:
        """Forgets an order tracked but never sent (dropped before it left)."""
        self._sent.pop(intent_id, None)

    def apply(self, report: ExecutionReport) -> Fill | None:
        """Updates the portfolio from one report; returns the fill it carried, if any.

        A report repeating a fill already applied (same ``fill_id``) changes nothing.
        """
        fill = None
        if report.symbol is None or report.side is None:  # a rejection naming no known order
            self._sent.pop(report.order_id, None)
            return None
        if report.exec_type is ExecType.TRADE:
            if report.fill_id is not None:
                if report.fill_id in self._fill_ids:
                    return None
                self._fill_ids[report.fill_id] = None
                if len(self._fill_ids) > REMEMBERED_FILLS:
                    del self._fill_ids[next(iter(self._fill_ids))]
            assert report.last_quantity is not None and report.last_price is not None
            fill = self._book(
                report,
                report.symbol,
                report.side,
                report.last_quantity,
                report.last_price,
                report.fee or ZERO,
            )
        if report.order_status.is_terminal:
            self.open_orders.pop(report.order_id, None)
            self._sent.pop(report.order_id, None)
        else:
            self.open_orders[report.order_id] = OpenOrder(
                order_id=report.order_id,
                symbol=report.symbol,
                side=report.side,
                quantity=report.quantity,
                filled_quantity=report.filled_quantity,
                status=report.order_status,
                intent=self._sent.get(report.order_id),
            )
        return fill

    def _book(
        self,
        report: ExecutionReport,
        symbol: str,
        side: Side,
        qty: Decimal,
        price: Decimal,
        fee: Decimal,
    ) -> Fill:
        position = self.position(symbol)
        signed = qty if side is Side.BUY else -qty
        self.cash -= signed * price + fee
        self.fees += fee
        realized = position.book(signed, price)
        return Fill(
            order_id=report.order_id,
            ts_ms=report.ts_ms,
            symbol=symbol,
            side=side,
            quantity=qty,
            price=price,
            fee=fee,
            realized_pnl=realized,
            position_after=position.quantity,
        )

    # -- valuation -----------------------------------------------------------------------

    def market_value(self, marks: Mapping[str, Decimal]) -> Decimal:
        """Sum of positions at ``marks`` (a position without a mark counts at its cost)."""
        return sum(
            (p.quantity * marks.get(p.symbol, p.average_price) for p in self.positions.values()),
            ZERO,
        )

    def equity(self, marks: Mapping[str, Decimal]) -> Decimal:
        """Cash plus the market value of every position."""
        return self.cash + self.market_value(marks)

    @property
    def realized_pnl(self) -> Decimal:
        return sum((p.realized_pnl for p in self.positions.values()), ZERO)

    def unrealized_pnl(self, marks: Mapping[str, Decimal]) -> Decimal:
        return sum(
            (
                p.unrealized_pnl(marks[p.symbol])
                for p in self.positions.values()
                if p.symbol in marks
            ),
            ZERO,
        )

    def pnl(self, marks: Mapping[str, Decimal]) -> Decimal:
        """Realised plus unrealised, net of fees."""
        return self.realized_pnl + self.unrealized_pnl(marks) - self.fees

    # -- snapshots -----------------------------------------------------------------------

    def snapshot(self) -> PortfolioSnapshot:
        """What the portfolio holds now, to be restored without the reports it was kept from
        (see :meth:`restore`)."""
        return PortfolioSnapshot(
            cash_flow=self.cash - self.initial_cash,
            fees=self.fees,
            positions=[
                _SnapshotPosition(p.symbol, p.quantity, p.average_price, p.realized_pnl)
                for p in self.positions.values()
            ],
            open_orders=[
                _SnapshotOrder(
                    o.order_id, o.symbol, o.side, o.quantity, o.filled_quantity, o.status
                )
                for o in self.open_orders.values()
            ],
            fill_ids=list(self._fill_ids),
        )

    def restore(self, snapshot: PortfolioSnapshot) -> None:
        """Takes the state of ``snapshot`` on top of this portfolio's starting cash (which may
        have changed since: a new capital allocation keeps the cash the fills moved)."""
        self.cash = self.initial_cash + snapshot.cash_flow
        self.fees = snapshot.fees
        self.positions = {
            p.symbol: Position(p.symbol, p.quantity, p.average_price, p.realized_pnl)
            for p in snapshot.positions
        }
        self.open_orders = {
            o.order_id: OpenOrder(o.order_id, o.symbol, o.side, o.quantity, o.filled, o.status)
            for o in snapshot.open_orders
        }
        self._fill_ids = dict.fromkeys(snapshot.fill_ids[-REMEMBERED_FILLS:])


class _SnapshotPosition(msgspec.Struct, array_like=True, frozen=True):
    symbol: str
    quantity: Decimal
    average_price: Decimal
    realized_pnl: Decimal


class _SnapshotOrder(msgspec.Struct, array_like=True, frozen=True):
    order_id: uuid.UUID
    symbol: str
    side: Side
    quantity: Decimal
    filled: Decimal
    status: OrderStatus


class PortfolioSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """A portfolio's state as :meth:`Portfolio.snapshot` takes it (JSON with exact decimals,
    see :func:`encode_snapshot`)."""

    cash_flow: Decimal
    """Cash moved by the fills (the starting cash is not part of it)."""
    fees: Decimal
    positions: list[_SnapshotPosition]
    open_orders: list[_SnapshotOrder]
    fill_ids: list[str]


def encode_snapshot(snapshot: PortfolioSnapshot) -> bytes:
    return msgspec.json.encode(snapshot)


def decode_snapshot(raw: bytes) -> PortfolioSnapshot:
    """Raises ``msgspec.ValidationError`` or ``msgspec.DecodeError`` on a bad document."""
    return msgspec.json.decode(raw, type=PortfolioSnapshot)
