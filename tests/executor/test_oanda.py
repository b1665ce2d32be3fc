"""The OANDA v20 adapter against OANDA's documented REST answers (mocked with respx)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator, Mapping
from decimal import Decimal
from typing import Any

import httpx
import pytest
import respx

from coyote_executor.brokers._http import RetryPolicy
from coyote_executor.brokers.base import BrokerAuthError, BrokerOrder, UnknownOrder
from coyote_executor.brokers.oanda import PRACTICE_URL, OandaAccount, OandaBroker, OandaSymbols
from coyote_executor.credentials import Credentials, StaticCredentials
from coyote_sdk.protocol import OrderStatus, OrderType, Side, TimeInForce

pytestmark = pytest.mark.unit

ACCOUNT = "oanda-practice"
OANDA_ACCOUNT = "101-004-1435156-001"
BASE = f"/v3/accounts/{OANDA_ACCOUNT}"
CID = "0190c7a2-5a9e-7c1e-8f3b-6d2f4a1b9e01"
TOKEN = "f3a1b2c3d4e5f60718293a4b5c6d7e8f-0a1b2c3d4e5f60718293a4b5c6d7e8f"
TIME = "2016-06-22T18:41:29.264030555Z"
TIME_MS = 1466620889264


def transaction(kind: str, tx_id: str, **fields: Any) -> dict[str, Any]:
    """A transaction with the common fields OANDA's transaction definitions list."""
    return {
        "id": tx_id,
        "time": TIME,
        "userID": 1435156,
        "accountID": OANDA_ACCOUNT,
        "batchID": fields.pop("batchID", tx_id),
        "requestID": "60173106127541760",
        "type": kind,
        **fields,
    }


def market_order_created(order_id: str = "6368", units: str = "100") -> dict[str, Any]:
    return transaction(
        "MARKET_ORDER",
        order_id,
        instrument="EUR_USD",
        units=units,
        timeInForce="FOK",
        positionFill="DEFAULT",
        reason="CLIENT_ORDER",
        clientExtensions={"id": CID},
    )


def limit_order_created(
    order_id: str = "6372", *, client_order_id: str = CID, **fields: Any
) -> dict[str, Any]:
    """The LIMIT_ORDER transaction of a limit order's creation (``units``, ``price``,
    ``timeInForce`` in ``fields``)."""
    return transaction(
        "LIMIT_ORDER",
        order_id,
        instrument="EUR_USD",
        positionFill="DEFAULT",
        reason="CLIENT_ORDER",
        clientExtensions={"id": client_order_id},
        **fields,
    )


def order_fill(order_id: str = "6368", fill_id: str = "6369", units: str = "100") -> dict[str, Any]:
    return transaction(
        "ORDER_FILL",
        fill_id,
        batchID=order_id,
        orderID=order_id,
        clientOrderID=CID,
        instrument="EUR_USD",
        units=units,
        price="1.13032",
        fullVWAP="1.13032",
        fullPrice={
            "type": "PRICE",
            "bids": [{"price": "1.13017", "liquidity": "10000000"}],
            "asks": [{"price": "1.13032", "liquidity": "10000000"}],
            "closeoutBid": "1.13017",
            "closeoutAsk": "1.13032",
        },
        reason="MARKET_ORDER",
        pl="0.0000",
        financing="-0.0150",
        commission="0.2500",
        guaranteedExecutionFee="0.0000",
        accountBalance="43650.69807",
        tradeOpened={
            "tradeID": fill_id,
            "units": units,
            "price": "1.13032",
            "guaranteedExecutionFee": "0.0000",
            "halfSpreadCost": "0.0075",
            "initialMarginRequired": "2.2606",
        },
        halfSpreadCost="0.0075",
    )


def pending_limit(order_id: str = "6372", **fields: Any) -> dict[str, Any]:
    order = {
        "id": order_id,
        "createTime": TIME,
        "type": "LIMIT",
        "instrument": "EUR_USD",
        "units": "-100",
        "timeInForce": "GTC",
        "price": "1.20000",
        "triggerCondition": "DEFAULT",
        "partialFill": "DEFAULT_FILL",
        "positionFill": "DEFAULT",
        "state": "PENDING",
        "clientExtensions": {"id": CID},
    }
    order.update(fields)
    return order


