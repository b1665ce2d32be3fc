"""Market-data throughput on the real Redis Stack, against bare redis-py in the same run.

- ingest: trades per second through MarketDataWriter.add_trades (pipelined TS.MADD into series
  carrying the 25 compaction rules per symbol, bar events published) versus a bare pipelined
  TS.MADD loop over identical series, with the same chunking. The trades are built before the
  clock starts on both sides (a feed hands the writer ready Trades). Target: >= 200,000
  trades/s and >= 50 % of the bare loop.
- history: MarketDataReader.bars (one TS.MREVRANGE decoded into Bars: 20 symbols x 200 real
  EURUSD hourly bars) versus the bare ts().mrevrange call it wraps. Target: within 1.2x.

Run: .venv/bin/python bench/marketdata.py (the stack must be up: make up)
"""

from __future__ import annotations

import random
import sys
from decimal import Decimal
from pathlib import Path

import msgspec
import redis

sys.path.insert(0, str(Path(__file__).parent))
from _common import best_of, measurement, median_of, record

from coyote_sdk.config import StackSettings
from coyote_sdk.csvdata import read_bars_csv
from coyote_sdk.marketdata import MarketDataReader, MarketDataWriter
from coyote_sdk.protocol import Timeframe, Trade, market_data_key

ROOT = Path(__file__).resolve().parents[1]
SYMBOLS = [f"S{i:03d}" for i in range(20)]
TRADES = 200_000
CHUNK = 5000


def _trades(venue: str, start_ms: int) -> list[Trade]:
    rng = random.Random(1)
    prices = {s: 100.0 for s in SYMBOLS}
    trades = []
    for i in range(TRADES):
        symbol = SYMBOLS[i % len(SYMBOLS)]
        prices[symbol] *= 1 + rng.gauss(0, 0.0005)
        trades.append(
            Trade(
                symbol=symbol,
                venue=venue,
                ts_ms=start_ms + i // len(SYMBOLS) * 10,  # 100 trades/s per symbol
                price=Decimal(f"{prices[symbol]:.2f}"),
                size=Decimal(rng.randint(1, 100)),
            )
        )
    return trades


def _clean(client: redis.Redis, venue: str) -> None:
    keys = list(client.scan_iter(match=f"coyote:md:{venue}:*", count=5000))
    for start in range(0, len(keys), 1000):
        client.delete(*keys[start : start + 1000])


def main() -> None:
    client = redis.Redis.from_url(StackSettings().endpoints().redis_url)
    venue_writer, venue_bare = "bench-writer", "bench-bare"
    for venue in (venue_writer, venue_bare):
        _clean(client, venue)

    # Same series and rules for both, created up front so both measure steady-state ingest.
    MarketDataWriter(client, venue=venue_bare, publish=False)
    writer_setup = MarketDataWriter(client, venue=venue_writer)
    for symbol in SYMBOLS:
        writer_setup.ensure_symbol(symbol)
        MarketDataWriter(client, venue=venue_bare).ensure_symbol(symbol)

    batches = {
        venue: iter([_trades(venue, run * 10**9) for run in range(1, 4)])
        for venue in (venue_writer, venue_bare)
    }

    def through_writer() -> None:
        trades = next(batches[venue_writer])
        MarketDataWriter(client, venue=venue_writer).add_trades(trades, chunk=CHUNK)

    def bare_madd() -> None:
        trades = next(batches[venue_bare])
        keys = {
            s: (market_data_key(venue_bare, s, "price"), market_data_key(venue_bare, s, "size"))
            for s in SYMBOLS
        }
        pipe = client.pipeline(transaction=False)
        samples: list[tuple[str, int, float]] = []
        for t in trades:
            price_key, size_key = keys[t.symbol]
            samples.append((price_key, t.ts_ms, float(t.price)))
            samples.append((size_key, t.ts_ms, float(t.size)))
            if len(samples) >= CHUNK:
                pipe.ts().madd(samples)
                samples = []
        if samples:
            pipe.ts().madd(samples)
        pipe.execute()

    writer_s = best_of(3, through_writer)
    bare_s = best_of(3, bare_madd)
    writer_rate, bare_rate = TRADES / writer_s, TRADES / bare_s

    for venue in (venue_writer, venue_bare):
        _clean(client, venue)

    history_venue = "bench-history"
    _clean(client, history_venue)
    eurusd = read_bars_csv(ROOT / "examples" / "data" / "EURUSD.csv", venue=history_venue)[:200]
    MarketDataWriter(client, venue=history_venue, publish=False).add_bars(
        [msgspec.structs.replace(bar, symbol=s) for s in SYMBOLS for bar in eurusd]
    )
    reader = MarketDataReader(client, venue=history_venue)
    ts = client.ts()
    filters = [
        "coyote=md",
        f"venue={history_venue}",
        "timeframe=1h",
        f"symbol=({','.join(SYMBOLS)})",
    ]

    def read_history() -> None:
        reader.bars(SYMBOLS, Timeframe.H1, count=200)

    def bare_mrevrange() -> None:
        ts.mrevrange("-", "+", filters, count=200, select_labels=["symbol", "field"])

    read_s = median_of(50, read_history)
    bare_read_s = median_of(50, bare_mrevrange)
    bars_read = sum(len(v) for v in reader.bars(SYMBOLS, Timeframe.H1, count=200).values())
    _clean(client, history_venue)

    record(
        [
            measurement(
                "marketdata.ingest_trades_per_s",
                round(writer_rate),
                "trades/s",
                "bare pipelined TS.MADD loop with redis-py",
                round(bare_rate),
            ),
            measurement(
                f"marketdata.history_read_ms_{bars_read}_bars",
                round(read_s * 1000, 3),
                "ms",
                "bare ts().mrevrange",
                round(bare_read_s * 1000, 3),
            ),
        ]
    )


if __name__ == "__main__":
    main()
