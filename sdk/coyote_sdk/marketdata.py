"""Market data on RedisTimeSeries: the key scheme, a pipelined writer and a batch reader.

Key scheme (see ``docs/market-data.md``)::

    coyote:md:{venue}:{symbol}:raw:price      trade prices (ticks)
    coyote:md:{venue}:{symbol}:raw:size       trade sizes
    coyote:md:{venue}:{symbol}:{tf}:{field}   bars: tf in 1m 5m 15m 1h 1d,
                                              field in open high low close volume

Every series carries the labels ``coyote=md``, ``venue``, ``symbol``, ``timeframe`` and
``field``, so one ``TS.MRANGE`` with a label filter fetches many symbols at once.

Bars are **derived by RedisTimeSeries compaction rules** from the raw series — open ``first``,
high ``max``, low ``min``, close ``last`` of the prices, volume ``sum`` of the sizes — never by a
Python loop. RedisTimeSeries writes a bucket's compacted sample when the first sample of the
next bucket arrives; the writer sees that moment, reads the finished bar and publishes it on the
bar's channel (:func:`coyote_sdk.protocol.bar_channel`), so a bot learns of a new bar within
milliseconds, without polling.

Prices are stored as doubles (RedisTimeSeries' only type) and read back as the shortest decimal
that round-trips, so ``1.07219`` comes back as ``Decimal("1.07219")``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from decimal import Decimal
from typing import Any, Final

import msgspec
import redis

from coyote_sdk import protocol
from coyote_sdk.protocol import (
    Bar,
    Timeframe,
    Trade,
    bar_channel,
    market_data_key,
    trade_channel,
)

BAR_FIELDS: Final = ("open", "high", "low", "close", "volume")
_AGGREGATION: Final = {
    "open": ("price", "first"),
    "high": ("price", "max"),
    "low": ("price", "min"),
    "close": ("price", "last"),
    "volume": ("size", "sum"),
}
_DAY_MS: Final = 86_400_000
_ONE: Final = Decimal(1)
_force_setattr = msgspec.structs.force_setattr
_Sample = tuple[bytes | str | memoryview, int | str, int | float | str]
"""One (key, timestamp, value) of TS.MADD, typed as redis-py declares it."""


@dataclasses.dataclass(frozen=True)
class Retention:
    """How long each series keeps samples, in milliseconds (0 keeps them forever)."""

    raw_ms: int = 7 * _DAY_MS
    bars_ms: Mapping[Timeframe, int] = dataclasses.field(
        default_factory=lambda: {
            Timeframe.M1: 30 * _DAY_MS,
            Timeframe.M5: 90 * _DAY_MS,
            Timeframe.M15: 180 * _DAY_MS,
            Timeframe.H1: 2 * 365 * _DAY_MS,
            Timeframe.D1: 0,
        }
    )

    def for_bars(self, timeframe: Timeframe) -> int:
        return self.bars_ms.get(timeframe, 0)


def _labels(venue: str, symbol: str, timeframe: str, field: str) -> dict[str, str]:
    return {
        "coyote": "md",
        "venue": venue,
        "symbol": symbol,
        "timeframe": timeframe,
        "field": field,
    }


@functools.lru_cache(maxsize=1 << 16)
def _decimal(value: float) -> Decimal:
    # repr() gives the shortest string that round-trips the double: 1.07219, not 1.0721899999…
    # Cached: prices on a tick grid repeat endlessly, and Decimals are immutable.
    text = repr(value)
    return Decimal(text[:-2] if text.endswith(".0") else text)


def _stored_bar(
    template: Bar, ts_ms: int, o: float, h: float, low: float, c: float, v: float
) -> Bar:
    """A Bar read back from our own series, built without the constructor's checks.

    Every bar in the store was validated when written, or derived by compaction rules that keep
    low <= open, close <= high; re-checking each one on every read tripled the cost of history.
    """
    bar = template.__copy__()  # type: ignore[attr-defined]  # msgspec Structs define it
    force = _force_setattr
    force(bar, "ts_ms", ts_ms)
    force(bar, "open", _decimal(o))
    force(bar, "high", _decimal(h))
    force(bar, "low", _decimal(low))
    force(bar, "close", _decimal(c))
    force(bar, "volume", _decimal(v))
    return bar


class MarketDataWriter:
    """Writes ticks and bars of one venue into RedisTimeSeries.

    Args:
        client: A Redis Stack client (``decode_responses`` off).
        venue: The venue every symbol written belongs to.
        timeframes: The bar timeframes to derive from ticks.
        retention: How long each series keeps its samples.
        publish: Whether to announce each finished bar on its channel.
        publish_trades: Whether to announce every trade on its symbol's trade channel too (for
            bots with ``on_tick``; live feeds turn it on, bulk loads leave it off).
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        venue: str,
        timeframes: Sequence[Timeframe] = tuple(Timeframe),
        retention: Retention | None = None,
        publish: bool = True,
        publish_trades: bool = False,
    ) -> None:
        self._client = client
        self.publish_trades = publish_trades
        self.venue = venue
        self.timeframes = tuple(sorted(timeframes, key=lambda tf: tf.milliseconds))
        self.retention = retention or Retention()
        self.publish = publish
        self._prepared: set[str] = set()
        self._bar_series: set[tuple[str, Timeframe]] = set()
        # The open time of each symbol's current bucket in the smallest timeframe.
        self._bucket: dict[str, int] = {}

    # -- series and rules ----------------------------------------------------------------

    def ensure_symbol(self, symbol: str) -> None:
        """Creates the symbol's tick series, bar series and compaction rules (idempotent)."""
        if symbol in self._prepared:
            return
        raw_price = market_data_key(self.venue, symbol, "price")
        if not self._client.exists(raw_price):
            self._create_symbol(symbol)
        self._prepared.add(symbol)

    def _create_symbol(self, symbol: str) -> None:
        ts = self._client.ts()
        pipe = self._client.pipeline(transaction=False)
        for field, policy in (("price", "last"), ("size", "sum")):
            pipe.ts().create(
                market_data_key(self.venue, symbol, field),
                retention_msecs=self.retention.raw_ms,
                labels=_labels(self.venue, symbol, "raw", field),
                duplicate_policy=policy,
            )
        for timeframe in self.timeframes:
            self._queue_bar_series(pipe, symbol, timeframe)
        try:
            pipe.execute()
        except redis.ResponseError as exc:
            if "already exists" not in str(exc):
                raise
            # Another writer created them first: its rules stand.
            return
        for timeframe in self.timeframes:
            for field, (source, aggregation) in _AGGREGATION.items():
                ts.createrule(
                    market_data_key(self.venue, symbol, source),
                    market_data_key(self.venue, symbol, field, timeframe),
                    aggregation,
                    timeframe.milliseconds,
                )

    def _queue_bar_series(self, pipe: redis.client.Pipeline, symbol: str, tf: Timeframe) -> None:
        for field in BAR_FIELDS:
            pipe.ts().create(
                market_data_key(self.venue, symbol, field, tf),
                retention_msecs=self.retention.for_bars(tf),
                labels=_labels(self.venue, symbol, tf.value, field),
                duplicate_policy="last",
            )
        self._bar_series.add((symbol, tf))

    # -- writing -------------------------------------------------------------------------

    def add_trades(self, trades: Iterable[Trade], *, chunk: int = 5000) -> int:
        """Appends trades with pipelined ``TS.MADD`` calls and publishes the bars they close.

        Trades of one symbol must arrive in time order (a late trade is stored but does not
        revise a bar already finished). Returns the number of trades written.
        """
        venue = self.venue
        smallest = self.timeframes[0].milliseconds if self.timeframes else 0
        samples: list[_Sample] = []
        closed: list[tuple[str, int, int]] = []  # (symbol, previous bucket, new bucket)
        keys: dict[str, tuple[str, str]] = {}
        announced: list[Trade] = []
        pipe = self._client.pipeline(transaction=False)
        count = 0
        for trade in trades:
            symbol = trade.symbol
            pair = keys.get(symbol)
            if pair is None:
                if trade.venue != venue:
                    raise ValueError(
                        f"trade of venue {trade.venue!r} given to the {venue!r} writer"
                    )
                self.ensure_symbol(symbol)
                pair = keys[symbol] = (
                    market_data_key(venue, symbol, "price"),
                    market_data_key(venue, symbol, "size"),
                )
            ts_ms = trade.ts_ms
            samples.append((pair[0], ts_ms, float(trade.price)))
            samples.append((pair[1], ts_ms, float(trade.size)))
            if smallest:
                bucket = ts_ms - ts_ms % smallest
                previous = self._bucket.get(symbol)
                if previous is None or bucket > previous:
                    self._bucket[symbol] = bucket
                    if previous is not None:
                        closed.append((symbol, previous, bucket))
            count += 1
            if self.publish_trades:
                announced.append(trade)
            if len(samples) >= chunk:
                pipe.ts().madd(samples)
                samples = []
        if samples:
            pipe.ts().madd(samples)
        # After the samples: a bot reacting to a tick may read the price it announces.
        for trade in announced:
            pipe.publish(trade_channel(venue, trade.symbol), protocol.encode(trade))
        for reply in pipe.execute(raise_on_error=False):
            _raise_on_sample_errors(reply)
        if self.publish and closed:
            self._publish_closed(closed)
        return count

    def add_bars(self, bars: Iterable[Bar]) -> int:
        """Writes finished bars straight into their timeframe's series and publishes each.

        For feeds that deliver bars rather than ticks (a CSV of daily bars, say): no compaction
        is involved, the bars are stored as given.
        """
        bars = list(bars)
        pipe = self._client.pipeline(transaction=False)
        for bar in bars:
            if bar.venue != self.venue:
                raise ValueError(f"bar of venue {bar.venue!r} given to the {self.venue!r} writer")
            if (bar.symbol, bar.timeframe) not in self._bar_series and not self._client.exists(
                market_data_key(self.venue, bar.symbol, "close", bar.timeframe)
            ):
                self._queue_bar_series(pipe, bar.symbol, bar.timeframe)
                pipe.execute()
            self._bar_series.add((bar.symbol, bar.timeframe))
        samples: list[_Sample] = [
            (market_data_key(self.venue, bar.symbol, field, bar.timeframe), bar.ts_ms, float(value))
            for bar in bars
            for field, value in zip(
                BAR_FIELDS, (bar.open, bar.high, bar.low, bar.close, bar.volume), strict=True
            )
        ]
        for start in range(0, len(samples), 5000):
            pipe.ts().madd(samples[start : start + 5000])
        if self.publish:
            for bar in bars:
                pipe.publish(
                    bar_channel(self.venue, bar.symbol, bar.timeframe), protocol.encode(bar)
                )
        for reply in pipe.execute(raise_on_error=False):
            _raise_on_sample_errors(reply)
        return len(bars)

    def _publish_closed(self, closed: list[tuple[str, int, int]]) -> None:
        """Reads each bar that ``closed`` finished and announces it."""
        finished: list[tuple[str, Timeframe, int]] = []
        for symbol, previous, bucket in closed:
            for timeframe in self.timeframes:
                size = timeframe.milliseconds
                old = previous - previous % size
                if bucket - bucket % size > old:
                    finished.append((symbol, timeframe, old))
        pipe = self._client.pipeline(transaction=False)
        for symbol, timeframe, start in finished:
            for field in BAR_FIELDS:
                key = market_data_key(self.venue, symbol, field, timeframe)
                pipe.ts().range(key, start, start)
        replies = pipe.execute()
        pipe = self._client.pipeline(transaction=False)
        for index, (symbol, timeframe, start) in enumerate(finished):
            values = replies[index * 5 : index * 5 + 5]
            if not all(values):
                continue  # the bucket held no trade
            o, h, low, c, v = (_decimal(series[0][1]) for series in values)
            bar = Bar(
                symbol=symbol,
                venue=self.venue,
                timeframe=timeframe,
                ts_ms=start,
                open=o,
                high=h,
                low=low,
                close=c,
                volume=v,
            )
            pipe.publish(bar_channel(self.venue, symbol, timeframe), protocol.encode(bar))
        pipe.execute()


