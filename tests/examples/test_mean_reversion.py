"""The mean-reversion example on real EURUSD hourly bars."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from coyote_sdk.backtest import BacktestConfig, run_backtest
from coyote_sdk.csvdata import read_bars_csv
from coyote_sdk.loading import load_bot_class

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
MeanReversion = load_bot_class(ROOT / "examples" / "mean_reversion.py")
EURUSD = read_bars_csv(ROOT / "examples" / "data" / "EURUSD.csv")


def test_every_fill_follows_the_z_score_rule_on_the_bar_before() -> None:
    window, entry, exit_ = 48, Decimal(2), Decimal("0.5")
    result = run_backtest(MeanReversion(), EURUSD, config=BacktestConfig(cash=Decimal(100_000)))
    index_of = {bar.ts_ms: i for i, bar in enumerate(EURUSD)}

    def z_score(i: int) -> Decimal:
        closes = [b.close for b in EURUSD[i - window + 1 : i + 1]]
        mean = sum(closes, Decimal(0)) / window
        deviation = (sum((c - mean) ** 2 for c in closes) / window).sqrt()
        return (EURUSD[i].close - mean) / deviation

    held = Decimal(0)
    for fill in result.fills:
        decided_on = index_of[fill.ts_ms] - 1  # filled at the open after the decision bar
        z = z_score(decided_on)
        if held == 0:
            assert (z < -entry and fill.side == "buy") or (z > entry and fill.side == "sell")
        elif held > 0:
            assert fill.side == "sell" and z > -exit_
        else:
            assert fill.side == "buy" and z < exit_
        assert fill.price == EURUSD[decided_on + 1].open
        held = fill.position_after
        assert abs(held) <= Decimal(10_000)

    assert len(result.trades) == 97
    assert result.stats.win_rate_pct > 50
