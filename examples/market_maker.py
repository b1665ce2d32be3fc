"""A simple two-sided market maker: quote a bid and an ask around the last close, and re-quote
on every bar, with an inventory limit.

Each bar it cancels its resting quotes and posts new ones ``half_spread`` either side of the
close. When its position reaches ``max_inventory`` it stops quoting the side that would grow it.

    coyote-sdk backtest examples/market_maker.py --data examples/data/EURUSD.csv --cash 100000
"""

from decimal import Decimal

from coyote_sdk import Bar, Bot, ExecutionReport, Param


class MarketMaker(Bot):
    symbols = ["EURUSD"]
    timeframe = "1h"

    half_spread: Decimal = Param(Decimal("0.0005"), gt=0, description="quote distance from close")
    size: Decimal = Param(Decimal(10_000), gt=0, description="units per quote")
    max_inventory: Decimal = Param(Decimal(30_000), gt=0, description="largest position held")

    def on_start(self) -> None:
        self.state["fills"] = 0

    def on_bar(self, bar: Bar) -> None:
        if self.open_orders:
            self.cancel_all(bar.symbol)
        held = self.position(bar.symbol).quantity
        tick = Decimal("0.00001")
        if held + self.size <= self.max_inventory:
            bid = (bar.close - self.half_spread).quantize(tick)
            self.buy(bar.symbol, self.size, limit=bid, tag="bid")
        if held - self.size >= -self.max_inventory:
            ask = (bar.close + self.half_spread).quantize(tick)
            self.sell(bar.symbol, self.size, limit=ask, tag="ask")

    def on_fill(self, report: ExecutionReport) -> None:
        self.state["fills"] = self.state["fills"] + 1
