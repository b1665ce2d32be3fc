"""The paper venue's fence on the real Redis: once another broker has taken an account on, the
one before it changes nothing there — not a submission delivered late, not a cancel, not a
fill by its matcher."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from decimal import Decimal

import pytest
import redis
import redis.asyncio as aioredis

from coyote_executor.brokers.base import (
    BrokerOrder,
    BrokerOrderState,
    FencedAtVenue,
    UpdateListener,
)
from coyote_executor.brokers.paper import PaperBroker, PaperSettings
from coyote_sdk import protocol
from coyote_sdk.config import Endpoints
from coyote_sdk.marketdata import MarketDataWriter
from coyote_sdk.protocol import OrderStatus, OrderType, Side

pytestmark = pytest.mark.integration


class Venue:
    """One paper account, and the brokers of the executors that serve it in turn."""

    def __init__(self, client: aioredis.Redis, unique: str) -> None:
        self.client = client
        self.account = f"acct-{unique}"
        self.venue = f"v{unique}"
        self.brokers: list[PaperBroker] = []

    def broker(self, **settings: object) -> PaperBroker:
        paper = PaperSettings(venue=self.venue, **settings)  # type: ignore[arg-type]
        broker = PaperBroker(self.client, {self.account: paper}, match_interval_ms=20)
        self.brokers.append(broker)
        return broker

    def resting(self, client_order_id: str) -> BrokerOrder:
        """A buy limit far below any price: it rests."""
        return BrokerOrder(
            client_order_id,
            self.account,
            "EURUSD",
            Side.BUY,
            Decimal(1000),
            order_type=OrderType.LIMIT,
            limit_price=Decimal("1.00000"),
        )

    async def submissions(self) -> dict[bytes, bytes]:
        return await self.client.hgetall(f"coyote:paper:{self.account}:submissions")

    async def stored(self, client_order_id: str) -> bytes | None:
        return await self.client.hget(f"coyote:paper:{self.account}:orders", client_order_id)


@pytest.fixture
async def venue(endpoints: Endpoints, unique: str) -> AsyncIterator[Venue]:
    client = aioredis.Redis.from_url(endpoints.redis_url)
    v = Venue(client, unique)
    yield v
    for broker in v.brokers:
        await broker.close()
    for pattern in (f"coyote:paper:{v.account}:*", f"coyote:md:{v.venue}:*"):
        keys = [k async for k in client.scan_iter(match=pattern, count=1000)]
        if keys:
            await client.delete(*keys)
    await client.aclose()


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


async def test_a_fenced_matcher_leaves_the_successors_orders_alone(
    venue: Venue, endpoints: Endpoints
) -> None:
    filled: dict[str, list[str]] = {"former": [], "successor": []}

    def noting(who: str) -> UpdateListener:
        def note(_account: str, states: Sequence[BrokerOrderState]) -> None:
            filled[who] += [s.client_order_id for s in states if s.filled_quantity]

        return note

    former, successor = venue.broker(), venue.broker()
    await former.start(noting("former"))
    await former.serve([venue.account])
    await former.submit_many([venue.resting("c1")])
    await successor.serve([venue.account])  # not matching yet: no start

    with redis.Redis.from_url(endpoints.redis_url) as sync_client:
        MarketDataWriter(sync_client, venue=venue.venue, publish=False).add_trades(
            [
                protocol.Trade(
                    symbol="EURUSD",
                    venue=venue.venue,
                    ts_ms=protocol.now_ms(),
                    price=Decimal("0.99000"),  # through the limit
                    size=Decimal(1_000_000),
                )
            ]
        )
    await asyncio.sleep(0.3)  # many of the former's matching rounds
    untouched = await successor.lookup(venue.account, "c1")
    await successor.start(noting("successor"))
    for _ in range(100):
        if filled["successor"]:
            break
        await asyncio.sleep(0.05)

    assert filled == {"former": [], "successor": ["c1"]}
    assert untouched is not None and untouched.status is OrderStatus.NEW
    done = await successor.lookup(venue.account, "c1")
    assert done is not None and done.status is OrderStatus.FILLED
    assert len(done.fills) == 1
