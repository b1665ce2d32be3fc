"""Backtest/live divergence on a real live session: a paused bar and a worse live fill."""

from __future__ import annotations

import asyncio

from coyote_sdk import protocol
from coyote_sdk.control import set_control_flag
from coyote_sdk.divergence import compare, record_session
from coyote_sdk.protocol import (
    BotState,
    RuntimeState,
    Timeframe,
)
from tests.sdk._runtime_harness import (
    MINUTE,
    Buyer,
    Harness,
    eventually,
    filled,
    has,
    publish_bars,
    publish_report,
    until_state,
)


async def test_a_paused_bar_and_a_worse_fill_are_the_divergences(harness: Harness) -> None:
    set_control_flag(harness.redis, harness.bot_id, BotState.RUNNING)
    harness.start(Buyer())
    await until_state(harness, RuntimeState.RUNNING)
    publish_bars(harness, 1, 2)
    await eventually(lambda: has(harness, 2))
    set_control_flag(harness.redis, harness.bot_id, BotState.PAUSED)
    await until_state(harness, RuntimeState.PAUSED, within=1.0)
    publish_bars(harness, 3)
    await asyncio.sleep(0.3)
    set_control_flag(harness.redis, harness.bot_id, BotState.RUNNING)
    await until_state(harness, RuntimeState.RUNNING, within=1.0)
    publish_bars(harness, 4, 5)
    await eventually(lambda: has(harness, 4))
    first = harness.intents[0]
    assert isinstance(first, protocol.NewOrder)
    # The executor's answer to the first order: filled half a point worse than the next open.
    await publish_report(harness, filled(first, "100.5"))

    session = await record_session(
        harness.endpoints,
        bot_id=harness.bot_id,
        account_id=harness.account_id,
        venue=harness.venue,
        symbols=["GOOG"],
        timeframe=Timeframe.M1,
        start_ms=MINUTE,
        end_ms=5 * MINUTE,
    )
    report = compare(Buyer(), session)

    assert (len(session.bars), report.live_orders, report.backtest_orders) == (5, 4, 5)
    assert report.matched == 4
    assert [(d.bar_ts_ms // MINUTE, d.kind) for d in report.divergences] == [
        (1, "fill_price"),
        (2, "fill_missing_live"),
        (3, "only_backtest"),
        (4, "fill_missing_live"),
    ]
    assert "live 100.5, backtest 100" in report.divergences[0].detail
    assert report.divergences[2].order == "buy 1 GOOG market"