def filled_market(order_id: str = "6368", fill_id: str = "6369") -> dict[str, Any]:
    return {
        **cancelled_market(order_id),
        "state": "FILLED",
        "fillingTransactionID": fill_id,
        "filledTime": TIME,
        "tradeOpenedID": fill_id,
    }


def cancelled_market(order_id: str = "6368") -> dict[str, Any]:
    """A market order OANDA cancelled; the cancelling transaction says why."""
    return {
        "id": order_id,
        "createTime": TIME,
        "type": "MARKET",
        "instrument": "EUR_USD",
        "units": "100",
        "timeInForce": "FOK",
        "positionFill": "DEFAULT",
        "state": "CANCELLED",
        "clientExtensions": {"id": CID},
    }


NO_SUCH_ORDER = {
    "lastTransactionID": "6375",
    "errorMessage": "The order ID specified does not exist",
    "errorCode": "NO_SUCH_ORDER",
}


def buy(**fields: Any) -> BrokerOrder:
    values: dict[str, Any] = {
        "client_order_id": CID,
        "account_id": ACCOUNT,
        "symbol": "EURUSD",
        "side": Side.BUY,
        "quantity": Decimal("100"),
    }
    values.update(fields)
    return BrokerOrder(**values)


class RotatingCredentials:
    def __init__(self, *secrets: Mapping[str, str]) -> None:
        self.secrets = list(secrets)
        self.invalidations = 0

    async def get(self) -> Credentials:
        return Credentials(self.secrets[min(self.invalidations, len(self.secrets) - 1)])

    def invalidate(self) -> None:
        self.invalidations += 1


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=PRACTICE_URL, assert_all_called=False) as router:
        yield router


def make_broker(sleeps: list[float], provider: Any = None) -> OandaBroker:
    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    account = OandaAccount(
        OANDA_ACCOUNT, provider or StaticCredentials({"token": TOKEN}), home_currency="USD"
    )
    return OandaBroker(
        {ACCOUNT: account}, sleep=sleep, retry=RetryPolicy(attempts=3, base_delay_s=0.1)
    )


@pytest.fixture
async def broker(sleeps: list[float]) -> AsyncIterator[OandaBroker]:
    broker = make_broker(sleeps)
    yield broker
    await broker.close()


def by_client_id(api: respx.MockRouter, client_order_id: str = CID) -> respx.Route:
    return api.get(f"{BASE}/orders/@{client_order_id}")


def body_of(request: httpx.Request) -> dict[str, Any]:
    return json.loads(request.content)


# -- SUBMIT ----------------------------------------------------------------------------------


async def test_submit_market_order_sends_signed_units_and_client_id_and_reports_the_fill(
    api: respx.MockRouter, broker: OandaBroker
) -> None:
    lookup = by_client_id(api).respond(404, json=NO_SUCH_ORDER)
    route = api.post(f"{BASE}/orders").respond(
        201,
        json={
            "orderCreateTransaction": market_order_created(),
            "orderFillTransaction": order_fill(),
            "relatedTransactionIDs": ["6368", "6369"],
            "lastTransactionID": "6369",
        },
    )

    state = await broker.submit(buy())

    assert lookup.call_count == 1  # asked first: OANDA only refuses ids of pending orders
    request = route.calls.last.request
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert body_of(request) == {
        "order": {
            "type": "MARKET",
            "instrument": "EUR_USD",
            "units": "100",
            "timeInForce": "FOK",
            "positionFill": "DEFAULT",
            "clientExtensions": {"id": CID},
        }
    }
    assert state.status is OrderStatus.FILLED
    assert state.broker_order_id == "6368"
    assert state.filled_quantity == Decimal("100")
    assert state.average_price == Decimal("1.13032")
    (fill,) = state.fills
    assert fill.fill_id == "6369"
    assert fill.quantity == Decimal("100")
    assert fill.price == Decimal("1.13032")
    assert fill.fee == Decimal("0.2650")  # commission 0.25 plus financing paid 0.015
    assert fill.fee_currency == "USD"
    assert fill.ts_ms == TIME_MS


