"""Risk checks per second: the compiled engine against the same checks in pure Python.

A "full check pass" is an order that goes through every check with every limit configured
(circuit breakers, instrument, shape, tick and lot, quantity, notional, collar, price age,
projected position, account gross and net exposure over 20 instruments, the bot's capital,
duplicates, both throttles) and passes; each is then released, as the executor releases an
order that ends, so the state stays steady. Target: >= 1,000,000 passes/s, >= 20x the
reference.

Run: .venv/bin/python bench/risk.py
"""

from __future__ import annotations

import sys
from decimal import Decimal as D
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import best_of, measurement, record

from coyote_risk import (
    InstrumentSpec,
    Limits,
    RiskConfig,
    RiskEngine,
    reference,
)

CHECKS = 200_000
SYMBOLS = [f"S{i:02d}" for i in range(20)]


def _config() -> RiskConfig:
    return RiskConfig(
        account_id="bench",
        instruments={s: InstrumentSpec(s, D("0.01")) for s in SYMBOLS},
        account=Limits(
            max_order_quantity=D(10_000),
            max_order_notional=D(10**7),
            price_collar_bps=D(500),
            max_price_age_ms=60_000,
            max_position=D(10**6),
            max_gross_exposure=D(10**12),
            max_net_exposure=D(10**12),
            max_daily_loss=D(10**6),
            orders_per_second=10**9,
            order_burst=10**9,
            duplicate_window_ms=1000,
        ),
        bots={
            "bot": Limits(
                max_daily_loss=D(10**6),
                capital_allocation=D(10**12),
                orders_per_second=10**9,
                order_burst=10**9,
            )
        },
    )


def _run(engine_type: type) -> float:
    engine = engine_type(_config(), 0)
    for symbol in SYMBOLS:
        engine.update_price(symbol, 100.0, 0)
        engine.slot("bot", symbol).on_fill(1, 10.0)
    slot = engine.slot("bot", SYMBOLS[0])
    check, release = slot.check, slot.release
    prices = [round(99.0 + i / 100, 2) for i in range(200)]  # never a duplicate in the window

    def loop() -> None:
        for i in range(CHECKS):
            if check(1, 1.0, prices[i % 200], False, False, i // 100):
                raise AssertionError("the benchmark's order must pass every check")
            release(1, 1.0)

    return best_of(3, loop)


def main() -> None:
    compiled = _run(RiskEngine)
    pure = _run(reference.RiskEngine)
    record(
        [
            measurement(
                "risk.full_check_passes_per_s",
                round(CHECKS / compiled),
                "checks/s",
                "the same checks in pure Python (coyote_risk.reference)",
                round(CHECKS / pure),
            ),
        ]
    )


if __name__ == "__main__":
    main()
