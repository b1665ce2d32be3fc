"""The Alpaca adapter against Alpaca's documented REST answers (mocked with respx)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from decimal import Decimal
from typing import Any

import httpx
import pytest
import respx

from coyote_executor.brokers._http import RetryPolicy
from coyote_executor.brokers.alpaca import PAPER_URL, AlpacaBroker, AlpacaSymbols
from coyote_executor.brokers.base import (
    BrokerAuthError,
    BrokerOrder,
    BrokerRateLimited,
    BrokerUnavailable,
    UnknownOrder,
)
from coyote_executor.credentials import Credentials, StaticCredentials
from coyote_sdk.protocol import OrderStatus, OrderType, Side, TimeInForce

pytestmark = pytest.mark.unit

ACCOUNT = "alpaca-paper"
CID = "0190c7a2-5a9e-7c1e-8f3b-6d2f4a1b9e01"
ORDER_ID = "61e69015-8549-4bfd-b9c3-01e75843f47d"
KEYS = {"api_key_id": "PKTEST1234567890", "api_secret_key": "s3cr3t-alpaca-secret-key"}


def alpaca_order(**fields: Any) -> dict[str, Any]:
    """An order object as Alpaca's API reference shows it (decimals as strings)."""
    order: dict[str, Any] = {
        "id": ORDER_ID,
        "client_order_id": CID,
        "created_at": "2021-03-16T18:38:01.942282Z",
        "updated_at": "2021-03-16T18:38:01.942282Z",
        "submitted_at": "2021-03-16T18:38:01.937734Z",
        "filled_at": None,
        "expired_at": None,
        "canceled_at": None,
        "failed_at": None,
        "replaced_at": None,
        "replaced_by": None,
        "replaces": None,
        "asset_id": "b0b6dd9d-8b9b-48a9-ba46-b9d54906e415",
        "symbol": "AAPL",
        "asset_class": "us_equity",
        "notional": None,
        "qty": "10",
        "filled_qty": "0",
        "filled_avg_price": None,
        "order_class": "",
        "order_type": "market",
        "type": "market",
        "side": "buy",
        "time_in_force": "day",
        "limit_price": None,
        "stop_price": None,
        "status": "accepted",
        "extended_hours": False,
        "legs": None,
        "trail_percent": None,
        "trail_price": None,
        "hwm": None,
    }
    order.update(fields)
    return order


def buy(**fields: Any) -> BrokerOrder:
    values: dict[str, Any] = {
        "client_order_id": CID,
        "account_id": ACCOUNT,
        "symbol": "AAPL",
        "side": Side.BUY,
        "quantity": Decimal("10"),
        "time_in_force": TimeInForce.DAY,
    }
    values.update(fields)
    return BrokerOrder(**values)


class RotatingCredentials:
    """A provider whose secret is rotated: each invalidate() moves to the next one."""

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
    with respx.mock(base_url=PAPER_URL, assert_all_called=False) as router:
        yield router


def make_broker(sleeps: list[float], provider: Any = None, **options: Any) -> AlpacaBroker:
    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    return AlpacaBroker(
        {ACCOUNT: provider or StaticCredentials(KEYS)},
        sleep=sleep,
        retry=options.pop("retry", RetryPolicy(attempts=3, base_delay_s=0.1)),
        **options,
    )


@pytest.fixture
async def broker(sleeps: list[float]) -> AsyncIterator[AlpacaBroker]:
    broker = make_broker(sleeps)
    yield broker
    await broker.close()


def by_client_id(api: respx.MockRouter, client_order_id: str = CID) -> respx.Route:
    return api.get("/v2/orders:by_client_order_id", params={"client_order_id": client_order_id})


def body_of(request: httpx.Request) -> dict[str, Any]:
    return json.loads(request.content)


# -- SUBMIT ----------------------------------------------------------------------------------


