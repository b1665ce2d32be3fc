"""Risk checks per second: the compiled engine against the same checks in pure Python.

A "full check pass" is an order that goes through every check with every limit configured
(circuit breakers, instrument, shape, tick and lot, quantity, notional, collar, price age,
projected position, account gross and net exposure over 20 instruments, the bot's capital,
duplicates, both throttles) and passes; each is then released, as the executor releases an
order that ends, so the state stays steady. Target: >= 1,000,000 passes/s, >= 20x the
reference.

Side by side, the cost per order of NautilusTrader's RiskEngine (bench/_nautilus_risk.py, in its
own virtual environment .coyote/bench-venv, made by `make bench`): its `submit_order` p50 with
the engine active minus bypassed, and its two check calls timed directly. Without that venv
only Coyote's figures are recorded.

Run: .venv/bin/python bench/risk.py
"""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal as D
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _common import best_of, measurement, record

from coyote_risk import (
    InstrumentSpec,
    Limits,
    RiskConfig,
    RiskEngine,
    reference,
)

ROOT = Path(__file__).resolve().parents[1]
NAUTILUS_PYTHON = ROOT / ".coyote" / "bench-venv" / "bin" / "python"
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


def nautilus() -> dict[str, Any] | None:
    """NautilusTrader's figures (bench/_nautilus_risk.py), or None without its venv."""
    if not NAUTILUS_PYTHON.exists():
        return None
    print("NautilusTrader's RiskEngine (bench/_nautilus_risk.py, about a minute)...", flush=True)
    out = subprocess.run(
        [str(NAUTILUS_PYTHON), str(Path(__file__).with_name("_nautilus_risk.py"))],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    found: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    if not found["max_notional_denies"]:
        raise AssertionError("NautilusTrader's maximum notional did not deny an order over it")
    return found


def main() -> None:
    compiled = _run(RiskEngine)
    pure = _run(reference.RiskEngine)
    theirs = nautilus()
    entries = [
        measurement(
            "risk.full_check_passes_per_s",
            round(CHECKS / compiled),
            "checks/s",
            "the same checks in pure Python (coyote_risk.reference)",
            round(CHECKS / pure),
        ),
    ]
    if theirs is None:
        print(f"NautilusTrader not measured: no {NAUTILUS_PYTHON} (make bench creates it)")
    else:
        ours_ns = round(compiled / CHECKS * 1e9, 1)
        nautilus_name = f"NautilusTrader {theirs['version']} RiskEngine"
        entries += [
            measurement(
                "risk.ns_per_order_vs_nautilus_submit_order",
                ours_ns,
                "ns",
                f"{nautilus_name}: Strategy.submit_order p50 with it active minus bypassed",
                round(theirs["risk_cost_p50_ns"]),
            ),
            measurement(
                "risk.ns_per_order_vs_nautilus_check_calls",
                ours_ns,
                "ns",
                f"{nautilus_name}: _check_order + _check_orders_risk called directly",
                round(theirs["direct_checks_ns"]),
            ),
        ]
        print(
            f"NautilusTrader submit_order p50 {theirs['submit_with_risk']['p50_ns']:.0f} ns "
            f"with its RiskEngine, {theirs['submit_bypassed']['p50_ns']:.0f} ns bypassed "
            f"(means {theirs['submit_with_risk']['mean_ns']:.0f} / "
            f"{theirs['submit_bypassed']['mean_ns']:.0f} ns)"
        )
    record(entries)


if __name__ == "__main__":
    main()
