"""The reports on a hand-checked sequence of fills, on PostgreSQL and on SQLite.

The numbers (worked out in docs/reports.md), hour by hour from T0, marks = last price traded:

=====  ==========================================  =======  ========  =====  =====
hour   fills                                        realised unrealised fees  net
=====  ==========================================  =======  ========  =====  =====
0      alpha: +1 BTC@100, +1 BTC@102, +10 ETH@20     0        2        0.4    1.6
1      alpha: -3 BTC@110 (closes 2: +18, short 1)    18       0        0.7   17.3
2      alpha: +1 BTC@112 (-2); beta: -5 ETH@22       16      20        0.9   35.1
=====  ==========================================  =======  ========  =====  =====

(organisation-wide; alpha alone ends at 16 / 20 / 0.8 / 35.2, beta at 0 / 0 / 0.1 / -0.1).
"""

from __future__ import annotations

import random
from decimal import Decimal
from typing import Any

import pytest

from coyote_reports import Reports, ReportsError, Scope
from coyote_sdk.protocol import Timeframe
from tests.reports.conftest import HOUR, MINUTE, T0, Ledger, known_sequence

pytestmark = pytest.mark.integration

ACME = Scope("acme")
ALPHA = Scope("acme", bot="alpha")


def _rows(series: object) -> list[tuple[int, Decimal, Decimal, Decimal, Decimal]]:
    return [
        (p.ts_ms, p.realized, p.unrealized, p.fees, p.net)
        for p in series.points  # type: ignore[attr-defined]
    ]


def test_pnl_by_hour_matches_the_hand_checked_numbers(ledger: Ledger, reports: Reports) -> None:
    known_sequence(ledger)

    series = reports.pnl(ACME, start_ms=T0, end_ms=T0 + 3 * HOUR, bucket=Timeframe.H1)

    assert _rows(series) == [
        (T0, 0, 2, Decimal("0.4"), Decimal("1.6")),
        (T0 + HOUR, 18, 0, Decimal("0.7"), Decimal("17.3")),
        (T0 + 2 * HOUR, 16, 20, Decimal("0.9"), Decimal("35.1")),
    ]
    assert series.total.net == Decimal("35.1")


def test_pnl_of_one_bot_from_mid_range_starts_from_its_opening_state(
    ledger: Ledger, reports: Reports
) -> None:
    known_sequence(ledger)

    series = reports.pnl(ALPHA, start_ms=T0 + HOUR, end_ms=T0 + 3 * HOUR, bucket=Timeframe.H1)

    # Opening state at T0+1h: realised 0, fees 0.4, unrealised 2 (2 BTC at 101 marked 102).
    assert _rows(series) == [
        (T0 + HOUR, 18, -2, Decimal("0.3"), Decimal("15.7")),
        (T0 + 2 * HOUR, 16, 18, Decimal("0.4"), Decimal("33.6")),
    ]


def test_minute_buckets_carry_the_state_through_quiet_minutes(
    ledger: Ledger, reports: Reports
) -> None:
    known_sequence(ledger)

    series = reports.pnl(ALPHA, start_ms=T0, end_ms=T0 + 30 * MINUTE, bucket=Timeframe.M1)

    points = {p.ts_ms: p for p in series.points}
    assert len(points) == 30
    assert points[T0 + 5 * MINUTE].net == 0  # nothing yet
    assert points[T0 + 15 * MINUTE].net == Decimal("-0.1")  # one BTC at 100, marked 100, fee
    assert points[T0 + 25 * MINUTE].unrealized == 2  # two BTC at 101, marked 102
    assert points[T0 + 25 * MINUTE].net == Decimal("1.8")


def test_equity_and_drawdown_start_from_the_capital(ledger: Ledger, reports: Reports) -> None:
    known_sequence(ledger)

    curve = reports.equity(
        Scope("acme", bot="beta"),
        start_ms=T0,
        end_ms=T0 + 3 * HOUR,
        capital=Decimal(100),
        bucket=Timeframe.H1,
    )

    assert [(p.equity, p.drawdown) for p in curve.points] == [
        (100, 0),
        (100, 0),
        (Decimal("99.9"), Decimal("-0.1")),
    ]
    assert curve.points[-1].drawdown_pct == pytest.approx(-0.1)


