"""The paper venue's fence on the real Redis: once another broker has taken an account on, the
one before it changes nothing there — not a submission delivered late, not a cancel, not a
fill by its matcher."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from coyote_executor.brokers.base import FencedAtVenue
from coyote_sdk.config import Endpoints
from coyote_sdk.protocol import OrderStatus
from tests.executor._harness import Updates
from tests.executor._paper import Venue

pytestmark = pytest.mark.integration


@pytest.fixture
async def venue(endpoints: Endpoints, unique: str) -> AsyncIterator[Venue]:
    async with Venue.opened(endpoints, unique) as opened:
        yield opened


async def test_the_broker_before_a_take_over_changes_nothing_at_the_venue(venue: Venue) -> None:
    former, successor = venue.broker(), venue.broker()
    await former.serve([venue.account])
    (placed,) = await former.submit_many([venue.resting("c1")])
    await successor.serve([venue.account])

    with pytest.raises(FencedAtVenue, match="another executor has taken account"):
        await former.submit_many([venue.resting("c2")])
    with pytest.raises(FencedAtVenue, match="not served by this executor"):
        await former.cancel(venue.account, "c1")  # let go of, once refused

    assert placed.status is OrderStatus.NEW
    assert await venue.stored("c2") is None
    assert await venue.submissions() == {b"c1": b"1"}
    # The successor works the account: the order placed before the take-over included.
    (second,) = await successor.submit_many([venue.resting("c2")])
    cancelled = await successor.cancel(venue.account, "c1")
    assert (second.status, cancelled.status) == (OrderStatus.NEW, OrderStatus.CANCELED)
    assert [s.client_order_id for s in await successor.open_orders(venue.account)] == ["c2"]


async def test_a_submission_frozen_while_a_successor_sent_the_same_order_is_refused(
    venue: Venue,
) -> None:
    # The zombie of the fault scenario: its send had read the venue's book (no such order) and
    # froze before its write; meanwhile its successor took the account on and sent the order.
    zombie = venue.broker(latency_ms=500)  # the freeze: after the read, before the write
    successor = venue.broker()
    await zombie.serve([venue.account])
    late = asyncio.create_task(zombie.submit_many([venue.resting("c1")]))
    await asyncio.sleep(0.2)
    await successor.serve([venue.account])
    (placed,) = await successor.submit_many([venue.resting("c1")])

    with pytest.raises(FencedAtVenue):
        await late

    assert placed.status is OrderStatus.NEW
    assert await venue.submissions() == {b"c1": b"1"}
    assert [s.client_order_id for s in await successor.open_orders(venue.account)] == ["c1"]


async def test_a_fenced_matcher_leaves_the_successors_orders_alone(venue: Venue) -> None:
    former, former_saw = await venue.working()
    successor, successor_saw = venue.broker(), Updates()
    await former.submit_many([venue.resting("c1")])
    await successor.serve([venue.account])  # not matching yet: no start

    venue.trade("0.99000")  # through the limit
    await asyncio.sleep(0.3)  # many of the former's matching rounds
    untouched = await successor.lookup(venue.account, "c1")
    await successor.start(successor_saw.listener)
    for _ in range(100):
        if successor_saw.calls:
            break
        await asyncio.sleep(0.05)

    assert former_saw.calls == []
    assert [(s.client_order_id, s.status) for s in successor_saw.states] == [
        ("c1", OrderStatus.FILLED)
    ]
    assert untouched is not None and untouched.status is OrderStatus.NEW
    done = await successor.lookup(venue.account, "c1")
    assert done is not None and done.status is OrderStatus.FILLED
    assert len(done.fills) == 1
