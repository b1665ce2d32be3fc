"""Every pre-trade check, accepted and rejected, in the compiled engine and its reference."""

from __future__ import annotations

import random
from decimal import Decimal as D

import pytest

from coyote_risk import REASONS, InstrumentSpec, Limits, RiskConfig, RiskEngine, reference

pytestmark = pytest.mark.unit

ENGINES = [RiskEngine, reference.RiskEngine]
BUY, SELL = 1, -1
NOW = 1_000_000

INSTRUMENTS = {
    "GOOG": InstrumentSpec("GOOG", D("0.01")),
    "EURUSD": InstrumentSpec("EURUSD", D("0.00001"), D(1000)),
    "HALTCO": InstrumentSpec("HALTCO", D("0.01"), tradable=False),
    "SANCT": InstrumentSpec("SANCT", D("0.01")),
}


def engine_of(engine_type: type, **limits: object) -> object:
    bot_limits = limits.pop("bot", None)
    account = limits.pop("account", None)
    config = RiskConfig(
        account_id="acct",
        instruments=INSTRUMENTS,
        account=account or Limits(),
        bots={"b": bot_limits} if bot_limits else {},
        symbols={"GOOG": Limits(**limits)} if limits else {},
        restricted=frozenset({"SANCT"}),
    )
    engine = engine_type(config, NOW)
    for symbol, price in (("GOOG", 100.0), ("EURUSD", 1.07219), ("HALTCO", 5.0), ("SANCT", 5.0)):
        engine.update_price(symbol, price, NOW)
    return engine


def reason(
    engine: object,
    symbol: str = "GOOG",
    side: int = BUY,
    qty: float = 10,
    price: float = 100.0,
    market: bool = False,
    reduce_only: bool = False,
    now: int = NOW,
) -> str:
    return REASONS[engine.check("b", symbol, side, qty, price, market, reduce_only, now)]  # type: ignore[attr-defined]


@pytest.fixture(params=ENGINES, ids=["compiled", "reference"])
def engine_type(request: pytest.FixtureRequest) -> type:
    return request.param


def test_an_ordinary_order_passes(engine_type: type) -> None:
    assert reason(engine_of(engine_type)) == "ok"


@pytest.mark.parametrize(
    ("order", "expected"),
    [
        ({"symbol": "NOPE"}, "risk.instrument_unknown"),
        ({"symbol": "HALTCO", "price": 5.0}, "risk.instrument_not_tradable"),
        ({"symbol": "SANCT", "price": 5.0}, "risk.restricted_symbol"),
        ({"qty": 0}, "risk.invalid_quantity"),
        ({"qty": -5}, "risk.invalid_quantity"),
        ({"qty": float("nan")}, "risk.invalid_quantity"),
        ({"price": 0.0}, "risk.invalid_price"),
        ({"price": 100.005}, "risk.off_tick"),
        ({"symbol": "EURUSD", "qty": 1500, "price": 1.07219}, "risk.off_lot"),
        ({"symbol": "EURUSD", "qty": 2000, "price": 1.07219}, "ok"),
        ({"symbol": "EURUSD", "qty": 2000, "price": 1.072195}, "risk.off_tick"),
    ],
)
def test_instrument_and_shape_checks(engine_type: type, order: dict, expected: str) -> None:
    assert reason(engine_of(engine_type), **order) == expected


@pytest.mark.parametrize(
    ("limits", "order", "expected"),
    [
        ({"max_order_quantity": D(10)}, {"qty": 10}, "ok"),
        ({"max_order_quantity": D(10)}, {"qty": 11}, "risk.max_order_quantity"),
        ({"max_order_notional": D(1000)}, {"qty": 10}, "ok"),
        ({"max_order_notional": D(1000)}, {"qty": 10, "price": 100.01}, "risk.max_order_notional"),
        ({"price_collar_bps": D(50)}, {"price": 100.5}, "ok"),
        ({"price_collar_bps": D(50)}, {"price": 100.51}, "risk.price_collar"),
        ({"price_collar_bps": D(50)}, {"price": 99.49}, "risk.price_collar"),
        ({"max_price_age_ms": 5000}, {"market": True, "now": NOW + 5000}, "ok"),
        ({"max_price_age_ms": 5000}, {"market": True, "now": NOW + 5001}, "risk.stale_price"),
        ({"max_price_age_ms": 5000}, {"now": NOW + 60_000}, "ok"),  # limits carry their price
        ({"max_position": D(10)}, {"qty": 10}, "ok"),
        ({"max_position": D(10)}, {"qty": 11}, "risk.max_position"),
        ({"max_position": D(10)}, {"qty": 11, "side": SELL}, "risk.max_position"),
    ],
)
def test_order_limits(engine_type: type, limits: dict, order: dict, expected: str) -> None:
    assert reason(engine_of(engine_type, **limits), **order) == expected


