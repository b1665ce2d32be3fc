"""The backtester: hand-computed fills, order types, and the same bot in every form."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from coyote_sdk import Bar, Bot, ExecType, ExecutionReport, Timeframe, bot
from coyote_sdk.backtest import BacktestConfig, FillModel, run_backtest, write_chart

pytestmark = pytest.mark.unit

DAY = 86_400_000
OHLC = [  # open, high, low, close
    ("10", "11", "9", "10"),
    ("10", "12", "10", "11"),
    ("11.5", "13", "11", "12"),
    ("12", "12.5", "11", "11"),
    ("11", "11.5", "10", "10.5"),
    ("10.5", "11", "10", "10.8"),
]
BARS = [
    Bar(
        symbol="ABC",
        venue="test",
        timeframe=Timeframe.D1,
        ts_ms=i * DAY,
        open=Decimal(o),
        high=Decimal(h),
        low=Decimal(low),
        close=Decimal(c),
        volume=Decimal(1000),
    )
    for i, (o, h, low, c) in enumerate(OHLC)
]


class Scripted(Bot):
    """Places the orders of a script: {bar index: [(method, args, kwargs)]}."""

    symbols = ["ABC"]
    timeframe = "1d"

    def __init__(self, script: dict[int, list[tuple[str, tuple, dict]]]) -> None:
        super().__init__()
        self.script = script
        self.seen = 0
        self.reports: list[ExecutionReport] = []
        self.handles: list = []

    def on_bar(self, bar: Bar) -> None:
        for method, args, kwargs in self.script.get(self.seen, []):
            target = self.handles[-1] if method in ("cancel", "replace") else None
            call = getattr(self, method)
            self.handles.append(
                call(target, **kwargs) if target is not None else call(*args, **kwargs)
            )
        self.seen += 1

    def on_order_update(self, report: ExecutionReport) -> None:
        self.reports.append(report)


def _run(script, **fill) -> tuple[Scripted, object]:  # type: ignore[no-untyped-def]
    strategy = Scripted(script)
    config = BacktestConfig(cash=Decimal(1000), fill=FillModel(**fill))
    return strategy, run_backtest(strategy, BARS, config=config)


def test_market_orders_fill_at_the_next_open_with_commission_computed_by_hand() -> None:
    # Buy 2 on bar 1 → filled at bar 2's open 11.5, fee 0.23; sell 2 on bar 3 → bar 4's open
    # 11, fee 0.22. Realised -1.00, net -1.45; cash 1000 - 23.23 + 21.78 = 998.55.
    _, result = _run(
        {1: [("buy", ("ABC", 2), {})], 3: [("sell", ("ABC", 2), {})]}, commission=Decimal("0.01")
    )

    (trip,) = result.trades
    assert [(f.ts_ms // DAY, f.side.value, f.price, f.fee) for f in result.fills] == [
        (2, "buy", Decimal("11.5"), Decimal("0.23")),
        (4, "sell", Decimal(11), Decimal("0.22")),
    ]
    assert (trip.entry_price, trip.exit_price, trip.pnl) == (
        Decimal("11.5"),
        Decimal(11),
        Decimal("-1.45"),
    )
    assert result.equity[2][1] == Decimal("1000.77")  # 976.77 cash + 2 × 12 close
    assert result.equity[-1][1] == Decimal("998.55")
    assert result.stats.trades == 1 and result.stats.win_rate_pct == 0


def test_fill_at_close_fills_on_the_bar_the_order_was_placed_on() -> None:
    _, result = _run(
        {1: [("buy", ("ABC", 2), {})], 3: [("sell", ("ABC", 2), {})]},
        fill_at="close",
        commission=Decimal("0.01"),
    )

    assert [(f.ts_ms // DAY, f.price) for f in result.fills] == [(1, Decimal(11)), (3, Decimal(11))]
    assert result.trades[0].pnl == Decimal("-0.44")


def test_slippage_moves_market_fills_against_the_bot() -> None:
    _, result = _run(
        {1: [("buy", ("ABC", 1), {})], 3: [("sell", ("ABC", 1), {})]}, slippage_bps=Decimal(100)
    )

    assert [f.price for f in result.fills] == [Decimal("11.615"), Decimal("10.89")]


def test_a_limit_buy_waits_until_the_low_reaches_it() -> None:
    # 10.5: bar 2 (low 11) and bar 3 (low 11) miss; bar 4 opens 11, dips to 10 → fills at 10.5.
    _, result = _run({1: [("buy", ("ABC", 1), {"limit": "10.5"})]})

    assert [(f.ts_ms // DAY, f.price) for f in result.fills] == [(4, Decimal("10.5"))]


def test_a_stop_buy_triggers_at_its_price_when_the_high_crosses_it() -> None:
    _, result = _run({1: [("buy", ("ABC", 1), {"stop": "12.2"})]})

    assert [(f.ts_ms // DAY, f.price) for f in result.fills] == [(2, Decimal("12.2"))]


def test_an_ioc_limit_that_cannot_fill_on_the_next_bar_expires() -> None:
    strategy, result = _run({1: [("buy", ("ABC", 1), {"limit": "10.5", "time_in_force": "ioc"})]})

    assert result.fills == []
    assert [r.exec_type for r in strategy.reports] == [ExecType.ACCEPTED, ExecType.EXPIRED]


def test_a_cancelled_order_never_fills() -> None:
    strategy, result = _run({1: [("buy", ("ABC", 1), {"limit": "10.5"})], 2: [("cancel", (), {})]})

    assert result.fills == []
    assert [r.exec_type for r in strategy.reports] == [ExecType.ACCEPTED, ExecType.CANCELED]
    assert strategy.reports[1].order_id == strategy.handles[0].intent_id


def test_a_replaced_limit_fills_at_its_new_price() -> None:
    _, result = _run(
        {1: [("buy", ("ABC", 1), {"limit": "9"})], 2: [("replace", (), {"limit": "11.2"})]}
    )

    assert [(f.ts_ms // DAY, f.price) for f in result.fills] == [(3, Decimal("11.2"))]


def test_a_reduce_only_order_that_would_open_a_position_is_rejected() -> None:
    strategy, result = _run({1: [("sell", ("ABC", 1), {"reduce_only": True})]})

    assert result.fills == []
    assert strategy.reports[0].exec_type is ExecType.REJECTED
    assert strategy.reports[0].reject_code == "order.reduce_only"


def test_a_short_position_and_its_round_trip() -> None:
    _, result = _run({2: [("sell", ("ABC", 3), {})], 4: [("buy", ("ABC", 3), {})]})

    (trip,) = result.trades
    assert (trip.direction, trip.entry_price, trip.exit_price) == (
        "short",
        Decimal(12),
        Decimal("10.5"),
    )
    assert trip.pnl == Decimal("4.5")


class DipBuyer(Bot):
    symbols = ["ABC"]
    timeframe = "1d"
    size: int = 1

    def on_bar(self, bar: Bar) -> None:
        if bar.close < bar.open and self.position("ABC").is_flat:
            self.buy("ABC", self.size)
        elif bar.close > bar.open and not self.position("ABC").is_flat:
            self.sell("ABC", self.position("ABC").quantity)


class AsyncDipBuyer(DipBuyer):
    async def on_bar(self, bar: Bar) -> None:  # type: ignore[override]
        DipBuyer.on_bar(self, bar)


@bot(symbols=["ABC"], timeframe="1d", params={"size": 1})
def dip_buyer(ctx: Bot, bar: Bar) -> None:
    if bar.close < bar.open and ctx.position("ABC").is_flat:
        ctx.buy("ABC", ctx.size)  # type: ignore[attr-defined]
    elif bar.close > bar.open and not ctx.position("ABC").is_flat:
        ctx.sell("ABC", ctx.position("ABC").quantity)


def test_the_same_bot_as_a_class_an_async_class_and_a_function_trades_the_same() -> None:
    results = [run_backtest(b(size=2), BARS) for b in (DipBuyer, AsyncDipBuyer, dip_buyer)]

    fills = [[(f.ts_ms, f.side, f.quantity, f.price) for f in r.fills] for r in results]
    assert fills[0] and fills[0] == fills[1] == fills[2]


def test_bars_of_a_symbol_the_bot_does_not_declare_are_refused() -> None:
    other = [
        Bar(
            symbol="XYZ",
            venue="t",
            timeframe=Timeframe.D1,
            ts_ms=0,
            open=Decimal(1),
            high=Decimal(1),
            low=Decimal(1),
            close=Decimal(1),
            volume=Decimal(0),
        )
    ]

    with pytest.raises(ValueError, match=r"no bars for DipBuyer's symbols \['ABC'\]"):
        run_backtest(DipBuyer(), other)


def test_the_chart_is_one_self_contained_html_file(tmp_path: Path) -> None:
    _, result = _run({1: [("buy", ("ABC", 2), {})], 3: [("sell", ("ABC", 2), {})]})

    page = write_chart(result, tmp_path / "chart.html").read_text()

    assert page.startswith("<!doctype html>")
    assert '<polyline class="equity"' in page and "Max drawdown" in page
    assert "http://" not in page and "https://" not in page


def test_the_live_risk_checks_refuse_orders_in_a_backtest_too() -> None:
    from coyote_risk import InstrumentSpec, Limits, RiskConfig

    risk = RiskConfig(
        account_id="backtest",
        instruments={"ABC": InstrumentSpec("ABC", Decimal("0.01"))},
        account=Limits(max_position=Decimal(3), price_collar_bps=Decimal(500)),
    )
    strategy = Scripted(
        {
            1: [("buy", ("ABC", 2), {}), ("buy", ("ABC", 2), {})],  # the second would hold 4 > 3
            2: [("buy", ("ABC", 1), {"limit": "20"})],  # 20 vs last 12: far outside a 5 % collar
            3: [("sell", ("ABC", 2), {})],  # reducing: always allowed
        }
    )

    result = run_backtest(strategy, BARS, config=BacktestConfig(cash=Decimal(1000), risk=risk))

    rejected = [r for r in strategy.reports if r.exec_type is ExecType.REJECTED]
    assert [r.reject_code for r in rejected] == ["risk.max_position", "risk.price_collar"]
    assert [(f.side.value, f.quantity) for f in result.fills] == [
        ("buy", Decimal(2)),
        ("sell", Decimal(2)),
    ]


def test_a_bot_whose_class_name_is_no_valid_bot_id_backtests_under_a_cleaned_one() -> None:
    # Intents check their ids when built; a class name is not always an id.
    class _Stratégie(Scripted):
        pass

    strategy = _Stratégie({1: [("buy", ("ABC", 2), {})]})
    result = run_backtest(strategy, BARS, config=BacktestConfig(cash=Decimal(1000)))

    assert [f.side.value for f in result.fills] == ["buy"]
    assert {r.bot_id for r in strategy.reports} == {"Strat-gie"}