async def test_submit_market_order_posts_the_documented_body_and_is_acknowledged(
    api: respx.MockRouter, broker: AlpacaBroker
) -> None:
    route = api.post("/v2/orders").respond(200, json=alpaca_order())

    state = await broker.submit(buy())

    request = route.calls.last.request
    assert body_of(request) == {
        "client_order_id": CID,
        "symbol": "AAPL",
        "qty": "10",
        "side": "buy",
        "type": "market",
        "time_in_force": "day",
    }
    assert request.headers["APCA-API-KEY-ID"] == KEYS["api_key_id"]
    assert request.headers["APCA-API-SECRET-KEY"] == KEYS["api_secret_key"]
    assert state.status is OrderStatus.NEW
    assert state.client_order_id == CID
    assert state.broker_order_id == ORDER_ID
    assert state.quantity == Decimal("10")
    assert state.fills == ()
    assert state.ts_ms == 1615919881942


async def test_submit_limit_order_sends_prices_as_strings_and_crypto_symbol_with_slash(
    api: respx.MockRouter, broker: AlpacaBroker
) -> None:
    answer = alpaca_order(
        symbol="BTC/USD",
        asset_class="crypto",
        qty="0.015",
        type="limit",
        order_type="limit",
        side="sell",
        time_in_force="gtc",
        limit_price="67000.5",
        status="new",
    )
    route = api.post("/v2/orders").respond(200, json=answer)

    state = await broker.submit(
        buy(
            symbol="BTC-USD",
            side=Side.SELL,
            quantity=Decimal("0.015"),
            order_type=OrderType.LIMIT,
            limit_price=Decimal("67000.50"),
            time_in_force=TimeInForce.GTC,
        )
    )

    body = body_of(route.calls.last.request)
    assert body["symbol"] == "BTC/USD"
    assert body["qty"] == "0.015"
    assert body["type"] == "limit"
    assert body["limit_price"] == "67000.50"
    assert body["time_in_force"] == "gtc"
    assert "stop_price" not in body
    assert state.status is OrderStatus.NEW
    assert state.limit_price == Decimal("67000.5")
    assert state.quantity == Decimal("0.015")


async def test_submit_filled_market_order_reports_cumulative_fill_without_float(
    api: respx.MockRouter, broker: AlpacaBroker
) -> None:
    api.post("/v2/orders").respond(
        200,
        json=alpaca_order(
            status="filled",
            filled_qty="10",
            filled_avg_price="123.4567",
            filled_at="2021-03-16T18:38:02.120511Z",
        ),
    )

    state = await broker.submit(buy())

    assert state.status is OrderStatus.FILLED
    assert state.filled_quantity == Decimal("10")
    assert state.average_price == Decimal("123.4567")
    assert state.fills == ()


async def test_submit_retried_after_503_and_timeout_reuses_the_client_order_id(
    api: respx.MockRouter, broker: AlpacaBroker, sleeps: list[float]
) -> None:
    route = api.post("/v2/orders").mock(
        side_effect=[
            httpx.Response(503, text="upstream connect error"),
            httpx.ReadTimeout("timed out"),
            httpx.Response(200, json=alpaca_order()),
        ]
    )

    state = await broker.submit(buy())

    assert route.call_count == 3
    assert {body_of(call.request)["client_order_id"] for call in route.calls} == {CID}
    assert state.status is OrderStatus.NEW
    assert len(sleeps) == 2
    assert 0 < sleeps[0] <= 0.1 and 0 < sleeps[1] <= 0.2  # backoff doubles, jitter shrinks it


async def test_submit_whose_answer_was_lost_is_not_placed_twice(
    api: respx.MockRouter, broker: AlpacaBroker
) -> None:
    # The first POST reached Alpaca but its answer timed out; Alpaca refuses the repeat.
    route = api.post("/v2/orders").mock(
        side_effect=[
            httpx.ReadTimeout("timed out"),
            httpx.Response(
                422, json={"code": 40010001, "message": "client_order_id must be unique"}
            ),
        ]
    )
    by_client_id(api).respond(200, json=alpaca_order(status="new"))

    state = await broker.submit(buy())

    assert route.call_count == 2
    assert [body_of(c.request)["client_order_id"] for c in route.calls] == [CID, CID]
    assert state.status is OrderStatus.NEW
    assert state.broker_order_id == ORDER_ID


