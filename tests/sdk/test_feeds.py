"""Feeds into the real RedisTimeSeries: CSV replay, random walk, Binance's trade stream."""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from decimal import Decimal
from pathlib import Path

import pytest
import redis
import websockets

from coyote_sdk.csvdata import read_bars_csv, read_trades_csv
from coyote_sdk.feeds import (
    RandomWalk,
    ReplayPace,
    parse_binance_message,
    rebase,
    replay_bars,
    run_binance,
)
from coyote_sdk.marketdata import MarketDataReader, MarketDataWriter
from coyote_sdk.protocol import Side, Timeframe, bar_channel

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
RECORDED = (Path(__file__).parent / "data" / "binance-trades.jsonl").read_text().splitlines()


async def test_replay_writes_real_bars_at_the_asked_pace(md: tuple[redis.Redis, str]) -> None:
    client, name = md
    bars = read_bars_csv(ROOT / "examples" / "data" / "EURUSD.csv", venue=name)[:30]
    subscriber = client.pubsub()
    subscriber.subscribe(bar_channel(name, "EURUSD", "1h"))
    subscriber.get_message(timeout=1)

    started = time.monotonic()
    written = await replay_bars(
        MarketDataWriter(client, venue=name), bars, pace=ReplayPace(bars_per_second=100)
    )
    took = time.monotonic() - started
    stored = MarketDataReader(client, venue=name).bars(["EURUSD"], Timeframe.H1)["EURUSD"]
    announced = [subscriber.get_message(timeout=1) for _ in range(30)]
    subscriber.close()

    assert written == 30
    assert stored == bars
    assert all(m is not None for m in announced)
    assert 0.25 <= took < 5  # 29 gaps of 10 ms, far from instantaneous and from real time


async def test_replayed_trades_make_their_bars_by_compaction(
    md: tuple[redis.Redis, str], tmp_path: Path
) -> None:
    client, name = md
    start = 1_700_000_040_000  # a minute boundary
    rows = [(0, "10"), (15_000, "12"), (50_000, "9"), (61_000, "11"), (70_000, "11.5")]
    data = tmp_path / "ABC.csv"
    data.write_text("timestamp,price,size\n" + "".join(f"{start + t},{p},2\n" for t, p in rows))
    trades = rebase(read_trades_csv(data, venue=name), start)

    written = await replay_bars(MarketDataWriter(client, venue=name), trades)
    (first, *_) = MarketDataReader(client, venue=name).bars(["ABC"], Timeframe.M1)["ABC"]

    assert written == 5
    # The first minute is closed by the trade at 61 s: compaction made it from the trades.
    assert (first.ts_ms, first.open, first.high, first.low, first.close, first.volume) == (
        start,
        Decimal(10),
        Decimal(12),
        Decimal(9),
        Decimal(9),
        Decimal(6),
    )


def test_a_replay_pace_is_speed_or_bars_per_second_not_both() -> None:
    assert ReplayPace(speed=3600).delay_ms(0, 3_600_000) == 1000
    assert ReplayPace(bars_per_second=4).delay_ms(0, 10**9) == 250
    assert ReplayPace().delay_ms(0, 10**9) == 0
    with pytest.raises(ValueError, match="not both"):
        ReplayPace(speed=1, bars_per_second=1)
    with pytest.raises(ValueError, match="must be positive"):
        ReplayPace(speed=0)


def test_rebase_moves_history_to_now_keeping_the_spacing() -> None:
    bars = read_bars_csv(ROOT / "examples" / "data" / "EURUSD.csv")[:3]
    now = 1_763_900_123_456

    moved = rebase(bars, now)

    assert moved[0].ts_ms == now - now % 3_600_000
    assert [b.ts_ms - a.ts_ms for a, b in itertools.pairwise(moved)] == [
        b.ts_ms - a.ts_ms for a, b in itertools.pairwise(bars)
    ]
    assert [b.close for b in moved] == [b.close for b in bars]


async def test_a_random_walk_makes_trades_and_compaction_makes_bars(
    md: tuple[redis.Redis, str],
) -> None:
    client, name = md
    walk = RandomWalk({"DEMO": Decimal(100)}, venue=name, seed=1)
    writer = MarketDataWriter(client, venue=name, timeframes=[Timeframe.M1])
    # Three minutes of trades, written with their own timestamps.
    for minute in range(3):
        writer.add_trades(walk.trades(minute * 60_000 + 1, 20))

    reader = MarketDataReader(client, venue=name)
    bars = reader.bars(["DEMO"], Timeframe.M1)["DEMO"]
    trades = reader.trades("DEMO", count=100)

    assert len(trades) == 3  # one timestamp per minute: same-millisecond trades merge
    assert [b.ts_ms for b in bars] == [0, 60_000]
    assert all(b.low <= b.close <= b.high for b in bars)
    assert all(t.price == t.price.quantize(Decimal("0.01")) for t in walk.trades(0, 10))


def test_binance_messages_are_parsed_into_trades() -> None:
    first = parse_binance_message(RECORDED[0])
    other = parse_binance_message(RECORDED[10])
    data = json.loads(RECORDED[0])["data"]

    assert first is not None
    assert (first.symbol, first.ts_ms, first.price) == ("BTCUSDT", data["T"], Decimal(data["p"]))
    assert first.aggressor is (Side.SELL if data["m"] else Side.BUY)
    assert other is None  # an aggTrade event
    with pytest.raises(ValueError, match="malformed Binance trade"):
        parse_binance_message(RECORDED[20])
    with pytest.raises(ValueError, match="not a Binance combined-stream message"):
        parse_binance_message("ping")


async def test_the_binance_adapter_streams_recorded_messages_into_redis(
    md: tuple[redis.Redis, str],
) -> None:
    """A real websocket server on loopback plays the recorded session, drops the connection
    half-way (as Binance does), and plays the rest on the reconnect."""
    client, name = md
    halves = [RECORDED[:25], RECORDED[25:]]
    paths: list[str] = []
    stop = asyncio.Event()

    async def session(connection: websockets.ServerConnection) -> None:
        paths.append(connection.request.path)
        for line in halves[len(paths) - 1] if len(paths) <= 2 else []:
            await connection.send(line)
        if len(paths) >= 2:
            await asyncio.sleep(0.3)
            stop.set()

    async with websockets.serve(session, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        written = await asyncio.wait_for(
            run_binance(
                MarketDataWriter(client, venue=name, timeframes=[Timeframe.M1]),
                ["BTCUSDT", "ETHUSDT"],
                base_url=f"ws://127.0.0.1:{port}",
                stop=stop,
                reconnect_delay_s=0.1,
            ),
            timeout=20,
        )

    reader = MarketDataReader(client, venue=name)
    expected = [json.loads(line)["data"] for line in RECORDED]
    expected = [d for d in expected if d.get("e") == "trade" and "T" in d]
    btc = [d for d in expected if d["s"] == "BTCUSDT"]

    assert paths[0] == "/stream?streams=btcusdt@trade/ethusdt@trade"
    assert len(paths) == 2
    assert written == len(expected) == 40
    stored = reader.trades("BTCUSDT", count=100)
    assert [t.price for t in stored] == [Decimal(d["p"]) for d in btc]
    assert reader.last_prices(["ETHUSDT"])["ETHUSDT"][1] == Decimal(
        [d for d in expected if d["s"] == "ETHUSDT"][-1]["p"]
    )
