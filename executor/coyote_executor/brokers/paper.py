"""The paper broker: a simulated venue, driven by the market data in RedisTimeSeries.

Market orders fill at the last price plus slippage; limit orders fill at once when marketable
(at the better of the limit and the last price) and otherwise rest until the last price crosses
them; stop orders trigger when the last price reaches the stop. With ``liquidity`` set, no single
execution exceeds it, so large orders fill in parts over successive price updates. IOC fills what
it can now and cancels the rest; FOK fills entirely or is cancelled; DAY orders expire when the
UTC day changes. Fees are charged in basis points of notional; a latency can be simulated.

For rehearsing outages, the venue can also fail like a real one (``error_rate``: a submission
refused with a server error before the venue took it; ``lost_answer_rate``: the venue took the
order but its answer never arrived, as with an HTTP 5xx or a time-out after acceptance). Both
raise :class:`BrokerUnavailable`, and the executor must resolve them by the client order id.

The venue's book lives in Redis, not in the executor's memory, so it survives an executor crash
exactly like a real broker would: ``coyote:paper:{account}:orders`` holds each order under its
client order id, ``:open`` the ids still working, and ``:submissions`` how many times each
client order id was submitted — the count a test reads to prove no order was sent twice.

Unlike the real brokers' APIs, the paper venue fences: ``:fence`` counts the times an executor
began serving the account (:meth:`PaperBroker.serve`), and every change to the book is a script
that checks, atomically with the change, that the writer's token is still the latest. A zombie
executor — frozen in the middle of a send while a successor took the account on and sent the
same orders — is refused when it thaws (:class:`FencedAtVenue`) instead of delivering a late
submission, and its matcher can no longer fill orders that are the successor's.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import logging
import random
from collections.abc import AsyncIterator, Collection, Iterable, Mapping, Sequence
from decimal import Decimal

import msgspec
import redis.asyncio as aioredis
import redis.exceptions

from coyote_executor.brokers.base import (
    Broker,
    BrokerFill,
    BrokerOrder,
    BrokerOrderState,
    BrokerUnavailable,
    FencedAtVenue,
    UnknownOrder,
    UpdateListener,
)
from coyote_executor.prices import PriceBook
from coyote_sdk.protocol import OrderStatus, OrderType, Side, TimeInForce, now_ms
from coyote_sdk.tasks import cancel_and_wait

log = logging.getLogger(__name__)

ZERO = Decimal(0)
BPS = Decimal(10_000)
_DAY_MS = 86_400_000
_SCAN_PAGE = 1_000
"""Hash fields asked for in each HSCAN round trip over the venue's book."""
_CLOSE_WITHIN_S = 5.0
"""How long closing waits for the matcher to stop."""
_WRITE_CHUNK = 1_000
"""Orders per script call: Lua's ``unpack`` refuses a few thousand values at once."""

_FENCED_WRITE = """
-- KEYS: the account's fence, orders, open set and submission counts.
-- ARGV: the writer's token; how many records, closed ids and opened ids follow; the records
-- as id, blob pairs; the closed ids; the opened ids; then the ids whose submission is counted.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
    return 0
end
local records, closed, opened = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local at = 5
if records > 0 then
    redis.call('HSET', KEYS[2], unpack(ARGV, at, at + 2 * records - 1))
    at = at + 2 * records
end
if closed > 0 then
    redis.call('SREM', KEYS[3], unpack(ARGV, at, at + closed - 1))
    at = at + closed
end
if opened > 0 then
    redis.call('SADD', KEYS[3], unpack(ARGV, at, at + opened - 1))
    at = at + opened
end
for i = at, #ARGV do
    redis.call('HINCRBY', KEYS[4], ARGV[i], 1)
end
return 1
"""
"""Changes one account's book if the writer still holds its fence: the token and the change
in one atomic step, so that no write of a fenced-off executor lands after its successor's."""


