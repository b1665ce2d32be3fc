"""Backtests: the unchanged bot over historical bars, against a simulated broker.

Example::

    from coyote_sdk.backtest import BacktestConfig, FillModel, run_backtest
    from coyote_sdk.csvdata import read_bars_csv

    result = run_backtest(SmaCross(fast=10, slow=30), read_bars_csv("examples/data/GOOG.csv"),
                          config=BacktestConfig(cash=Decimal(10_000),
                                                fill=FillModel(commission=Decimal("0.002"))))
    print(result.stats.return_pct)
"""

from coyote_sdk.backtest._broker import FillModel, SimulatedBroker
from coyote_sdk.backtest._engine import Backtest, BacktestConfig, BacktestResult, run_backtest
from coyote_sdk.backtest._report import write_chart
from coyote_sdk.backtest._stats import RoundTrip, Statistics

__all__ = [
    "Backtest",
    "BacktestConfig",
    "BacktestResult",
    "FillModel",
    "RoundTrip",
    "SimulatedBroker",
    "Statistics",
    "run_backtest",
    "write_chart",
]
