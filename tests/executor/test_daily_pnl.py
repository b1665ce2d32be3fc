"""The day's PnL for the daily loss limits: the book itself, and the executor on the real stack
tripping a bot to REDUCING at its max_daily_loss — and still knowing the loss after a restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from coyote_executor.daily_pnl import DayBook, load
from coyote_risk import ACTIVE, REDUCING
from coyote_sdk.config import Endpoints
from coyote_sdk.protocol import ExecType, OrderStatus, Side
from tests.executor._harness import ExecutorHarness, risk_section, until


@pytest.mark.unit
def test_a_position_carried_overnight_counts_from_the_days_first_price() -> None:
    book = DayBook(day=100)
    book.hold("b", "X", 100.0, start_mark=10.0)  # bought at 8 yesterday: irrelevant today

    assert book.pnl({"X": 9.5}) == (-50.0, {"b": -50.0})


@pytest.mark.unit
def test_todays_fills_count_their_price_and_fees() -> None:
    book = DayBook(day=100)
    book.on_fill("b", "X", 100.0, 10.0, 1.0)
    book.on_fill("b", "X", -40.0, 11.0, 0.5)

    total, bots = book.pnl({"X": 12.0})

    # 40 sold 1.0 above cost, 60 held 2.0 above, 1.5 of fees.
    assert total == pytest.approx(40 * 1.0 + 60 * 2.0 - 1.5)
    assert bots == {"b": pytest.approx(total)}


@pytest.mark.unit
def test_without_a_venue_price_the_last_fill_price_marks_the_position() -> None:
    book = DayBook(day=100)
    book.on_fill("b", "X", 10.0, 5.0, 0.0)

    assert book.pnl({}) == (0.0, {"b": 0.0})


@pytest.mark.unit
def test_the_account_is_the_sum_of_its_bots_and_a_new_day_starts_from_zero() -> None:
    book = DayBook(day=100)
    book.on_fill("a", "X", 10.0, 5.0, 0.0)
    book.on_fill("b", "Y", -20.0, 2.0, 0.0)

    total, bots = book.pnl({"X": 4.0, "Y": 3.0})
    assert bots == {"a": -10.0, "b": -20.0} and total == -30.0

    book.roll(101, {"X": 4.0, "Y": 3.0})
    assert book.day == 101
    assert book.pnl({"X": 4.0, "Y": 3.0}) == (0.0, {"a": 0.0, "b": 0.0})
    assert book.pnl({"X": 5.0, "Y": 3.0})[0] == 10.0


@pytest.mark.unit
def test_loaded_from_the_records_it_equals_the_book_kept_fill_by_fill() -> None:
    kept = DayBook(day=100)
    kept.hold("b", "X", 30.0, start_mark=10.0)
    fills = [("b", "X", 20.0, 10.5, 0.2), ("b", "X", -45.0, 9.0, 0.3), ("c", "X", 5.0, 9.5, 0.0)]
    for fill in fills:
        kept.on_fill(*fill)

    loaded = load(100, [("b", "X", 5.0), ("c", "X", 5.0)], fills, {"X": 10.0})

    marks = {"X": 9.25}
    (loaded_total, loaded_bots), (kept_total, kept_bots) = loaded.pnl(marks), kept.pnl(marks)
    assert loaded_total == pytest.approx(kept_total)
    assert loaded_bots == pytest.approx(kept_bots)
    assert loaded.symbols() == {"X"}


@pytest.mark.integration
async def test_a_bot_at_its_daily_loss_limit_may_only_reduce_even_after_a_restart(
    endpoints: Endpoints, unique: str, tmp_path: Path
) -> None:
    risk = risk_section()
    risk["bots"] = {"bot-a": {"max_daily_loss": "50"}}
    harness = ExecutorHarness(endpoints, unique, tmp_path, risk=risk)
    await harness.setup()
    harness.trade("EURUSD", "1.07500")
    try:
        executor = await harness.start_executor()
        bought = harness.order(quantity="1000")
        await harness.send(bought)
        await harness.terminal_reports([bought.intent_id])

        harness.trade("EURUSD", "1.00000")  # 1000 × 0.075 = 75 lost
        account = executor._accounts[harness.account]
        await until(lambda: account.engine.slot_bot("bot-a").state == REDUCING, "tripped")
        await until(lambda: harness.alerts("risk.daily_loss") != [], "alerted")  # by a task
        (alert,) = harness.alerts("risk.daily_loss")
        assert alert.bot_id == "bot-a" and "down 75.00 today" in alert.message
        assert account.engine.account.state == ACTIVE  # the account has no such limit

        await harness.stop_executor()
        executor = await harness.start_executor()  # takes the account on afresh
        more, less = harness.order(quantity="10"), harness.order(side=Side.SELL, quantity="10")
        await harness.send(more, less)
        reports = await harness.terminal_reports([more.intent_id, less.intent_id])

        (refused,) = reports[more.intent_id]
        assert refused.exec_type is ExecType.REJECTED
        assert refused.reject_code == "risk.reducing_only"
        assert reports[less.intent_id][-1].order_status is OrderStatus.FILLED
    finally:
        await harness.close()
