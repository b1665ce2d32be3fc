"""The paper venue's matcher on the real Redis: stop orders, what it keeps across a restart, and
a tick whose write fails."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import pytest
import redis.exceptions

from coyote_executor.brokers.base import BrokerUnavailable
from coyote_executor.brokers.paper import PaperBroker
from coyote_sdk.config import Endpoints
from coyote_sdk.protocol import OrderStatus, OrderType, Side
from tests.executor._paper import Venue

pytestmark = pytest.mark.integration


@pytest.fixture
async def venue(endpoints: Endpoints, unique: str) -> AsyncIterator[Venue]:
    async with Venue.opened(endpoints, unique) as opened:
        yield opened


async def _until(condition: Callable[[], object], *, within_s: float = 5.0) -> None:
    for _ in range(int(within_s / 0.02)):
        if condition():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the matcher did not get there in time")


class _Writes:
    """Counts the broker's fenced writes (one script call per account and call or tick). The
    next ``fail`` of them fail as a lost connection to Redis would; the next ``lose_reply``
    are written, and then their reply is lost."""

    def __init__(self, broker: PaperBroker) -> None:
        self.calls = 0
        self.fail = 0
        self.lose_reply = 0
        self._write = broker._fenced_write
        broker._fenced_write = self

    def __call__(self, keys: list[str], args: list[object], client: object = None) -> Any:
        self.calls += 1
        if self.fail:
            self.fail -= 1
            raise _LOST
        if self.lose_reply:
            self.lose_reply -= 1
            return self._written_then_lost(keys, args)
        return self._write(keys, args, client=client)

    async def _written_then_lost(self, keys: list[str], args: list[object]) -> None:
        await self._write(keys, args)  # at once, on the broker's own connection
        raise _LOST


_LOST = redis.exceptions.ConnectionError("Connection reset by peer (injected)")


async def test_a_stop_order_rests_until_the_market_reaches_it_then_fills_with_slippage(
    venue: Venue,
) -> None:
    broker, updates = await venue.working(slippage_bps=Decimal(10))
    venue.trade("1.06000")
    stop = venue.order("s1", Side.SELL, OrderType.STOP, stop_price=Decimal("1.05000"))
    (placed,) = await broker.submit_many([stop])
    await asyncio.sleep(0.1)  # several ticks above the stop

    venue.trade("1.04000")
    await _until(lambda: updates.calls)

    assert placed.status is OrderStatus.NEW
    (filled,) = updates.states
    assert filled.status is OrderStatus.FILLED
    assert filled.average_price == Decimal("1.04000") * Decimal("0.999")


async def test_a_stop_limit_triggered_away_from_its_limit_keeps_its_trigger_across_a_restart(
    venue: Venue,
) -> None:
    former, before = await venue.working()
    venue.trade("1.08000")
    order = venue.order(
        "s1",
        Side.BUY,
        OrderType.STOP_LIMIT,
        stop_price=Decimal("1.10000"),
        limit_price=Decimal("1.05000"),
    )
    await former.submit_many([order])
    venue.trade("1.11000")  # triggers it: a buy limit at 1.05 now, not marketable at 1.11
    for _ in range(250):
        stored = await venue.stored("s1")
        if stored is not None and b'"triggered":true' in stored:
            break
        await asyncio.sleep(0.02)
    else:
        raise AssertionError("the matcher never stored the trigger")
    await former.close()  # the executor restarts: its successor reads the book back

    _, after = await venue.working()  # the successor
    venue.trade("1.04000")  # under the limit, and far under the stop
    await _until(lambda: after.calls)

    assert before.calls == []  # a trigger alone changes nothing the executor is told of
    (filled,) = after.states
    assert (filled.status, filled.average_price) == (OrderStatus.FILLED, Decimal("1.05000"))


async def test_a_fill_whose_write_failed_is_written_and_reported_at_a_later_tick(
    venue: Venue,
) -> None:
    broker, updates = await venue.working()
    await broker.submit_many([venue.resting("c1")])
    writes = _Writes(broker)
    writes.fail = 1

    venue.trade("0.99000")  # through the limit
    await _until(lambda: updates.calls)
    await asyncio.sleep(0.1)  # more ticks: nothing more to write, nothing reported twice

    assert writes.calls == 2  # the failed write, then the tick after it
    (filled,) = updates.states
    assert filled.status is OrderStatus.FILLED
    assert len(filled.fills) == 1
    done = await broker.lookup(venue.account, "c1")
    assert done is not None and done.status is OrderStatus.FILLED
    assert await broker.open_orders(venue.account) == []


async def test_a_submission_whose_write_failed_is_not_filled_from_memory(venue: Venue) -> None:
    broker, updates = await venue.working()
    writes = _Writes(broker)
    writes.fail = 1

    with pytest.raises(BrokerUnavailable, match="paper venue unreachable"):
        await broker.submit_many([venue.resting("c1")])
    venue.trade("0.99000")  # through its limit, had it been placed
    await asyncio.sleep(0.2)

    assert updates.calls == []
    assert await broker.lookup(venue.account, "c1") is None
    assert await venue.submissions() == {}


async def test_a_submission_placed_whose_answer_was_lost_is_still_worked(venue: Venue) -> None:
    broker, updates = await venue.working()
    writes = _Writes(broker)
    writes.lose_reply = 1

    with pytest.raises(BrokerUnavailable, match="paper venue unreachable"):
        await broker.submit_many([venue.resting("c1")])
    venue.trade("0.99000")
    await _until(lambda: updates.calls)

    (filled,) = updates.states
    assert (filled.client_order_id, filled.status) == ("c1", OrderStatus.FILLED)
    assert await venue.submissions() == {b"c1": b"1"}


async def test_the_orders_of_an_account_filled_in_one_tick_are_written_together(
    venue: Venue,
) -> None:
    broker, updates = await venue.working()
    await broker.submit_many([venue.resting(f"c{i}") for i in range(5)])
    writes = _Writes(broker)

    venue.trade("0.99000")
    await _until(lambda: updates.calls)

    assert writes.calls == 1
    assert [len(call) for call in updates.calls] == [5]
    assert {s.client_order_id for s in updates.states} == {f"c{i}" for i in range(5)}
