"""One paper account on the real Redis, and the paper brokers that serve it in turn: the venue
of the paper broker's own tests."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from decimal import Decimal

import redis
import redis.asyncio as aioredis

from coyote_executor.brokers.base import BrokerOrder
from coyote_executor.brokers.paper import PaperBroker, PaperSettings
from coyote_sdk import protocol
from coyote_sdk.config import Endpoints
from coyote_sdk.marketdata import MarketDataWriter
from coyote_sdk.protocol import OrderType, Side, TimeInForce
from tests.executor._harness import Updates

SYMBOL = "EURUSD"


class Venue:
    """One paper account, and the brokers of the executors that serve it in turn."""

    def __init__(self, client: aioredis.Redis, endpoints: Endpoints, unique: str) -> None:
        self.client = client
        self.endpoints = endpoints
        self.account = f"acct-{unique}"
        self.venue = f"v{unique}"
        self.brokers: list[PaperBroker] = []

    @classmethod
    @contextlib.asynccontextmanager
    async def opened(cls, endpoints: Endpoints, unique: str) -> AsyncIterator[Venue]:
        """A venue of its own; its brokers closed and its keys removed afterwards."""
        client = aioredis.Redis.from_url(endpoints.redis_url)
        venue = cls(client, endpoints, unique)
        try:
            yield venue
        finally:
            for broker in venue.brokers:
                await broker.close()
            for pattern in (f"coyote:paper:{venue.account}:*", f"coyote:md:{venue.venue}:*"):
                keys = [k async for k in client.scan_iter(match=pattern, count=1000)]
                if keys:
                    await client.delete(*keys)
            await client.aclose()

    def broker(self, **settings: object) -> PaperBroker:
        paper = PaperSettings(venue=self.venue, **settings)
        broker = PaperBroker(self.client, {self.account: paper}, match_interval_ms=20)
        self.brokers.append(broker)
        return broker

    async def working(self, **settings: object) -> tuple[PaperBroker, Updates]:
        """A broker serving the account and matching its orders, and what it reports."""
        broker, updates = self.broker(**settings), Updates()
        await broker.start(updates.listener)
        await broker.serve([self.account])
        return broker, updates

    def resting(self, client_order_id: str) -> BrokerOrder:
        """A buy limit far below any price: it rests."""
        return self.order(
            client_order_id, Side.BUY, OrderType.LIMIT, limit_price=Decimal("1.00000")
        )

    def order(
        self,
        client_order_id: str,
        side: Side,
        order_type: OrderType,
        quantity: Decimal = Decimal(1000),
        *,
        limit_price: Decimal | None = None,
        stop_price: Decimal | None = None,
        time_in_force: TimeInForce = TimeInForce.GTC,
    ) -> BrokerOrder:
        return BrokerOrder(
            client_order_id,
            self.account,
            SYMBOL,
            side,
            quantity,
            order_type=order_type,
            limit_price=limit_price,
            stop_price=stop_price,
            time_in_force=time_in_force,
        )

    def trade(self, price: str) -> None:
        """A trade of the symbol at ``price`` now, as the market data feed writes it."""
        with redis.Redis.from_url(self.endpoints.redis_url) as sync_client:
            MarketDataWriter(sync_client, venue=self.venue, publish=False).add_trades(
                [
                    protocol.Trade(
                        symbol=SYMBOL,
                        venue=self.venue,
                        ts_ms=protocol.now_ms(),
                        price=Decimal(price),
                        size=Decimal(1_000_000),
                    )
                ]
            )

    async def submissions(self) -> dict[bytes | str, bytes | str]:
        return await self.client.hgetall(f"coyote:paper:{self.account}:submissions")

    async def stored(self, client_order_id: str) -> bytes | None:
        """The order's record in the venue's book (JSON)."""
        blob = await self.client.hget(f"coyote:paper:{self.account}:orders", client_order_id)
        assert blob is None or isinstance(blob, bytes)
        return blob
