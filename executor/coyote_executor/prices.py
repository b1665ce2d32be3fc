"""Last prices from RedisTimeSeries, for the risk engine and the paper broker.

A symbol's price is its last trade (the ``raw`` price series) or, on a venue that only has bars,
the close of its most recent bar, dated at the bar's close; whichever is newer wins. One
``TS.MGET`` per venue answers for many symbols, and answers are kept for a few milliseconds so
that a burst of orders costs one round trip.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import redis.asyncio as aioredis

from coyote_sdk.protocol import Timeframe

_BAR_MS = {tf.value: tf.milliseconds for tf in Timeframe}


class PriceBook:
    """Cached last prices per venue and symbol.

    Args:
        client: An async Redis client on the market data.
        max_age_ms: How long an answer is reused before Redis is asked again.
    """

    def __init__(self, client: aioredis.Redis, *, max_age_ms: int = 20) -> None:
        self._client = client
        self._max_age_ns = max_age_ms * 1_000_000
        self._cache: dict[tuple[str, str], tuple[int, int, Decimal]] = {}
        """(venue, symbol) → (fetched at ns, price ts ms, price)."""

    async def latest(self, venue: str, symbols: Iterable[str]) -> dict[str, tuple[int, Decimal]]:
        """The last (timestamp ms, price) of each symbol that has one."""
        now = time.monotonic_ns()
        result: dict[str, tuple[int, Decimal]] = {}
        missing = []
        for symbol in set(symbols):
            cached = self._cache.get((venue, symbol))
            if cached is not None and now - cached[0] < self._max_age_ns:
                result[symbol] = (cached[1], cached[2])
            else:
                missing.append(symbol)
        if missing:
            fetched = await self._fetch(venue, missing)
            for symbol, (ts_ms, price) in fetched.items():
                self._cache[(venue, symbol)] = (now, ts_ms, price)
                result[symbol] = (ts_ms, price)
        return result

    async def before(self, venue: str, symbols: Iterable[str], ts_ms: int) -> dict[str, Decimal]:
        """The last price of each symbol at ``ts_ms`` (a trade before it, or the close of a bar
        that ended by then), for those that had one; not cached."""
        wanted = sorted(set(symbols))
        if not wanted:
            return {}
        # A bar is stored at its open: one that opened before ts_ms closed by then, since bars
        # are aligned to their timeframe and ts_ms is a day boundary for the daily PnL.
        reply: Any = await self._client.ts().mrevrange(
            "-",
            ts_ms - 1,
            _filters(venue, wanted),
            count=1,
            select_labels=["symbol", "timeframe"],
        )
        samples = []
        for series in reply:
            ((_, (labels, points)),) = series.items()
            samples += [(labels, ts, value) for ts, value in points[:1]]
        return {symbol: price for symbol, (_, price) in _newest(samples).items()}

    async def _fetch(self, venue: str, symbols: list[str]) -> dict[str, tuple[int, Decimal]]:
        reply: Any = await self._client.ts().mget(
            _filters(venue, symbols), select_labels=["symbol", "timeframe"]
        )
        samples = []
        for series in reply:
            ((_, (labels, ts_ms, value)),) = series.items()
            samples.append((labels, ts_ms, value))
        return _newest(samples)


def _filters(venue: str, symbols: list[str]) -> list[str]:
    return ["coyote=md", f"venue={venue}", "field=(price,close)", f"symbol=({','.join(symbols)})"]


def _newest(samples: Iterable[tuple[Any, Any, Any]]) -> dict[str, tuple[int, Decimal]]:
    """Per symbol, the (effective time, price) of the newest of ``samples`` (labels, ts of the
    sample, value): a bar's price is its close, dated at the bar's end."""
    best: dict[str, tuple[int, Decimal]] = {}
    for labels, ts_ms, value in samples:
        if ts_ms is None or value is None:
            continue
        symbol, timeframe = _text(labels["symbol"]), _text(labels["timeframe"])
        effective = int(ts_ms) + _BAR_MS.get(timeframe, 0)
        if symbol not in best or effective > best[symbol][0]:
            best[symbol] = (effective, Decimal(repr(float(value))))
    return best


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