async def test_submit_sell_limit_day_order_uses_negative_units_and_gfd(
    api: respx.MockRouter, broker: OandaBroker
) -> None:
    by_client_id(api).respond(404, json=NO_SUCH_ORDER)
    route = api.post(f"{BASE}/orders").respond(
        201,
        json={
            "orderCreateTransaction": limit_order_created(
                units="-100", price="1.20000", timeInForce="GFD"
            ),
            "relatedTransactionIDs": ["6372"],
            "lastTransactionID": "6372",
        },
    )

    state = await broker.submit(
        buy(
            side=Side.SELL,
            order_type=OrderType.LIMIT,
            limit_price=Decimal("1.2"),
            time_in_force=TimeInForce.DAY,
        )
    )

    spec = body_of(route.calls.last.request)["order"]
    assert spec["type"] == "LIMIT"
    assert spec["units"] == "-100"
    assert spec["price"] == "1.2"
    assert spec["timeInForce"] == "GFD"
    assert state.status is OrderStatus.NEW
    assert state.broker_order_id == "6372"
    assert state.fills == ()


@pytest.mark.parametrize(
    ("order_type", "time_in_force", "expected_type", "expected_tif"),
    [
        (OrderType.MARKET, TimeInForce.GTC, "MARKET", "FOK"),
        (OrderType.MARKET, TimeInForce.IOC, "MARKET", "IOC"),
        (OrderType.LIMIT, TimeInForce.GTC, "LIMIT", "GTC"),
        (OrderType.LIMIT, TimeInForce.IOC, "LIMIT", "IOC"),
        (OrderType.LIMIT, TimeInForce.FOK, "LIMIT", "FOK"),
        (OrderType.STOP, TimeInForce.DAY, "STOP", "GFD"),
    ],
)
async def test_order_types_and_time_in_force_map_onto_oanda_requests(
    api: respx.MockRouter,
    broker: OandaBroker,
    order_type: OrderType,
    time_in_force: TimeInForce,
    expected_type: str,
    expected_tif: str,
) -> None:
    by_client_id(api).respond(404, json=NO_SUCH_ORDER)
    route = api.post(f"{BASE}/orders").respond(
        201, json={"orderCreateTransaction": market_order_created(), "lastTransactionID": "6368"}
    )
    prices: dict[str, Decimal] = {}
    if order_type is OrderType.LIMIT:
        prices["limit_price"] = Decimal("1.1")
    if order_type is OrderType.STOP:
        prices["stop_price"] = Decimal("1.15")

    await broker.submit(buy(order_type=order_type, time_in_force=time_in_force, **prices))

    spec = body_of(route.calls.last.request)["order"]
    assert (spec["type"], spec["timeInForce"]) == (expected_type, expected_tif)
    if order_type is OrderType.STOP:
        assert spec["price"] == "1.15"


async def test_stop_limit_is_rejected_as_unsupported_without_calling_oanda(
    api: respx.MockRouter, broker: OandaBroker
) -> None:
    state = await broker.submit(
        buy(
            order_type=OrderType.STOP_LIMIT,
            stop_price=Decimal("1.15"),
            limit_price=Decimal("1.16"),
        )
    )

    assert state.status is OrderStatus.REJECTED
    assert state.reject_code == "broker.unsupported_order_type"
    assert not api.calls


async def test_symbol_without_an_instrument_is_rejected(
    api: respx.MockRouter, broker: OandaBroker
) -> None:
    state = await broker.submit(buy(symbol="AAPL"))

    assert state.status is OrderStatus.REJECTED
    assert state.reject_code == "broker.unknown_symbol"
    assert not api.calls


async def test_market_order_cancelled_for_insufficient_margin_is_rejected_with_its_reason(
    api: respx.MockRouter, broker: OandaBroker
) -> None:
    by_client_id(api).respond(404, json=NO_SUCH_ORDER)
    api.post(f"{BASE}/orders").respond(
        201,
        json={
            "orderCreateTransaction": market_order_created("6370", units="100000000"),
            "orderCancelTransaction": transaction(
                "ORDER_CANCEL",
                "6371",
                batchID="6370",
                orderID="6370",
                clientOrderID=CID,
                reason="INSUFFICIENT_MARGIN",
            ),
            "relatedTransactionIDs": ["6370", "6371"],
            "lastTransactionID": "6371",
        },
    )

    state = await broker.submit(buy(quantity=Decimal("100000000")))

    assert state.status is OrderStatus.REJECTED
    assert state.reject_code == "broker.insufficient_margin"
    assert "INSUFFICIENT_MARGIN" in (state.reject_reason or "")
    assert state.broker_order_id == "6370"