def _raise_on_sample_errors(reply: object) -> None:
    if isinstance(reply, Exception):
        raise reply
    if isinstance(reply, list):
        errors = [r for r in reply if isinstance(r, Exception)]
        if errors:
            raise redis.ResponseError(f"{len(errors)} samples were refused; first: {errors[0]}")


class MarketDataReader:
    """Reads bars, ticks and last prices of one venue, many symbols per round trip.

    Args:
        client: A Redis Stack client (``decode_responses`` off).
        venue: The venue to read.
    """

    def __init__(self, client: redis.Redis, *, venue: str) -> None:
        self._client = client
        # The same connections without redis-py's reply post-processing: its Python-level
        # conversion of every sample costs more than the query itself, and bars() converts
        # each value once, straight to Decimal.
        self._raw = redis.Redis(connection_pool=client.connection_pool)
        self.venue = venue

    def bars(
        self,
        symbols: Sequence[str],
        timeframe: Timeframe,
        *,
        count: int | None = None,
        start_ms: int | str = "-",
        end_ms: int | str = "+",
    ) -> dict[str, list[Bar]]:
        """The bars of ``symbols`` in ``[start_ms, end_ms]``, oldest first, in one
        ``TS.MRANGE`` (``TS.MREVRANGE`` when only the last ``count`` are wanted).

        A bar is returned only when all five of its fields are present.
        """
        if not symbols:
            return {}
        filters = [
            "coyote=md",
            f"venue={self.venue}",
            f"timeframe={timeframe.value}",
            f"symbol=({','.join(symbols)})",
        ]
        command = ["TS.MREVRANGE" if count is not None else "TS.MRANGE", start_ms, end_ms]
        if count is not None:
            command += ["COUNT", count]
        command += ["SELECTED_LABELS", "symbol", "field", "FILTER", *filters]
        reply = self._raw.execute_command(*command)
        columns: dict[str, dict[str, list[Any]]] = {s: {} for s in symbols}
        for labels, samples in _series(reply):
            columns.setdefault(labels["symbol"], {})[labels["field"]] = samples
        result: dict[str, list[Bar]] = {}
        for symbol, fields in columns.items():
            if any(f not in fields for f in BAR_FIELDS):
                result[symbol] = []
                continue
            template = Bar(
                symbol=symbol,
                venue=self.venue,
                timeframe=timeframe,
                ts_ms=0,
                open=_ONE,
                high=_ONE,
                low=_ONE,
                close=_ONE,
                volume=_ONE,
            )
            o, h, low, c, v = (fields[f] for f in BAR_FIELDS)
            if count is not None:  # TS.MREVRANGE answers newest first
                o, h, low, c, v = o[::-1], h[::-1], low[::-1], c[::-1], v[::-1]
            if len(o) == len(h) == len(low) == len(c) == len(v):
                # The usual case: all five fields have the same timestamps.
                bars = [
                    _stored_bar(template, a[0], a[1], b[1], d[1], e[1], f[1])
                    for a, b, d, e, f in zip(o, h, low, c, v, strict=True)
                    if a[0] == b[0] == d[0] == e[0] == f[0]
                ]
                if len(bars) == len(o):
                    result[symbol] = bars
                    continue
            # A field written after the others (a replay cut short): keep complete bars only.
            by_time: dict[int, dict[int, float]] = {}
            for index, series in enumerate((o, h, low, c, v)):
                for ts_ms, value in series:
                    by_time.setdefault(ts_ms, {})[index] = value
            result[symbol] = [
                _stored_bar(template, t, *(values[i] for i in range(5)))
                for t, values in sorted(by_time.items())
                if len(values) == 5
            ]
        return result

    def trades(self, symbol: str, *, count: int) -> list[Trade]:
        """The last ``count`` trades of ``symbol``, oldest first, in one ``TS.MREVRANGE`` (a
        label query, which a bot's read-only Redis user may run)."""
        reply = self._raw.execute_command(
            "TS.MREVRANGE",
            "-",
            "+",
            "COUNT",
            count,
            "SELECTED_LABELS",
            "field",
            "FILTER",
            "coyote=md",
            f"venue={self.venue}",
            "timeframe=raw",
            f"symbol={symbol}",
            "field=(price,size)",
        )
        fields = {labels["field"]: samples for labels, samples in _series(reply)}
        size_at = {int(t): v for t, v in fields.get("size", [])}
        return [
            Trade(
                symbol=symbol,
                venue=self.venue,
                ts_ms=int(ts_ms),
                price=_decimal(float(price)),
                size=_decimal(float(size_at[int(ts_ms)])),
            )
            for ts_ms, price in reversed(fields.get("price", []))
            if int(ts_ms) in size_at
        ]

    def last_prices(self, symbols: Sequence[str]) -> dict[str, tuple[int, Decimal]]:
        """The last trade time and price of each symbol that has one, in one ``TS.MGET``."""
        if not symbols:
            return {}
        reply = self._client.ts().mget(
            [
                "coyote=md",
                f"venue={self.venue}",
                "timeframe=raw",
                "field=price",
                f"symbol=({','.join(symbols)})",
            ],
            select_labels=["symbol"],
        )
        result: dict[str, tuple[int, Decimal]] = {}
        series: Any
        for series in reply:
            ((_, (labels, ts_ms, value)),) = series.items()
            if ts_ms is not None:
                result[_text(labels["symbol"])] = (int(ts_ms), _decimal(float(value)))
        return result


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _series(reply: Any) -> Iterator[tuple[dict[str, str], list[Any]]]:
    """(labels, samples) of each series in a raw TS.MRANGE reply, RESP3 or RESP2.

    RESP3 answers a map ``{key: [labels map, metadata map, samples]}`` with float values;
    RESP2 a list ``[key, [[label, value] ...], samples]`` with values as bulk strings.
    """
    if isinstance(reply, dict):
        entry: Any
        for entry in reply.values():
            labels = {_text(k): _text(v) for k, v in entry[0].items()}
            yield labels, entry[-1]
        return
    for _, pairs, samples in reply:
        labels = {_text(k): _text(v) for k, v in pairs}
        yield labels, [(int(t), float(v)) for t, v in samples]
