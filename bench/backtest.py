"""Backtest throughput, side by side with NautilusTrader's BacktestEngine on the same bars.

Both engines run the same 20,000 synthetic one-minute bars (a seeded random walk) twice:
- bars/s: a strategy that receives every bar and places no order;
- orders/s: a strategy that places one market order per bar, alternating buy and sell, so every
  order is accepted, filled and booked into the portfolio.
Target: ahead of NautilusTrader on both. NautilusTrader runs in its own virtual environment
(.coyote/bench-venv, made by `make bench`); without it only Coyote's figures are recorded.

Run: make bench (or .venv/bin/python bench/backtest.py)
"""

from __future__ import annotations

import csv
import json
import random
import subprocess
import sys
import tempfile
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import measurement, record

from coyote_risk import InstrumentSpec, Limits, RiskConfig
from coyote_sdk import Bar, Bot, Timeframe
from coyote_sdk.backtest import BacktestConfig, run_backtest

ROOT = Path(__file__).resolve().parents[1]
NAUTILUS_PYTHON = ROOT / ".coyote" / "bench-venv" / "bin" / "python"
BARS = 20_000
RUNS = 3


def synthetic_bars(path: Path) -> list[Bar]:
    rng = random.Random(7)
    price = 100.0
    rows = []
    for i in range(BARS):
        open_ = price
        price = max(1.0, price * (1 + rng.gauss(0, 0.001)))
        high = max(open_, price) * (1 + abs(rng.gauss(0, 0.0005)))
        low = min(open_, price) * (1 - abs(rng.gauss(0, 0.0005)))
        rows.append(
            [
                i * 60_000,
                f"{open_:.2f}",
                f"{high:.2f}",
                f"{low:.2f}",
                f"{price:.2f}",
                rng.randint(100, 1000),
            ]
        )
    with path.open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    return [
        Bar(
            symbol="SYN",
            venue="bench",
            timeframe=Timeframe.M1,
            ts_ms=r[0],
            open=Decimal(r[1]),
            high=Decimal(r[2]),
            low=Decimal(r[3]),
            close=Decimal(r[4]),
            volume=Decimal(r[5]),
        )
        for r in rows
    ]


class Listener(Bot):
    symbols = ["SYN"]
    timeframe = "1m"

    def on_bar(self, bar: Bar) -> None:
        pass


class OneOrderPerBar(Bot):
    symbols = ["SYN"]
    timeframe = "1m"

    def on_start(self) -> None:
        self.count = 0

    def on_bar(self, bar: Bar) -> None:
        self.count += 1
        if self.count % 2:
            self.buy("SYN", 1)
        else:
            self.sell("SYN", 1)


def _risk() -> RiskConfig:
    """Every limit on, none binding: each order pays for every check and passes."""
    return RiskConfig(
        account_id="backtest",
        instruments={"SYN": InstrumentSpec("SYN", Decimal("0.01"))},
        account=Limits(
            max_order_quantity=Decimal(1000),
            max_order_notional=Decimal(10**7),
            price_collar_bps=Decimal(1000),
            max_price_age_ms=10**9,
            max_position=Decimal(10**6),
            max_gross_exposure=Decimal(10**12),
            max_net_exposure=Decimal(10**12),
            max_daily_loss=Decimal(10**9),
            orders_per_second=10**6,
            order_burst=10**6,
        ),
        bots={"OneOrderPerBar": Limits(capital_allocation=Decimal(10**12))},
    )


def coyote(
    bars: list[Bar], bot_type: type[Bot], risk: RiskConfig | None = None
) -> tuple[float, int]:
    import time

    best, orders = float("inf"), 0
    for _ in range(RUNS):
        started = time.perf_counter()
        config = BacktestConfig(cash=Decimal(10**8), risk=risk)
        result = run_backtest(bot_type(), bars, config=config)
        best = min(best, time.perf_counter() - started)
        orders = len(result.intents)
    return best, orders


def nautilus(path: Path, mode: str) -> tuple[float, int] | None:
    if not NAUTILUS_PYTHON.exists():
        return None
    best, orders = float("inf"), 0
    for _ in range(RUNS):
        out = subprocess.run(
            [str(NAUTILUS_PYTHON), str(Path(__file__).with_name("_nautilus.py")), str(path), mode],
            capture_output=True,
            text=True,
            check=True,
            timeout=600,
        )
        figures = json.loads(out.stdout.strip().splitlines()[-1])
        best, orders = min(best, figures["seconds"]), figures["orders"]
    return best, orders


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bars.csv"
        bars = synthetic_bars(path)
        ours_bars, _ = coyote(bars, Listener)
        ours_orders, placed = coyote(bars, OneOrderPerBar)
        ours_risked, placed_risked = coyote(bars, OneOrderPerBar, _risk())
        theirs_bars = nautilus(path, "bars")
        theirs_orders = nautilus(path, "orders")

    nautilus_name = "NautilusTrader 1.221.0 BacktestEngine, same bars"
    record(
        [
            measurement(
                "backtest.bars_per_s",
                round(BARS / ours_bars),
                "bars/s",
                nautilus_name,
                round(BARS / theirs_bars[0]) if theirs_bars else None,
            ),
            measurement(
                "backtest.orders_per_s_with_risk_checks",
                round(placed_risked / ours_risked),
                "orders/s",
                nautilus_name,
                round(theirs_orders[1] / theirs_orders[0]) if theirs_orders else None,
            ),
            measurement(
                "backtest.orders_per_s_without_risk_checks", round(placed / ours_orders), "orders/s"
            ),
        ]
    )


if __name__ == "__main__":
    main()
