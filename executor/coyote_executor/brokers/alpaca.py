"""The Alpaca Trading API v2 adapter (US equities and crypto, paper and live).

Idempotency rests on Alpaca itself: it refuses a second order with a known ``client_order_id``
(HTTP 422, ``client_order_id must be unique``), whatever the first order's state. A submission
that timed out or met a 5xx is therefore simply sent again with the same client order id; if the
first one had arrived, the repeat is refused and the adapter answers the existing order's state.

Alpaca's replace (``PATCH /v2/orders/{id}``) does not change an order in place: it cancels it and
creates a *new* order, with a new order id and a new client order id that must itself be unique.
The adapter names the replacement ``<client order id>.r<n>`` (n = 1, 2, ... per replace) and always
reports the chain under the original client order id: a lookup follows ``replaced_by`` from the
first order to the live one and adds up the fills of the whole chain. Because the replacement is
a fresh order, its ``qty`` is what remains to be filled; the adapter always sends it explicitly
(Alpaca otherwise reuses the original quantity even after partial fills).

Alpaca reports cumulative fills only (``filled_qty``, ``filled_avg_price``); states leave
``fills`` empty and the executor derives each fill from the change.

Fills and cancels of resting orders are pushed: for each account the executor serves, the adapter
follows Alpaca's ``trade_updates`` WebSocket stream and, for every ``fill``, ``partial_fill``,
``canceled``, ``expired`` or ``rejected`` event, looks the order up and hands its state to the
executor (see :mod:`._streams`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import urllib.parse
from collections.abc import Collection, Mapping
from decimal import Decimal
from typing import Any, Final

import httpx
import websockets

from coyote_executor.brokers._http import (
    Auth,
    HttpClient,
    RetryPolicy,
    Sleep,
    decimal_str,
    decode,
    retry_after_header,
    timestamp_ms,
    to_decimal,
)
from coyote_executor.brokers._streams import AccountStreams
from coyote_executor.brokers.base import (
    Broker,
    BrokerAuthError,
    BrokerError,
    BrokerOrder,
    BrokerOrderState,
    BrokerUnavailable,
    UnknownOrder,
    UpdateListener,
)
from coyote_executor.credentials import CredentialsProvider, require
from coyote_sdk.protocol import OrderStatus, OrderType, TimeInForce, now_ms

log = logging.getLogger(__name__)

PAPER_URL: Final = "https://paper-api.alpaca.markets"
LIVE_URL: Final = "https://api.alpaca.markets"
PAPER_STREAM_URL: Final = "wss://paper-api.alpaca.markets/stream"
LIVE_STREAM_URL: Final = "wss://api.alpaca.markets/stream"

_STREAMED: Final = frozenset({"fill", "partial_fill", "canceled", "expired", "rejected"})
"""The ``trade_updates`` events that change an order's state as the executor knows it."""
_HANDSHAKE_S = 10.0

ZERO = Decimal(0)
_PAGE = 500  # Alpaca's largest page of orders
_MAX_REPLACES = 100  # a chain longer than this is a bug, not a trading strategy
_REPLACEMENT = re.compile(r"^(?P<root>.+)\.r(?P<n>\d+)$")

STATUSES: Final[Mapping[str, OrderStatus]] = {
    "new": OrderStatus.NEW,
    # Received by Alpaca but not yet routed or not yet accepted by the venue: the broker holds
    # the order (a refusal would come later as `rejected`), so it counts as acknowledged.
    "accepted": OrderStatus.NEW,
    "pending_new": OrderStatus.NEW,
    "accepted_for_bidding": OrderStatus.NEW,
    "held": OrderStatus.NEW,
    "partially_filled": OrderStatus.PARTIALLY_FILLED,
    "filled": OrderStatus.FILLED,
    # Working orders in a transient state: still live until Alpaca says otherwise.
    "done_for_day": OrderStatus.NEW,
    "pending_cancel": OrderStatus.NEW,
    "pending_replace": OrderStatus.NEW,
    "replaced": OrderStatus.NEW,
    "stopped": OrderStatus.NEW,
    "suspended": OrderStatus.NEW,
    "calculated": OrderStatus.NEW,
    "pending_review": OrderStatus.NEW,
    "canceled": OrderStatus.CANCELED,
    "expired": OrderStatus.EXPIRED,
    "rejected": OrderStatus.REJECTED,
}
"""Alpaca order statuses and the Coyote status each maps to. A live status becomes
``partially_filled`` (or ``filled``) when the order has fills; an unknown status counts as live."""

