"""The OANDA adapter's transaction stream: fills and cancels of resting orders pushed to the
executor as they happen (OANDA's stream endpoint and order answers mocked with respx, shaped as
its documentation shows; the executor's Kafka, Redis and database are the real stack's)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from coyote_executor.brokers.oanda import PRACTICE_URL, OandaAccount, OandaBroker
from coyote_sdk.config import Endpoints
from coyote_sdk.protocol import ExecType, OrderStatus
from tests.executor._harness import ExecutorHarness, Updates
from tests.executor.test_oanda import (
    ACCOUNT,
    BASE,
    CID,
    NO_SUCH_ORDER,
    OANDA_ACCOUNT,
    TIME,
    TOKEN,
    RotatingCredentials,
    limit_order_created,
    order_fill,
    pending_limit,
    transaction,
)

STREAM = f"https://stream-fxpractice.oanda.com{BASE}/transactions/stream"  # OANDA's stream host
HEARTBEAT = {"type": "HEARTBEAT", "lastTransactionID": "6373", "time": TIME}


class Body(httpx.AsyncByteStream):
    """A transaction stream's body: its lines, then held open (as OANDA's is) for the lines the
    test puts in ``more`` until the reader lets go — or ended at once with ``then_end``."""

    def __init__(self, *lines: dict[str, Any] | str, then_end: bool = False) -> None:
        self.lines = lines
        self.then_end = then_end
        self.more: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.closed = asyncio.Event()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for line in self.lines:
            yield (line if isinstance(line, str) else json.dumps(line)).encode() + b"\n"
        while not self.then_end:
            yield json.dumps(await self.more.get()).encode() + b"\n"

    async def aclose(self) -> None:
        self.closed.set()


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as router:
        yield router


@pytest.fixture
async def broker() -> AsyncIterator[OandaBroker]:
    broker = make_broker()
    yield broker
    await broker.close()


def make_broker(credentials: Any = None) -> OandaBroker:
    account = OandaAccount(OANDA_ACCOUNT, credentials or RotatingCredentials({"token": TOKEN}))
    return OandaBroker({ACCOUNT: account}, stream_retry_s=(0.01, 0.05))


def filled_limit(api: respx.MockRouter) -> respx.Route:
    """The order under CID: a limit order filled by transaction 6374."""
    api.get(f"{PRACTICE_URL}{BASE}/transactions/6374").respond(
        200,
        json={"transaction": order_fill("6372", "6374", units="-100"), "lastTransactionID": "6374"},
    )
    order = pending_limit(state="FILLED", fillingTransactionID="6374", filledTime=TIME)
    return api.get(f"{PRACTICE_URL}{BASE}/orders/@{CID}").respond(
        200, json={"order": order, "lastTransactionID": "6374"}
    )


@pytest.mark.unit
async def test_a_fill_in_the_stream_hands_the_orders_state_to_the_executor(
    api: respx.MockRouter, broker: OandaBroker
) -> None:
    lookup = filled_limit(api)
    stream = api.get(STREAM).respond(
        200,
        stream=Body(
            HEARTBEAT,
            "not json at all",
            transaction("ORDER_FILL", "6370", orderID="6360"),  # no client id: not ours
            transaction("DAILY_FINANCING", "6371", financing="-0.0112"),
            order_fill("6372", "6374", units="-100"),
        ),
    )
    updates = Updates()

    await broker.start(updates.listener)
    await broker.serve([ACCOUNT])
    await updates.first()

    assert stream.calls.last.request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert lookup.call_count == 1  # the heartbeat, the bad line and others' fills ask nothing
    (state,) = updates.states
    assert updates.accounts == [ACCOUNT]
    assert (state.client_order_id, state.status) == (CID, OrderStatus.FILLED)
    assert [f.fill_id for f in state.fills] == ["6374"]


@pytest.mark.unit
async def test_a_lost_stream_is_reopened_and_a_refused_token_read_again(
    api: respx.MockRouter,
) -> None:
    credentials = RotatingCredentials({"token": "old"}, {"token": TOKEN})
    broker = make_broker(credentials)
    api.get(f"{PRACTICE_URL}{BASE}/transactions/6399").respond(
        200,
        json={
            "transaction": transaction(
                "ORDER_CANCEL", "6399", orderID="6372", clientOrderID=CID, reason="CLIENT_REQUEST"
            ),
            "lastTransactionID": "6399",
        },
    )
    cancelled = pending_limit(state="CANCELLED", cancellingTransactionID="6399", cancelledTime=TIME)
    api.get(f"{PRACTICE_URL}{BASE}/orders/@{CID}").respond(
        200, json={"order": cancelled, "lastTransactionID": "6399"}
    )
    cancel = transaction(
        "ORDER_CANCEL", "6399", orderID="6372", clientOrderID=CID, reason="CLIENT_REQUEST"
    )
    stream = api.get(STREAM).mock(
        side_effect=[
            httpx.Response(503, json={"errorMessage": "Service unavailable"}),
            httpx.Response(200, stream=Body(HEARTBEAT, then_end=True)),  # the server hung up
            httpx.Response(401, json={"errorMessage": "Insufficient authorization"}),
            httpx.Response(200, stream=Body(cancel)),
        ]
    )
    updates = Updates()
    try:
        await broker.start(updates.listener)
        await broker.serve([ACCOUNT])
        await updates.first()
    finally:
        await broker.close()

    assert stream.call_count == 4
    assert stream.calls.last.request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert credentials.invalidations == 1
    (state,) = updates.states
    assert state.status is OrderStatus.CANCELED


@pytest.mark.unit
async def test_the_stream_follows_only_accounts_served_and_ends_with_the_broker(
    api: respx.MockRouter, broker: OandaBroker
) -> None:
    body = Body(HEARTBEAT)
    stream = api.get(STREAM).respond(200, stream=body)

    await broker.serve([ACCOUNT])  # not started: no stream to hand updates to
    await asyncio.sleep(0.05)
    assert stream.call_count == 0

    await broker.start(Updates().listener)
    await broker.serve([ACCOUNT, "an-account-of-another-broker"])
    for _ in range(100):
        if stream.call_count:
            break
        await asyncio.sleep(0.01)
    await broker.serve([])  # the account went to another executor
    await asyncio.wait_for(body.closed.wait(), 5)
    assert stream.call_count == 1


@pytest.mark.integration
async def test_a_resting_orders_fill_at_oanda_is_reported_without_waiting_for_reconciliation(
    api: respx.MockRouter, endpoints: Endpoints, unique: str, tmp_path: Path
) -> None:
    # Reconciliation once, at the take-over, and not again during the test.
    ex = ExecutorHarness(endpoints, unique, tmp_path, options={"reconcile_interval_s": 3600})
    await ex.setup()
    ex.trade("EURUSD", "1.07500")  # the risk engine's last price
    intent = ex.limit("1.07000", quantity="1000")
    cid = str(intent.intent_id)
    resting = pending_limit(units="1000", price="1.07000", clientExtensions={"id": cid})
    fill = {
        **order_fill("6372", "6374", units="1000"),
        "clientOrderID": cid,
        "price": "1.07000",
        "fullVWAP": "1.07000",
    }
    filled = False
    api.get(f"{PRACTICE_URL}{BASE}/pendingOrders").respond(200, json={"orders": []})
    api.get(f"{PRACTICE_URL}{BASE}/openPositions").respond(200, json={"positions": []})
    api.get(f"{PRACTICE_URL}{BASE}/orders/@{cid}").mock(
        side_effect=lambda _: (
            httpx.Response(
                200,
                json={
                    "order": {**resting, "state": "FILLED", "fillingTransactionID": "6374"},
                    "lastTransactionID": "6374",
                },
            )
            if filled
            else httpx.Response(404, json=NO_SUCH_ORDER)
        )
    )
    api.get(f"{PRACTICE_URL}{BASE}/transactions/6374").respond(
        200, json={"transaction": fill, "lastTransactionID": "6374"}
    )
    api.post(f"{PRACTICE_URL}{BASE}/orders").respond(
        201,
        json={
            "orderCreateTransaction": limit_order_created(
                client_order_id=cid, units="1000", price="1.07000", timeInForce="GTC"
            ),
            "lastTransactionID": "6372",
        },
    )
    body = Body(HEARTBEAT)
    api.get(STREAM).respond(200, stream=body)
    account = OandaAccount(OANDA_ACCOUNT, RotatingCredentials({"token": TOKEN}))
    broker = OandaBroker({ex.account: account}, stream_retry_s=(0.01, 0.05))
    try:
        await ex.start_executor(broker)
        await ex.send(intent)
        await ex.reports_until(lambda rs: any(r.exec_type is ExecType.ACCEPTED for r in rs))

        filled = True  # OANDA fills the order and writes the fill into the stream
        body.more.put_nowait(fill)
        reports = (await ex.terminal_reports([intent.intent_id], within=10))[intent.intent_id]
    finally:
        await ex.close()
        await broker.close()

    assert [r.exec_type for r in reports] == [ExecType.ACCEPTED, ExecType.TRADE]
    assert reports[1].order_status is OrderStatus.FILLED
    assert reports[1].last_price == Decimal("1.07000")
