"""`coyote-sdk feed`: market data into RedisTimeSeries."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from coyote_sdk.cli._common import (
    feed_app,
    local_stack,
    report_error,
    say,
)


def _writer(venue: str, *, publish_trades: bool = False):
    import redis

    from coyote_sdk.marketdata import MarketDataWriter

    client = redis.Redis.from_url(local_stack().settings.endpoints().redis_url)
    return MarketDataWriter(client, venue=venue, publish_trades=publish_trades)


def _run_feed(work) -> int:
    """Runs a feed coroutine factory until it ends or Ctrl-C / SIGTERM sets its stop event."""
    import asyncio
    import signal

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        return await work(stop)

    return asyncio.run(main())


@feed_app.command("replay")
def feed_replay(
    files: Annotated[list[Path], typer.Argument(help="CSV files of OHLCV bars, or of trades.")],
    venue: Annotated[str, typer.Option(help="Venue label of the series.")] = "demo",
    symbol: Annotated[
        str | None, typer.Option(help="Symbol, for a single file (default: its name).")
    ] = None,
    speed: Annotated[
        float | None, typer.Option(help="Times real time (60: an hour of bars per minute).")
    ] = None,
    bars_per_second: Annotated[
        float | None, typer.Option(help="A fixed pace instead of --speed.")
    ] = None,
    rebase_now: Annotated[
        bool, typer.Option("--rebase", help="Shift the bars so the first opens now.")
    ] = False,
    timeframe: Annotated[str | None, typer.Option(help="If not inferred.")] = None,
) -> None:
    """Replay CSV bars, or trades, into RedisTimeSeries, publishing each as it is written.

    Trades are written as ticks, and RedisTimeSeries derives the bars from them as it does
    live. Without --speed or --bars-per-second (then: records per second) it writes as fast as
    Redis takes them.

    Example: `coyote-sdk feed replay examples/data/EURUSD.csv --venue fx --bars-per-second 20`
    """
    from coyote_sdk.csvdata import CsvDataError, csv_kind, read_bars_csv, read_trades_csv
    from coyote_sdk.feeds import ReplayPace, rebase, replay_bars
    from coyote_sdk.protocol import Bar, Trade, now_ms

    try:
        pace = ReplayPace(speed=speed, bars_per_second=bars_per_second)
        kinds = {csv_kind(path) for path in files}
        if len(kinds) > 1:
            raise ValueError("the files must all be bars or all trades, not a mix")
        (kind,) = kinds
        records: list[Bar | Trade] = []
        for path in files:
            named = symbol if len(files) == 1 else None
            if kind == "ticks":
                trades = read_trades_csv(path, symbol=named, venue=venue)
                records += rebase(trades, now_ms()) if rebase_now else trades
            else:
                bars = read_bars_csv(path, symbol=named, venue=venue, timeframe=timeframe)
                records += rebase(bars, now_ms()) if rebase_now else bars
        records.sort(key=lambda r: (r.ts_ms, r.symbol))
    except (CsvDataError, ValueError) as exc:
        report_error(exc)
        raise typer.Exit(2) from exc
    writer = _writer(venue, publish_trades=kind == "ticks")  # as a live feed: on_tick sees them
    what = "trades" if kind == "ticks" else "bars"
    say(f"replaying {len(records)} {what} of {sorted({r.symbol for r in records})} into {venue}")
    written = _run_feed(lambda stop: replay_bars(writer, records, pace=pace, stop=stop))
    say(f"wrote {written} {what}")


@feed_app.command("random-walk")
def feed_random_walk(
    symbols: Annotated[
        list[str], typer.Argument(help="SYMBOL or SYMBOL=START_PRICE, e.g. DEMO=100.")
    ],
    venue: Annotated[str, typer.Option(help="Venue label of the series.")] = "demo",
    trades_per_second: Annotated[float, typer.Option(help="Across all symbols.")] = 50,
    seconds: Annotated[float | None, typer.Option(help="Stop after this long.")] = None,
    volatility: Annotated[float, typer.Option(help="Std. dev. of each move.")] = 0.0005,
    seed: Annotated[int | None, typer.Option(help="For a repeatable walk.")] = None,
) -> None:
    """Write synthetic live trades; RedisTimeSeries derives 1m … 1d bars from them.

    Example: `coyote-sdk feed random-walk DEMO=100 OTHER=25 --trades-per-second 200`
    """
    from decimal import Decimal, InvalidOperation

    from coyote_sdk.feeds import RandomWalk

    try:
        start = {}
        for item in symbols:
            name, _, price = item.partition("=")
            start[name.upper()] = Decimal(price or "100")
        walk = RandomWalk(start, venue=venue, volatility=volatility, seed=seed)
    except (ValueError, InvalidOperation) as exc:
        report_error(exc)
        raise typer.Exit(2) from exc
    writer = _writer(venue, publish_trades=True)
    say(f"random walk of {sorted(start)} into {venue}, {trades_per_second}/s (Ctrl-C stops)")
    written = _run_feed(
        lambda stop: walk.run(
            writer, trades_per_second=trades_per_second, stop=stop, seconds=seconds
        )
    )
    say(f"wrote {written} trades")


@feed_app.command("binance")
def feed_binance(
    symbols: Annotated[list[str], typer.Argument(help="Binance symbols, e.g. BTCUSDT.")],
    venue: Annotated[str, typer.Option(help="Venue label of the series.")] = "binance",
    url: Annotated[str, typer.Option(help="Stream endpoint.")] = "wss://stream.binance.com:9443",
) -> None:
    """Stream Binance's public trades into RedisTimeSeries (reconnects on drops).

    Example: `coyote-sdk feed binance BTCUSDT ETHUSDT`
    """
    from coyote_sdk.feeds import run_binance
    from coyote_sdk.logs import configure_logging

    configure_logging()
    writer = _writer(venue, publish_trades=True)
    written = _run_feed(lambda stop: run_binance(writer, symbols, base_url=url, stop=stop))
    say(f"wrote {written} trades")
