"""The OANDA v20 REST adapter (forex and CFDs, practice and live).

Orders carry Coyote's client order id in ``clientExtensions.id`` and are addressed as
``@<client order id>`` (``GET /v3/accounts/{account}/orders/@{id}``). Units are signed (negative
sells) and instruments are written ``EUR_USD``.

Idempotency needs care: OANDA refuses a client order id only while another *pending* order holds
it (``CLIENT_ORDER_ID_ALREADY_EXISTS``). A market order fills at once and is no longer pending,
so sending it again would open a second position. The adapter therefore looks the client order id
up before every submission, and again before re-sending one whose first attempt may have reached
OANDA (a read timeout, a 5xx). Because OANDA serves a new order a moment after creating it, that
second look also reads the account's transaction journal since the first lookup: if an order
with our client id was created there, the adapter waits for it instead of sending another. Only
when OANDA knows no such order is the submission sent (again), with the same client order id.

OANDA reports each fill as an ``ORDER_FILL`` transaction: its id is the fill id, and its
commission, guaranteed-execution fee and financing make up the fee. An order OANDA cancels in the
very transaction batch that created it (a market order without margin, a halted market) was never
working: it is reported ``rejected`` with ``broker.<cancel reason>``, e.g.
``broker.insufficient_margin``.

Fills and cancels of resting orders are pushed: for each account the executor serves, the adapter
follows OANDA's transaction stream (``GET /v3/accounts/{account}/transactions/stream`` on the
stream host) and, for every ``ORDER_FILL`` or ``ORDER_CANCEL`` of an order with a client order
id, looks the order up and hands its state to the executor. The stream is a shortcut, not the
record: it reconnects with a growing pause after any failure, and what it misses meanwhile is
found by the executor's reconciliation (``lookup`` and ``open_orders``).

Not supported: stop-limit orders (OANDA's ``STOP`` with a ``priceBound`` cancels when the bound is
crossed instead of resting at the limit, a different order) are answered ``rejected`` with
``broker.unsupported_order_type``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import re
import urllib.parse
from collections.abc import Collection, Mapping
from decimal import Decimal
from typing import Any, Final

import httpx

from coyote_executor.brokers._http import (
    Auth,
    HttpClient,
    RetryPolicy,
    Sleep,
    TransientError,
    decimal_str,
    decode,
    timestamp_ms,
    to_decimal,
)
from coyote_executor.brokers._streams import AccountStreams
from coyote_executor.brokers.base import (
    Broker,
    BrokerError,
    BrokerFill,
    BrokerOrder,
    BrokerOrderState,
    BrokerUnavailable,
    UnknownOrder,
    UpdateListener,
)
from coyote_executor.credentials import CredentialsProvider, require
from coyote_sdk.protocol import OrderStatus, OrderType, Side, TimeInForce, now_ms

log = logging.getLogger(__name__)

PRACTICE_URL: Final = "https://api-fxpractice.oanda.com"
LIVE_URL: Final = "https://api-fxtrade.oanda.com"
STREAM_PRACTICE_URL: Final = "https://stream-fxpractice.oanda.com"
STREAM_LIVE_URL: Final = "https://stream-fxtrade.oanda.com"

STREAM_SILENCE_S: Final = 20.0
"""OANDA writes a heartbeat into the transaction stream every 5 s: one silent this long is dead."""
_STREAMED: Final = frozenset({"ORDER_FILL", "ORDER_CANCEL"})

ZERO = Decimal(0)
_MAX_REPLACES = 100
_REPLACEMENT = re.compile(r"^(?P<root>.+)\.r(?P<n>\d+)$")
_DUPLICATE = "CLIENT_ORDER_ID_ALREADY_EXISTS"

STATUSES: Final[Mapping[str, OrderStatus]] = {
    "PENDING": OrderStatus.NEW,
    "TRIGGERED": OrderStatus.NEW,
    "FILLED": OrderStatus.FILLED,
    "CANCELLED": OrderStatus.CANCELED,
}
"""OANDA order states and the Coyote status each maps to, before the cancel reason is read:
a cancel for ``TIME_IN_FORCE_EXPIRED`` is ``expired``, one in the creating batch ``rejected``."""

_ORDER_TYPES: Final = {OrderType.MARKET: "MARKET", OrderType.LIMIT: "LIMIT", OrderType.STOP: "STOP"}
_MARKET_TIME_IN_FORCE: Final = {TimeInForce.IOC: "IOC"}  # anything else: FOK, OANDA's default
_TIME_IN_FORCE: Final = {
    TimeInForce.GTC: "GTC",
    TimeInForce.DAY: "GFD",
    TimeInForce.IOC: "IOC",
    TimeInForce.FOK: "FOK",
}
_CLIENT_CANCELS: Final = frozenset({"CLIENT_REQUEST", "CLIENT_REQUEST_REPLACED"})


@dataclasses.dataclass(frozen=True)
class OandaAccount:
    """One OANDA account that a Coyote account trades.

    Attributes:
        account_id: OANDA's account id, e.g. ``101-004-1435156-001`` (configuration, not secret).
        credentials: Provider of the secret with the key ``token`` (the personal access token).
        home_currency: The account's currency, reported as the currency of fill fees.
    """

    account_id: str
    credentials: CredentialsProvider
    home_currency: str | None = None


class OandaSymbols:
    """Coyote's canonical symbols and OANDA's instrument names.

    Six letters are a currency pair: ``EURUSD`` ↔ ``EUR_USD`` (``XAUUSD`` ↔ ``XAU_USD``). Other
    canonical symbols use ``-``, ``/`` or ``_`` between the parts: ``SPX500-USD`` → ``SPX500_USD``
    (which comes back as ``SPX500_USD``, a valid canonical symbol). ``overrides`` maps canonical
    symbols to instruments where the rule does not fit.
    """

    def __init__(self, overrides: Mapping[str, str] | None = None) -> None:
        self._to_venue = dict(overrides or {})
        self._to_canonical = {venue: canonical for canonical, venue in self._to_venue.items()}

    def to_venue(self, symbol: str) -> str:
        """OANDA's instrument for a canonical symbol.

        Raises:
            ValueError: The symbol has no OANDA instrument by the rule and no override.
        """
        if symbol in self._to_venue:
            return self._to_venue[symbol]
        if len(symbol) == 6 and symbol.isalpha():
            return f"{symbol[:3]}_{symbol[3:]}"
        for separator in ("_", "-", "/"):
            base, found, quote = symbol.partition(separator)
            if found and base and quote:
                return f"{base}_{quote}"
        raise ValueError(
            f"no OANDA instrument for the symbol {symbol!r}: expected a pair like EURUSD or "
            "SPX500-USD, or an entry in `symbols`"
        )

    def to_canonical(self, instrument: str) -> str:
        """The canonical symbol for an instrument: ``EUR_USD`` → ``EURUSD``."""
        if instrument in self._to_canonical:
            return self._to_canonical[instrument]
        base, _, quote = instrument.partition("_")
        if len(base) == 3 and len(quote) == 3 and (base + quote).isalpha():
            return base + quote
        return instrument


class OandaBroker(Broker):
    """OANDA, for the accounts in ``accounts``.

    Args:
        accounts: The OANDA account (id and token) per Coyote account id.
        practice: Trade on the practice endpoint (the default) or the live one.
        base_url: Another endpoint (overrides ``practice``).
        symbols: Symbol mapping, or overrides for the default one.
        retry: How transient failures are retried.
        timeout: Request timeouts.
        transport: An httpx transport to use instead of the network (tests).
        sleep: Awaited between retries (tests inject one that does not wait).
        stream_url: The transaction stream's host (default: ``practice``'s, or ``base_url``).
        stream_retry_s: The pause before reconnecting a failed transaction stream: the first,
            doubled after each failure up to the second.
    """

    name = "oanda"

    def __init__(
        self,
        accounts: Mapping[str, OandaAccount],
        *,
        practice: bool = True,
        base_url: str | None = None,
        symbols: OandaSymbols | Mapping[str, str] | None = None,
        retry: RetryPolicy | None = None,
        timeout: httpx.Timeout | float | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Sleep = asyncio.sleep,
        stream_url: str | None = None,
        stream_retry_s: tuple[float, float] = (1.0, 30.0),
    ) -> None:
        if not accounts:
            raise ValueError("OandaBroker needs at least one account")
        self._stream_url = (
            stream_url or base_url or (STREAM_PRACTICE_URL if practice else STREAM_LIVE_URL)
        )
        self._streams = AccountStreams(
            self.name, self._follow_transactions, self.lookup, retry_s=stream_retry_s
        )
        self._accounts = dict(accounts)
        self._auth = {a: Auth(acct.credentials, _headers) for a, acct in accounts.items()}
        self._symbols = symbols if isinstance(symbols, OandaSymbols) else OandaSymbols(symbols)
        self._http = HttpClient(
            self.name,
            base_url or (PRACTICE_URL if practice else LIVE_URL),
            # The first retry waits past the moment OANDA takes to serve a new order.
            retry=retry or RetryPolicy(base_delay_s=1.0, max_delay_s=4.0),
            timeout=timeout,
            transport=transport,
            sleep=sleep,
        )

    async def start(self, listener: UpdateListener) -> None:
        """Hands fills and cancels from OANDA's transaction streams to ``listener`` (one stream
        per account served, from :meth:`serve` on)."""
        self._streams.start(listener)

    async def serve(self, account_ids: Collection[str]) -> None:
        """Follows the transaction streams of ``account_ids`` (once started), and no others."""
        await self._streams.serve(set(account_ids) & self._accounts.keys())

    async def close(self) -> None:
        await self._streams.close()
        await self._http.aclose()

    # -- orders ----------------------------------------------------------------------------

    async def submit(self, order: BrokerOrder) -> BrokerOrderState:
        account = self._account(order.account_id)
        if order.order_type is OrderType.STOP_LIMIT:
            return _rejected(
                order,
                "unsupported_order_type",
                "OANDA has no stop-limit order; use a stop or a limit order",
            )
        try:
            body = {"order": self._order_spec(order)}
        except ValueError as exc:
            return _rejected(order, "unknown_symbol", str(exc))
        # OANDA only refuses a client order id held by a *pending* order: ask first.
        first, mark = await self._by_client_id(order.account_id, order.client_order_id)
        if first is not None:
            chain = await self._follow(order.account_id, order.client_order_id, first)
            return await self._state(order.account_id, order.client_order_id, chain)
        path = f"{_base(account)}/orders"
        maybe_sent = False

        async def attempt() -> BrokerOrderState:
            nonlocal maybe_sent
            if maybe_sent:
                found = await self.lookup(order.account_id, order.client_order_id)
                if found is not None:
                    return found
                # OANDA serves a new order a moment after creating it; its transaction journal
                # already has it. Wait for the order rather than send a second one.
                if mark is not None and await self._journaled(order, since=mark):
                    raise TransientError(
                        f"oanda order {order.client_order_id} was created but cannot be read yet",
                        ambiguous=True,
                    )
            try:
                response = await self._http.send(
                    "POST", path, auth=self._auth[order.account_id], json=body
                )
            except TransientError as exc:
                maybe_sent = maybe_sent or exc.ambiguous
                raise
            return await self._created(order, response)

        return await self._http.retrying(attempt)

    async def cancel(self, account_id: str, client_order_id: str) -> BrokerOrderState:
        account = self._account(account_id)
        chain = await self._chain(account_id, client_order_id)
        if chain is None:
            raise UnknownOrder(f"oanda knows no order {client_order_id} on account {account_id}")
        state = await self._state(account_id, client_order_id, chain)
        if state.status.is_terminal:
            return state
        live_id = chain[-1]["id"]
        response = await self._http.request(
            "PUT", f"{_base(account)}/orders/{live_id}/cancel", auth=self._auth[account_id]
        )
        if response.is_success:
            cancelled = (decode(response) or {}).get("orderCancelTransaction") or {}
            return dataclasses.replace(
                state,
                status=OrderStatus.CANCELED,
                ts_ms=timestamp_ms(cancelled.get("time")) or now_ms(),
            )
        error = _Error.of(response)
        if response.status_code != 404:
            raise BrokerError(f"oanda cancel of {client_order_id}: {error}")
        # 404: no longer cancelable (it filled meanwhile) or gone; the fresh state says which.
        log.info("oanda did not cancel %s: %s", client_order_id, error.message)
        fresh = await self.lookup(account_id, client_order_id)
        if fresh is None:
            raise UnknownOrder(f"oanda knows no order {client_order_id} on account {account_id}")
        return fresh

    async def replace(
        self,
        account_id: str,
        client_order_id: str,
        *,
        quantity: Decimal | None = None,
        limit_price: Decimal | None = None,
        stop_price: Decimal | None = None,
    ) -> BrokerOrderState:
        """Replaces a pending order through OANDA's cancel/replace (``PUT .../orders/{id}``).

        OANDA cancels the order and creates a new one; the replacement gets the client order id
        ``<client order id>.r<n>`` and the chain keeps being reported under the original id. A
        replace OANDA refuses answers the order's current, unchanged state; the refusal is logged.

        Raises:
            ValueError: A price that the order's type does not have (a limit price for a stop).
        """
        account = self._account(account_id)
        chain = await self._chain(account_id, client_order_id)
        if chain is None:
            raise UnknownOrder(f"oanda knows no order {client_order_id} on account {account_id}")
        state = await self._state(account_id, client_order_id, chain)
        live = chain[-1]
        if state.status.is_terminal or live.get("state") != "PENDING":
            return state
        kind = live.get("type")
        if (limit_price is not None and kind != "LIMIT") or (
            stop_price is not None and kind != "STOP"
        ):
            raise ValueError(
                f"cannot set {'a limit' if limit_price is not None else 'a stop'} price on "
                f"the OANDA {kind} order {client_order_id}"
            )
        units = abs(to_decimal(live["units"]) or ZERO) if quantity is None else quantity
        sign = "-" if str(live["units"]).startswith("-") else ""
        price = limit_price if limit_price is not None else stop_price
        spec: dict[str, Any] = {
            "type": kind,
            "instrument": live["instrument"],
            "units": sign + decimal_str(units),
            "price": decimal_str(price) if price is not None else live["price"],
            "timeInForce": live.get("timeInForce", "GTC"),
            "positionFill": "DEFAULT",
            "clientExtensions": {"id": f"{client_order_id}.r{len(chain)}"},
        }
        if live.get("gtdTime"):
            spec["gtdTime"] = live["gtdTime"]
        path = f"{_base(account)}/orders/{live['id']}"
        maybe_sent = False

        async def attempt() -> httpx.Response | BrokerOrderState:
            nonlocal maybe_sent
            if maybe_sent:
                # An earlier attempt may have replaced the order already: then the chain is longer.
                fresh = await self._chain(account_id, client_order_id)
                if fresh is not None and len(fresh) > len(chain):
                    return await self._state(account_id, client_order_id, fresh)
            try:
                return await self._http.send(
                    "PUT", path, auth=self._auth[account_id], json={"order": spec}
                )
            except TransientError as exc:
                maybe_sent = maybe_sent or exc.ambiguous
                raise

        outcome = await self._http.retrying(attempt)
        if isinstance(outcome, BrokerOrderState):
            return outcome
        body = decode(outcome) or {}
        if outcome.is_success:
            # Built from the answer: the new order may not be readable for a moment yet.
            created = body.get("orderCreateTransaction") or {}
            filling = body.get("orderFillTransaction")
            fills = (self._fill(account_id, filling),) if filling else ()
            filled = sum((f.quantity for f in fills), ZERO)
            total = abs(to_decimal(created.get("units")) or units)
            if body.get("replacingOrderCancelTransaction"):
                # OANDA cancelled the replacement at once: the order is over.
                status = OrderStatus.CANCELED
            elif fills:
                status = OrderStatus.FILLED if filled >= total else OrderStatus.PARTIALLY_FILLED
            else:
                status = OrderStatus.NEW
            return dataclasses.replace(
                state,
                status=status,
                quantity=total,
                filled_quantity=filled,
                average_price=_average(fills),
                broker_order_id=str(created.get("id") or state.broker_order_id),
                limit_price=to_decimal(created.get("price")) if kind == "LIMIT" else None,
                stop_price=to_decimal(created.get("price")) if kind == "STOP" else None,
                fills=fills,
                ts_ms=timestamp_ms(created.get("time")) or now_ms(),
            )
        log.warning("oanda refused to replace %s: %s", client_order_id, _Error.of(outcome))
        return state

    async def lookup(self, account_id: str, client_order_id: str) -> BrokerOrderState | None:
        chain = await self._chain(account_id, client_order_id)
        return None if chain is None else await self._state(account_id, client_order_id, chain)

    async def open_orders(self, account_id: str) -> list[BrokerOrderState]:
        account = self._account(account_id)
        response = await self._http.request(
            "GET", f"{_base(account)}/pendingOrders", auth=self._auth[account_id]
        )
        states = []
        for order in self._expect(response).get("orders", []):
            client_order_id = (order.get("clientExtensions") or {}).get("id")
            if not client_order_id:
                # Not placed through Coyote: take-profit/stop-loss orders on trades, manual ones.
                log.debug("oanda pending order %s has no client order id; skipped", order.get("id"))
                continue
            match = _REPLACEMENT.match(client_order_id)
            if order.get("replacesOrderID") and match is not None:
                client_order_id = match["root"]
            states.append(await self._state(account_id, client_order_id, [order]))
        return states

    async def positions(self, account_id: str) -> dict[str, Decimal]:
        account = self._account(account_id)
        response = await self._http.request(
            "GET", f"{_base(account)}/openPositions", auth=self._auth[account_id]
        )
        held: dict[str, Decimal] = {}
        for position in self._expect(response).get("positions", []):
            # Short units are negative already; a hedging account may hold both sides.
            net = sum(
                (
                    to_decimal((position.get(side) or {}).get("units")) or ZERO
                    for side in ("long", "short")
                ),
                ZERO,
            )
            if net:
                symbol = self._symbols.to_canonical(position["instrument"])
                held[symbol] = held.get(symbol, ZERO) + net
        return held

    # -- the transaction stream ------------------------------------------------------------

    async def _follow_transactions(self, account_id: str) -> None:
        """Reads the account's transaction stream until it ends or fails."""
        account, auth = self._account(account_id), self._auth[account_id]
        url = f"{self._stream_url}{_base(account)}/transactions/stream"
        async with self._http.stream(url, auth=auth, silence_s=STREAM_SILENCE_S) as body:
            log.info("oanda: following the transactions of %s", account_id)
            async for line in body.aiter_lines():
                await self._on_transaction(account_id, line)

    async def _on_transaction(self, account_id: str, line: str) -> None:
        """Passes on the state of an order that a fill or cancel in ``line`` changed."""
        if not line.strip():
            return
        try:
            transaction = json.loads(line)
        except ValueError:
            log.warning("oanda: unreadable line in the transaction stream: %r", line[:200])
            return
        if not isinstance(transaction, dict) or transaction.get("type") not in _STREAMED:
            return  # heartbeats, and what does not change an order's state
        client_order_id = transaction.get("clientOrderID")
        if not isinstance(client_order_id, str) or not client_order_id:
            return  # not placed through Coyote
        match = _REPLACEMENT.match(client_order_id)
        if match is not None:
            client_order_id = match["root"]  # a replacement reports as the order it replaced
        await self._streams.changed(account_id, client_order_id, transaction["type"])

    # -- helpers ---------------------------------------------------------------------------

    def _account(self, account_id: str) -> OandaAccount:
        account = self._accounts.get(account_id)
        if account is None:
            raise UnknownOrder(
                f"the oanda broker has no account {account_id!r} "
                f"(configured: {', '.join(sorted(self._accounts))})"
            )
        return account

    def _order_spec(self, order: BrokerOrder) -> dict[str, Any]:
        units = decimal_str(order.quantity)
        spec: dict[str, Any] = {
            "type": _ORDER_TYPES[order.order_type],
            "instrument": self._symbols.to_venue(order.symbol),
            "units": units if order.side is Side.BUY else f"-{units}",
            "positionFill": "DEFAULT",
            "clientExtensions": {"id": order.client_order_id},
        }
        if order.order_type is OrderType.MARKET:
            spec["timeInForce"] = _MARKET_TIME_IN_FORCE.get(order.time_in_force, "FOK")
        else:
            spec["timeInForce"] = _TIME_IN_FORCE[order.time_in_force]
            price = order.limit_price if order.order_type is OrderType.LIMIT else order.stop_price
            if price is None:
                raise ValueError(f"a {order.order_type.value} order needs its price")
            spec["price"] = decimal_str(price)
        return spec

    async def _created(self, order: BrokerOrder, response: httpx.Response) -> BrokerOrderState:
        """The state of a just-submitted order, from OANDA's answer to the submission."""
        body = decode(response) or {}
        if not response.is_success:
            error = _Error.of(response)
            if error.reason == _DUPLICATE:
                existing = await self.lookup(order.account_id, order.client_order_id)
                if existing is not None:
                    return existing
            log.info(
                "oanda refused order %s (HTTP %s): %s",
                order.client_order_id,
                response.status_code,
                error,
            )
            return _rejected(order, error.reason.lower(), error.message)
        created = body.get("orderCreateTransaction") or {}
        filling = body.get("orderFillTransaction")
        cancelled = body.get("orderCancelTransaction")
        fills = (self._fill(order.account_id, filling),) if filling else ()
        filled = sum((f.quantity for f in fills), ZERO)
        status, reject_code, reject_reason = OrderStatus.NEW, None, None
        if cancelled and not fills:
            # Cancelled in the batch that created it: the order never worked.
            reason = str(cancelled.get("reason") or "CANCELLED")
            status = OrderStatus.REJECTED
            reject_code, reject_reason = (
                f"broker.{reason.lower()}",
                f"OANDA cancelled the order: {reason}",
            )
        elif cancelled:
            status = OrderStatus.CANCELED  # IOC: the rest was cancelled
        elif fills:
            status = (
                OrderStatus.FILLED if filled >= order.quantity else OrderStatus.PARTIALLY_FILLED
            )
        moments = [timestamp_ms(t.get("time")) for t in (created, filling, cancelled) if t]
        return BrokerOrderState(
            client_order_id=order.client_order_id,
            status=status,
            quantity=order.quantity,
            filled_quantity=filled,
            average_price=_average(fills),
            broker_order_id=str(created["id"]) if created.get("id") else None,
            limit_price=order.limit_price,
            stop_price=order.stop_price,
            fills=fills,
            reject_code=reject_code,
            reject_reason=reject_reason,
            ts_ms=max(moments, default=0) or now_ms(),
        )

    async def _chain(self, account_id: str, client_order_id: str) -> list[Any] | None:
        """The order placed under ``client_order_id`` and the replacements that followed it."""
        first, _ = await self._by_client_id(account_id, client_order_id)
        return None if first is None else await self._follow(account_id, client_order_id, first)

    async def _by_client_id(
        self, account_id: str, client_order_id: str
    ) -> tuple[Any | None, str | None]:
        """The order with that client order id (or None), and OANDA's last transaction id."""
        account = self._account(account_id)
        response = await self._http.request(
            "GET",
            f"{_base(account)}/orders/@{urllib.parse.quote(client_order_id, safe='')}",
            auth=self._auth[account_id],
        )
        if response.status_code == 404:
            mark = (decode(response) or {}).get("lastTransactionID")
            return None, str(mark) if mark is not None else None
        body = self._expect(response)
        return body["order"], body.get("lastTransactionID")

    async def _follow(self, account_id: str, client_order_id: str, first: Any) -> list[Any]:
        """``first`` and the orders that replaced it, one after the other."""
        account, auth = self._account(account_id), self._auth[account_id]
        chain = [first]
        while chain[-1].get("state") == "CANCELLED" and chain[-1].get("replacedByOrderID"):
            if len(chain) > _MAX_REPLACES:
                raise BrokerError(f"oanda order {client_order_id} was replaced too many times")
            successor = chain[-1]["replacedByOrderID"]
            response = await self._http.request(
                "GET", f"{_base(account)}/orders/{successor}", auth=auth
            )
            if response.status_code == 404:
                # Reporting the replaced order as the live one would say "cancelled": try later.
                raise BrokerUnavailable(
                    f"oanda order {successor}, which replaced {client_order_id}, is not visible yet"
                )
            chain.append(self._expect(response)["order"])
        return chain

    async def _journaled(self, order: BrokerOrder, *, since: str) -> bool:
        """Whether OANDA's transactions after ``since`` created an order with our client id."""
        account = self._account(order.account_id)
        response = await self._http.request(
            "GET",
            f"{_base(account)}/transactions/sinceid",
            auth=self._auth[order.account_id],
            params={"id": since},
        )
        for transaction in self._expect(response).get("transactions", []):
            kind = str(transaction.get("type", ""))
            extensions = transaction.get("clientExtensions") or {}
            if kind.endswith("_ORDER") and extensions.get("id") == order.client_order_id:
                return True
        return False

    async def _state(
        self, account_id: str, client_order_id: str, chain: list[Any]
    ) -> BrokerOrderState:
        """One state for a chain of OANDA orders (the first placed, the last live)."""
        live = chain[-1]
        quantity = abs(to_decimal(live.get("units")) or ZERO)
        raw = str(live.get("state"))
        status = STATUSES.get(raw)
        if status is None:
            log.warning(
                "oanda order %s has an unknown state %r; counted as live", live.get("id"), raw
            )
            status = OrderStatus.NEW
        fills: tuple[BrokerFill, ...] = ()
        reject_code = reject_reason = None
        if live.get("fillingTransactionID"):
            filling = await self._transaction(account_id, live["fillingTransactionID"])
            fills = (self._fill(account_id, filling),)
        filled = sum((f.quantity for f in fills), ZERO)
        if raw == "FILLED" and fills and filled < quantity:
            immediate = live.get("type") == "MARKET" or live.get("timeInForce") in ("IOC", "FOK")
            if immediate:
                status = OrderStatus.CANCELED  # the rest was cancelled
            else:
                # OANDA may have reissued the rest as a new order, which this lookup cannot see.
                log.warning("oanda order %s filled %s of %s", live.get("id"), filled, quantity)
                status = OrderStatus.PARTIALLY_FILLED
        elif raw == "CANCELLED" and not fills and live.get("cancellingTransactionID"):
            cancelling = await self._transaction(account_id, live["cancellingTransactionID"])
            reason = str(cancelling.get("reason") or "")
            if reason == "TIME_IN_FORCE_EXPIRED":
                status = OrderStatus.EXPIRED
            elif (
                reason not in _CLIENT_CANCELS
                and str(cancelling.get("batchID")) == str(live["id"])
                and len(chain) == 1  # a refused replacement ends an order that had worked
            ):
                status = OrderStatus.REJECTED
                reject_code = f"broker.{reason.lower() or 'cancelled'}"
                reject_reason = f"OANDA cancelled the order: {reason}"
        price = to_decimal(live.get("price"))
        return BrokerOrderState(
            client_order_id=client_order_id,
            status=status,
            quantity=quantity,
            filled_quantity=filled,
            average_price=_average(fills),
            broker_order_id=str(live["id"]),
            limit_price=price if live.get("type") == "LIMIT" else None,
            stop_price=price if live.get("type") == "STOP" else None,
            fills=fills,
            reject_code=reject_code,
            reject_reason=reject_reason,
            ts_ms=timestamp_ms(
                live.get("filledTime") or live.get("cancelledTime") or live.get("createTime")
            ),
        )

    async def _transaction(self, account_id: str, transaction_id: str) -> Any:
        account = self._account(account_id)
        response = await self._http.request(
            "GET", f"{_base(account)}/transactions/{transaction_id}", auth=self._auth[account_id]
        )
        return self._expect(response)["transaction"]

    def _fill(self, account_id: str, transaction: Any) -> BrokerFill:
        """A fill from an ``ORDER_FILL`` transaction.

        The fee is what the fill cost beyond its price: commission plus guaranteed-execution fee,
        plus any financing paid on the trades it closed (OANDA reports financing paid as negative).
        """
        price = to_decimal(transaction.get("fullVWAP")) or to_decimal(transaction.get("price"))
        if price is None:
            raise BrokerError(f"oanda fill {transaction.get('id')} has no price")
        fee = (
            (to_decimal(transaction.get("commission")) or ZERO)
            + (to_decimal(transaction.get("guaranteedExecutionFee")) or ZERO)
            - (to_decimal(transaction.get("financing")) or ZERO)
        )
        return BrokerFill(
            fill_id=str(transaction["id"]),
            quantity=abs(to_decimal(transaction.get("units")) or ZERO),
            price=price,
            ts_ms=timestamp_ms(transaction.get("time")),
            fee=fee,
            fee_currency=self._accounts[account_id].home_currency,
        )

    def _expect(self, response: httpx.Response) -> Any:
        if not response.is_success:
            raise BrokerError(
                f"oanda {response.request.method} {response.request.url.path}: "
                f"{_Error.of(response)}"
            )
        return decode(response) or {}