_ORDER_TYPES: Final = {
    OrderType.MARKET: "market",
    OrderType.LIMIT: "limit",
    OrderType.STOP: "stop",
    OrderType.STOP_LIMIT: "stop_limit",
}
_TIME_IN_FORCE: Final = {
    TimeInForce.GTC: "gtc",
    TimeInForce.IOC: "ioc",
    TimeInForce.FOK: "fok",
    TimeInForce.DAY: "day",
}

# Alpaca answers most refusals with one code (40310000 or 40010001); the message tells them
# apart. First match wins.
_REFUSALS: Final = (
    ("insufficient buying power", "insufficient_buying_power"),
    ("insufficient qty", "insufficient_quantity"),
    ("insufficient balance", "insufficient_balance"),
    ("day trading", "pattern_day_trading"),
    ("pattern day", "pattern_day_trading"),
    ("wash trade", "wash_trade"),
    ("not shortable", "not_shortable"),
    ("cannot be sold short", "not_shortable"),
    ("not tradable", "not_tradable"),
    ("not active", "not_tradable"),
    ("not found", "unknown_symbol"),
    ("market is closed", "market_closed"),
)
_REFUSALS_BY_STATUS: Final = {
    400: "invalid_request",
    403: "forbidden",
    404: "not_found",
    422: "invalid_order",
}


class AlpacaSymbols:
    """Coyote's canonical symbols and Alpaca's.

    Equities are the same on both sides (``AAPL``, ``BRK.B``). A crypto pair is ``BTC-USD`` in
    Coyote and ``BTC/USD`` at Alpaca (positions say ``BTCUSD``). ``overrides`` maps canonical
    symbols to Alpaca's where the rule does not fit.
    """

    QUOTES: Final = ("USDT", "USDC", "USD", "BTC")
    """Quote currencies of Alpaca's crypto pairs, for splitting ``BTCUSD``."""

    def __init__(self, overrides: Mapping[str, str] | None = None) -> None:
        self._to_venue = dict(overrides or {})
        self._to_canonical = {venue: canonical for canonical, venue in self._to_venue.items()}

    def to_venue(self, symbol: str) -> str:
        """Alpaca's symbol for a canonical one: ``BTC-USD`` → ``BTC/USD``, ``AAPL`` → ``AAPL``."""
        if symbol in self._to_venue:
            return self._to_venue[symbol]
        base, dash, quote = symbol.rpartition("-")
        if dash and base and quote in self.QUOTES:
            return f"{base}/{quote}"
        return symbol

    def to_canonical(self, symbol: str, asset_class: str | None = None) -> str:
        """The canonical symbol for Alpaca's: ``BTC/USD`` or a crypto ``BTCUSD`` → ``BTC-USD``."""
        if symbol in self._to_canonical:
            return self._to_canonical[symbol]
        if "/" in symbol:
            return symbol.replace("/", "-")
        if asset_class == "crypto":
            for quote in self.QUOTES:
                if symbol.endswith(quote) and len(symbol) > len(quote):
                    return f"{symbol[: -len(quote)]}-{quote}"
        return symbol