def test_a_market_order_without_any_price_is_refused(engine_type: type) -> None:
    engine = engine_type(RiskConfig(account_id="a", instruments=INSTRUMENTS), NOW)

    assert reason(engine, market=True) == "risk.stale_price"


def test_position_limits_project_open_orders_and_fills(engine_type: type) -> None:
    engine = engine_of(engine_type, max_position=D(15))
    slot = engine.slot("b", "GOOG")

    first = reason(engine, qty=10)
    second = reason(engine, qty=10)  # 10 open + 10 > 15
    slot.release(BUY, 10)
    third = reason(engine, qty=10, price=100.01)
    slot.on_fill(BUY, 10)
    fourth = reason(engine, qty=6, price=100.02)  # 10 held + 6 > 15

    assert (first, second, third, fourth) == ("ok", "risk.max_position", "ok", "risk.max_position")
    assert slot.position == 10 and slot.open_buy == 0


def test_account_exposure_counts_every_symbol(engine_type: type) -> None:
    engine = engine_of(
        engine_type, account=Limits(max_gross_exposure=D(3000), max_net_exposure=D(1500))
    )
    engine.slot("b", "GOOG").on_fill(BUY, 10)  # 1,000 long
    engine.slot("b", "EURUSD").on_fill(SELL, 1000)  # ~1,072 short

    assert reason(engine, qty=4) == "ok"  # gross 1,400 + 1,072 = 2,472; net ~328
    assert reason(engine, qty=6, price=100.01) == "risk.max_gross_exposure"
    engine.slot("b", "EURUSD").on_fill(BUY, 1000)
    assert reason(engine, qty=12, price=100.02) == "risk.max_net_exposure"  # net 1,600+400


def test_capital_allocation_is_a_hard_limit_for_the_bot(engine_type: type) -> None:
    engine = engine_of(engine_type, bot=Limits(capital_allocation=D(2500)))

    assert reason(engine, qty=20) == "ok"
    assert reason(engine, qty=6, price=100.01) == "risk.capital_allocation"  # 2,000 + 600
    assert reason(engine, qty=5, price=99.99) == "ok"  # 2,000 + 499.95


def test_duplicates_within_the_window_are_refused(engine_type: type) -> None:
    engine = engine_of(engine_type, duplicate_window_ms=1000)

    assert reason(engine) == "ok"
    assert reason(engine, now=NOW + 1000) == "risk.duplicate_order"
    assert reason(engine, price=100.01, now=NOW + 1000) == "ok"
    assert reason(engine, now=NOW + 1001) == "ok"


def test_throttles_per_bot_and_per_account(engine_type: type) -> None:
    engine = engine_of(
        engine_type,
        bot=Limits(orders_per_second=1, order_burst=2),
        account=Limits(orders_per_second=1, order_burst=3),
    )
    other = engine.slot("other", "GOOG")

    def from_other(price: float, now: int) -> str:
        return REASONS[other.check(BUY, 1, price, False, False, now)]

    bot_burst = [reason(engine, price=100 + i / 100) for i in range(3)]
    other_now = [from_other(99.0, NOW), from_other(99.01, NOW)]
    a_second_later = reason(engine, price=101.0, now=NOW + 1000)

    # The bot's bucket holds 2; the account's 3, shared by every bot of the account.
    assert bot_burst == ["ok", "ok", "risk.rate_limit_bot"]
    assert other_now == ["ok", "risk.rate_limit_account"]
    assert a_second_later == "ok"  # both buckets refilled one token


def test_circuit_breakers_halt_or_only_let_risk_reducing_orders_through(
    engine_type: type,
) -> None:
    engine = engine_of(engine_type)
    engine.slot("b", "GOOG").on_fill(BUY, 10)

    engine.set_state("reducing", "b")
    reducing = (
        reason(engine, qty=5),
        reason(engine, side=SELL, qty=5),
        reason(engine, side=SELL, qty=11),
    )
    engine.set_state("active", "b")
    engine.set_state("halted")
    halted_account = reason(engine, side=SELL, qty=5, price=100.01)
    engine.set_state("active")
    engine.set_state("halted", system=True)
    halted_system = reason(engine, side=SELL, qty=1, price=100.02)

    assert reducing == ("risk.reducing_only", "ok", "risk.reducing_only")
    assert halted_account == halted_system == "risk.halted"


