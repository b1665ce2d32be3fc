"""Backtests on trades (ticks): on_tick for every trade, on_bar for the bars they make, fills at
trade prices — worked out by hand — and the CSV of trades through the command line."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from coyote_sdk import Bar, Bot, ExecutionReport, Trade
from coyote_sdk.backtest import Backtest, BacktestConfig, FillModel
from coyote_sdk.csvdata import CsvDataError, csv_kind, read_trades_csv

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
MINUTE = 60_000
# (seconds from 0, price, size): three one-minute bars' worth of trades.
PRINTS = [
    (0, "10.0", "1"),
    (20, "10.5", "2"),
    (50, "9.8", "1"),
    (65, "10.2", "3"),
    (90, "11.0", "1"),
    (130, "10.9", "2"),
    (170, "12.0", "1"),
]
TICKS = [
    Trade(symbol="ABC", venue="t", ts_ms=s * 1000, price=Decimal(p), size=Decimal(q))
    for s, p, q in PRINTS
]


class Recorder(Bot):
    """Buys 1 on the first trade; places a limit sell at 10.9 on its first bar; notes all."""

    symbols = ["ABC"]
    timeframe = "1m"

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, int, Decimal]] = []
        self.fills: list[tuple[str, Decimal]] = []
        self.recent: list[list[Decimal]] = []

    def on_tick(self, trade: Trade) -> None:
        self.seen.append(("tick", trade.ts_ms, trade.price))
        if len(self.seen) == 1:
            self.buy("ABC", 1)

    def on_bar(self, bar: Bar) -> None:
        self.seen.append(("bar", bar.ts_ms, bar.close))
        self.recent.append([t.price for t in self.ticks("ABC", 2)])
        if bar.ts_ms == 0:
            self.sell("ABC", 1, limit="10.9")

    def on_fill(self, report: ExecutionReport) -> None:
        assert report.last_price is not None
        self.fills.append((report.side.value, report.last_price))


def test_ticks_drive_on_tick_and_make_the_bars_of_the_bots_timeframe() -> None:
    bot = Recorder()
    result = Backtest(bot, ticks=TICKS).run()

    bars = [(ts, close) for kind, ts, close in bot.seen if kind == "bar"]
    assert bars == [(0, Decimal("9.8")), (MINUTE, Decimal("11.0")), (2 * MINUTE, Decimal("12.0"))]
    # Each bar comes when the first trade of the next one arrives, before that trade.
    order = [(kind, ts) for kind, ts, _ in bot.seen]
    assert order.index(("bar", 0)) == order.index(("tick", 65_000)) - 1
    assert result.bars == 3 and result.ticks == 7
    # ticks() in on_bar: the bar's last two trades (the next bar's first comes after it).
    assert bot.recent == [
        [Decimal("10.5"), Decimal("9.8")],
        [Decimal("10.2"), Decimal("11.0")],
        [Decimal("10.9"), Decimal("12.0")],
    ]
    assert [ts for ts, _ in result.equity] == [MINUTE, 2 * MINUTE, 3 * MINUTE]


def test_orders_fill_at_trade_prices() -> None:
    bot = Recorder()
    result = Backtest(bot, ticks=TICKS, config=BacktestConfig(cash=Decimal(100))).run()

    # The market buy placed on the first trade fills at the next one (10.5); the limit sell
    # at 10.9 placed on the first bar rests (10.2 at 65 s does not reach it) until the trade
    # at 11.0 (90 s), which fills it at that better price.
    assert bot.fills == [("buy", Decimal("10.5")), ("sell", Decimal("11.0"))]
    assert result.equity[-1][1] == Decimal(100) - Decimal("10.5") + Decimal("11.0")


def test_fill_at_close_fills_a_market_order_at_the_trade_it_was_placed_on() -> None:
    bot = Recorder()
    config = BacktestConfig(fill=FillModel(fill_at="close"))
    Backtest(bot, ticks=TICKS, config=config).run()

    assert bot.fills[0] == ("buy", Decimal("10.0"))


def test_bars_and_ticks_together_are_refused() -> None:
    bar = Bar(
        symbol="ABC",
        venue="t",
        timeframe="1m",
        ts_ms=0,
        open=Decimal(1),
        high=Decimal(1),
        low=Decimal(1),
        close=Decimal(1),
        volume=Decimal(1),
    )
    with pytest.raises(ValueError, match="bars or ticks, not both"):
        Backtest(Recorder(), [bar], ticks=TICKS)
    other = Trade(symbol="XYZ", venue="t", ts_ms=0, price=Decimal(1), size=Decimal(1))
    with pytest.raises(ValueError, match="no ticks for Recorder's symbols"):
        Backtest(Recorder(), ticks=[other])


def _write_ticks(path: Path) -> Path:
    rows = ["timestamp,price,size"] + [f"{s * 1000},{p},{q}" for s, p, q in PRINTS]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_a_csv_of_trades_is_read_with_its_mistakes_named(tmp_path: Path) -> None:
    path = _write_ticks(tmp_path / "abc.csv")
    assert csv_kind(path) == "ticks"
    assert csv_kind(ROOT / "examples/data/GOOG.csv") == "bars"
    assert read_trades_csv(path, venue="t") == TICKS

    broken = tmp_path / "broken.csv"
    broken.write_text("time,price,size\n2026-01-01T00:00:01,10,1\n2026-01-01T00:00:00,10,1\n")
    with pytest.raises(CsvDataError, match=r"broken.csv:3: .* is before the row before it"):
        read_trades_csv(broken)
    bad = tmp_path / "bad.csv"
    bad.write_text("time,price,size\n2026-01-01T00:00:01,ten,1\n")
    with pytest.raises(CsvDataError, match=r"bad.csv:2: not a timestamp, a price and a size"):
        read_trades_csv(bad)


def test_the_command_line_backtests_a_csv_of_trades(tmp_path: Path) -> None:
    data = _write_ticks(tmp_path / "abc.csv")
    bot_file = tmp_path / "tick_bot.py"
    bot_file.write_text(
        "from coyote_sdk import Bot\n\n"
        "class TickBot(Bot):\n"
        "    symbols = ['ABC']\n"
        "    timeframe = '1m'\n\n"
        "    def on_tick(self, trade):\n"
        "        if self.position('ABC').quantity == 0:\n"
        "            self.buy('ABC', 1)\n"
    )

    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "coyote_sdk",
            "backtest",
            str(bot_file),
            "--data",
            str(data),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ticks"] == 7 and report["bars"] == 3
    assert report["stats"]["trades"] == 1  # bought on the first trade, held to the end