async def test_duplicate_client_order_id_answers_the_existing_order(
    api: respx.MockRouter, broker: AlpacaBroker
) -> None:
    api.post("/v2/orders").respond(
        422, json={"code": 40010001, "message": "client_order_id must be unique"}
    )
    by_client_id(api).respond(
        200, json=alpaca_order(status="filled", filled_qty="10", filled_avg_price="101.25")
    )

    state = await broker.submit(buy())

    assert state.status is OrderStatus.FILLED
    assert state.average_price == Decimal("101.25")


async def test_submit_still_failing_after_all_attempts_raises_broker_unavailable(
    api: respx.MockRouter, broker: AlpacaBroker
) -> None:
    route = api.post("/v2/orders").respond(500, json={"code": 50010000, "message": "internal"})

    with pytest.raises(BrokerUnavailable, match="HTTP 500"):
        await broker.submit(buy())

    assert route.call_count == 3


async def test_submit_rate_limited_waits_as_long_as_retry_after_asks(
    api: respx.MockRouter, broker: AlpacaBroker, sleeps: list[float]
) -> None:
    api.post("/v2/orders").mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "2"}, text="rate limit exceeded"),
            httpx.Response(200, json=alpaca_order()),
        ]
    )

    state = await broker.submit(buy())

    assert state.status is OrderStatus.NEW
    assert sleeps == [2.0]


async def test_rate_limit_without_retry_after_waits_until_the_reset_header(
    api: respx.MockRouter, broker: AlpacaBroker, sleeps: list[float]
) -> None:
    reset = str(int(time.time()) + 3)
    api.post("/v2/orders").mock(
        side_effect=[
            httpx.Response(429, headers={"X-Ratelimit-Reset": reset}, text="too many requests"),
            httpx.Response(200, json=alpaca_order()),
        ]
    )

    await broker.submit(buy())

    assert len(sleeps) == 1
    assert 1 < sleeps[0] <= 3


async def test_rate_limit_that_never_lifts_raises_broker_rate_limited(
    api: respx.MockRouter, broker: AlpacaBroker
) -> None:
    route = api.post("/v2/orders").respond(429, headers={"Retry-After": "1"})

    with pytest.raises(BrokerRateLimited) as caught:
        await broker.submit(buy())

    assert route.call_count == 3
    assert caught.value.retry_after_s == 1.0
    assert caught.value.code == "broker.rate_limited"


async def test_rate_limit_asking_for_a_long_wait_fails_at_once(
    api: respx.MockRouter, broker: AlpacaBroker, sleeps: list[float]
) -> None:
    route = api.post("/v2/orders").respond(429, headers={"Retry-After": "60"})

    with pytest.raises(BrokerRateLimited) as caught:
        await broker.submit(buy())

    assert route.call_count == 1
    assert sleeps == []
    assert caught.value.retry_after_s == 60.0


async def test_unauthorized_rereads_rotated_credentials_and_retries_once(
    api: respx.MockRouter, sleeps: list[float]
) -> None:
    rotated = {"api_key_id": "PKROTATED000000000", "api_secret_key": "n3w-secret"}
    provider = RotatingCredentials(KEYS, rotated)
    broker = make_broker(sleeps, provider)
    route = api.post("/v2/orders").mock(
        side_effect=[
            httpx.Response(401, json={"code": 40110000, "message": "request is not authorized"}),
            httpx.Response(200, json=alpaca_order()),
        ]
    )

    state = await broker.submit(buy())
    await broker.close()

    assert state.status is OrderStatus.NEW
    assert provider.invalidations == 1
    keys = [call.request.headers["APCA-API-KEY-ID"] for call in route.calls]
    assert keys == [KEYS["api_key_id"], rotated["api_key_id"]]
    assert sleeps == []  # an auth retry is immediate