class AlpacaBroker(Broker):
    """Alpaca, for the accounts in ``accounts`` (each with its own API key pair).

    Args:
        accounts: Credentials provider per Coyote account id; each secret holds the keys
            ``api_key_id`` and ``api_secret_key``.
        paper: Trade on the paper endpoint (the default) or the live one.
        base_url: Another endpoint (overrides ``paper``).
        symbols: Symbol mapping, or overrides for the default one.
        retry: How transient failures are retried.
        timeout: Request timeouts.
        transport: An httpx transport to use instead of the network (tests).
        sleep: Awaited between retries (tests inject one that does not wait).
        stream_url: The ``trade_updates`` WebSocket (default: ``paper``'s, or ``base_url``'s).
        stream_retry_s: The pause before reopening a failed stream: the first, doubled after
            each failure up to the second.
    """

    name = "alpaca"

    def __init__(
        self,
        accounts: Mapping[str, CredentialsProvider],
        *,
        paper: bool = True,
        base_url: str | None = None,
        symbols: AlpacaSymbols | Mapping[str, str] | None = None,
        retry: RetryPolicy | None = None,
        timeout: httpx.Timeout | float | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
        stream_url: str | None = None,
        stream_retry_s: tuple[float, float] = (1.0, 30.0),
    ) -> None:
        if not accounts:
            raise ValueError("AlpacaBroker needs at least one account")
        if stream_url is None and base_url is not None:
            stream_url = "ws" + base_url.removeprefix("http").rstrip("/") + "/stream"
        self._stream_url = stream_url or (PAPER_STREAM_URL if paper else LIVE_STREAM_URL)
        self._streams = AccountStreams(
            self.name,
            self._follow_trade_updates,
            self.lookup,
            retry_s=stream_retry_s,
            expected=(websockets.WebSocketException,),
        )
        self._auth = {account: Auth(provider, _headers) for account, provider in accounts.items()}
        self._symbols = symbols if isinstance(symbols, AlpacaSymbols) else AlpacaSymbols(symbols)
        self._http = HttpClient(
            self.name,
            base_url or (PAPER_URL if paper else LIVE_URL),
            retry=retry,
            timeout=timeout,
            transport=transport,
            sleep=sleep,
            is_auth_failure=_auth_failure,
            retry_after=_retry_after,
        )

    async def start(self, listener: UpdateListener) -> None:
        """Hands fills and cancels from the accounts' ``trade_updates`` to ``listener`` (one
        stream per account served, from :meth:`serve` on)."""
        self._streams.start(listener)

    async def serve(self, account_ids: Collection[str]) -> None:
        """Follows the ``trade_updates`` of ``account_ids`` (once started), and no others."""
        await self._streams.serve(set(account_ids) & self._auth.keys())

    async def close(self) -> None:
        await self._streams.close()
        await self._http.aclose()

    # -- orders ----------------------------------------------------------------------------

    async def submit(self, order: BrokerOrder) -> BrokerOrderState:
        auth = self._account(order.account_id)
        response = await self._http.request(
            "POST", "/v2/orders", auth=auth, json=self._order_body(order)
        )
        if response.is_success:
            return _state(order.client_order_id, [decode(response)])
        error = _Error.of(response)
        if response.status_code == 422 and error.is_duplicate_client_order_id:
            # Our own earlier attempt (its answer lost), or a redelivered order: not a new one.
            existing = await self.lookup(order.account_id, order.client_order_id)
            if existing is not None:
                return existing
            return _rejected(order, "duplicate_client_order_id", error.message)
        log.info(
            "alpaca refused order %s (HTTP %s): %s",
            order.client_order_id,
            response.status_code,
            error.message,
        )
        return _rejected(order, error.refusal, error.message)

    async def cancel(self, account_id: str, client_order_id: str) -> BrokerOrderState:
        auth = self._account(account_id)
        chain = await self._chain(auth, client_order_id)
        if chain is None:
            raise UnknownOrder(f"alpaca knows no order {client_order_id} on account {account_id}")
        state = _state(client_order_id, chain)
        if state.status.is_terminal:
            return state
        live = chain[-1]
        response = await self._http.request("DELETE", f"/v2/orders/{live['id']}", auth=auth)
        if not response.is_success:
            error = _Error.of(response)
            if response.status_code not in (404, 422):
                raise BrokerError(f"alpaca cancel of {client_order_id}: {error}")
            # 422: no longer cancelable (filled, or a cancel/replace in flight); the fresh state
            # below says which.
            log.info("alpaca did not cancel %s: %s", client_order_id, error.message)
        fresh = await self._chain(auth, client_order_id)
        return state if fresh is None else _state(client_order_id, fresh)

    async def replace(
        self,
        account_id: str,
        client_order_id: str,
        *,
        quantity: Decimal | None = None,
        limit_price: Decimal | None = None,
        stop_price: Decimal | None = None,
    ) -> BrokerOrderState:
        """Replaces the order through Alpaca's cancel/replace (see the module's docstring).

        A replace that Alpaca refuses (the order just filled, or is not yet routed) answers the
        order's current, unchanged state; the refusal is logged.

        Raises:
            ValueError: ``quantity`` is below what has already been filled.
        """
        auth = self._account(account_id)
        chain = await self._chain(auth, client_order_id)
        if chain is None:
            raise UnknownOrder(f"alpaca knows no order {client_order_id} on account {account_id}")
        state = _state(client_order_id, chain)
        if state.status.is_terminal:
            return state
        total = state.quantity if quantity is None else quantity
        if total < state.filled_quantity:
            raise ValueError(
                f"cannot replace the quantity of {client_order_id} with {total}: "
                f"{state.filled_quantity} already filled"
            )
        if total == state.filled_quantity:
            return await self.cancel(account_id, client_order_id)
        body: dict[str, str] = {
            # Sent even when unchanged: the replacement is a new order for what remains.
            "qty": decimal_str(total - state.filled_quantity),
            "client_order_id": f"{client_order_id}.r{len(chain)}",
        }
        if limit_price is not None:
            body["limit_price"] = decimal_str(limit_price)
        if stop_price is not None:
            body["stop_price"] = decimal_str(stop_price)
        response = await self._http.request(
            "PATCH", f"/v2/orders/{chain[-1]['id']}", auth=auth, json=body
        )
        if response.is_success:
            # The answer is the replacement; the old order's fills stay part of the chain.
            return _state(client_order_id, [*chain, decode(response)])
        error = _Error.of(response)
        log.warning("alpaca refused to replace %s: %s", client_order_id, error.message)
        # Alpaca has been seen to refuse a replace it then carried out, so read the chain again.
        fresh = await self._chain(auth, client_order_id)
        return state if fresh is None else _state(client_order_id, fresh)

    async def lookup(self, account_id: str, client_order_id: str) -> BrokerOrderState | None:
        chain = await self._chain(self._account(account_id), client_order_id)
        return None if chain is None else _state(client_order_id, chain)

    async def open_orders(self, account_id: str) -> list[BrokerOrderState]:
        auth = self._account(account_id)
        orders: dict[str, Any] = {}
        params = {"status": "open", "limit": str(_PAGE), "direction": "asc", "nested": "false"}
        while True:
            page = self._expect(
                await self._http.request("GET", "/v2/orders", auth=auth, params=params)
            )
            for order in page:
                orders.setdefault(order["id"], order)
            if len(page) < _PAGE:
                break
            # Pages run by submission time; `after` is exclusive.
            params = {**params, "after": page[-1]["submitted_at"]}
        states = []
        for order in orders.values():
            root = _root_client_order_id(order)
            if root == order["client_order_id"]:
                states.append(_state(root, [order]))
                continue
            # A replacement: report it, with the fills of its predecessors, under the original id.
            chained = await self.lookup(account_id, root)
            states.append(chained if chained is not None else _state(root, [order]))
        return states

    async def positions(self, account_id: str) -> dict[str, Decimal]:
        auth = self._account(account_id)
        held: dict[str, Decimal] = {}
        for position in self._expect(await self._http.request("GET", "/v2/positions", auth=auth)):
            quantity = abs(to_decimal(position["qty"]) or ZERO)
            signed = -quantity if position.get("side") == "short" else quantity
            symbol = self._symbols.to_canonical(position["symbol"], position.get("asset_class"))
            held[symbol] = held.get(symbol, ZERO) + signed
        return {symbol: quantity for symbol, quantity in held.items() if quantity}

    # -- helpers ---------------------------------------------------------------------------

    def _account(self, account_id: str) -> Auth:
        auth = self._auth.get(account_id)
        if auth is None:
            raise UnknownOrder(
                f"the alpaca broker has no account {account_id!r} "
                f"(configured: {', '.join(sorted(self._auth))})"
            )
        return auth

    async def _follow_trade_updates(self, account_id: str) -> None:
        """Reads the account's ``trade_updates`` until the stream ends or fails."""
        auth = self._account(account_id)
        credentials = await auth.credentials.get()
        async with websockets.connect(
            self._stream_url, open_timeout=_HANDSHAKE_S, ping_interval=20, ping_timeout=20
        ) as socket:
            await socket.send(
                json.dumps(
                    {
                        "action": "auth",
                        "key": require(credentials, "api_key_id"),
                        "secret": require(credentials, "api_secret_key"),
                    }
                )
            )
            answer = await _next_message(socket)
            if (answer.get("data") or {}).get("status") != "authorized":
                auth.credentials.invalidate()  # a rotated key is read again for the next try
                raise BrokerAuthError(f"alpaca trade_updates refused the credentials: {answer}")
            await socket.send(
                json.dumps({"action": "listen", "data": {"streams": ["trade_updates"]}})
            )
            answer = await _next_message(socket)
            if "trade_updates" not in (answer.get("data") or {}).get("streams", []):
                raise BrokerError(f"alpaca did not open trade_updates: {answer}")
            log.info("alpaca: following the trade updates of %s", account_id)
            async for message in socket:
                await self._on_trade_update(account_id, message)

    async def _on_trade_update(self, account_id: str, message: str | bytes) -> None:
        """Passes on the state of an order that an event in ``message`` changed."""
        try:
            update = json.loads(message)
        except ValueError:
            log.warning("alpaca: unreadable trade update: %r", message[:200])
            return
        if not isinstance(update, dict) or update.get("stream") != "trade_updates":
            return
        data = update.get("data") or {}
        order = data.get("order") or {}
        if data.get("event") not in _STREAMED or not order.get("client_order_id"):
            return  # new, pending and replaced events; orders without a client id
        await self._streams.changed(account_id, _root_client_order_id(order), data["event"])

    def _order_body(self, order: BrokerOrder) -> dict[str, str]:
        body = {
            "client_order_id": order.client_order_id,
            "symbol": self._symbols.to_venue(order.symbol),
            "qty": decimal_str(order.quantity),
            "side": order.side.value,
            "type": _ORDER_TYPES[order.order_type],
            "time_in_force": _TIME_IN_FORCE[order.time_in_force],
        }
        if order.limit_price is not None:
            body["limit_price"] = decimal_str(order.limit_price)
        if order.stop_price is not None:
            body["stop_price"] = decimal_str(order.stop_price)
        return body

    async def _chain(self, auth: Auth, client_order_id: str) -> list[Any] | None:
        """The order placed under ``client_order_id`` and the replacements that followed it."""
        response = await self._http.request(
            "GET",
            "/v2/orders:by_client_order_id",
            auth=auth,
            params={"client_order_id": client_order_id},
        )
        if response.status_code == 404:
            return None
        chain = [self._expect(response)]
        while chain[-1].get("status") == "replaced" and chain[-1].get("replaced_by"):
            if len(chain) > _MAX_REPLACES:
                raise BrokerError(f"alpaca order {client_order_id} was replaced too many times")
            successor = chain[-1]["replaced_by"]
            response = await self._http.request(
                "GET", f"/v2/orders/{urllib.parse.quote(successor)}", auth=auth
            )
            if response.status_code == 404:
                # Reporting the replaced order as the live one would mislead: try again later.
                raise BrokerUnavailable(
                    f"alpaca order {successor}, which replaced {client_order_id}, "
                    "is not visible yet"
                )
            chain.append(self._expect(response))
        return chain

    def _expect(self, response: httpx.Response) -> Any:
        if not response.is_success:
            raise BrokerError(
                f"alpaca {response.request.method} {response.request.url.path}: "
                f"{_Error.of(response)}"
            )
        return decode(response)