@dataclasses.dataclass(frozen=True)
class PaperSettings:
    """How the paper broker fills one account's orders.

    Attributes:
        venue: The market data venue whose prices drive the fills.
        slippage_bps: Adverse slippage of market and stop fills, in basis points.
        fee_bps: Fee per fill, in basis points of its notional.
        latency_ms: Simulated time before the venue answers a submission.
        liquidity: Largest quantity of one execution (None: any size fills at once).
        max_price_age_ms: A market order is rejected when the last price is older than this.
        error_rate: Fraction of submission calls refused with a server error before the venue
            takes any of their orders (simulated outage; 0 in normal use).
        lost_answer_rate: Fraction of submission calls whose orders the venue takes but whose
            answer is lost, as after an HTTP 5xx or a time-out once the broker accepted them
            (simulated; 0 in normal use).
    """

    venue: str
    slippage_bps: Decimal = ZERO
    fee_bps: Decimal = ZERO
    latency_ms: int = 0
    liquidity: Decimal | None = None
    max_price_age_ms: int | None = None
    error_rate: float = 0.0
    lost_answer_rate: float = 0.0

    def __post_init__(self) -> None:
        if self.slippage_bps < 0 or self.fee_bps < 0 or self.latency_ms < 0:
            raise ValueError("slippage_bps, fee_bps and latency_ms must not be negative")
        for name in ("error_rate", "lost_answer_rate"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be between 0 and 1")
        if self.liquidity is not None and self.liquidity <= 0:
            raise ValueError("liquidity must be positive")


class _Fill(msgspec.Struct, frozen=True):
    fill_id: str
    quantity: Decimal
    price: Decimal
    fee: Decimal
    ts_ms: int


class _PaperOrder(msgspec.Struct, kw_only=True):
    client_order_id: str
    broker_order_id: str
    account_id: str
    symbol: str
    side: Side
    order_type: OrderType
    time_in_force: TimeInForce
    quantity: Decimal
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    triggered: bool = False
    status: OrderStatus = OrderStatus.NEW
    fills: list[_Fill] = msgspec.field(default_factory=list)
    reject_code: str | None = None
    reject_reason: str | None = None
    created_ms: int
    updated_ms: int

    @property
    def filled(self) -> Decimal:
        fills = self.fills
        if len(fills) < 2:  # most orders: a generator's sum costs several times as much
            return fills[0].quantity if fills else ZERO
        return sum((f.quantity for f in fills), ZERO)

    def state(self) -> BrokerOrderState:
        fills = self.fills
        average: Decimal | None
        if len(fills) == 1:
            filled, average = fills[0].quantity, fills[0].price
        else:
            filled = self.filled
            average = sum((f.quantity * f.price for f in fills), ZERO) / filled if filled else None
        return BrokerOrderState(
            client_order_id=self.client_order_id,
            status=self.status,
            quantity=self.quantity,
            filled_quantity=filled,
            average_price=average,
            broker_order_id=self.broker_order_id,
            limit_price=self.limit_price,
            stop_price=self.stop_price,
            fills=tuple(
                BrokerFill(f.fill_id, f.quantity, f.price, f.ts_ms, f.fee) for f in self.fills
            ),
            reject_code=self.reject_code,
            reject_reason=self.reject_reason,
            ts_ms=self.updated_ms,
        )


_AccountWrite = tuple[list[bytes | str], list[str], list[str], list[str]]
"""One account's part of a write: its records (id, blob, ...), the ids closed, the ids open, the
submissions counted."""

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(_PaperOrder).decode


def _key(account_id: str, part: str) -> str:
    return f"coyote:paper:{account_id}:{part}"


@contextlib.asynccontextmanager
async def _venue_reachable(call: str) -> AsyncIterator[None]:
    """Redis is the paper venue: when it cannot be reached, the venue is unavailable. The
    executor handles that like any broker outage (the order stays in flight and is reconciled
    by its client order id) instead of stopping on an exception it does not expect."""
    try:
        yield
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
        raise BrokerUnavailable(f"paper venue unreachable ({call}): {exc}") from exc


class PaperBroker(Broker):
    """A simulated broker for the accounts in ``accounts``.

    Args:
        client: Async Redis client of the stack (market data and the venue's book).
        accounts: Fill settings per account id.
        match_interval_ms: How often resting orders are checked against the last prices.
    """

    name = "paper"

    def __init__(
        self,
        client: aioredis.Redis,
        accounts: Mapping[str, PaperSettings],
        *,
        match_interval_ms: int = 100,
    ) -> None:
        self._client = client
        self._accounts = dict(accounts)
        self._prices = PriceBook(client, max_age_ms=0)
        self._interval = match_interval_ms / 1000
        self._open: dict[str, dict[str, _PaperOrder]] = {a: {} for a in accounts}
        self._lock = asyncio.Lock()
        self._listener: UpdateListener | None = None
        self._matcher: asyncio.Task[None] | None = None
        self._closing = False
        self._wanted: set[str] = set()
        """Accounts whose orders this process should work (:meth:`serve`) ..."""
        self._served: set[str] = set()
        """... and those it has taken on (its fencing token, its open orders loaded) and works."""
        self._tokens: dict[str, int] = {}
        """The fencing token of each account served."""
        self._unsure: set[str] = set()
        """Served accounts whose book in memory may differ from the venue's (a write failed:
        it may or may not have landed); read back from the venue before they are matched."""
        self._fenced_write = client.register_script(_FENCED_WRITE)
        self._random = random.Random()

    def reconfigure(self, account_id: str, settings: PaperSettings | None) -> None:
        """Fills ``account_id``'s orders by ``settings`` from now on (its fill model changed;
        orders resting meanwhile keep their place)."""
        if settings is None or settings.venue != self._accounts[account_id].venue:
            raise ValueError(f"{account_id}: a paper account keeps its venue")
        self._accounts[account_id] = settings

    def submissions_key(self, account_id: str) -> str:
        """The Redis hash counting submissions per client order id."""
        return _key(account_id, "submissions")

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self, listener: UpdateListener) -> None:
        """Starts matching the resting orders of the accounts it serves: none until
        :meth:`serve` names them."""
        self._listener = listener
        self._closing = False
        self._matcher = asyncio.create_task(self._match_forever(), name="paper-matcher")

    async def serve(self, account_ids: Collection[str]) -> None:
        """Works the orders of ``account_ids`` only. Each newly served account is taken on:
        a new fencing token first (the previous server's changes are refused from then on),
        then its open orders loaded from the venue's book (another executor may have placed
        them). The others are let go — their owner's paper broker works them. An account that
        cannot be taken on now (Redis down) is taken on by the matcher, or by the first call
        that changes its orders, as soon as Redis answers."""
        self._wanted = set(account_ids) & self._accounts.keys()
        async with self._lock:
            for account_id in self._served - self._wanted:
                self._let_go(account_id)
        await self._load_wanted()

    async def _load_wanted(self) -> None:
        async with self._lock:
            for account_id in sorted(self._wanted - self._served):
                try:
                    await self._take_on(account_id)
                except BrokerUnavailable as exc:
                    log.warning("paper broker: account %s not taken on yet: %s", account_id, exc)
                    return

    async def _take_on(self, account_id: str) -> None:
        async with _venue_reachable("take on"):
            token = await self._client.incr(_key(account_id, "fence"))
        await self._read_back(account_id)
        self._tokens[account_id] = token
        self._served.add(account_id)

    async def _read_back(self, account_id: str) -> None:
        """Loads the account's open orders from the venue's book into memory."""
        working = await self._venue_open(account_id)
        self._open[account_id] = {o.client_order_id: o for o in working}
        self._unsure.discard(account_id)

    def _let_go(self, account_id: str) -> None:
        self._open[account_id] = {}
        self._unsure.discard(account_id)
        self._served.discard(account_id)
        self._tokens.pop(account_id, None)

    async def _serving(self, account_ids: Iterable[str]) -> None:
        """Takes on the accounts wanted but not yet served (Redis was down at :meth:`serve`);
        refuses a change to an account this broker does not serve."""
        for account_id in sorted(set(account_ids) - self._served):
            self._settings(account_id)  # an account it has no settings for: UnknownOrder
            if account_id not in self._wanted:
                raise FencedAtVenue(
                    f"paper venue: account {account_id} is not served by this executor"
                )
            await self._take_on(account_id)

    async def close(self) -> None:
        """Stops the matcher, within :data:`_CLOSE_WITHIN_S`. Its loop also ends at its next
        turn: a cancellation swallowed somewhere below it (seen in CI, not pinned down; a
        client library's call racing its reply is the likely place) left it running, and an
        executor stopping waited for it for ever."""
        matcher, self._matcher = self._matcher, None
        if matcher is None:
            return
        self._closing = True
        await cancel_and_wait([matcher], within=_CLOSE_WITHIN_S, log=log)

    # -- orders ----------------------------------------------------------------------------

    async def submit(self, order: BrokerOrder) -> BrokerOrderState:
        (state,) = await self.submit_many([order])
        return state

    async def submit_many(self, orders: Sequence[BrokerOrder]) -> list[BrokerOrderState]:
        """Submits several orders with a handful of Redis round trips in all."""
        if not orders:
            return []
        faults = [self._settings(order.account_id) for order in orders]
        if self._random.random() < max(f.error_rate for f in faults):
            raise BrokerUnavailable("paper venue: server error before the orders were taken")
        async with self._lock, _venue_reachable("submit"):
            await self._serving(order.account_id for order in orders)
            existing = await self._stored(orders)
            fresh = [o for o, blob in zip(orders, existing, strict=True) if blob is None]
            latency = max((self._accounts[o.account_id].latency_ms for o in fresh), default=0)
            if latency:
                await asyncio.sleep(latency / 1000)
            by_venue: dict[str, set[str]] = {}
            for order in fresh:
                by_venue.setdefault(self._accounts[order.account_id].venue, set()).add(order.symbol)
            prices = {
                venue: await self._prices.latest(venue, symbols)
                for venue, symbols in by_venue.items()
            }
            now = now_ms()
            states: list[BrokerOrderState] = []
            seen: dict[str, _PaperOrder] = {}
            for order, blob in zip(orders, existing, strict=True):
                known = seen.get(order.client_order_id)
                if known is None and blob is not None:
                    known = _decode(blob)
                if known is not None:  # at the venue already: its state, nothing new
                    states.append(known.state())
                    continue
                settings = self._accounts[order.account_id]
                paper = self._accept(order, settings, prices[settings.venue].get(order.symbol), now)
                seen[order.client_order_id] = paper
                states.append(paper.state())
            # Every submission is counted, a repeated one too (after the first's count is set);
            # one refused by the fence is not.
            await self._write(seen.values(), fresh=True, counted=orders)
        if self._random.random() < max(f.lost_answer_rate for f in faults):
            raise BrokerUnavailable("paper venue: the orders were taken but the answer was lost")
        return states

    def _accept(
        self,
        order: BrokerOrder,
        settings: PaperSettings,
        last: tuple[int, Decimal] | None,
        now: int,
    ) -> _PaperOrder:
        paper = _PaperOrder(
            client_order_id=order.client_order_id,
            broker_order_id=f"paper-{order.client_order_id}",
            account_id=order.account_id,
            symbol=order.symbol,
            side=order.side,
            order_type=order.order_type,
            time_in_force=order.time_in_force,
            quantity=order.quantity,
            limit_price=order.limit_price,
            stop_price=order.stop_price,
            created_ms=now,
            updated_ms=now,
        )
        stale = last is None or (
            settings.max_price_age_ms is not None and now - last[0] > settings.max_price_age_ms
        )
        if order.order_type is OrderType.MARKET and stale:
            paper.status = OrderStatus.REJECTED
            paper.reject_code = "broker.no_market_data"
            paper.reject_reason = f"no recent price of {order.symbol} on venue {settings.venue}"
        elif last is not None:
            return self._matched(paper, last[1], now, settings, first=True) or paper
        return paper

    async def cancel(self, account_id: str, client_order_id: str) -> BrokerOrderState:
        async with self._lock, _venue_reachable("cancel"):
            await self._serving([account_id])
            paper = await self._load(account_id, client_order_id)
            if not paper.status.is_terminal:
                paper.status = OrderStatus.CANCELED
                paper.updated_ms = now_ms()
                await self._write([paper])
            return paper.state()

    async def replace(
        self,
        account_id: str,
        client_order_id: str,
        *,
        quantity: Decimal | None = None,
        limit_price: Decimal | None = None,
        stop_price: Decimal | None = None,
    ) -> BrokerOrderState:
        async with self._lock, _venue_reachable("replace"):
            await self._serving([account_id])
            paper = await self._load(account_id, client_order_id)
            if paper.status.is_terminal:
                return paper.state()
            if quantity is not None:
                if quantity < paper.filled:
                    raise ValueError(
                        f"cannot replace the quantity with {quantity}: "
                        f"{paper.filled} already filled"
                    )
                paper.quantity = quantity
            if limit_price is not None:
                paper.limit_price = limit_price
            if stop_price is not None:
                paper.stop_price = stop_price
            paper.updated_ms = now_ms()
            if paper.filled >= paper.quantity:
                paper.status = OrderStatus.FILLED
            await self._write([paper])
            return paper.state()

    async def lookup(self, account_id: str, client_order_id: str) -> BrokerOrderState | None:
        async with _venue_reachable("lookup"):
            blob = await self._client.hget(_key(account_id, "orders"), client_order_id)
        return None if blob is None else _decode(blob).state()

    async def open_orders(self, account_id: str) -> list[BrokerOrderState]:
        """The venue's open orders of the account, from its book in Redis — not from this
        process's memory, so that reconciliation sees what the venue works, whoever placed it.
        """
        self._settings(account_id)
        return [order.state() for order in await self._venue_open(account_id)]

    async def _venue_open(self, account_id: str) -> list[_PaperOrder]:
        async with _venue_reachable("open orders"):
            ids = await self._client.smembers(_key(account_id, "open"))
            blobs = await self._client.hmget(_key(account_id, "orders"), list(ids)) if ids else []
        return [_decode(blob) for blob in blobs if blob is not None]

    async def positions(self, account_id: str) -> dict[str, Decimal]:
        held: dict[str, Decimal] = {}
        async with _venue_reachable("positions"):
            # Every order the account ever placed, at each position check: in pages of a
            # thousand, since HSCAN's default of ten made one round trip per ten orders (half
            # a minute for 1,500 orders 200 ms away, with the executor's loop waiting).
            orders = self._client.hscan_iter(_key(account_id, "orders"), count=_SCAN_PAGE)
            async for _, blob in orders:
                order = _decode(blob)
                signed = order.filled if order.side is Side.BUY else -order.filled
                if signed:
                    held[order.symbol] = held.get(order.symbol, ZERO) + signed
        return held

    # -- matching --------------------------------------------------------------------------

    def _matched(
        self,
        paper: _PaperOrder,
        last: Decimal,
        now: int,
        settings: PaperSettings,
        *,
        first: bool = False,
    ) -> _PaperOrder | None:
        """What ``last`` makes of ``paper``: a changed copy (a fill, a stop's trigger, an
        immediate order's end), or None when nothing changes; ``paper`` itself is left as it is.
        :meth:`_write` puts the change in the venue's book and in memory."""
        buy = paper.side is Side.BUY
        triggered = paper.triggered
        price: Decimal | None = None
        if paper.order_type in (OrderType.STOP, OrderType.STOP_LIMIT) and not triggered:
            stop = paper.stop_price
            assert stop is not None
            if (buy and last >= stop) or (not buy and last <= stop):
                triggered = True
            elif not first or paper.time_in_force not in (TimeInForce.IOC, TimeInForce.FOK):
                return None
        if paper.order_type is OrderType.MARKET or (
            paper.order_type is OrderType.STOP and triggered
        ):
            price = self._slipped(paper.side, last, settings)
        elif triggered or paper.order_type is OrderType.LIMIT:
            limit = paper.limit_price
            assert limit is not None
            if (buy and last <= limit) or (not buy and last >= limit):
                # Marketable on arrival: it takes the better price. Resting: the market traded
                # through it, and a resting order fills at its limit.
                price = (min(limit, last) if buy else max(limit, last)) if first else limit
        leaves = paper.quantity - paper.filled
        immediate = first and paper.time_in_force in (TimeInForce.IOC, TimeInForce.FOK)
        size = leaves if settings.liquidity is None else min(leaves, settings.liquidity)
        if immediate and (
            price is None
            or leaves <= 0
            or (paper.time_in_force is TimeInForce.FOK and size < leaves)
        ):
            return msgspec.structs.replace(
                paper, triggered=triggered, status=OrderStatus.CANCELED, updated_ms=now
            )
        if price is None or leaves <= 0:
            # A stop-limit triggered away from its limit: the trigger is kept (a restart
            # reads it back), the order's state is unchanged.
            if triggered and not paper.triggered:
                return msgspec.structs.replace(paper, triggered=True)
            return None
        fills = [
            *paper.fills,
            _Fill(
                fill_id=f"{paper.broker_order_id}-{len(paper.fills) + 1}",
                quantity=size,
                price=price,
                fee=size * price * settings.fee_bps / BPS,
                ts_ms=now,
            ),
        ]
        if size >= leaves:
            status = OrderStatus.FILLED
        elif immediate:
            status = OrderStatus.CANCELED  # IOC: the rest is cancelled
        else:
            status = OrderStatus.PARTIALLY_FILLED
        return msgspec.structs.replace(
            paper, triggered=triggered, fills=fills, status=status, updated_ms=now
        )

    @staticmethod
    def _slipped(side: Side, price: Decimal, settings: PaperSettings) -> Decimal:
        if not settings.slippage_bps:
            return price
        factor = settings.slippage_bps / BPS
        return price * (1 + factor) if side is Side.BUY else price * (1 - factor)

    async def _match_forever(self) -> None:
        while not self._closing:
            await asyncio.sleep(self._interval)
            try:
                await self.match_once()
            except Exception:  # a bad tick must not stop the venue; the next one retries
                log.exception("paper broker: matching failed")

    async def match_once(self) -> None:
        """Checks every resting order against the last prices once."""
        if self._wanted - self._served:
            await self._load_wanted()
        for account_id in list(self._open):
            if not self._open[account_id] and account_id not in self._unsure:
                continue
            settings = self._accounts[account_id]
            updated: list[_PaperOrder] = []
            changed: list[BrokerOrderState] = []
            async with self._lock:
                if account_id in self._unsure and account_id in self._served:
                    await self._read_back(account_id)
                working = self._open[account_id]
                if not working:
                    continue
                prices = await self._prices.latest(
                    settings.venue, {o.symbol for o in working.values()}
                )
                now = now_ms()
                for paper in working.values():
                    after: _PaperOrder | None
                    if paper.time_in_force is TimeInForce.DAY and (
                        now // _DAY_MS > paper.created_ms // _DAY_MS
                    ):
                        after = msgspec.structs.replace(
                            paper, status=OrderStatus.EXPIRED, updated_ms=now
                        )
                    elif (last := prices.get(paper.symbol)) is not None:
                        after = self._matched(paper, last[1], now, settings)
                    else:
                        continue
                    if after is None:
                        continue
                    updated.append(after)
                    if after.status is not paper.status or len(after.fills) != len(paper.fills):
                        changed.append(after.state())  # not only a stop's trigger
                if not updated:
                    continue
                try:
                    await self._write(updated)
                except FencedAtVenue as exc:
                    # A zombie's matcher, thawed: the successor works these orders now.
                    log.warning("paper broker: %s; its orders are not matched here", exc)
                    continue
            if changed and self._listener is not None:
                outcome = self._listener(account_id, changed)
                if inspect.isawaitable(outcome):
                    await outcome

    # -- storage ---------------------------------------------------------------------------

    def _settings(self, account_id: str) -> PaperSettings:
        settings = self._accounts.get(account_id)
        if settings is None:
            raise UnknownOrder(f"the paper broker has no account {account_id!r}")
        return settings

    async def _load(self, account_id: str, client_order_id: str) -> _PaperOrder:
        self._settings(account_id)
        blob = await self._client.hget(_key(account_id, "orders"), client_order_id)
        if blob is None:
            raise UnknownOrder(f"no paper order {client_order_id} on account {account_id}")
        return _decode(blob)

    async def _stored(self, orders: Sequence[BrokerOrder]) -> list[bytes | None]:
        """Each order's record at the venue, if it has one: one ``HMGET`` per account."""
        ids: dict[str, list[str]] = {}
        for order in orders:
            ids.setdefault(order.account_id, []).append(order.client_order_id)
        pipe = self._client.pipeline(transaction=False)
        for account_id, client_ids in ids.items():
            pipe.hmget(_key(account_id, "orders"), client_ids)
        found: dict[tuple[str, str], bytes | None] = {}
        for (account_id, client_ids), blobs in zip(ids.items(), await pipe.execute(), strict=True):
            found.update(((account_id, i), blob) for i, blob in zip(client_ids, blobs, strict=True))
        return [found[(order.account_id, order.client_order_id)] for order in orders]

    async def _write(
        self,
        papers: Iterable[_PaperOrder],
        *,
        fresh: bool = False,
        counted: Sequence[BrokerOrder] = (),
    ) -> None:
        """Writes the orders' records and their accounts' sets of open orders, and counts the
        submissions of ``counted``: one fenced script call per account (and thousand orders).
        ``fresh`` orders were never written (so never in the open set).

        Raises:
            FencedAtVenue: another executor took an account on since this one did; that
                account's part was not written, and the account is let go here.
        """
        changes: dict[str, _AccountWrite] = {}
        for paper in papers:
            account_id, client_id = paper.account_id, paper.client_order_id
            records, closed, opened, _ = changes.setdefault(account_id, ([], [], [], []))
            records += (client_id, _encode(paper))
            if paper.status.is_terminal:
                if not fresh:
                    closed.append(client_id)
                self._open[account_id].pop(client_id, None)
            else:
                opened.append(client_id)
                self._open[account_id][client_id] = paper
        for order in counted:
            changes.setdefault(order.account_id, ([], [], [], []))[3].append(order.client_order_id)
        try:
            written, calls = await self._write_fenced(changes)
        except BaseException:
            # Whether the venue's book took them is not known (the reply may be what was lost):
            # the book in memory, changed already, is read back from the venue's before the
            # matcher works these accounts again.
            self._unsure.update(changes)
            raise
        fenced = sorted({a for a, ok in zip(calls, written, strict=True) if not ok})
        for account_id in fenced:
            # Not wanted any more either: taking it on again would fence its new owner off.
            self._wanted.discard(account_id)
            self._let_go(account_id)
        if fenced:
            raise FencedAtVenue(
                f"paper venue: another executor has taken account(s) {', '.join(fenced)} on"
            )

    async def _write_fenced(
        self, changes: Mapping[str, _AccountWrite]
    ) -> tuple[list[object], list[str]]:
        """The script calls of :meth:`_write` in one pipeline: their answers (false where the
        fence refused) and the account of each."""
        pipe = self._client.pipeline(transaction=False)
        calls: list[str] = []
        for account_id, (records, closed, opened, submitted) in changes.items():
            keys = [_key(account_id, part) for part in ("fence", "orders", "open", "submissions")]
            token = self._tokens[account_id]
            longest = max(len(records) // 2, len(closed), len(opened), len(submitted))
            for start in range(0, max(longest, 1), _WRITE_CHUNK):
                end = start + _WRITE_CHUNK
                pairs, ended, working = (
                    records[2 * start : 2 * end],
                    closed[start:end],
                    opened[start:end],
                )
                args: list[bytes | str | int] = [token, len(pairs) // 2, len(ended), len(working)]
                args += [*pairs, *ended, *working, *submitted[start:end]]
                await self._fenced_write(keys, args, client=pipe)
                calls.append(account_id)
        return await pipe.execute(), calls
