"""The SMA crossover example on real GOOG daily bars."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from coyote_sdk.backtest import BacktestConfig, FillModel, run_backtest
from coyote_sdk.csvdata import read_bars_csv
from coyote_sdk.loading import load_bot_class

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
SmaCross = load_bot_class(ROOT / "examples" / "sma_cross.py")
GOOG = read_bars_csv(ROOT / "examples" / "data" / "GOOG.csv")


def _day(ts_ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ts_ms / 1000, tz=UTC).date().isoformat()


def test_the_first_trades_are_the_ones_computed_by_hand() -> None:
    # Closes 2004-08-19 … 09-07: 100.34 108.31 109.4 104.87 106 107.91 106.15 102.01 102.37
    # 100.25 101.51 100.01 101.58. With fast=2, slow=3:
    # - 08-26: fast 106.955 > slow 106.26 after 105.435 <= 106.757 → buy, filled at the next
    #   open, 08-27 at 108.10;
    # - 08-30: fast 104.08 < slow 105.357 after 107.03 >= 106.687 → sell, 08-31 open 102.30,
    #   PnL -5.80;
    # - 09-03: fast 100.76 > slow 100.59 after 100.88 <= 101.377 → buy, 09-07 open 101.01,
    #   still open, marked at the 101.58 close: +0.57.
    result = run_backtest(SmaCross(fast=2, slow=3, quantity=1), GOOG[:13])

    assert [
        (
            _day(t.entry_ts_ms),
            t.entry_price,
            t.exit_ts_ms and _day(t.exit_ts_ms),
            t.exit_price,
            t.pnl,
        )
        for t in result.trades
    ] == [
        ("2004-08-27", Decimal("108.1"), "2004-08-31", Decimal("102.3"), Decimal("-5.8")),
        ("2004-09-07", Decimal("101.01"), None, None, Decimal("0.57")),
    ]
    assert result.equity[-1][1] == Decimal(10_000) - Decimal("5.8") + Decimal("0.57")


def test_over_the_whole_history_every_fill_follows_a_crossover_at_the_next_open() -> None:
    fast, slow = 10, 20
    result = run_backtest(
        SmaCross(fast=fast, slow=slow),
        GOOG,
        config=BacktestConfig(fill=FillModel(commission=Decimal("0.002"))),
    )
    closes = [b.close for b in GOOG]

    def average(end: int, n: int) -> Decimal:
        return sum(closes[end - n + 1 : end + 1], Decimal(0)) / n

    expected, held = [], False
    for i in range(slow, len(GOOG) - 1):
        up = average(i - 1, fast) <= average(i - 1, slow) and average(i, fast) > average(i, slow)
        down = average(i - 1, fast) >= average(i - 1, slow) and average(i, fast) < average(i, slow)
        if (up and not held) or (down and held):
            expected.append((GOOG[i + 1].ts_ms, "sell" if held else "buy", GOOG[i + 1].open))
            held = not held

    assert [(f.ts_ms, f.side.value, f.price) for f in result.fills] == expected
    assert all(f.fee == f.quantity * f.price * Decimal("0.002") for f in result.fills)
    assert len(result.trades) == 47
    assert result.stats.end_equity == Decimal(10_000) + sum(t.pnl for t in result.trades)