# -- MAPPING ---------------------------------------------------------------------------------


def _headers(credentials: Mapping[str, str]) -> dict[str, str]:
    return {
        "APCA-API-KEY-ID": require(credentials, "api_key_id"),
        "APCA-API-SECRET-KEY": require(credentials, "api_secret_key"),
    }


def _auth_failure(response: httpx.Response) -> bool:
    """401, or a 403 that is the gateway refusing the key rather than a refused order.

    Alpaca refuses orders with 403 too (``{"code": 40310000, "message": "insufficient buying
    power"}``); a bad key gets a bare ``{"message": "forbidden."}`` (or an HTML page) instead.
    """
    if response.status_code == 401:
        return True
    return response.status_code == 403 and _Error.of(response).code is None


def _retry_after(response: httpx.Response) -> float | None:
    """``Retry-After`` if sent, else the time until ``X-Ratelimit-Reset`` (epoch seconds)."""
    delay = retry_after_header(response)
    if delay is not None:
        return delay
    reset = response.headers.get("X-Ratelimit-Reset")
    if reset is None or not reset.isdigit():
        return None
    return max(0.0, int(reset) - time.time())


class _Error:
    """An Alpaca error body: ``{"code": 40310000, "message": "insufficient buying power"}``."""

    def __init__(self, status: int, code: int | None, message: str) -> None:
        self.status = status
        self.code = code
        self.message = message

    @classmethod
    def of(cls, response: httpx.Response) -> _Error:
        body = decode(response)
        if isinstance(body, dict):
            code = body.get("code")
            message = str(body.get("message") or f"HTTP {response.status_code}")
            return cls(response.status_code, code if isinstance(code, int) else None, message)
        return cls(response.status_code, None, f"HTTP {response.status_code}")

    @property
    def is_duplicate_client_order_id(self) -> bool:
        text = self.message.lower()
        return "client_order_id" in text and "unique" in text

    @property
    def refusal(self) -> str:
        """A machine-readable reason, for ``broker.<reason>``."""
        text = self.message.lower()
        for fragment, reason in _REFUSALS:
            if fragment in text:
                return reason
        return _REFUSALS_BY_STATUS.get(self.status, f"http_{self.status}")

    def __str__(self) -> str:
        code = f", code {self.code}" if self.code is not None else ""
        return f"HTTP {self.status}{code}: {self.message}"


