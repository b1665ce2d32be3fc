"""Mean reversion on EURUSD hourly bars: fade moves that stretch far from the recent mean.

When the close is more than ``entry`` standard deviations below its ``window``-bar mean the bot
buys; more than ``entry`` above, it sells short. It closes the position once the price has come
back within ``exit`` deviations of the mean.

    coyote-sdk backtest examples/mean_reversion.py --data examples/data/EURUSD.csv \
        --cash 100000 --commission 0.00002
"""

from decimal import Decimal

from coyote_sdk import Bar, Bot, Param


class MeanReversion(Bot):
    symbols = ["EURUSD"]
    timeframe = "1h"

    window: int = Param(48, ge=5, description="bars in the mean and deviation")
    entry: Decimal = Param(Decimal(2), gt=0, description="deviations from the mean to enter")
    exit: Decimal = Param(Decimal("0.5"), ge=0, description="deviations from the mean to exit")
    quantity: Decimal = Param(Decimal(10_000), gt=0, description="units per trade")

    def on_bar(self, bar: Bar) -> None:
        closes = [b.close for b in self.history(bar.symbol, self.window)]
        if len(closes) < self.window:
            return
        mean = sum(closes, Decimal(0)) / len(closes)
        deviation = (sum((c - mean) ** 2 for c in closes) / len(closes)).sqrt()
        if not deviation:
            return
        z = (bar.close - mean) / deviation
        held = self.position(bar.symbol).quantity
        if held == 0:
            if z < -self.entry:
                self.buy(bar.symbol, self.quantity)
            elif z > self.entry:
                self.sell(bar.symbol, self.quantity)
        elif held > 0 and z > -self.exit:
            self.sell(bar.symbol, held, reduce_only=True)
        elif held < 0 and z < self.exit:
            self.buy(bar.symbol, -held, reduce_only=True)