async def test_invalid_order_is_rejected_with_oandas_reason_and_message(
    api: respx.MockRouter, broker: OandaBroker
) -> None:
    by_client_id(api).respond(404, json=NO_SUCH_ORDER)
    api.post(f"{BASE}/orders").respond(
        400,
        json={
            "orderRejectTransaction": transaction(
                "MARKET_ORDER_REJECT",
                "6372",
                instrument="EUR_USD",
                units="0.5",
                timeInForce="FOK",
                positionFill="DEFAULT",
                reason="CLIENT_ORDER",
                rejectReason="UNITS_PRECISION_EXCEEDED",
            ),
            "relatedTransactionIDs": ["6372"],
            "lastTransactionID": "6372",
            "errorCode": "UNITS_PRECISION_EXCEEDED",
            "errorMessage": "Precision of units exceeded",
        },
    )

    state = await broker.submit(buy(quantity=Decimal("0.5")))

    assert state.status is OrderStatus.REJECTED
    assert state.reject_code == "broker.units_precision_exceeded"
    assert state.reject_reason == "Precision of units exceeded"


async def test_known_client_order_id_answers_the_existing_order_without_posting(
    api: respx.MockRouter, broker: OandaBroker
) -> None:
    by_client_id(api).respond(200, json={"order": filled_market(), "lastTransactionID": "6369"})
    api.get(f"{BASE}/transactions/6369").respond(
        200, json={"transaction": order_fill(), "lastTransactionID": "6369"}
    )
    post = api.post(f"{BASE}/orders").respond(500)

    state = await broker.submit(buy())

    assert post.call_count == 0
    assert state.status is OrderStatus.FILLED
    assert state.fills[0].fill_id == "6369"


async def test_duplicate_client_order_id_refusal_answers_the_existing_order(
    api: respx.MockRouter, broker: OandaBroker
) -> None:
    # Placed concurrently between our lookup and our post: OANDA refuses the pending duplicate.
    by_client_id(api).mock(
        side_effect=[
            httpx.Response(404, json=NO_SUCH_ORDER),
            httpx.Response(200, json={"order": pending_limit(), "lastTransactionID": "6372"}),
        ]
    )
    api.post(f"{BASE}/orders").respond(
        400,
        json={
            "orderRejectTransaction": transaction(
                "LIMIT_ORDER_REJECT",
                "6373",
                instrument="EUR_USD",
                units="-100",
                price="1.20000",
                timeInForce="GTC",
                reason="CLIENT_ORDER",
                rejectReason="CLIENT_ORDER_ID_ALREADY_EXISTS",
            ),
            "relatedTransactionIDs": ["6373"],
            "lastTransactionID": "6373",
            "errorCode": "CLIENT_ORDER_ID_ALREADY_EXISTS",
            "errorMessage": "The client Order ID specified is already assigned to another "
            "pending Order",
        },
    )

    state = await broker.submit(
        buy(side=Side.SELL, order_type=OrderType.LIMIT, limit_price=Decimal("1.2"))
    )

    assert state.status is OrderStatus.NEW
    assert state.broker_order_id == "6372"
    assert state.limit_price == Decimal("1.20000")