# -- MAPPING ---------------------------------------------------------------------------------


def _base(account: OandaAccount) -> str:
    return f"/v3/accounts/{urllib.parse.quote(account.account_id, safe='')}"


def _headers(credentials: Mapping[str, str]) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {require(credentials, 'token')}",
        "Accept-Datetime-Format": "RFC3339",
    }


class _Error:
    """An OANDA error body: ``errorCode``/``errorMessage``, and the reject transaction if any."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        self.status = status
        self.reason = reason
        self.message = message

    @classmethod
    def of(cls, response: httpx.Response) -> _Error:
        body = decode(response)
        if not isinstance(body, dict):
            return cls(
                response.status_code, f"HTTP_{response.status_code}", f"HTTP {response.status_code}"
            )
        rejected = next(
            (v for k, v in body.items() if k.endswith("RejectTransaction") and isinstance(v, dict)),
            {},
        )
        reason = (
            rejected.get("rejectReason") or body.get("errorCode") or f"HTTP_{response.status_code}"
        )
        message = body.get("errorMessage") or str(reason)
        return cls(response.status_code, str(reason), str(message))

    def __str__(self) -> str:
        return f"HTTP {self.status}, {self.reason}: {self.message}"


def _average(fills: tuple[BrokerFill, ...]) -> Decimal | None:
    filled = sum((f.quantity for f in fills), ZERO)
    if not filled:
        return None
    if len(fills) == 1:
        return fills[0].price
    return sum((f.quantity * f.price for f in fills), ZERO) / filled


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