async def test_credentials_refused_again_after_rereading_raise_auth_error(
    api: respx.MockRouter, sleeps: list[float]
) -> None:
    provider = RotatingCredentials(KEYS)
    broker = make_broker(sleeps, provider)
    route = api.post("/v2/orders").respond(403, json={"message": "forbidden."})

    with pytest.raises(BrokerAuthError) as caught:
        await broker.submit(buy())
    await broker.close()

    assert route.call_count == 2
    assert provider.invalidations == 1
    assert KEYS["api_secret_key"] not in str(caught.value)


async def test_insufficient_buying_power_is_a_rejected_state_not_an_error(
    api: respx.MockRouter, broker: AlpacaBroker
) -> None:
    api.post("/v2/orders").respond(
        403,
        json={
            "buying_power": "176531.28",
            "code": 40310000,
            "cost_basis": "48640000",
            "message": "insufficient buying power",
        },
    )

    state = await broker.submit(buy())

    assert state.status is OrderStatus.REJECTED
    assert state.reject_code == "broker.insufficient_buying_power"
    assert state.reject_reason == "insufficient buying power"


async def test_invalid_order_is_rejected_with_the_brokers_message(
    api: respx.MockRouter, broker: AlpacaBroker
) -> None:
    api.post("/v2/orders").respond(422, json={"code": 40010001, "message": "qty must be > 0"})

    state = await broker.submit(buy())

    assert state.status is OrderStatus.REJECTED
    assert state.reject_code == "broker.invalid_order"
    assert state.reject_reason == "qty must be > 0"


async def test_order_of_unknown_account_raises(broker: AlpacaBroker) -> None:
    with pytest.raises(UnknownOrder, match="no account 'other'"):
        await broker.submit(buy(account_id="other"))