def test_metrics_per_bot(ledger: Ledger, reports: Reports) -> None:
    known_sequence(ledger)

    metrics = reports.metrics(
        ACME,
        start_ms=T0,
        end_ms=T0 + 3 * HOUR,
        capital={"alpha": Decimal(1000)},
        bucket=Timeframe.H1,
    )

    alpha, beta = metrics.bots
    assert (alpha.bot, alpha.account, beta.bot) == ("alpha", "paper", "beta")
    assert (alpha.realized, alpha.unrealized, alpha.fees, alpha.net) == (
        16,
        20,
        Decimal("0.8"),
        Decimal("35.2"),
    )
    assert alpha.fills == 5
    assert alpha.trades == 2  # the two closing fills: +18 and -2
    assert alpha.win_rate_pct == 50.0
    assert alpha.profit_factor == 9.0
    assert alpha.traded_notional == 844  # 100 + 102 + 200 + 330 + 112
    assert alpha.turnover == pytest.approx(0.844)
    assert alpha.return_pct == pytest.approx(3.52)
    assert alpha.max_drawdown_pct == 0.0
    assert alpha.sharpe is not None and alpha.sharpe > 0
    # Without capital there is no return to speak of.
    assert (beta.net, beta.return_pct, beta.sharpe, beta.turnover) == (
        Decimal("-0.1"),
        None,
        None,
        None,
    )
    assert beta.win_rate_pct is None  # opened a position, closed nothing


def test_positions_now_and_as_of_a_time(ledger: Ledger, reports: Reports) -> None:
    known_sequence(ledger)

    now = reports.positions(ACME)
    then = reports.positions(ALPHA, as_of_ms=T0 + 65 * MINUTE)

    assert [
        (p.bot, p.symbol, p.quantity, p.average_price, p.mark, p.unrealized_pnl)
        for p in now.positions
    ] == [
        ("alpha", "ETHUSD", 10, 20, 22, 20),
        ("beta", "ETHUSD", -5, 22, 22, 0),
    ]
    assert [
        (p.symbol, p.quantity, p.average_price, p.mark, p.unrealized_pnl) for p in then.positions
    ] == [("BTCUSD", 2, 101, 102, 2), ("ETHUSD", 10, 20, 20, 0)]


def test_positions_as_of_a_time_are_as_booked_when_a_late_fill_was_booked_out_of_turn(
    ledger: Ledger, reports: Reports
) -> None:
    # The executor books a broker's late fill (here the buy of T0+2m) after fills of a later
    # time; a replay of the fills by time would give another average and realised PnL.
    ledger.order("acme.paper", "acme.alpha", "BTCUSD", "buy", [("1", "100", "0", T0 + MINUTE)])
    ledger.order("acme.paper", "acme.alpha", "BTCUSD", "sell", [("1", "120", "0", T0 + 3 * MINUTE)])
    ledger.order("acme.paper", "acme.alpha", "BTCUSD", "buy", [("1", "110", "0", T0 + 2 * MINUTE)])

    now = reports.positions(ALPHA)
    then = reports.positions(ALPHA, as_of_ms=T0 + 10 * MINUTE)

    assert [(p.quantity, p.average_price, p.realized_pnl) for p in now.positions] == [(1, 110, 20)]
    assert [(p.quantity, p.average_price, p.realized_pnl) for p in then.positions] == [(1, 110, 20)]


def test_fills_and_orders_page_newest_first_with_cursors(ledger: Ledger, reports: Reports) -> None:
    known_sequence(ledger)

    seen, cursor = [], None
    while True:
        page = reports.fills(ACME, limit=2, cursor=cursor)
        seen += page.items
        cursor = page.next_cursor
        if cursor is None:
            break
    orders = reports.orders(ALPHA, symbol="BTCUSD", status="filled")

    assert [f.ts_ms for f in seen] == sorted((f.ts_ms for f in seen), reverse=True)
    assert len(seen) == 6 and {f.bot for f in seen} == {"alpha", "beta"}
    assert [(o.side, o.quantity, o.average_price) for o in orders.items] == [
        ("buy", 1, 112),
        ("sell", 3, 110),
        ("buy", 2, 101),
    ]
    assert orders.next_cursor is None


@pytest.mark.parametrize("hours", [(-1, 24 * 30), (1, 2)])
def test_activity_per_symbol_sums_the_orders_and_fills_of_the_range(
    ledger: Ledger, reports: Reports, hours: tuple[int, int]
) -> None:
    known_sequence(ledger)
    start, end = T0 + hours[0] * HOUR, T0 + hours[1] * HOUR

    activity = reports.activity(ALPHA, start_ms=start, end_ms=end)

    orders = list(reports.iter_orders(ALPHA, start_ms=start, end_ms=end))
    fills = list(reports.iter_fills(ALPHA, start_ms=start, end_ms=end))
    symbols = {o.symbol for o in orders} | {f.symbol for f in fills}
    assert [a.symbol for a in activity] == sorted(symbols) and symbols
    for row in activity:
        mine = [f for f in fills if f.symbol == row.symbol]
        statuses = [o.status for o in orders if o.symbol == row.symbol]
        assert row.orders == {status: statuses.count(status) for status in set(statuses)}
        assert row.fills == len(mine)
        assert row.bought == sum((f.quantity for f in mine if f.side == "buy"), Decimal(0))
        assert row.sold == sum((f.quantity for f in mine if f.side == "sell"), Decimal(0))
        assert row.realized == sum((f.realized_pnl for f in mine), Decimal(0))
        assert row.fees == sum((f.fee for f in mine), Decimal(0))