def test_reduce_only_orders_may_only_reduce(engine_type: type) -> None:
    engine = engine_of(engine_type)

    assert reason(engine, side=SELL, reduce_only=True) == "risk.reducing_only"
    engine.slot("b", "GOOG").on_fill(BUY, 10)
    assert reason(engine, side=SELL, reduce_only=True) == "ok"


def test_a_daily_loss_trips_the_scope_to_reducing(engine_type: type) -> None:
    engine = engine_of(engine_type, bot=Limits(max_daily_loss=D(500)))
    engine.slot("b", "GOOG").on_fill(BUY, 10)

    tripped_early = engine.update_pnl(-499.0, "b")
    before = reason(engine, qty=1)
    tripped = engine.update_pnl(-500.0, "b")
    after = (reason(engine, qty=1, price=100.01), reason(engine, side=SELL, qty=10))

    assert (tripped_early, before, tripped) == (False, "ok", True)
    assert after == ("risk.reducing_only", "ok")


def reconfigured(engine: object, **limits: object) -> object:
    """``engine`` with the limits ``engine_of`` would make from ``limits``, applied in place."""
    fresh = engine_of(type(engine), **limits)
    engine.reconfigure(fresh.config, NOW)  # type: ignore[attr-defined]
    return engine


def test_an_order_that_passed_is_refused_after_its_limit_is_lowered(engine_type: type) -> None:
    engine = engine_of(engine_type, max_order_notional=D(5000))
    before = reason(engine, qty=10)

    reconfigured(engine, max_order_notional=D(500))

    assert before == "ok"
    assert reason(engine, qty=10, price=100.01) == "risk.max_order_notional"
    assert reason(engine, qty=4, price=100.02) == "ok"


def test_reconfigure_keeps_positions_open_orders_pnl_and_breakers(engine_type: type) -> None:
    engine = engine_of(engine_type, max_position=D(100), bot=Limits(max_daily_loss=D(1000)))
    slot = engine.slot("b", "GOOG")
    slot.on_fill(BUY, 30)
    assert reason(engine, qty=20) == "ok"  # 20 open
    engine.update_pnl(-400.0, "b")
    engine.set_state("reducing", "c")

    reconfigured(engine, max_position=D(60), bot=Limits(max_daily_loss=D(300)))

    assert engine.slot("b", "GOOG") is slot
    assert (slot.position, slot.open_buy) == (30, 20)
    # 30 held + 20 open + 11 > 60; the day's loss of 400 is now beyond the bot's 300 …
    assert reason(engine, qty=11, price=100.01) == "risk.max_daily_loss"
    # … so only reducing orders go (at the last price, still known); bot c is still REDUCING.
    assert reason(engine, side=SELL, qty=10, market=True) == "ok"
    assert REASONS[engine.check("c", "GOOG", BUY, 1, 100.0, False, False, NOW)] == (
        "risk.reducing_only"
    )


def test_reconfigure_applies_position_capital_and_exposure_to_what_is_held(
    engine_type: type,
) -> None:
    engine = engine_of(engine_type)
    engine.slot("b", "GOOG").on_fill(BUY, 20)  # 2,000 held

    reconfigured(
        engine,
        bot=Limits(capital_allocation=D(2500)),
        account=Limits(max_gross_exposure=D(2400)),
        max_position=D(25),
    )

    assert reason(engine, qty=6) == "risk.max_position"
    assert reason(engine, qty=5, price=100.01) == "risk.max_gross_exposure"
    reconfigured(engine, bot=Limits(capital_allocation=D(2400)), max_position=D(25))
    assert reason(engine, qty=5, price=100.02) == "risk.capital_allocation"
    assert reason(engine, qty=3, price=100.03) == "ok"