async def test_secrets_never_reach_the_logs(
    api: respx.MockRouter, sleeps: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    provider = RotatingCredentials(KEYS, KEYS)
    broker = make_broker(sleeps, provider)
    api.post("/v2/orders").mock(
        side_effect=[
            httpx.Response(401, json={"code": 40110000, "message": "request is not authorized"}),
            httpx.Response(503),
            httpx.Response(200, json=alpaca_order()),
        ]
    )

    await broker.submit(buy())
    await broker.close()

    assert caplog.records  # the retries were logged...
    assert KEYS["api_secret_key"] not in caplog.text  # ...without the secret
    assert KEYS["api_key_id"] not in caplog.text
    assert KEYS["api_secret_key"] not in repr(await provider.get())


# -- CANCEL, REPLACE, LOOKUP -----------------------------------------------------------------


async def test_cancel_deletes_the_live_order_and_answers_its_fresh_state(
    api: respx.MockRouter, broker: AlpacaBroker
) -> None:
    by_client_id(api).mock(
        side_effect=[
            httpx.Response(200, json=alpaca_order(status="new")),
            httpx.Response(
                200, json=alpaca_order(status="canceled", canceled_at="2021-03-16T18:39:00Z")
            ),
        ]
    )
    delete = api.delete(f"/v2/orders/{ORDER_ID}").respond(204)

    state = await broker.cancel(ACCOUNT, CID)

    assert delete.call_count == 1
    assert state.status is OrderStatus.CANCELED


async def test_cancel_of_an_order_that_filled_meanwhile_answers_filled(
    api: respx.MockRouter, broker: AlpacaBroker
) -> None:
    by_client_id(api).mock(
        side_effect=[
            httpx.Response(200, json=alpaca_order(status="new")),
            httpx.Response(
                200, json=alpaca_order(status="filled", filled_qty="10", filled_avg_price="99")
            ),
        ]
    )
    api.delete(f"/v2/orders/{ORDER_ID}").respond(
        422, json={"code": 42210000, "message": "order is not cancelable"}
    )

    state = await broker.cancel(ACCOUNT, CID)

    assert state.status is OrderStatus.FILLED


async def test_cancel_of_a_terminal_order_sends_no_delete(
    api: respx.MockRouter, broker: AlpacaBroker
) -> None:
    by_client_id(api).respond(200, json=alpaca_order(status="expired"))
    delete = api.delete(f"/v2/orders/{ORDER_ID}").respond(204)

    state = await broker.cancel(ACCOUNT, CID)

    assert state.status is OrderStatus.EXPIRED
    assert delete.call_count == 0


async def test_cancel_of_an_unknown_order_raises_unknown_order(
    api: respx.MockRouter, broker: AlpacaBroker
) -> None:
    by_client_id(api).respond(404, json={"code": 40410000, "message": "order not found"})

    with pytest.raises(UnknownOrder):
        await broker.cancel(ACCOUNT, CID)


async def test_lookup_of_an_unknown_client_order_id_is_none(
    api: respx.MockRouter, broker: AlpacaBroker
) -> None:
    by_client_id(api).respond(404, json={"code": 40410000, "message": "order not found"})

    assert await broker.lookup(ACCOUNT, CID) is None


async def test_lookup_follows_replacements_and_adds_up_their_fills(
    api: respx.MockRouter, broker: AlpacaBroker
) -> None:
    new_id = "b2f8c3d1-1111-4c2e-9a9a-0d1e2f3a4b5c"
    by_client_id(api).respond(
        200,
        json=alpaca_order(
            type="limit",
            limit_price="100",
            status="replaced",
            replaced_by=new_id,
            filled_qty="4",
            filled_avg_price="100",
        ),
    )
    api.get(f"/v2/orders/{new_id}").respond(
        200,
        json=alpaca_order(
            id=new_id,
            client_order_id=f"{CID}.r1",
            replaces=ORDER_ID,
            type="limit",
            qty="6",
            limit_price="101",
            status="partially_filled",
            filled_qty="2",
            filled_avg_price="101",
            updated_at="2021-03-16T18:40:00.5Z",
        ),
    )

    state = await broker.lookup(ACCOUNT, CID)

    assert state is not None
    assert state.client_order_id == CID
    assert state.broker_order_id == new_id
    assert state.status is OrderStatus.PARTIALLY_FILLED
    assert state.quantity == Decimal("10")
    assert state.filled_quantity == Decimal("6")
    assert state.average_price == (Decimal(400) + Decimal(202)) / Decimal(6)
    assert state.limit_price == Decimal("101")
    assert state.ts_ms == 1615920000500


async def test_rejected_replacement_ends_the_order_as_cancelled(
    api: respx.MockRouter, broker: AlpacaBroker
) -> None:
    new_id = "b2f8c3d1-1111-4c2e-9a9a-0d1e2f3a4b5c"
    by_client_id(api).respond(
        200, json=alpaca_order(type="limit", status="replaced", replaced_by=new_id)
    )
    api.get(f"/v2/orders/{new_id}").respond(
        200,
        json=alpaca_order(
            id=new_id, client_order_id=f"{CID}.r1", replaces=ORDER_ID, status="rejected"
        ),
    )

    state = await broker.lookup(ACCOUNT, CID)

    # The executor had the order as accepted; "rejected" would leave it open forever.
    assert state is not None
    assert state.status is OrderStatus.CANCELED
    assert state.reject_code is None


async def test_replacement_not_visible_yet_is_unavailable_not_cancelled(
    api: respx.MockRouter, broker: AlpacaBroker
) -> None:
    new_id = "b2f8c3d1-1111-4c2e-9a9a-0d1e2f3a4b5c"
    by_client_id(api).respond(
        200, json=alpaca_order(type="limit", status="replaced", replaced_by=new_id)
    )
    api.get(f"/v2/orders/{new_id}").respond(
        404, json={"code": 40410000, "message": "order not found"}
    )

    with pytest.raises(BrokerUnavailable, match="not visible yet"):
        await broker.lookup(ACCOUNT, CID)


async def test_replace_sends_the_remaining_quantity_under_a_new_client_order_id(
    api: respx.MockRouter, broker: AlpacaBroker
) -> None:
    new_id = "b2f8c3d1-1111-4c2e-9a9a-0d1e2f3a4b5c"
    by_client_id(api).respond(
        200,
        json=alpaca_order(
            type="limit",
            limit_price="100",
            status="partially_filled",
            filled_qty="4",
            filled_avg_price="100",
        ),
    )
    patch = api.patch(f"/v2/orders/{ORDER_ID}").respond(
        200,
        json=alpaca_order(
            id=new_id,
            client_order_id=f"{CID}.r1",
            replaces=ORDER_ID,
            type="limit",
            qty="8",
            limit_price="99.5",
            status="accepted",
        ),
    )

    state = await broker.replace(ACCOUNT, CID, quantity=Decimal("12"), limit_price=Decimal("99.5"))

    assert body_of(patch.calls.last.request) == {
        "qty": "8",
        "client_order_id": f"{CID}.r1",
        "limit_price": "99.5",
    }
    assert state.client_order_id == CID
    assert state.broker_order_id == new_id
    assert state.quantity == Decimal("12")
    assert state.filled_quantity == Decimal("4")
    assert state.limit_price == Decimal("99.5")
    assert state.status is OrderStatus.PARTIALLY_FILLED


async def test_replace_refused_by_alpaca_answers_the_unchanged_state(
    api: respx.MockRouter, broker: AlpacaBroker
) -> None:
    by_client_id(api).respond(
        200, json=alpaca_order(type="limit", limit_price="100", status="accepted")
    )
    api.patch(f"/v2/orders/{ORDER_ID}").respond(
        422,
        json={
            "code": 42210000,
            "message": "unable to replace order, order isn't sent to exchange yet",
        },
    )

    state = await broker.replace(ACCOUNT, CID, limit_price=Decimal("99"))

    assert state.status is OrderStatus.NEW
    assert state.limit_price == Decimal("100")


async def test_replace_below_the_filled_quantity_is_refused(
    api: respx.MockRouter, broker: AlpacaBroker
) -> None:
    by_client_id(api).respond(
        200,
        json=alpaca_order(status="partially_filled", filled_qty="6", filled_avg_price="10"),
    )

    with pytest.raises(ValueError, match="6 already filled"):
        await broker.replace(ACCOUNT, CID, quantity=Decimal("5"))


# -- RECONCILIATION --------------------------------------------------------------------------


async def test_open_orders_lists_every_open_order_under_its_original_client_order_id(
    api: respx.MockRouter, broker: AlpacaBroker
) -> None:
    other_cid = "0190c7a2-0000-7000-8000-000000000002"
    replacement_id = "b2f8c3d1-1111-4c2e-9a9a-0d1e2f3a4b5c"
    replacement = alpaca_order(
        id=replacement_id,
        client_order_id=f"{CID}.r1",
        replaces=ORDER_ID,
        type="limit",
        qty="10",
        limit_price="101",
        status="new",
    )
    listing = api.get("/v2/orders").respond(
        200,
        json=[
            alpaca_order(
                id="c1", client_order_id=other_cid, type="limit", limit_price="5", status="new"
            ),
            replacement,
        ],
    )
    by_client_id(api).respond(
        200, json=alpaca_order(type="limit", status="replaced", replaced_by=replacement_id)
    )
    api.get(f"/v2/orders/{replacement_id}").respond(200, json=replacement)

    states = await broker.open_orders(ACCOUNT)

    params = listing.calls.last.request.url.params
    assert params["status"] == "open"
    assert params["limit"] == "500"
    assert {s.client_order_id: s.broker_order_id for s in states} == {
        other_cid: "c1",
        CID: replacement_id,
    }
    assert all(s.status is OrderStatus.NEW for s in states)


async def test_positions_are_signed_by_side_and_use_canonical_symbols(
    api: respx.MockRouter, broker: AlpacaBroker
) -> None:
    common = {
        "exchange": "NASDAQ",
        "avg_entry_price": "100.0",
        "market_value": "600.0",
        "cost_basis": "500.0",
        "unrealized_pl": "100.0",
        "unrealized_plpc": "0.20",
        "unrealized_intraday_pl": "10.0",
        "unrealized_intraday_plpc": "0.0084",
        "current_price": "120.0",
        "lastday_price": "119.0",
        "change_today": "0.0084",
    }
    api.get("/v2/positions").respond(
        200,
        json=[
            {
                "asset_id": "a1",
                "symbol": "AAPL",
                "asset_class": "us_equity",
                "qty": "5",
                "side": "long",
                **common,
            },
            {
                "asset_id": "a2",
                "symbol": "TSLA",
                "asset_class": "us_equity",
                "qty": "-3",
                "side": "short",
                **common,
            },
            {
                "asset_id": "a3",
                "symbol": "BTCUSD",
                "asset_class": "crypto",
                "qty": "0.0125",
                "side": "long",
                **common,
            },
        ],
    )

    positions = await broker.positions(ACCOUNT)

    assert positions == {
        "AAPL": Decimal("5"),
        "TSLA": Decimal("-3"),
        "BTC-USD": Decimal("0.0125"),
    }


# -- MAPPINGS --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("alpaca_status", "filled_qty", "expected"),
    [
        ("new", "0", OrderStatus.NEW),
        ("accepted", "0", OrderStatus.NEW),
        ("pending_new", "0", OrderStatus.NEW),
        ("accepted_for_bidding", "0", OrderStatus.NEW),
        ("partially_filled", "3", OrderStatus.PARTIALLY_FILLED),
        ("filled", "10", OrderStatus.FILLED),
        ("done_for_day", "0", OrderStatus.NEW),
        ("done_for_day", "3", OrderStatus.PARTIALLY_FILLED),
        ("pending_cancel", "0", OrderStatus.NEW),
        ("pending_cancel", "3", OrderStatus.PARTIALLY_FILLED),
        ("pending_replace", "0", OrderStatus.NEW),
        ("stopped", "0", OrderStatus.NEW),
        ("suspended", "0", OrderStatus.NEW),
        ("calculated", "10", OrderStatus.FILLED),
        ("canceled", "0", OrderStatus.CANCELED),
        ("canceled", "3", OrderStatus.CANCELED),
        ("expired", "0", OrderStatus.EXPIRED),
        ("rejected", "0", OrderStatus.REJECTED),
        ("something_new_from_alpaca", "0", OrderStatus.NEW),
    ],
)
async def test_alpaca_statuses_map_onto_coyote_statuses(
    api: respx.MockRouter,
    broker: AlpacaBroker,
    alpaca_status: str,
    filled_qty: str,
    expected: OrderStatus,
) -> None:
    by_client_id(api).respond(
        200,
        json=alpaca_order(
            status=alpaca_status,
            filled_qty=filled_qty,
            filled_avg_price="10" if filled_qty != "0" else None,
        ),
    )

    state = await broker.lookup(ACCOUNT, CID)

    assert state is not None
    assert state.status is expected
    assert state.filled_quantity == Decimal(filled_qty)
    if expected is OrderStatus.REJECTED:
        assert state.reject_code == "broker.rejected"


@pytest.mark.parametrize(
    ("canonical", "venue"),
    [
        ("AAPL", "AAPL"),
        ("BRK.B", "BRK.B"),
        ("BTC-USD", "BTC/USD"),
        ("ETH-USDT", "ETH/USDT"),
        ("ETH-BTC", "ETH/BTC"),
    ],
)
def test_symbols_map_both_ways(canonical: str, venue: str) -> None:
    symbols = AlpacaSymbols()

    assert symbols.to_venue(canonical) == venue
    assert symbols.to_canonical(venue) == canonical


def test_symbol_overrides_win_over_the_rule_and_crypto_positions_split_at_the_quote() -> None:
    symbols = AlpacaSymbols({"BRK-B": "BRK.B"})

    assert symbols.to_venue("BRK-B") == "BRK.B"
    assert symbols.to_canonical("BRK.B") == "BRK-B"
    assert symbols.to_canonical("SOLUSDC", asset_class="crypto") == "SOL-USDC"
    assert symbols.to_canonical("USDC", asset_class="us_equity") == "USDC"
