"""Portfolio arithmetic from execution reports: average cost, flips, fees, replays."""

from __future__ import annotations

from decimal import Decimal
from random import Random

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from coyote_sdk import portfolio as portfolio_module
from coyote_sdk.portfolio import (
    FillTotals,
    Portfolio,
    Position,
    decode_snapshot,
    encode_snapshot,
)
from coyote_sdk.protocol import (
    ExecType,
    ExecutionReport,
    NewOrder,
    OrderStatus,
    Side,
    new_intent_id,
    report_for,
)

pytestmark = pytest.mark.unit


def _order(side: Side, qty: str) -> NewOrder:
    return NewOrder(
        intent_id=new_intent_id(),
        ts_ms=1,
        account_id="a",
        bot_id="b",
        symbol="EURUSD",
        side=side,
        quantity=Decimal(qty),
    )


def _fill(
    side: Side, qty: str, price: str, fee: str = "0", fill_id: str | None = None
) -> ExecutionReport:
    order = _order(side, qty)
    return report_for(
        order,
        ExecType.TRADE,
        OrderStatus.FILLED,
        filled_quantity=order.quantity,
        last_quantity=order.quantity,
        last_price=Decimal(price),
        fee=Decimal(fee),
        fill_id=fill_id or str(order.intent_id),
    )


def test_average_cost_realised_pnl_and_a_flip() -> None:
    portfolio = Portfolio(Decimal(1000))

    portfolio.apply(_fill(Side.BUY, "2", "10", "0.1"))
    portfolio.apply(_fill(Side.BUY, "2", "12", "0.1"))  # average 11
    sold = portfolio.apply(_fill(Side.SELL, "3", "13", "0.1"))  # realises 3 × 2 = 6
    flipped = portfolio.apply(_fill(Side.SELL, "3", "14", "0.1"))  # closes 1 (+3), short 2 @ 14
    position = portfolio.position("EURUSD")

    assert sold is not None and sold.realized_pnl == Decimal(6)
    assert flipped is not None and flipped.realized_pnl == Decimal(3)
    assert (position.quantity, position.average_price) == (Decimal(-2), Decimal(14))
    assert position.realized_pnl == Decimal(9)
    assert portfolio.fees == Decimal("0.4")
    assert portfolio.cash == Decimal(1000) - 20 - 24 + 39 + 42 - Decimal("0.4")
    # Equity and PnL agree whatever the mark.
    marks = {"EURUSD": Decimal("13.5")}
    assert portfolio.equity(marks) - portfolio.initial_cash == portfolio.pnl(marks)
    assert portfolio.unrealized_pnl(marks) == Decimal(1)


_FILLS = st.lists(
    st.tuples(
        st.integers(-50, 50).filter(bool).map(Decimal),  # signed quantity
        st.integers(1, 10_000).map(lambda n: Decimal(n) / 100),  # price
    ),
    max_size=30,
)


@given(_FILLS, st.randoms())
def test_a_position_follows_from_its_fills_sums_and_realised_pnl(
    fills: list[tuple[Decimal, Decimal]], random: Random
) -> None:
    # What rebuilds a book (the executor's rebuild, positions as of a past time) without
    # knowing the order its fills were booked in: only their realised PnL records it.
    booked = Position("EURUSD")
    stored = []
    for signed, price in fills:
        side = "buy" if signed > 0 else "sell"
        stored.append((side, abs(signed), price, booked.book(signed, price)))
    random.shuffle(stored)  # as a query returns them
    totals = FillTotals()
    for side, quantity, price, realized in stored:
        totals.add(side, quantity, price, realized)

    summed = totals.position("EURUSD")

    assert summed.quantity == booked.quantity
    # Realised PnL is rounded at each fill (28 digits), so its sum in another order can differ
    # in the last digit; so is the running average.
    assert abs(summed.realized_pnl - booked.realized_pnl) < Decimal("1e-18")
    assert abs(summed.average_price - booked.average_price) < Decimal("1e-18")


def test_a_replayed_fill_is_applied_once() -> None:
    portfolio = Portfolio(Decimal(100))
    report = _fill(Side.BUY, "1", "10", fill_id="venue-7")

    portfolio.apply(report)
    again = portfolio.apply(report)

    assert again is None
    assert portfolio.position("EURUSD").quantity == 1
    assert portfolio.cash == Decimal(90)


def test_open_orders_follow_the_reports() -> None:
    portfolio = Portfolio()
    order = _order(Side.BUY, "5")

    portfolio.apply(report_for(order, ExecType.ACCEPTED, OrderStatus.NEW))
    accepted = list(portfolio.open_orders)
    portfolio.apply(report_for(order, ExecType.CANCELED, OrderStatus.CANCELED))

    assert accepted == [order.intent_id]
    assert portfolio.open_orders == {}


def test_a_saved_portfolio_restores_exactly_and_still_drops_a_replayed_fill() -> None:
    kept = Portfolio(Decimal(1000))
    replayed_later = _fill(Side.BUY, "2", "10.123456789", "0.01")
    kept.apply(replayed_later)
    kept.apply(_fill(Side.SELL, "3", "10.5", "0.02"))  # flips to short 1
    resting = _order(Side.BUY, "5")
    kept.track(resting)
    kept.apply(report_for(resting, ExecType.ACCEPTED, OrderStatus.NEW))

    raw = encode_snapshot(kept.snapshot())
    # A new capital allocation since: the cash the fills moved stays, on top of it.
    restored = Portfolio(Decimal(5000))
    restored.restore(decode_snapshot(raw))

    assert restored.positions == kept.positions
    assert restored.fees == kept.fees == Decimal("0.03")
    assert restored.cash - Decimal(5000) == kept.cash - Decimal(1000)
    assert restored.realized_pnl == kept.realized_pnl
    (order,) = restored.open_orders.values()
    assert (order.order_id, order.quantity, order.status) == (
        resting.intent_id,
        Decimal(5),
        OrderStatus.NEW,
    )
    assert restored.apply(replayed_later) is None  # the fill was applied before the save
    assert restored.positions == kept.positions


def test_a_portfolio_remembers_only_the_most_recent_fill_ids(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(portfolio_module, "REMEMBERED_FILLS", 3)
    portfolio = Portfolio()
    fills = [_fill(Side.BUY, "1", "10") for _ in range(4)]
    for fill in fills:
        portfolio.apply(fill)

    assert portfolio.snapshot().fill_ids == [f.fill_id for f in fills[1:]]


def test_a_bad_saved_portfolio_is_refused() -> None:
    with pytest.raises(msgspec.ValidationError):
        decode_snapshot(b'{"cash_flow": "x", "fees": "0", "positions": [], "open_orders": []}')
