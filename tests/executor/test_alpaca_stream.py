"""The Alpaca adapter's ``trade_updates``: fills and cancels of resting orders pushed to the
executor as they happen. The WebSocket is a local server speaking Alpaca's documented protocol
(auth, listen, binary frames as the paper endpoint sends them); the REST answers are mocked with
respx."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import respx
import websockets
from websockets.asyncio.server import ServerConnection, serve

from coyote_executor.brokers.alpaca import PAPER_URL, AlpacaBroker
from coyote_sdk.protocol import OrderStatus
from tests.executor._harness import Updates
from tests.executor.test_alpaca import ACCOUNT, CID, KEYS, RotatingCredentials, alpaca_order

pytestmark = pytest.mark.unit


class FakeAlpacaStream:
    """``wss://paper-api.alpaca.markets/stream`` on localhost: authorises ``keys``, opens
    ``trade_updates`` on request, then sends what the test puts in ``updates``."""

    def __init__(self, keys: dict[str, str]) -> None:
        self.keys = keys
        self.updates: asyncio.Queue[dict[str, Any] | str] = asyncio.Queue()
        self.connections = 0
        self.refused = 0
        self.url = ""

    async def handle(self, socket: ServerConnection) -> None:
        self.connections += 1
        auth = json.loads(await socket.recv())
        if (auth.get("key"), auth.get("secret")) != (
            self.keys["api_key_id"],
            self.keys["api_secret_key"],
        ):
            self.refused += 1
            await socket.send(_frame("authorization", action="authenticate", status="unauthorized"))
            return
        await socket.send(_frame("authorization", action="authenticate", status="authorized"))
        listen = json.loads(await socket.recv())
        assert listen == {"action": "listen", "data": {"streams": ["trade_updates"]}}
        await socket.send(_frame("listening", streams=["trade_updates"]))
        while True:
            update = asyncio.ensure_future(self.updates.get())
            closed = asyncio.ensure_future(socket.wait_closed())
            await asyncio.wait({update, closed}, return_when=asyncio.FIRST_COMPLETED)
            if not update.done():  # the client went away (or the server is closing)
                update.cancel()
                return
            closed.cancel()
            if update.result() == "hang up":
                return
            await socket.send(json.dumps(update.result()).encode())  # binary, as paper's


def _frame(stream: str, **data: Any) -> bytes:
    return json.dumps({"stream": stream, "data": data}).encode()


def trade_update(event: str, order: dict[str, Any]) -> dict[str, Any]:
    """A ``trade_updates`` message as Alpaca's streaming documentation shows it."""
    return {
        "stream": "trade_updates",
        "data": {
            "event": event,
            "execution_id": "7922ab44-5c3e-4d8a-9b8a-5b1c2d7a9f10",
            "order": order,
            "timestamp": "2021-03-16T18:38:01.942282Z",
            "position_qty": "10",
            "price": "179.08",
            "qty": "10",
        },
    }


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=PAPER_URL, assert_all_called=False) as router:
        yield router


@pytest.fixture
async def venue() -> AsyncIterator[FakeAlpacaStream]:
    fake = FakeAlpacaStream(KEYS)
    async with serve(fake.handle, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        fake.url = f"ws://127.0.0.1:{port}/stream"
        yield fake


def make_broker(venue: FakeAlpacaStream, credentials: Any) -> AlpacaBroker:
    return AlpacaBroker({ACCOUNT: credentials}, stream_url=venue.url, stream_retry_s=(0.01, 0.05))


def filled() -> dict[str, Any]:
    return alpaca_order(
        status="filled",
        filled_qty="10",
        filled_avg_price="179.08",
        filled_at="2021-03-16T18:38:01.942282Z",
    )


async def test_a_fill_in_trade_updates_hands_the_orders_state_to_the_executor(
    api: respx.MockRouter, venue: FakeAlpacaStream
) -> None:
    lookup = api.get("/v2/orders:by_client_order_id", params={"client_order_id": CID}).respond(
        200, json=filled()
    )
    broker = make_broker(venue, RotatingCredentials(KEYS))
    updates = Updates()
    try:
        await broker.start(updates.listener)
        await broker.serve([ACCOUNT])
        venue.updates.put_nowait(trade_update("new", alpaca_order()))  # nothing new to tell
        venue.updates.put_nowait("not json")
        venue.updates.put_nowait(trade_update("fill", alpaca_order(client_order_id="manual")))
        venue.updates.put_nowait(trade_update("fill", filled()))
        await updates.first()
    finally:
        await broker.close()

    assert lookup.call_count == 1
    (state,) = updates.states
    assert (state.client_order_id, state.status) == (CID, OrderStatus.FILLED)


async def test_refused_keys_are_read_again_and_a_hung_up_stream_reopened(
    api: respx.MockRouter, venue: FakeAlpacaStream
) -> None:
    api.get("/v2/orders:by_client_order_id", params={"client_order_id": CID}).respond(
        200, json=alpaca_order(status="canceled", canceled_at="2021-03-16T18:38:01.942282Z")
    )
    credentials = RotatingCredentials({**KEYS, "api_secret_key": "rotated-away"}, KEYS)
    broker = make_broker(venue, credentials)
    updates = Updates()
    venue.updates.put_nowait("hang up")
    try:
        await broker.start(updates.listener)
        await broker.serve([ACCOUNT])
        for _ in range(500):
            if venue.connections >= 3:
                break
            await asyncio.sleep(0.01)
        venue.updates.put_nowait(trade_update("canceled", alpaca_order(status="canceled")))
        await updates.first()
    finally:
        await broker.close()

    assert venue.refused == 1 and credentials.invalidations == 1
    assert venue.connections == 3  # refused, hung up, following
    (state,) = updates.states
    assert state.status is OrderStatus.CANCELED


async def test_streams_follow_the_accounts_served_and_end_with_the_broker(
    venue: FakeAlpacaStream,
) -> None:
    broker = make_broker(venue, RotatingCredentials(KEYS))
    try:
        await broker.serve([ACCOUNT])  # not started: nothing to hand updates to
        await asyncio.sleep(0.05)
        assert venue.connections == 0
        await broker.start(Updates().listener)
        await broker.serve([ACCOUNT])
        for _ in range(500):
            if venue.connections:
                break
            await asyncio.sleep(0.01)
        await broker.serve([])
        await asyncio.sleep(0.1)
    finally:
        await broker.close()

    assert venue.connections == 1


def test_the_stream_url_follows_the_rest_endpoint() -> None:
    credentials = RotatingCredentials(KEYS)
    assert AlpacaBroker({ACCOUNT: credentials})._stream_url == (
        "wss://paper-api.alpaca.markets/stream"
    )
    assert AlpacaBroker({ACCOUNT: credentials}, paper=False)._stream_url == (
        "wss://api.alpaca.markets/stream"
    )
    assert AlpacaBroker({ACCOUNT: credentials}, base_url="http://127.0.0.1:8080")._stream_url == (
        "ws://127.0.0.1:8080/stream"
    )
    assert websockets  # the library the adapter connects with
