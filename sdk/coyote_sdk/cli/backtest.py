"""`coyote-sdk backtest`: historical bars or trades, a simulated broker, the unchanged bot."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from coyote_sdk.cli._common import (
    JsonOpt,
    app,
    console,
    errors,
    format_day,
    report_error,
)


@app.command("backtest")
def backtest(
    bot_file: Annotated[Path, typer.Argument(help="The Python file of the bot.")],
    data: Annotated[
        list[Path],
        typer.Option(
            "--data", "-d", help="CSV of OHLCV bars, or of trades (ticks); repeat per symbol."
        ),
    ],
    cash: Annotated[str, typer.Option(help="Starting cash.")] = "10000",
    commission: Annotated[str, typer.Option(help="Fraction of notional per fill.")] = "0",
    slippage_bps: Annotated[str, typer.Option(help="Adverse slippage, basis points.")] = "0",
    fill: Annotated[
        str, typer.Option(help="When market orders fill: next-open (default) or close.")
    ] = "next-open",
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="NAME=VALUE; repeatable.")
    ] = None,
    bot_name: Annotated[
        str | None, typer.Option("--bot", help="The bot class, if the file has several.")
    ] = None,
    timeframe: Annotated[
        str | None, typer.Option(help="The bars' timeframe, if not inferred from the data.")
    ] = None,
    chart: Annotated[
        Path | None, typer.Option(help="Where to write the equity chart (HTML).")
    ] = None,
    risk: Annotated[
        Path | None,
        typer.Option(help="TOML file of risk limits: orders then pass the live risk checks."),
    ] = None,
    trades: Annotated[int, typer.Option(help="How many trades to list.")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """Backtest a bot on historical bars, or trades, with a simulated broker.

    Example: `coyote-sdk backtest examples/sma_cross.py --data examples/data/GOOG.csv
    --cash 10000 --commission 0.002`
    """
    from decimal import Decimal, InvalidOperation

    from rich.progress import Progress

    from coyote_sdk.backtest import Backtest, BacktestConfig, FillModel, write_chart
    from coyote_sdk.bot import ParameterError
    from coyote_sdk.csvdata import CsvDataError, csv_kind, read_bars_csv, read_trades_csv
    from coyote_sdk.loading import BotLoadError, load_bot_class, parse_params

    try:
        bot_class = load_bot_class(bot_file, bot_name)
        bot = bot_class(**parse_params(param or []))
        symbol = bot_class.symbols[0] if len(data) == 1 and bot_class.symbols else None
        kinds = {csv_kind(path) for path in data}
        if len(kinds) > 1:
            raise ValueError("--data files must all be bars or all trades, not a mix")
        ticks = []
        bars = []
        if kinds == {"ticks"}:
            ticks = [t for path in data for t in read_trades_csv(path, symbol=symbol)]
        else:
            bars = [
                bar
                for path in data
                for bar in read_bars_csv(path, symbol=symbol, timeframe=timeframe)
            ]
        if fill not in ("next-open", "close"):
            raise ValueError(f"--fill takes next-open or close, got {fill!r}")
        risk_config = _risk_config(risk, bot_class.symbols) if risk else None
        config = BacktestConfig(
            risk=risk_config,
            cash=Decimal(cash),
            fill=FillModel(
                fill_at="close" if fill == "close" else "next_open",
                commission=Decimal(commission),
                slippage_bps=Decimal(slippage_bps),
            ),
        )
        engine = Backtest(bot, bars, ticks=ticks, config=config)
    except (BotLoadError, ParameterError, CsvDataError, ValueError, InvalidOperation) as exc:
        report_error(exc)
        raise typer.Exit(2) from exc

    size = len(bars) or len(ticks)
    with Progress(console=errors, transient=True, disable=as_json or size < 50_000) as bar:
        task = bar.add_task("backtest", total=size)
        result = engine.run(progress=lambda done, total: bar.update(task, completed=done))
    chart_path = write_chart(result, chart) if chart else None
    if as_json:
        print(json.dumps(_backtest_json(result, chart_path), indent=2, default=str))
        return
    table = Table("statistic", "value", title=f"{result.bot} {_params_text(result.params)}")
    for name, value in result.stats.as_rows():
        table.add_row(name, value)
    console.print(table)
    listing = Table(
        "#",
        "symbol",
        "side",
        "qty",
        "entry",
        "entry price",
        "exit",
        "exit price",
        "pnl",
        title=f"trades (first {min(trades, len(result.trades))} of {len(result.trades)})",
    )
    for index, trip in enumerate(result.trades[:trades], start=1):
        listing.add_row(
            str(index),
            trip.symbol,
            trip.direction,
            f"{trip.quantity}",
            format_day(trip.entry_ts_ms),
            f"{trip.entry_price:.4f}",
            format_day(trip.exit_ts_ms) if trip.exit_ts_ms else "open",
            f"{trip.exit_price:.4f}" if trip.exit_price is not None else "",
            f"{trip.pnl:.2f}",
        )
    console.print(listing)
    if chart_path:
        console.print(f"equity chart: {chart_path}")


def _risk_config(path: Path, symbols: Sequence[str]) -> Any:
    import tomllib

    try:
        from coyote_risk import risk_config_from_mapping
    except ImportError as exc:
        raise ValueError("--risk needs coyote-risk: pip install 'coyote-sdk[risk]'") from exc
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path}: {exc}") from exc
    try:
        config = risk_config_from_mapping(data, account_id="backtest")
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc
    missing = [s for s in symbols if s not in config.instruments]
    if missing:
        raise ValueError(f"{path}: no [instruments.{missing[0]}] (tick_size, lot_size) for it")
    return config


def _params_text(params: dict[str, object]) -> str:
    return "(" + ", ".join(f"{k}={v}" for k, v in params.items()) + ")"


def _backtest_json(result, chart_path):
    return {
        "bot": result.bot,
        "params": result.params,
        "bars": result.bars,
        "ticks": result.ticks,
        "stats": dataclasses.asdict(result.stats),
        "trades": [
            {
                "symbol": t.symbol,
                "direction": t.direction,
                "quantity": t.quantity,
                "entry_ts_ms": t.entry_ts_ms,
                "entry_price": t.entry_price,
                "exit_ts_ms": t.exit_ts_ms,
                "exit_price": t.exit_price,
                "pnl": t.pnl,
                "fees": t.fees,
            }
            for t in result.trades
        ],
        "chart": str(chart_path) if chart_path else None,
    }
