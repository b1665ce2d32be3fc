"""Market-data feeds into RedisTimeSeries: CSV replay (bars or trades), a synthetic random walk,
and Binance's public trade stream. Each writes through
:class:`coyote_sdk.marketdata.MarketDataWriter`, so bots see the same series and bar events
whatever the source.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

import msgspec

from coyote_sdk.marketdata import MarketDataWriter
from coyote_sdk.protocol import Bar, Side, Trade, now_ms

logger = logging.getLogger("coyote.feeds")

_R = TypeVar("_R", Bar, Trade)

# -- CSV REPLAY ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplayPace:
    """How fast a replay goes: ``speed`` times real time, or ``bars_per_second``, or (both
    None) as fast as the writer takes them."""

    speed: float | None = None
    bars_per_second: float | None = None

    def __post_init__(self) -> None:
        if self.speed is not None and self.bars_per_second is not None:
            raise ValueError("give a speed or a number of bars per second, not both")
        for name in ("speed", "bars_per_second"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")

    def delay_ms(self, previous_ts_ms: int, ts_ms: int) -> float:
        if self.bars_per_second is not None:
            return 1000 / self.bars_per_second
        if self.speed is not None:
            return (ts_ms - previous_ts_ms) / self.speed
        return 0.0


def rebase(records: Sequence[_R], start_ms: int) -> list[_R]:
    """Shifts bars (or trades) in time so that the first is at ``start_ms`` (a bar's open
    aligned to its timeframe), keeping their spacing: history replayed as if it were now."""
    if not records:
        return []
    first = records[0]
    size = first.timeframe.milliseconds if isinstance(first, Bar) else 1
    shift = start_ms - start_ms % size - first.ts_ms
    return [msgspec.structs.replace(record, ts_ms=record.ts_ms + shift) for record in records]


async def replay_bars(
    writer: MarketDataWriter,
    bars: Sequence[Bar | Trade],
    *,
    pace: ReplayPace = ReplayPace(),
    stop: asyncio.Event | None = None,
    on_bar: Callable[[Any], None] | None = None,
) -> int:
    """Writes ``bars`` — or trades, from which RedisTimeSeries derives the bars as live — in
    time order, any symbols, at ``pace``; returns how many were written.

    Records sharing a timestamp are written together, as one moment of the market.
    """
    written = 0
    index = 0
    started = time.monotonic()
    elapsed_ms = 0.0
    while index < len(bars):
        if stop is not None and stop.is_set():
            break
        moment = bars[index].ts_ms
        group: list[Any] = []
        while index < len(bars) and bars[index].ts_ms == moment:
            group.append(bars[index])
            index += 1
        if isinstance(group[0], Bar):
            writer.add_bars(group)
        else:
            writer.add_trades(group)
        written += len(group)
        if on_bar is not None:
            for bar in group:
                on_bar(bar)
        if index < len(bars):
            elapsed_ms += pace.delay_ms(moment, bars[index].ts_ms)
            wait = started + elapsed_ms / 1000 - time.monotonic()
            if wait > 0:
                await _sleep(wait, stop)
    return written


async def _sleep(seconds: float, stop: asyncio.Event | None) -> None:
    if stop is None:
        await asyncio.sleep(seconds)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


# -- RANDOM WALK -----------------------------------------------------------------------------


class RandomWalk:
    """Synthetic trades: each symbol's price follows a geometric random walk.

    Args:
        symbols: Starting price of each symbol.
        venue: The venue the trades are labelled with.
        volatility: Standard deviation of the relative change per trade.
        tick: Prices are rounded to this increment.
        seed: For a repeatable walk.
    """

    def __init__(
        self,
        symbols: dict[str, Decimal],
        *,
        venue: str = "demo",
        volatility: float = 0.0005,
        tick: Decimal = Decimal("0.01"),
        seed: int | None = None,
    ) -> None:
        if not symbols:
            raise ValueError("a random walk needs at least one symbol")
        self.venue = venue
        self.volatility = volatility
        self.tick = tick
        self._prices = {s: float(p) for s, p in symbols.items()}
        self._random = random.Random(seed)

    def trades(self, ts_ms: int, count: int) -> list[Trade]:
        """The next ``count`` trades, spread over the symbols, all at ``ts_ms``."""
        out = []
        symbols = list(self._prices)
        for i in range(count):
            symbol = symbols[i % len(symbols)]
            price = self._prices[symbol] * (1 + self._random.gauss(0, self.volatility))
            self._prices[symbol] = max(price, float(self.tick))
            out.append(
                Trade(
                    symbol=symbol,
                    venue=self.venue,
                    ts_ms=ts_ms,
                    price=Decimal(repr(self._prices[symbol])).quantize(self.tick),
                    size=Decimal(self._random.randint(1, 100)),
                    aggressor=Side.BUY if self._random.random() < 0.5 else Side.SELL,
                )
            )
        return out

    async def run(
        self,
        writer: MarketDataWriter,
        *,
        trades_per_second: float = 50,
        batch_interval_s: float = 0.1,
        stop: asyncio.Event | None = None,
        seconds: float | None = None,
    ) -> int:
        """Writes live trades at ``trades_per_second`` until ``stop`` or ``seconds``."""
        deadline = time.monotonic() + seconds if seconds is not None else None
        owed = 0.0
        written = 0
        while not (stop is not None and stop.is_set()):
            if deadline is not None and time.monotonic() >= deadline:
                break
            owed += trades_per_second * batch_interval_s
            count = int(owed)
            owed -= count
            if count:
                written += writer.add_trades(self.trades(now_ms(), count))
            await _sleep(batch_interval_s, stop)
        return written


# -- BINANCE ---------------------------------------------------------------------------------

BINANCE_STREAM_URL = "wss://stream.binance.com:9443"


class BinanceTrade(msgspec.Struct):
    """One event of Binance's ``<symbol>@trade`` stream (the fields Coyote reads)."""

    e: str
    s: str
    t: int
    p: str
    q: str
    T: int
    m: bool


