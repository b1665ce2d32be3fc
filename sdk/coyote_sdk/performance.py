"""Performance ratios of an equity curve, shared by backtests and the reports service.

Both annualise at the curve's own sampling rate (``per_year`` samples a year), so a daily curve,
an hourly curve and a backtest on 1-minute bars give comparable figures.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

__all__ = ["max_drawdown", "returns", "sharpe_sortino"]


def returns(values: Sequence[float]) -> list[float]:
    """Simple returns between consecutive values (steps from zero are skipped)."""
    return [b / a - 1 for a, b in itertools.pairwise(values) if a]


def sharpe_sortino(step_returns: Sequence[float], per_year: float) -> tuple[float, float]:
    """Annualised Sharpe and Sortino ratios (risk-free rate zero) of per-step returns.

    Sortino's downside deviation is taken over every step (zero for gains), as in Sortino and
    Price's definition. Both are 0.0 when there are fewer than two steps or no dispersion.
    """
    if len(step_returns) < 2 or per_year <= 0:
        return 0.0, 0.0
    mean = sum(step_returns) / len(step_returns)
    std = math.sqrt(sum((r - mean) ** 2 for r in step_returns) / (len(step_returns) - 1))
    downside = math.sqrt(sum(min(r, 0.0) ** 2 for r in step_returns) / len(step_returns))
    scale = math.sqrt(per_year)
    sharpe = mean / std * scale if std else 0.0
    sortino = mean / downside * scale if downside else 0.0
    return sharpe, sortino


def max_drawdown(values: Sequence[float]) -> float:
    """The largest fall from a running peak, as a fraction of that peak (0.0 to 1.0)."""
    peak, worst = -math.inf, 0.0
    for value in values:
        peak = max(peak, value)
        if peak > 0:
            worst = max(worst, (peak - value) / peak)
    return worst
