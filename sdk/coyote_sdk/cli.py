"""The ``coyote-sdk`` command line."""

from __future__ import annotations

import dataclasses
import json
import shlex
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from coyote_sdk import protocol
from coyote_sdk._version import __version__
from coyote_sdk.config import StackSettings
from coyote_sdk.dev import Health, Stack, StackError

app = typer.Typer(
    name="coyote-sdk",
    help="Write, test and run Coyote trading bots.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)
dev_app = typer.Typer(
    help="The local stack of real services: Kafka, Redis Stack, PostgreSQL, OpenBao.",
    no_args_is_help=True,
)
protocol_app = typer.Typer(help="The wire protocol.", no_args_is_help=True)
feed_app = typer.Typer(help="Market-data feeds into RedisTimeSeries.", no_args_is_help=True)
app.add_typer(dev_app, name="dev")
app.add_typer(feed_app, name="feed")
app.add_typer(protocol_app, name="protocol")

console = Console()
errors = Console(stderr=True)

ServicesArg = Annotated[
    list[str] | None,
    typer.Argument(help="Services to act on (kafka, redis, postgres, vault); default all."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def _stack() -> Stack:
    try:
        return Stack(StackSettings())
    except ValueError as exc:  # a bad COYOTE_* variable
        _error(exc)
        raise typer.Exit(2) from exc


def _error(problem: object) -> None:
    """Prints an error; its text is escaped, so brackets in it (a TOML section, a list) show."""
    errors.print(f"[red]error:[/red] {escape(str(problem))}", highlight=False, soft_wrap=True)


def _progress(line: str) -> None:
    console.print(f"[dim]{time.strftime('%H:%M:%S')}[/dim] {line}", highlight=False, soft_wrap=True)


@app.callback(invoke_without_command=True)
def _main(
    version: Annotated[bool, typer.Option("--version", help="Print the version.")] = False,
) -> None:
    if version:
        console.print(__version__)
        raise typer.Exit()


@dev_app.command("up")
def dev_up(services: ServicesArg = None) -> None:
    """Start the local stack (or the named services) and wait until it is healthy.

    Idempotent: running services are left alone. A service given by URL
    (`COYOTE_KAFKA_BOOTSTRAP`, `COYOTE_REDIS_URL`, `COYOTE_DATABASE_URL`, `COYOTE_VAULT_ADDR`)
    is checked, not started.

    Example: `coyote-sdk dev up` or `coyote-sdk dev up redis kafka`
    """
    stack = _stack()
    console.print("[bold]effective configuration[/bold]")
    console.print(stack.settings.describe(), highlight=False)
    try:
        stack.up(services, progress=_progress)
    except StackError as exc:
        _error(exc)
        raise typer.Exit(1) from exc
    _print_status(stack, services, as_json=False)


@dev_app.command("down")
def dev_down(services: ServicesArg = None) -> None:
    """Stop the local stack's services and every process they started.

    Example: `coyote-sdk dev down`
    """
    stack = _stack()
    try:
        stack.down(services, progress=_progress)
    except StackError as exc:
        _error(exc)
        raise typer.Exit(1) from exc


@dev_app.command("status")
def dev_status(services: ServicesArg = None, as_json: JsonOpt = False) -> None:
    """Show each service, its address and health. Exits 1 unless all are healthy.

    Example: `coyote-sdk dev status --json`
    """
    stack = _stack()
    try:
        healthy = _print_status(stack, services, as_json=as_json)
    except StackError as exc:
        _error(exc)
        raise typer.Exit(2) from exc
    if not healthy:
        raise typer.Exit(1)


def _print_status(stack: Stack, services: list[str] | None, *, as_json: bool) -> bool:
    rows = stack.status(services)
    if as_json:
        print(json.dumps([dataclasses.asdict(row) for row in rows], indent=2))
    else:
        table = Table("service", "mode", "address", "health", "pid", "log")
        for column in table.columns:
            column.overflow = "fold"
        colour = {Health.HEALTHY: "green", Health.UNHEALTHY: "red", Health.STOPPED: "yellow"}
        for row in rows:
            table.add_row(
                row.name,
                row.mode,
                row.address,
                f"[{colour[row.health]}]{row.health.value}[/]",
                str(row.pid or ""),
                row.log or "",
            )
        console.print(table)
    return all(row.health is Health.HEALTHY for row in rows)


@dev_app.command("logs")
def dev_logs(
    service: Annotated[str, typer.Argument(help="kafka, redis, postgres or vault.")],
    lines: Annotated[int, typer.Option("--lines", "-n", help="How many lines.")] = 50,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing.")] = False,
) -> None:
    """Print the end of a local service's log.

    Example: `coyote-sdk dev logs kafka -n 100 -f`
    """
    stack = _stack()
    try:
        for line in stack.log_lines(service, lines):
            print(line)
    except StackError as exc:
        _error(exc)
        raise typer.Exit(2) from exc
    if follow:
        path = stack.services[service].log_path
        with path.open("r", errors="replace") as f:
            f.seek(0, 2)
            try:
                while True:
                    line = f.readline()
                    if line:
                        sys.stdout.write(line)
                        sys.stdout.flush()
                    else:
                        time.sleep(0.2)
            except KeyboardInterrupt:
                pass


@dev_app.command("env")
def dev_env() -> None:
    """Print shell `export` lines with the stack's addresses.

    Example: `eval "$(coyote-sdk dev env)"`
    """
    endpoints = _stack().settings.endpoints()
    for name, value in (
        ("COYOTE_KAFKA_BOOTSTRAP", endpoints.kafka_bootstrap),
        ("COYOTE_REDIS_URL", endpoints.redis_url),
        ("COYOTE_DATABASE_URL", endpoints.database_url),
        ("COYOTE_VAULT_ADDR", endpoints.vault_addr),
        ("COYOTE_VAULT_TOKEN", endpoints.vault_token),
    ):
        print(f"export {name}={shlex.quote(value)}")


@app.command("backtest")
def backtest(
    bot_file: Annotated[Path, typer.Argument(help="The Python file of the bot.")],
    data: Annotated[
        list[Path], typer.Option("--data", "-d", help="CSV of OHLCV bars; repeat per symbol.")
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
    """Backtest a bot on historical bars with a simulated broker.

    Example: `coyote-sdk backtest examples/sma_cross.py --data examples/data/GOOG.csv
    --cash 10000 --commission 0.002`
    """
    from decimal import Decimal, InvalidOperation

    from rich.progress import Progress

    from coyote_sdk.backtest import Backtest, BacktestConfig, FillModel, write_chart
    from coyote_sdk.bot import ParameterError
    from coyote_sdk.csvdata import CsvDataError, read_bars_csv
    from coyote_sdk.loading import BotLoadError, load_bot_class, parse_params

    try:
        bot_class = load_bot_class(bot_file, bot_name)
        bot = bot_class(**parse_params(param or []))
        bars = [
            bar
            for path in data
            for bar in read_bars_csv(
                path,
                symbol=bot_class.symbols[0] if len(data) == 1 and bot_class.symbols else None,
                timeframe=timeframe,
            )
        ]
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
        if fill not in ("next-open", "close"):
            raise ValueError(f"--fill takes next-open or close, got {fill!r}")
        engine = Backtest(bot, bars, config=config)
    except (BotLoadError, ParameterError, CsvDataError, ValueError, InvalidOperation) as exc:
        _error(exc)
        raise typer.Exit(2) from exc

    with Progress(console=errors, transient=True, disable=as_json or len(bars) < 50_000) as bar:
        task = bar.add_task("backtest", total=len(bars))
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
            _day(trip.entry_ts_ms),
            f"{trip.entry_price:.4f}",
            _day(trip.exit_ts_ms) if trip.exit_ts_ms else "open",
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


def _day(ts_ms: int) -> str:
    from datetime import UTC, datetime

    moment = datetime.fromtimestamp(ts_ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%d %H:%M" if moment.hour or moment.minute else "%Y-%m-%d")


def _backtest_json(result, chart_path):
    return {
        "bot": result.bot,
        "params": result.params,
        "bars": result.bars,
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


@app.command("run")
def run(
    bot_file: Annotated[Path, typer.Argument(help="The Python file of the bot.")],
    account: Annotated[str, typer.Option(help="The trading account its intents name.")],
    bot_id: Annotated[
        str | None, typer.Option(help="The bot's id; by default the file's name.")
    ] = None,
    venue: Annotated[str, typer.Option(help="Market-data venue of its symbols.")] = "demo",
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="NAME=VALUE; repeatable.")
    ] = None,
    cash: Annotated[str, typer.Option(help="Capital allocation of its portfolio.")] = "0",
    bot_name: Annotated[
        str | None, typer.Option("--bot", help="The bot class, if the file has several.")
    ] = None,
    init_flag: Annotated[
        bool,
        typer.Option(
            help="Set the control flag to running if the bot has none (local runs); the "
            "supervisor passes --no-init-flag and sets flags itself."
        ),
    ] = True,
    max_errors: Annotated[int, typer.Option(help="Handler errors before it stops.")] = 10,
    release: Annotated[str | None, typer.Option(help="Release id, for the heartbeat.")] = None,
) -> None:
    """Run a bot live against the stack: bars from RedisTimeSeries, intents to Kafka.

    It obeys its control flag (`coyote:bot:ID:control`): paused sends nothing, stopped cancels
    its open orders, runs on_stop and exits. Ctrl-C stops it the same way.

    Example: `coyote-sdk run examples/sma_cross.py --account paper --param fast=10`
    """
    import asyncio
    import re
    from decimal import Decimal, InvalidOperation

    import redis

    from coyote_sdk.bot import ParameterError
    from coyote_sdk.control import read_control_flag, set_control_flag
    from coyote_sdk.loading import BotLoadError, load_bot_class, parse_params
    from coyote_sdk.logs import configure_logging
    from coyote_sdk.protocol import BotState
    from coyote_sdk.runtime import BotRuntime, RuntimeOptions, run_until_signalled

    configure_logging()
    try:
        bot_class = load_bot_class(bot_file, bot_name)
        bot = bot_class(**parse_params(param or []))
        identifier = bot_id or re.sub(r"[^A-Za-z0-9._-]", "-", bot_file.stem)
        options = RuntimeOptions(
            bot_id=identifier,
            account_id=account,
            venue=venue,
            cash=Decimal(cash),
            max_handler_errors=max_errors,
            release=release,
        )
    except (BotLoadError, ParameterError, ValueError, InvalidOperation) as exc:
        _error(exc)
        raise typer.Exit(2) from exc
    settings = _stack().settings
    endpoints = settings.endpoints()
    if init_flag:
        client = redis.Redis.from_url(endpoints.redis_url)
        try:
            if read_control_flag(client, identifier) is None:
                set_control_flag(client, identifier, BotState.RUNNING, set_by="coyote-sdk run")
        except redis.RedisError as exc:
            _error(f"Redis at {endpoints.redis_url}: {exc}")
            raise typer.Exit(1) from exc
        finally:
            client.close()
    outcome = asyncio.run(run_until_signalled(BotRuntime(bot, options, endpoints)))
    raise typer.Exit(outcome.code)


def _writer(venue: str):
    import redis

    from coyote_sdk.marketdata import MarketDataWriter

    client = redis.Redis.from_url(_stack().settings.endpoints().redis_url)
    return MarketDataWriter(client, venue=venue)


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
    files: Annotated[list[Path], typer.Argument(help="CSV files of OHLCV bars.")],
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
    """Replay CSV bars into RedisTimeSeries, publishing each as it is written.

    Without --speed or --bars-per-second it writes as fast as Redis takes them.

    Example: `coyote-sdk feed replay examples/data/EURUSD.csv --venue fx --bars-per-second 20`
    """
    from coyote_sdk.csvdata import CsvDataError, read_bars_csv
    from coyote_sdk.feeds import ReplayPace, rebase, replay_bars
    from coyote_sdk.protocol import now_ms

    try:
        pace = ReplayPace(speed=speed, bars_per_second=bars_per_second)
        bars = []
        for path in files:
            series = read_bars_csv(
                path, symbol=symbol if len(files) == 1 else None, venue=venue, timeframe=timeframe
            )
            bars += rebase(series, now_ms()) if rebase_now else series
        bars.sort(key=lambda b: (b.ts_ms, b.symbol))
    except (CsvDataError, ValueError) as exc:
        _error(exc)
        raise typer.Exit(2) from exc
    writer = _writer(venue)
    _progress(f"replaying {len(bars)} bars of {sorted({b.symbol for b in bars})} into {venue}")
    written = _run_feed(lambda stop: replay_bars(writer, bars, pace=pace, stop=stop))
    _progress(f"wrote {written} bars")


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
        _error(exc)
        raise typer.Exit(2) from exc
    writer = _writer(venue)
    _progress(f"random walk of {sorted(start)} into {venue}, {trades_per_second}/s (Ctrl-C stops)")
    written = _run_feed(
        lambda stop: walk.run(
            writer, trades_per_second=trades_per_second, stop=stop, seconds=seconds
        )
    )
    _progress(f"wrote {written} trades")


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
    writer = _writer(venue)
    written = _run_feed(lambda stop: run_binance(writer, symbols, base_url=url, stop=stop))
    _progress(f"wrote {written} trades")


@app.command("init")
def init(
    name: Annotated[str, typer.Argument(help="The bot's name, also its folder.")],
    directory: Annotated[Path, typer.Option(help="Where to create the folder.")] = Path("."),
) -> None:
    """Create a bot project: bot, test, requirements and README.

    Example: `coyote-sdk init breakout && cd breakout && pytest`
    """
    import re
    from importlib import resources
    from string import Template

    if not re.fullmatch(r"[a-z][a-z0-9_-]{0,63}", name):
        _error(
            f"{name!r} is not a bot name: lower case letters, digits, - and _, "
            "starting with a letter"
        )
        raise typer.Exit(2)
    target = directory / name
    if target.exists():
        _error(f"{target} already exists; nothing was written")
        raise typer.Exit(2)
    words = re.split(r"[-_]", name)
    values = {
        "name": name,
        "title": " ".join(words).capitalize(),
        "class_name": "".join(w.capitalize() for w in words) or "MyBot",
    }
    target.mkdir(parents=True)
    templates = resources.files("coyote_sdk").joinpath("templates", "bot")
    for template in templates.iterdir():
        if template.name.endswith(".tmpl"):
            text = Template(template.read_text()).substitute(values)
            (target / template.name.removesuffix(".tmpl")).write_text(text)
    console.print(f"created {target}/ (bot.py, test_bot.py, requirements.txt, README.md)")


@app.command("bundle")
def bundle_command(
    bot_file: Annotated[Path, typer.Argument(help="The Python file of the bot.")],
    name: Annotated[str | None, typer.Option(help="Bundle name; default the file's.")] = None,
    bot_name: Annotated[
        str | None, typer.Option("--bot", help="The bot class, if the file has several.")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Where to write the archive.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Build a bot's bundle (what push uploads) and print its digest.

    Example: `coyote-sdk bundle examples/sma_cross.py --out sma.tar.gz`
    """
    from coyote_sdk.bundles import BundleError, build_bundle

    try:
        built = build_bundle(bot_file, name=name, bot_class=bot_name)
    except BundleError as exc:
        _error(exc)
        raise typer.Exit(2) from exc
    target = out or Path(f"{built.manifest.name}.coyote-bundle.tar.gz")
    target.write_bytes(built.data)
    if as_json:
        print(
            json.dumps(
                {
                    "digest": built.digest,
                    "path": str(target),
                    "bytes": len(built.data),
                    "entry_point": built.manifest.entry_point,
                }
            )
        )
        return
    console.print(f"{target}  {built.digest}  ({len(built.data)} bytes)", highlight=False)
    for file in built.manifest.files:
        console.print(f"  {file.path}  {file.size} bytes", highlight=False)


def _moment_ms(text: str) -> int:
    """Milliseconds since the epoch, from digits or an ISO date-time (UTC when unzoned)."""
    from datetime import UTC, datetime

    if text.isdigit():
        return int(text)
    moment = datetime.fromisoformat(text)
    return int((moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp() * 1000)


@app.command("divergence")
def divergence(
    bot_file: Annotated[Path, typer.Argument(help="The bot's file (the release that ran).")],
    bot_id: Annotated[str, typer.Option(help="The live bot's id.")],
    account: Annotated[str, typer.Option(help="The account it traded.")],
    start: Annotated[str, typer.Option(help="First bar: ISO date-time or epoch ms.")],
    end: Annotated[str, typer.Option(help="Last bar: ISO date-time or epoch ms.")],
    venue: Annotated[str, typer.Option(help="Market-data venue.")] = "demo",
    param: Annotated[
        list[str] | None, typer.Option("--param", "-p", help="NAME=VALUE; as deployed.")
    ] = None,
    bot_name: Annotated[str | None, typer.Option("--bot", help="The bot class.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Replay a live session through the backtester and show where the orders differ.

    Exits 0 when live and backtest agree, 1 when they diverge.

    Example: `coyote-sdk divergence examples/sma_cross.py --bot-id sma --account paper
    --start 2026-11-23T09:00 --end 2026-11-23T17:00`
    """
    import asyncio

    from coyote_sdk.bot import ParameterError
    from coyote_sdk.divergence import compare, record_session
    from coyote_sdk.loading import BotLoadError, load_bot_class, parse_params
    from coyote_sdk.protocol import Timeframe

    try:
        bot_class = load_bot_class(bot_file, bot_name)
        bot = bot_class(**parse_params(param or []))
        start_ms, end_ms = _moment_ms(start), _moment_ms(end)
    except (BotLoadError, ParameterError, ValueError) as exc:
        _error(exc)
        raise typer.Exit(2) from exc
    session = asyncio.run(
        record_session(
            _stack().settings.endpoints(),
            bot_id=bot_id,
            account_id=account,
            venue=venue,
            symbols=list(bot_class.symbols),
            timeframe=Timeframe(bot_class.timeframe),
            start_ms=start_ms,
            end_ms=end_ms,
        )
    )
    report = compare(bot, session)
    if as_json:
        print(json.dumps(dataclasses.asdict(report), indent=2, default=str))
    else:
        console.print(
            f"{len(session.bars)} bars · live orders {report.live_orders} · backtest orders "
            f"{report.backtest_orders} · matched {report.matched}",
            highlight=False,
        )
        table = Table("bar", "kind", "order", "detail", title="divergences")
        for item in report.divergences:
            table.add_row(
                _day(item.bar_ts_ms) if item.bar_ts_ms else "", item.kind, item.order, item.detail
            )
        console.print(table if report.divergences else "live and backtest agree")
    raise typer.Exit(0 if report.identical else 1)


@protocol_app.command("schema")
def protocol_schema() -> None:
    """Print the JSON Schema of the wire protocol (what docs/schemas/ holds).

    Example: `coyote-sdk protocol schema > protocol-v1.json`
    """
    print(json.dumps(protocol.json_schema(), indent=2, sort_keys=True))


def main() -> None:
    app()


__all__ = ["app", "main"]