async def _next_message(socket: Any) -> dict[str, Any]:
    """The next message of a stream's handshake, as a mapping."""
    message = await asyncio.wait_for(socket.recv(), _HANDSHAKE_S)
    answer = json.loads(message)
    return answer if isinstance(answer, dict) else {"message": answer}


def _root_client_order_id(order: Any) -> str:
    """The client order id the chain of ``order`` started with (ours for a replacement)."""
    client_order_id = str(order["client_order_id"])
    match = _REPLACEMENT.match(client_order_id)
    if order.get("replaces") and match is not None:
        return match["root"]
    return client_order_id


def _state(client_order_id: str, chain: list[Any]) -> BrokerOrderState:
    """One state for a chain of Alpaca orders (the first placed, the last live)."""
    live, earlier = chain[-1], chain[:-1]
    filled_before = sum((to_decimal(o.get("filled_qty")) or ZERO for o in earlier), ZERO)
    paid_before = sum(
        (
            (to_decimal(o.get("filled_qty")) or ZERO)
            * (to_decimal(o.get("filled_avg_price")) or ZERO)
            for o in earlier
        ),
        ZERO,
    )
    live_filled = to_decimal(live.get("filled_qty")) or ZERO
    live_average = to_decimal(live.get("filled_avg_price"))
    quantity = filled_before + (to_decimal(live.get("qty")) or live_filled)
    filled = filled_before + live_filled
    if not filled_before:
        average = live_average if live_filled else None
    else:
        average = (paid_before + live_filled * (live_average or ZERO)) / filled
    raw = str(live.get("status"))
    status = STATUSES.get(raw)
    if status is None:
        log.warning(
            "alpaca order %s has an unknown status %r; counted as live", live.get("id"), raw
        )
        status = OrderStatus.NEW
    if not status.is_terminal and filled:
        status = OrderStatus.FILLED if filled >= quantity else OrderStatus.PARTIALLY_FILLED
    if status is OrderStatus.REJECTED and earlier:
        # The original order worked until replaced; a refused replacement ends it: cancelled.
        log.warning("alpaca rejected the replacement %s of %s", live.get("id"), client_order_id)
        status = OrderStatus.CANCELED
    rejected = status is OrderStatus.REJECTED
    return BrokerOrderState(
        client_order_id=client_order_id,
        status=status,
        quantity=quantity,
        filled_quantity=filled,
        average_price=average,
        broker_order_id=str(live["id"]),
        limit_price=to_decimal(live.get("limit_price")),
        stop_price=to_decimal(live.get("stop_price")),
        reject_code="broker.rejected" if rejected else None,
        reject_reason="Alpaca rejected the order" if rejected else None,
        ts_ms=timestamp_ms(live.get("updated_at") or live.get("created_at")),
    )


def _rejected(order: BrokerOrder, reason: str, message: str) -> BrokerOrderState:
    return BrokerOrderState(
        client_order_id=order.client_order_id,
        status=OrderStatus.REJECTED,
        quantity=order.quantity,
        limit_price=order.limit_price,
        stop_price=order.stop_price,
        reject_code=f"broker.{reason}",
        reject_reason=message,
        ts_ms=now_ms(),
    )