async def test_submit_retried_after_503_looks_up_then_resends_the_same_client_id(
    api: respx.MockRouter, broker: OandaBroker, sleeps: list[float]
) -> None:
    lookup = by_client_id(api).respond(404, json=NO_SUCH_ORDER)
    journal = api.get(f"{BASE}/transactions/sinceid", params={"id": "6375"}).respond(
        200, json={"transactions": [], "lastTransactionID": "6375"}
    )
    route = api.post(f"{BASE}/orders").mock(
        side_effect=[
            httpx.Response(503, json={"errorMessage": "Service Unavailable"}),
            httpx.Response(
                201,
                json={
                    "orderCreateTransaction": market_order_created(),
                    "orderFillTransaction": order_fill(),
                    "lastTransactionID": "6369",
                },
            ),
        ]
    )

    state = await broker.submit(buy())

    assert route.call_count == 2
    ids = [body_of(c.request)["order"]["clientExtensions"]["id"] for c in route.calls]
    assert ids == [CID, CID]
    assert lookup.call_count == 2  # before the first post, and before re-sending
    assert journal.call_count == 1  # ...and the journal, as a new order is readable only later
    assert len(sleeps) == 1
    assert state.status is OrderStatus.FILLED


async def test_submit_created_but_not_yet_readable_is_awaited_not_sent_again(
    api: respx.MockRouter, broker: OandaBroker, sleeps: list[float]
) -> None:
    # The answer to the post is lost, and OANDA serves the new order only a moment later; its
    # transaction journal already lists the order's creation.
    by_client_id(api).mock(
        side_effect=[
            httpx.Response(404, json=NO_SUCH_ORDER),
            httpx.Response(404, json=NO_SUCH_ORDER),
            httpx.Response(200, json={"order": filled_market(), "lastTransactionID": "6369"}),
        ]
    )
    api.get(f"{BASE}/transactions/sinceid", params={"id": "6375"}).respond(
        200,
        json={
            "transactions": [market_order_created(), order_fill()],
            "lastTransactionID": "6369",
        },
    )
    api.get(f"{BASE}/transactions/6369").respond(
        200, json={"transaction": order_fill(), "lastTransactionID": "6369"}
    )
    route = api.post(f"{BASE}/orders").mock(side_effect=httpx.ReadTimeout("timed out"))

    state = await broker.submit(buy())

    assert route.call_count == 1
    assert len(sleeps) == 2
    assert state.status is OrderStatus.FILLED


async def test_submit_whose_answer_timed_out_is_found_and_not_sent_again(
    api: respx.MockRouter, broker: OandaBroker
) -> None:
    by_client_id(api).mock(
        side_effect=[
            httpx.Response(404, json=NO_SUCH_ORDER),
            httpx.Response(200, json={"order": filled_market(), "lastTransactionID": "6369"}),
        ]
    )
    api.get(f"{BASE}/transactions/6369").respond(
        200, json={"transaction": order_fill(), "lastTransactionID": "6369"}
    )
    route = api.post(f"{BASE}/orders").mock(side_effect=httpx.ReadTimeout("timed out"))

    state = await broker.submit(buy())

    assert route.call_count == 1  # the market order filled: sending it again would open twice
    assert state.status is OrderStatus.FILLED
    assert state.fills[0].fill_id == "6369"


async def test_rate_limited_submission_waits_and_is_resent_without_a_lookup(
    api: respx.MockRouter, broker: OandaBroker, sleeps: list[float]
) -> None:
    lookup = by_client_id(api).respond(404, json=NO_SUCH_ORDER)
    route = api.post(f"{BASE}/orders").mock(
        side_effect=[
            httpx.Response(
                429, headers={"Retry-After": "1"}, json={"errorMessage": "Too many requests"}
            ),
            httpx.Response(
                201,
                json={
                    "orderCreateTransaction": market_order_created(),
                    "lastTransactionID": "6368",
                },
            ),
        ]
    )

    await broker.submit(buy())

    assert route.call_count == 2
    assert lookup.call_count == 1  # a 429 was never acted on: no need to look again
    assert sleeps == [1.0]


async def test_unauthorized_rereads_a_rotated_token_and_retries_once(
    api: respx.MockRouter, sleeps: list[float]
) -> None:
    provider = RotatingCredentials({"token": "old-token"}, {"token": "new-token"})
    broker = make_broker(sleeps, provider)
    lookup = by_client_id(api).mock(
        side_effect=[
            httpx.Response(
                401, json={"errorMessage": "Insufficient authorization to perform request."}
            ),
            httpx.Response(404, json=NO_SUCH_ORDER),
        ]
    )
    post = api.post(f"{BASE}/orders").respond(
        201, json={"orderCreateTransaction": market_order_created(), "lastTransactionID": "6368"}
    )

    state = await broker.submit(buy())
    await broker.close()

    assert state.status is OrderStatus.NEW
    assert provider.invalidations == 1
    assert [c.request.headers["Authorization"] for c in lookup.calls] == [
        "Bearer old-token",
        "Bearer new-token",
    ]
    assert post.calls.last.request.headers["Authorization"] == "Bearer new-token"


