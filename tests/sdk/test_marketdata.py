"""Market data on the real RedisTimeSeries: compaction-derived bars, batch reads, bar events."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest
import redis

from coyote_sdk import protocol
from coyote_sdk.config import Endpoints
from coyote_sdk.marketdata import MarketDataReader, MarketDataWriter, Retention
from coyote_sdk.protocol import Bar, Timeframe, Trade

pytestmark = pytest.mark.integration

MINUTE = 60_000


def _trade(ts_ms: int, price: str, size: str = "1", symbol: str = "GOOG", venue: str = "") -> Trade:
    return Trade(symbol=symbol, venue=venue, ts_ms=ts_ms, price=Decimal(price), size=Decimal(size))


def test_bars_are_the_hand_computed_ohlcv_of_the_trades(md: tuple[redis.Redis, str]) -> None:
    client, venue = md
    writer = MarketDataWriter(client, venue=venue, timeframes=[Timeframe.M1, Timeframe.M5])
    trades = [
        # minute 0: open 100.5, high 101.25, low 99.75, close 100, volume 1+2+0.5+3 = 6.5
        _trade(1_000, "100.5", "1", venue=venue),
        _trade(20_000, "101.25", "2", venue=venue),
        _trade(40_000, "99.75", "0.5", venue=venue),
        _trade(59_999, "100", "3", venue=venue),
        # minute 1: one trade
        _trade(MINUTE + 5, "102", "4", venue=venue),
        # minute 4 (minutes 2 and 3 are empty): 98 then 98.5
        _trade(4 * MINUTE, "98", "1", venue=venue),
        _trade(4 * MINUTE + 30_000, "98.5", "1", venue=venue),
        # minute 5 closes the first 5-minute bar and minute 4
        _trade(5 * MINUTE, "97", "2", venue=venue),
    ]

    writer.add_trades(trades)
    reader = MarketDataReader(client, venue=venue)
    one_minute = reader.bars(["GOOG"], Timeframe.M1)["GOOG"]
    five_minutes = reader.bars(["GOOG"], Timeframe.M5)["GOOG"]

    def ohlcv(bar: Bar) -> tuple[int, str, str, str, str, str]:
        return (
            bar.ts_ms,
            *(str(getattr(bar, f)) for f in ("open", "high", "low", "close", "volume")),
        )

    assert [ohlcv(b) for b in one_minute] == [
        (0, "100.5", "101.25", "99.75", "100", "6.5"),
        (MINUTE, "102", "102", "102", "102", "4"),
        (4 * MINUTE, "98", "98.5", "98", "98.5", "2"),
    ]
    assert [ohlcv(b) for b in five_minutes] == [(0, "100.5", "102", "98", "98.5", "12.5")]


def test_last_n_bars_of_many_symbols_come_back_in_one_read(md: tuple[redis.Redis, str]) -> None:
    client, venue = md
    writer = MarketDataWriter(client, venue=venue, timeframes=[Timeframe.M1])
    trades = [
        _trade(minute * MINUTE, str(100 + minute), symbol=symbol, venue=venue)
        for minute in range(6)
        for symbol in ("AAA", "BBB")
    ]
    writer.add_trades(trades)

    bars = MarketDataReader(client, venue=venue).bars(["AAA", "BBB", "NONE"], Timeframe.M1, count=3)

    assert [b.ts_ms for b in bars["AAA"]] == [2 * MINUTE, 3 * MINUTE, 4 * MINUTE]
    assert [b.close for b in bars["BBB"]] == [Decimal(102), Decimal(103), Decimal(104)]
    assert bars["NONE"] == []


def test_prices_read_back_without_float_noise(md: tuple[redis.Redis, str]) -> None:
    client, venue = md
    writer = MarketDataWriter(client, venue=venue, timeframes=[Timeframe.M1])
    writer.add_trades(
        [_trade(0, "1.07219", "0.1", venue=venue), _trade(1, "1.0722", "0.2", venue=venue)]
    )

    reader = MarketDataReader(client, venue=venue)
    trades = reader.trades("GOOG", count=5)
    last = reader.last_prices(["GOOG", "NONE"])

    assert [t.price for t in trades] == [Decimal("1.07219"), Decimal("1.0722")]
    assert [t.size for t in trades] == [Decimal("0.1"), Decimal("0.2")]
    assert last == {"GOOG": (1, Decimal("1.0722"))}


def test_series_carry_the_documented_labels_and_retention(md: tuple[redis.Redis, str]) -> None:
    client, venue = md
    retention = Retention(raw_ms=3_600_000, bars_ms={Timeframe.M1: 86_400_000})
    writer = MarketDataWriter(client, venue=venue, timeframes=[Timeframe.M1], retention=retention)
    writer.ensure_symbol("EURUSD")

    raw = _ts_info(client, protocol.market_data_key(venue, "EURUSD", "price"))
    bar = _ts_info(client, protocol.market_data_key(venue, "EURUSD", "close", Timeframe.M1))

    assert raw[b"retentionTime"] == 3_600_000
    assert raw[b"labels"] == {
        b"coyote": b"md",
        b"venue": venue.encode(),
        b"symbol": b"EURUSD",
        b"timeframe": b"raw",
        b"field": b"price",
    }
    assert list(raw[b"rules"]) == [  # type: ignore[call-overload]
        protocol.market_data_key(venue, "EURUSD", field, Timeframe.M1).encode()
        for field in ("open", "high", "low", "close")
    ]
    assert bar[b"retentionTime"] == 86_400_000
    assert bar[b"labels"][b"timeframe"] == b"1m"


def _ts_info(client: redis.Redis, key: str) -> dict[bytes, object]:
    # redis-py's TSInfo parser misreads RESP3 replies; read the server's map as it is.
    connection = client.connection_pool.get_connection()
    try:
        connection.send_command("TS.INFO", key)
        reply = connection.read_response()
    finally:
        client.connection_pool.release(connection)
    assert isinstance(reply, dict)
    return reply


def test_a_finished_bar_is_announced_within_milliseconds(md: tuple[redis.Redis, str]) -> None:
    client, venue = md
    writer = MarketDataWriter(client, venue=venue, timeframes=[Timeframe.M1])
    writer.add_trades([_trade(0, "10", venue=venue), _trade(30_000, "11", venue=venue)])
    subscriber = client.pubsub()
    subscriber.subscribe(protocol.bar_channel(venue, "GOOG", "1m"))
    assert subscriber.get_message(timeout=1)["type"] == "subscribe"  # type: ignore[index]

    written = time.perf_counter()
    writer.add_trades([_trade(MINUTE, "12", venue=venue)])
    message = subscriber.get_message(timeout=2)
    latency = time.perf_counter() - written
    subscriber.close()

    assert message is not None
    bar = protocol.decode(message["data"], Bar)
    assert (bar.ts_ms, bar.open, bar.close) == (0, Decimal(10), Decimal(11))
    assert latency < 1.0  # generous for CI; the benchmark measures the real figure


def test_bars_from_a_bar_feed_are_stored_as_given_and_announced(
    md: tuple[redis.Redis, str],
) -> None:
    client, venue = md
    writer = MarketDataWriter(client, venue=venue)
    subscriber = client.pubsub()
    subscriber.subscribe(protocol.bar_channel(venue, "GOOG", "1d"))
    subscriber.get_message(timeout=1)
    day = 86_400_000
    bars = [
        Bar(
            symbol="GOOG",
            venue=venue,
            timeframe=Timeframe.D1,
            ts_ms=i * day,
            open=Decimal("100"),
            high=Decimal("104.06"),
            low=Decimal("95.96"),
            close=Decimal("100.34"),
            volume=Decimal("22351900"),
        )
        for i in range(3)
    ]

    writer.add_bars(bars)
    announced = [subscriber.get_message(timeout=1) for _ in bars]
    stored = MarketDataReader(client, venue=venue).bars(["GOOG"], Timeframe.D1)["GOOG"]
    subscriber.close()

    assert stored == bars
    assert [protocol.decode(m["data"], Bar) for m in announced if m] == bars


def test_a_trade_of_another_venue_is_refused(md: tuple[redis.Redis, str]) -> None:
    client, venue = md
    writer = MarketDataWriter(client, venue=venue)

    with pytest.raises(ValueError, match="venue 'elsewhere'"):
        writer.add_trades([_trade(0, "1", venue="elsewhere")])


def test_the_reader_understands_resp2_clients_too(
    md: tuple[redis.Redis, str], endpoints: Endpoints
) -> None:
    client, venue = md
    MarketDataWriter(client, venue=venue, timeframes=[Timeframe.M1]).add_trades(
        [_trade(0, "1.07219", venue=venue), _trade(MINUTE, "2", venue=venue)]
    )
    resp2 = redis.Redis.from_url(endpoints.redis_url, protocol=2)

    bars = MarketDataReader(resp2, venue=venue).bars(["GOOG"], Timeframe.M1)
    resp2.close()

    assert [(b.ts_ms, b.open, b.volume) for b in bars["GOOG"]] == [
        (0, Decimal("1.07219"), Decimal(1))
    ]
