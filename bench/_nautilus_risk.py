"""NautilusTrader's pre-trade risk cost per order, for bench/risk.py (run in its own venv).

A strategy in a BacktestEngine submits marketable limit orders of 1 share (buy at the ask, sell
at the bid, alternating; the side and price kind of bench/risk.py's order) from its quote-tick
handler, ORDERS_PER_TICK on each of TICKS quotes one second apart, and times every
`Strategy.submit_order` call. The same is run with the RiskEngine active and with
`RiskEngineConfig(bypass=True)`, alternately, ROUNDS times each in this one process; the
difference is what the RiskEngine costs an order. Its limits are all on and none binds: a CASH
account (its free-balance checks are skipped for margin accounts), a maximum notional per order
for the instrument, submit and modify rates of 5,000 per second (the submit throttler is warm
and checks every order's rate after the first 5,000).

Also timed directly, on the risk-on engine after its runs: the RiskEngine's own pre-trade
checks for one such order, `_check_order` (price, quantity, expiry) and `_check_orders_risk`
(maximum notional, free balance, cumulative notional) called from Python, as
`RiskEngine._handle_submit_order` calls them, without its instrument lookup, the submit
throttler or the message bus.

Usage: python bench/_nautilus_risk.py
Prints one JSON object (times in ns).
"""

from __future__ import annotations

import gc
import json
import statistics
import time
from decimal import Decimal

import nautilus_trader
from nautilus_trader.backtest.engine import BacktestEngine, BacktestEngineConfig
from nautilus_trader.config import LoggingConfig, RiskEngineConfig, StrategyConfig
from nautilus_trader.model.currencies import USD
from nautilus_trader.model.data import QuoteTick
from nautilus_trader.model.enums import AccountType, OmsType, OrderSide
from nautilus_trader.model.events import OrderDenied
from nautilus_trader.model.identifiers import InstrumentId, TraderId, Venue
from nautilus_trader.model.instruments import Equity
from nautilus_trader.model.objects import Money, Price, Quantity
from nautilus_trader.test_kit.providers import TestInstrumentProvider
from nautilus_trader.trading.strategy import Strategy

TICKS = 41  # the first is a warm-up, not timed
ORDERS_PER_TICK = 500
ROUNDS = 3
DIRECT_CHECKS = 200_000
RATE = "5000/00:00:01"
MAX_NOTIONAL = 1_000_000  # an order here is ~100 USD


class SubmitterConfig(StrategyConfig, frozen=True):
    instrument_id: str
    orders_per_tick: int


class Submitter(Strategy):
    def __init__(self, config: SubmitterConfig) -> None:
        super().__init__(config)
        self.instrument_id = InstrumentId.from_str(config.instrument_id)
        self.orders_per_tick = config.orders_per_tick
        self.timings: list[int] = []
        self.ticks = 0
        self.denied = 0

    def on_start(self) -> None:
        self.instrument = self.cache.instrument(self.instrument_id)
        self.subscribe_quote_ticks(self.instrument_id)

    def on_quote_tick(self, tick: QuoteTick) -> None:
        one = self.instrument.make_qty(1)
        orders = [
            self.order_factory.limit(
                self.instrument_id,
                OrderSide.BUY if i % 2 == 0 else OrderSide.SELL,
                one,
                tick.ask_price if i % 2 == 0 else tick.bid_price,
            )
            for i in range(self.orders_per_tick)
        ]
        submit, clock, timings = self.submit_order, time.perf_counter_ns, []
        for order in orders:
            started = clock()
            submit(order)
            timings.append(clock() - started)
        if self.ticks:
            self.timings += timings
        self.ticks += 1

    def on_order_denied(self, event: OrderDenied) -> None:
        self.denied += 1


def _quotes(instrument: Equity) -> list[QuoteTick]:
    size = Quantity.from_int(1_000_000)
    quotes = []
    for i in range(TICKS):
        bid = 100.0 + (i % 10) / 100
        ts = (i + 1) * 1_000_000_000
        quotes.append(
            QuoteTick(
                instrument.id,
                Price(bid, 2),
                Price(bid + 0.01, 2),
                size,
                size,
                ts,
                ts,
            )
        )
    return quotes