async def test_token_refused_again_raises_auth_error(
    api: respx.MockRouter, sleeps: list[float]
) -> None:
    broker = make_broker(sleeps, RotatingCredentials({"token": TOKEN}))
    by_client_id(api).respond(
        401, json={"errorMessage": "Insufficient authorization to perform request."}
    )

    with pytest.raises(BrokerAuthError) as caught:
        await broker.submit(buy())
    await broker.close()

    assert TOKEN not in str(caught.value)


# -- CANCEL, REPLACE, LOOKUP -----------------------------------------------------------------


async def test_cancel_puts_the_cancel_of_the_live_order(
    api: respx.MockRouter, broker: OandaBroker
) -> None:
    by_client_id(api).respond(200, json={"order": pending_limit(), "lastTransactionID": "6372"})
    cancel = api.put(f"{BASE}/orders/6372/cancel").respond(
        200,
        json={
            "orderCancelTransaction": transaction(
                "ORDER_CANCEL", "6373", orderID="6372", clientOrderID=CID, reason="CLIENT_REQUEST"
            ),
            "relatedTransactionIDs": ["6373"],
            "lastTransactionID": "6373",
        },
    )

    state = await broker.cancel(ACCOUNT, CID)

    assert cancel.call_count == 1
    assert state.status is OrderStatus.CANCELED
    assert state.client_order_id == CID
    assert state.ts_ms == TIME_MS


async def test_cancel_of_an_order_that_filled_meanwhile_answers_filled(
    api: respx.MockRouter, broker: OandaBroker
) -> None:
    filled = pending_limit(state="FILLED", fillingTransactionID="6374", filledTime=TIME)
    by_client_id(api).mock(
        side_effect=[
            httpx.Response(200, json={"order": pending_limit(), "lastTransactionID": "6372"}),
            httpx.Response(200, json={"order": filled, "lastTransactionID": "6374"}),
        ]
    )
    api.put(f"{BASE}/orders/6372/cancel").respond(
        404,
        json={
            "orderCancelRejectTransaction": transaction(
                "ORDER_CANCEL_REJECT", "6375", orderID="6372", rejectReason="ORDER_DOESNT_EXIST"
            ),
            "relatedTransactionIDs": ["6375"],
            "lastTransactionID": "6375",
            "errorCode": "ORDER_DOESNT_EXIST",
            "errorMessage": "The order that was attempted to be cancelled does not exist",
        },
    )
    api.get(f"{BASE}/transactions/6374").respond(
        200,
        json={"transaction": order_fill("6372", "6374", units="-100"), "lastTransactionID": "6375"},
    )

    state = await broker.cancel(ACCOUNT, CID)

    assert state.status is OrderStatus.FILLED
    assert state.filled_quantity == Decimal("100")


async def test_cancel_of_an_unknown_order_raises_unknown_order(
    api: respx.MockRouter, broker: OandaBroker
) -> None:
    by_client_id(api).respond(404, json=NO_SUCH_ORDER)

    with pytest.raises(UnknownOrder):
        await broker.cancel(ACCOUNT, CID)


async def test_lookup_of_an_unknown_client_order_id_is_none(
    api: respx.MockRouter, broker: OandaBroker
) -> None:
    by_client_id(api).respond(404, json=NO_SUCH_ORDER)

    assert await broker.lookup(ACCOUNT, CID) is None


