"""SMA crossover: long when the fast moving average crosses above the slow one, flat when it
crosses back below. The classic first bot; run it with

    coyote-sdk backtest examples/sma_cross.py --data examples/data/GOOG.csv --cash 10000 \
        --commission 0.002
"""

from decimal import Decimal

from coyote_sdk import Bar, Bot, Param


class SmaCross(Bot):
    symbols = ["GOOG"]
    timeframe = "1d"

    fast: int = Param(10, ge=1, description="bars in the fast average")
    slow: int = Param(20, ge=2, description="bars in the slow average")
    quantity: Decimal = Param(Decimal(10), gt=0, description="shares per entry")

    def on_start(self) -> None:
        if self.fast >= self.slow:
            raise ValueError(f"fast ({self.fast}) must be shorter than slow ({self.slow})")

    def on_bar(self, bar: Bar) -> None:
        bars = self.history(bar.symbol, self.slow + 1)
        if len(bars) <= self.slow:
            return
        closes = [b.close for b in bars]
        fast_now, slow_now = _mean(closes[-self.fast :]), _mean(closes[-self.slow :])
        fast_before = _mean(closes[-self.fast - 1 : -1])
        slow_before = _mean(closes[-self.slow - 1 : -1])
        held = self.position(bar.symbol).quantity
        if fast_before <= slow_before and fast_now > slow_now and held == 0:
            self.buy(bar.symbol, self.quantity)
        elif fast_before >= slow_before and fast_now < slow_now and held > 0:
            self.sell(bar.symbol, held)


def _mean(values: list[Decimal]) -> Decimal:
    return sum(values, Decimal(0)) / len(values)