def _engine(bypass: bool) -> tuple[BacktestEngine, Submitter]:
    instrument = TestInstrumentProvider.equity(symbol="SYN", venue="XNAS")
    engine = BacktestEngine(
        config=BacktestEngineConfig(
            trader_id=TraderId("BENCH-001"),
            logging=LoggingConfig(log_level="ERROR"),
            risk_engine=RiskEngineConfig(
                bypass=bypass,
                max_order_submit_rate=RATE,
                max_order_modify_rate=RATE,
                max_notional_per_order={str(instrument.id): MAX_NOTIONAL},
            ),
        )
    )
    engine.add_venue(
        venue=Venue("XNAS"),
        oms_type=OmsType.NETTING,
        account_type=AccountType.CASH,
        base_currency=USD,
        starting_balances=[Money(100_000_000, USD)],
    )
    engine.add_instrument(instrument)
    engine.add_data(_quotes(instrument))
    strategy = Submitter(
        SubmitterConfig(instrument_id=str(instrument.id), orders_per_tick=ORDERS_PER_TICK)
    )
    engine.add_strategy(strategy)
    return engine, strategy


def _direct(engine: BacktestEngine, strategy: Submitter) -> tuple[float, bool]:
    """ns per pass of the RiskEngine's two check calls on one order; and whether an order
    over the maximum notional is denied by the same calls (the limit is live)."""
    risk = engine.kernel.risk_engine
    instrument = engine.cache.instrument(strategy.instrument_id)
    account = engine.cache.account_for_venue(instrument.id.venue)
    assert not risk.is_bypassed and not account.is_margin_account
    assert risk.max_notional_per_order(instrument.id) == Decimal(MAX_NOTIONAL)
    quote = engine.cache.quote_tick(instrument.id)
    order = strategy.order_factory.limit(
        instrument.id, OrderSide.BUY, instrument.make_qty(1), quote.ask_price
    )
    check_order, check_risk, orders = risk._check_order, risk._check_orders_risk, [order]

    def loop() -> None:
        for _ in range(DIRECT_CHECKS):
            if not (check_order(instrument, order) and check_risk(instrument, orders)):
                raise AssertionError("the benchmark's order must pass every check")

    best = float("inf")
    for _ in range(5):
        started = time.perf_counter_ns()
        loop()
        best = min(best, (time.perf_counter_ns() - started) / DIRECT_CHECKS)
    too_big = strategy.order_factory.limit(
        instrument.id, OrderSide.BUY, instrument.make_qty(20_000), quote.ask_price
    )
    return best, not check_risk(instrument, [too_big])


def main() -> None:
    timings: dict[str, list[int]] = {"risk": [], "bypass": []}
    submitted = 0
    direct = None
    for _ in range(ROUNDS):
        for mode in ("risk", "bypass"):
            engine, strategy = _engine(bypass=mode == "bypass")
            gc.collect()
            engine.run()
            if strategy.denied or engine.kernel.risk_engine.is_bypassed != (mode == "bypass"):
                raise AssertionError(f"{strategy.denied} orders denied with {mode}")
            timings[mode] += strategy.timings
            submitted += len(engine.cache.orders())
            if mode == "risk" and direct is None:
                direct = _direct(engine, strategy)
            engine.dispose()

    def figures(values: list[int]) -> dict[str, float]:
        return {
            "p50_ns": statistics.median(values),
            "mean_ns": statistics.fmean(values),
            "orders": len(values),
        }

    risk, bypass = figures(timings["risk"]), figures(timings["bypass"])
    print(
        json.dumps(
            {
                "version": nautilus_trader.__version__,
                "submit_with_risk": risk,
                "submit_bypassed": bypass,
                "risk_cost_p50_ns": risk["p50_ns"] - bypass["p50_ns"],
                "risk_cost_mean_ns": risk["mean_ns"] - bypass["mean_ns"],
                "direct_checks_ns": direct[0],
                "max_notional_denies": direct[1],
                "orders_submitted": submitted,
            }
        )
    )


if __name__ == "__main__":
    main()