async def test_replace_cancel_replaces_under_a_new_client_id_and_keeps_reporting_the_original(
    api: respx.MockRouter, broker: OandaBroker
) -> None:
    by_client_id(api).respond(200, json={"order": pending_limit(), "lastTransactionID": "6372"})
    put = api.put(f"{BASE}/orders/6372").respond(
        201,
        json={
            "orderCancelTransaction": transaction(
                "ORDER_CANCEL",
                "6374",
                orderID="6372",
                clientOrderID=CID,
                reason="CLIENT_REQUEST_REPLACED",
                replacedByOrderID="6375",
            ),
            "orderCreateTransaction": transaction(
                "LIMIT_ORDER",
                "6375",
                batchID="6374",
                instrument="EUR_USD",
                units="-150",
                price="1.25000",
                timeInForce="GTC",
                positionFill="DEFAULT",
                reason="REPLACEMENT",
                replacesOrderID="6372",
                clientExtensions={"id": f"{CID}.r1"},
            ),
            "relatedTransactionIDs": ["6374", "6375"],
            "lastTransactionID": "6375",
        },
    )

    state = await broker.replace(ACCOUNT, CID, quantity=Decimal("150"), limit_price=Decimal("1.25"))

    assert body_of(put.calls.last.request) == {
        "order": {
            "type": "LIMIT",
            "instrument": "EUR_USD",
            "units": "-150",
            "price": "1.25",
            "timeInForce": "GTC",
            "positionFill": "DEFAULT",
            "clientExtensions": {"id": f"{CID}.r1"},
        }
    }
    assert state.client_order_id == CID
    assert state.broker_order_id == "6375"
    assert state.status is OrderStatus.NEW
    assert state.quantity == Decimal("150")
    assert state.limit_price == Decimal("1.25000")


async def test_lookup_follows_a_replacement_to_the_live_order(
    api: respx.MockRouter, broker: OandaBroker
) -> None:
    replaced = pending_limit(
        state="CANCELLED",
        cancellingTransactionID="6374",
        cancelledTime=TIME,
        replacedByOrderID="6375",
    )
    by_client_id(api).respond(200, json={"order": replaced, "lastTransactionID": "6375"})
    api.get(f"{BASE}/orders/6375").respond(
        200,
        json={
            "order": pending_limit(
                "6375",
                units="-150",
                price="1.25000",
                replacesOrderID="6372",
                clientExtensions={"id": f"{CID}.r1"},
            ),
            "lastTransactionID": "6375",
        },
    )

    state = await broker.lookup(ACCOUNT, CID)

    assert state is not None
    assert state.client_order_id == CID
    assert state.broker_order_id == "6375"
    assert state.status is OrderStatus.NEW
    assert state.quantity == Decimal("150")


@pytest.mark.parametrize(
    ("order", "cancel_reason", "cancel_batch", "expected", "reject_code"),
    [
        (pending_limit(), None, None, OrderStatus.NEW, None),
        (pending_limit(type="STOP", state="TRIGGERED"), None, None, OrderStatus.NEW, None),
        (filled_market(), None, None, OrderStatus.FILLED, None),
        (pending_limit(state="CANCELLED"), "CLIENT_REQUEST", "6380", OrderStatus.CANCELED, None),
        (
            pending_limit(state="CANCELLED"),
            "TIME_IN_FORCE_EXPIRED",
            "6380",
            OrderStatus.EXPIRED,
            None,
        ),
        (
            cancelled_market(),
            "INSUFFICIENT_MARGIN",
            "6368",
            OrderStatus.REJECTED,
            "broker.insufficient_margin",
        ),
        (
            cancelled_market(),
            "MARKET_HALTED",
            "6368",
            OrderStatus.REJECTED,
            "broker.market_halted",
        ),
        # Cancelled by OANDA long after it started working: an ordinary cancel.
        (
            pending_limit(state="CANCELLED"),
            "INSUFFICIENT_MARGIN",
            "6390",
            OrderStatus.CANCELED,
            None,
        ),
    ],
)
async def test_oanda_order_states_map_onto_coyote_statuses(
    api: respx.MockRouter,
    broker: OandaBroker,
    order: dict[str, Any],
    cancel_reason: str | None,
    cancel_batch: str | None,
    expected: OrderStatus,
    reject_code: str | None,
) -> None:
    if cancel_reason is not None:
        order = {**order, "cancellingTransactionID": "6399", "cancelledTime": TIME}
        api.get(f"{BASE}/transactions/6399").respond(
            200,
            json={
                "transaction": transaction(
                    "ORDER_CANCEL",
                    "6399",
                    batchID=cancel_batch,
                    orderID=order["id"],
                    reason=cancel_reason,
                ),
                "lastTransactionID": "6399",
            },
        )
    api.get(f"{BASE}/transactions/6369").respond(
        200, json={"transaction": order_fill(), "lastTransactionID": "6369"}
    )
    by_client_id(api).respond(200, json={"order": order, "lastTransactionID": "6399"})

    state = await broker.lookup(ACCOUNT, CID)

    assert state is not None
    assert state.status is expected
    assert state.reject_code == reject_code