def test_reconfigure_keeps_the_throttles_tokens_and_the_duplicate_window(
    engine_type: type,
) -> None:
    engine = engine_of(
        engine_type, duplicate_window_ms=1000, bot=Limits(orders_per_second=1, order_burst=3)
    )
    assert [reason(engine, price=100 + i / 100) for i in range(2)] == ["ok", "ok"]

    # Same rate: the same bucket, one token left. Then a larger burst: still one token left.
    reconfigured(engine, duplicate_window_ms=1000, bot=Limits(orders_per_second=1, order_burst=3))
    same_rate = reason(engine, price=100.02)
    reconfigured(engine, duplicate_window_ms=1000, bot=Limits(orders_per_second=2, order_burst=10))
    larger = reason(engine, price=100.03)

    assert same_rate == "ok"
    assert larger == "risk.rate_limit_bot"  # the new burst is not granted at once
    assert reason(engine, now=NOW + 500) == "risk.duplicate_order"  # the window remembers
    assert reason(engine, price=100.04, now=NOW + 500) == "ok"  # refilled at 2/s


def test_reconfigure_adds_instruments_and_retires_removed_ones(engine_type: type) -> None:
    engine = engine_of(engine_type)
    engine.slot("b", "EURUSD").on_fill(BUY, 1000)
    config = engine.config  # type: ignore[attr-defined]
    instruments = {
        "GOOG": config.instruments["GOOG"],
        "MSFT": InstrumentSpec("MSFT", D("0.01")),
    }

    engine.reconfigure(  # type: ignore[attr-defined]
        RiskConfig(account_id="acct", instruments=instruments, restricted=frozenset({"GOOG"})),
        NOW,
    )
    engine.update_price("MSFT", 400.0, NOW)

    assert reason(engine, symbol="MSFT", price=400.0) == "ok"
    assert reason(engine) == "risk.restricted_symbol"
    assert reason(engine, symbol="EURUSD", qty=1000, price=1.07219) == (
        "risk.instrument_not_tradable"
    )
    engine.slot("b", "EURUSD").on_fill(SELL, 1000)  # fills of what was open still book
    assert engine.slot("b", "EURUSD").position == 0


def test_reconfigure_refuses_another_accounts_limits(engine_type: type) -> None:
    engine = engine_of(engine_type)

    with pytest.raises(ValueError, match="account 'acct'"):
        engine.reconfigure(RiskConfig(account_id="other", instruments=INSTRUMENTS))  # type: ignore[attr-defined]


def test_compiled_and_reference_agree_on_a_random_order_flow() -> None:
    limits = dict(
        max_order_quantity=D(50),
        max_order_notional=D(4000),
        price_collar_bps=D(80),
        max_price_age_ms=3000,
        max_position=D(120),
        duplicate_window_ms=500,
    )
    extra = dict(
        bot=Limits(orders_per_second=20, order_burst=5, capital_allocation=D(20000)),
        account=Limits(
            max_gross_exposure=D(30000),
            max_net_exposure=D(15000),
            orders_per_second=50,
            order_burst=10,
        ),
    )
    tighter = dict(
        limits,
        max_position=D(60),
        bot=Limits(orders_per_second=5, order_burst=2, capital_allocation=D(8000)),
        account=Limits(max_gross_exposure=D(12000), orders_per_second=30, order_burst=4),
    )
    configs = [engine_of(RiskEngine, **limits, **extra).config]
    configs.append(engine_of(RiskEngine, **tighter).config)
    compiled = engine_of(RiskEngine, **limits, **extra)
    ref = engine_of(reference.RiskEngine, **limits, **extra)
    rng = random.Random(5)
    now, seen = NOW, set()
    for step in range(20_000):
        now += rng.randint(0, 120)
        if step % 2500 == 2499:  # the limits change under a running flow, in both engines
            for engine in (compiled, ref):
                engine.reconfigure(configs[(step // 2500) % 2 - 1], now)
        if rng.random() < 0.05:
            price = round(100 * (1 + rng.gauss(0, 0.003)), 2)
            for engine in (compiled, ref):
                engine.update_price("GOOG", price, now)
        args = (
            "b" if rng.random() < 0.8 else "c",
            rng.choice(["GOOG", "EURUSD", "SANCT"]),
            rng.choice([BUY, SELL]),
            float(rng.choice([1, 5, 10, 30, 60, 1000, 0])),
            round(100 + rng.gauss(0, 1), 2),
            rng.random() < 0.3,
            rng.random() < 0.1,
            now,
        )
        outcome = compiled.check(*args)
        assert outcome == ref.check(*args), args
        seen.add(REASONS[outcome])
        if outcome == 0 and rng.random() < 0.7:
            fills = rng.random() < 0.6
            for engine in (compiled, ref):
                slot = engine.slot(args[0], args[1])
                (slot.on_fill if fills else slot.release)(args[2], args[3])
    assert len(seen) >= 10  # the flow exercised most checks
