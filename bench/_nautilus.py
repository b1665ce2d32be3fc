"""NautilusTrader's BacktestEngine on the bars of bench/backtest.py (run in its own venv).

Usage: python bench/_nautilus.py BARS_CSV {bars|orders}
Prints one JSON object: {"seconds": ..., "bars": ..., "orders": ...}.
"""

from __future__ import annotations

import csv
import json
import sys
import time

from nautilus_trader.backtest.engine import BacktestEngine, BacktestEngineConfig
from nautilus_trader.config import LoggingConfig, StrategyConfig
from nautilus_trader.model.currencies import USD
from nautilus_trader.model.data import Bar, BarType
from nautilus_trader.model.enums import AccountType, OmsType, OrderSide
from nautilus_trader.model.identifiers import TraderId, Venue
from nautilus_trader.model.objects import Money, Price, Quantity
from nautilus_trader.test_kit.providers import TestInstrumentProvider
from nautilus_trader.trading.strategy import Strategy


class OneOrderPerBarConfig(StrategyConfig, frozen=True):
    bar_type: str
    trade: bool


class OneOrderPerBar(Strategy):
    def __init__(self, config: OneOrderPerBarConfig) -> None:
        super().__init__(config)
        self.bar_type = BarType.from_str(config.bar_type)
        self.trade = config.trade
        self.count = 0

    def on_start(self) -> None:
        self.instrument = self.cache.instrument(self.bar_type.instrument_id)
        self.subscribe_bars(self.bar_type)

    def on_bar(self, bar: Bar) -> None:
        self.count += 1
        if self.trade:
            side = OrderSide.BUY if self.count % 2 else OrderSide.SELL
            order = self.order_factory.market(
                self.bar_type.instrument_id, side, self.instrument.make_qty(1)
            )
            self.submit_order(order)


def main() -> None:
    path, mode = sys.argv[1], sys.argv[2]
    instrument = TestInstrumentProvider.equity(symbol="SYN", venue="XNAS")
    bar_type = BarType.from_str("SYN.XNAS-1-MINUTE-LAST-EXTERNAL")
    bars = []
    with open(path) as f:
        for ts_ms, o, h, low, c, v in csv.reader(f):
            ts_ns = int(ts_ms) * 1_000_000 + 60_000_000_000  # stamped at the bar's close
            bars.append(
                Bar(
                    bar_type,
                    Price.from_str(o),
                    Price.from_str(h),
                    Price.from_str(low),
                    Price.from_str(c),
                    Quantity.from_str(v),
                    ts_ns,
                    ts_ns,
                )
            )
    engine = BacktestEngine(
        config=BacktestEngineConfig(
            trader_id=TraderId("BENCH-001"), logging=LoggingConfig(log_level="ERROR")
        )
    )
    engine.add_venue(
        venue=Venue("XNAS"),
        oms_type=OmsType.NETTING,
        account_type=AccountType.MARGIN,
        base_currency=USD,
        starting_balances=[Money(100_000_000, USD)],
    )
    engine.add_instrument(instrument)
    engine.add_data(bars)
    strategy = OneOrderPerBar(OneOrderPerBarConfig(bar_type=str(bar_type), trade=mode == "orders"))
    engine.add_strategy(strategy)
    started = time.perf_counter()
    engine.run()
    seconds = time.perf_counter() - started
    orders = len(engine.cache.orders())
    print(json.dumps({"seconds": seconds, "bars": strategy.count, "orders": orders}))
    engine.dispose()


if __name__ == "__main__":
    main()