def test_a_forged_cursor_is_refused(ledger: Ledger, reports: Reports) -> None:
    with pytest.raises(ReportsError) as refused:
        reports.fills(ACME, cursor="bm90IGEgY3Vyc29y")
    assert (refused.value.code, refused.value.field) == ("reports.bad_cursor", "cursor")


def test_rejections_by_reason(ledger: Ledger, reports: Reports) -> None:
    known_sequence(ledger)

    rejections = reports.rejections(ACME, start_ms=T0, end_ms=T0 + 3 * HOUR)

    assert rejections.total == 3
    assert [(r.code, r.count, r.last_reason) for r in rejections.reasons] == [
        ("risk.max_order_notional", 2, "far too big"),
        ("risk.halted", 1, "kill switch"),
    ]


def test_a_day_statement(ledger: Ledger, reports: Reports) -> None:
    known_sequence(ledger)

    statement = reports.statement(ACME, period="day", label="2026-11-02")

    assert (statement.pnl.net, statement.orders, statement.fills) == (Decimal("35.1"), 5, 6)
    assert statement.rejections.total == 3
    assert [b.bot for b in statement.bots] == ["alpha", "beta"]


def test_another_organisations_trading_is_never_seen(ledger: Ledger, reports: Reports) -> None:
    known_sequence(ledger)

    globex = reports.pnl(Scope("globex"), start_ms=T0, end_ms=T0 + 3 * HOUR)
    acme_fills = reports.fills(ACME).items
    prefix_trick = reports.fills(Scope("acm")).items

    assert globex.total.net == 7 * (1 - 1)  # bought 7 at 1, marked at 1
    assert all(f.account == "paper" for f in acme_fills)
    assert prefix_trick == []


def test_too_many_buckets_is_a_clear_error(ledger: Ledger, reports: Reports) -> None:
    with pytest.raises(ReportsError) as refused:
        reports.pnl(ACME, start_ms=T0, end_ms=T0 + 30 * 86_400_000, bucket=Timeframe.M1)
    assert refused.value.code == "reports.too_many_points"


def _random_trading(ledger: Ledger, seed: int) -> None:
    """Two bots of acme and one of globex trading two symbols over two days, with fills on
    either side of every hour boundary and several at the same millisecond."""
    rng = random.Random(seed)
    for _ in range(90):
        org = rng.choice(["acme", "acme", "globex"])
        bot = f"{org}.{rng.choice(['alpha', 'beta'])}"
        ts = T0 + rng.randrange(0, 48 * HOUR, 7 * MINUTE)
        fills = [
            (str(Decimal(rng.randint(1, 40)) / 10), str(Decimal(rng.randint(900, 1100)) / 10),
             "0.01", ts + n * MINUTE)
            for n in range(rng.randint(1, 2))
        ]  # fmt: skip
        symbol, side = rng.choice(["BTCUSD", "ETHUSD"]), rng.choice(["buy", "sell"])
        ledger.order(f"{org}.paper", bot, symbol, side, fills)


@pytest.mark.parametrize(
    "scope", [Scope("acme"), Scope("acme", bot="alpha"), Scope("acme", account="paper")]
)
def test_series_from_the_hourly_rollup_equal_series_from_the_fills(
    ledger: Ledger, reports: Reports, scope: Scope
) -> None:
    # Buckets under an hour are summed from the fills alone; an hour or more from the rollup,
    # with the partial hours at a range's ends from the fills. Both must tell the same story.
    _random_trading(ledger, seed=5)
    start, end = T0 + 13 * HOUR + 17 * MINUTE, T0 + 40 * HOUR + 31 * MINUTE

    quarters = reports.pnl(scope, start_ms=start, end_ms=end, bucket=Timeframe.M15)
    hours = reports.pnl(scope, start_ms=start, end_ms=end, bucket=Timeframe.H1)
    days = reports.pnl(scope, start_ms=start, end_ms=end, bucket=Timeframe.D1)

    # Average-cost realised PnL carries 28 significant digits; sums taken in another order
    # (per hour, then per bucket) may differ in the last one.
    assert _rounded(quarters.total) == _rounded(hours.total) == _rounded(days.total)
    by_start = {p.ts_ms: p for p in quarters.points}
    for point in hours.points:
        # An hour's point is the state after its fills: its last quarter's (the range's last
        # quarter for the hour the range ends in).
        quarter = by_start.get(point.ts_ms + 45 * MINUTE, quarters.points[-1])
        assert _rounded(point) == _rounded(quarter), point.ts_ms
    assert hours.total.net != 0


def _rounded(values: Any) -> tuple[Decimal, ...]:
    step = Decimal("1e-18")
    return tuple(
        getattr(values, name).quantize(step) for name in ("realized", "unrealized", "fees", "net")
    )