# -- RECONCILIATION --------------------------------------------------------------------------


async def test_open_orders_skips_orders_without_client_id_and_maps_replacements_back(
    api: respx.MockRouter, broker: OandaBroker
) -> None:
    other = "0190c7a2-0000-7000-8000-000000000002"
    api.get(f"{BASE}/pendingOrders").respond(
        200,
        json={
            "orders": [
                pending_limit("6372", clientExtensions={"id": other}),
                pending_limit("6375", replacesOrderID="6373", clientExtensions={"id": f"{CID}.r1"}),
                {
                    "id": "6377",
                    "createTime": TIME,
                    "type": "TAKE_PROFIT",
                    "tradeID": "6369",
                    "price": "1.30000",
                    "timeInForce": "GTC",
                    "triggerCondition": "DEFAULT",
                    "state": "PENDING",
                },
            ],
            "lastTransactionID": "6377",
        },
    )

    states = await broker.open_orders(ACCOUNT)

    assert {s.client_order_id: s.broker_order_id for s in states} == {other: "6372", CID: "6375"}
    assert all(s.status is OrderStatus.NEW for s in states)


async def test_positions_net_long_and_short_units_per_canonical_symbol(
    api: respx.MockRouter, broker: OandaBroker
) -> None:
    api.get(f"{BASE}/openPositions").respond(
        200,
        json={
            "positions": [
                {
                    "instrument": "EUR_USD",
                    "long": {
                        "units": "0",
                        "pl": "-54.3002",
                        "resettablePL": "-54.3002",
                        "unrealizedPL": "0.0000",
                    },
                    "short": {
                        "averagePrice": "1.13026",
                        "pl": "-1.5112",
                        "resettablePL": "-1.5112",
                        "tradeIDs": ["6383"],
                        "units": "-100",
                        "unrealizedPL": "-0.0404",
                    },
                    "pl": "-55.8114",
                    "resettablePL": "-55.8114",
                    "unrealizedPL": "-0.0404",
                },
                {
                    "instrument": "SPX500_USD",
                    "long": {
                        "averagePrice": "4000.1",
                        "tradeIDs": ["6390"],
                        "units": "3",
                        "pl": "0",
                        "unrealizedPL": "1.2",
                    },
                    "short": {"units": "0", "pl": "0", "unrealizedPL": "0"},
                    "pl": "0",
                    "unrealizedPL": "1.2",
                },
            ],
            "lastTransactionID": "6390",
        },
    )

    assert await broker.positions(ACCOUNT) == {
        "EURUSD": Decimal("-100"),
        "SPX500_USD": Decimal("3"),
    }


# -- MAPPINGS --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("canonical", "instrument", "back"),
    [
        ("EURUSD", "EUR_USD", "EURUSD"),
        ("XAUUSD", "XAU_USD", "XAUUSD"),
        ("SPX500-USD", "SPX500_USD", "SPX500_USD"),
        ("DE30_EUR", "DE30_EUR", "DE30_EUR"),
    ],
)
def test_symbols_map_to_instruments_and_back(canonical: str, instrument: str, back: str) -> None:
    symbols = OandaSymbols()

    assert symbols.to_venue(canonical) == instrument
    assert symbols.to_canonical(instrument) == back


def test_symbol_overrides_win_and_unmappable_symbols_are_refused() -> None:
    symbols = OandaSymbols({"US500": "SPX500_USD"})

    assert symbols.to_venue("US500") == "SPX500_USD"
    assert symbols.to_canonical("SPX500_USD") == "US500"
    with pytest.raises(ValueError, match="no OANDA instrument for the symbol 'AAPL'"):
        symbols.to_venue("AAPL")