class _Combined(msgspec.Struct):
    stream: str
    data: msgspec.Raw


_combined = msgspec.json.Decoder(_Combined)
_trade = msgspec.json.Decoder(BinanceTrade)


def parse_binance_message(raw: bytes | str, *, venue: str = "binance") -> Trade | None:
    """The trade in one combined-stream message, or None for other events.

    Binance's ``m`` ("is the buyer the maker?") true means the seller took liquidity.

    Raises:
        ValueError: for a message that is not a combined-stream envelope or a malformed trade.
    """
    try:
        envelope = _combined.decode(raw)
    except msgspec.DecodeError as exc:
        raise ValueError(f"not a Binance combined-stream message: {exc}") from exc
    if not envelope.stream.endswith("@trade"):
        return None
    try:
        event = _trade.decode(envelope.data)
        return Trade(
            symbol=event.s.upper(),
            venue=venue,
            ts_ms=event.T,
            price=Decimal(event.p),
            size=Decimal(event.q),
            aggressor=Side.SELL if event.m else Side.BUY,
        )
    except (msgspec.DecodeError, ArithmeticError, ValueError) as exc:
        raise ValueError(f"malformed Binance trade on {envelope.stream}: {exc}") from exc


def binance_url(symbols: Sequence[str], base: str = BINANCE_STREAM_URL) -> str:
    streams = "/".join(f"{s.lower()}@trade" for s in symbols)
    return f"{base.rstrip('/')}/stream?streams={streams}"


async def run_binance(
    writer: MarketDataWriter,
    symbols: Sequence[str],
    *,
    base_url: str = BINANCE_STREAM_URL,
    stop: asyncio.Event | None = None,
    flush_interval_s: float = 0.05,
    reconnect_delay_s: float = 1.0,
) -> int:
    """Streams Binance's public trades of ``symbols`` into RedisTimeSeries until ``stop``.

    Trades are batched for ``flush_interval_s`` into pipelined writes; the connection is
    re-established after a drop (Binance closes every connection after 24 hours). A malformed
    message is logged and skipped, never fatal.
    """
    import websockets

    url = binance_url(symbols, base_url)
    written = 0
    pending: list[Trade] = []
    while not (stop is not None and stop.is_set()):
        try:
            async with websockets.connect(url, max_size=2**20) as connection:
                logger.info("connected to %s", url)
                last_flush = time.monotonic()
                while not (stop is not None and stop.is_set()):
                    try:
                        message = await asyncio.wait_for(connection.recv(), flush_interval_s)
                    except TimeoutError:
                        message = None
                    if message is not None:
                        try:
                            trade = parse_binance_message(message, venue=writer.venue)
                        except ValueError as exc:
                            logger.warning("skipped a message: %s", exc)
                            trade = None
                        if trade is not None:
                            pending.append(trade)
                    if pending and time.monotonic() - last_flush >= flush_interval_s:
                        written += writer.add_trades(pending)
                        pending, last_flush = [], time.monotonic()
        except (OSError, websockets.WebSocketException) as exc:
            logger.warning("Binance stream lost (%s); reconnecting", exc)
            if pending:  # what arrived before the drop is real: keep it
                written += writer.add_trades(pending)
                pending = []
            await _sleep(reconnect_delay_s, stop)
    if pending:
        written += writer.add_trades(pending)
    return written
