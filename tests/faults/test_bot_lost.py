"""A bot runtime dies mid-flow with resting orders: the control plane's supervisor cancels them
for it (a CancelAll from the platform, through its own intent producer), and every intent still
gets exactly one terminal report — the dead bot's resting orders cancelled, the others traded."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from decimal import Decimal

import pytest

from coyote_control_plane.supervisor.intents import IntentProducer
from coyote_sdk import protocol
from coyote_sdk.protocol import CancelAll, IntentOrigin, OrderStatus
from tests.faults._harness import Scenario, eventually, write_figures

pytestmark = [pytest.mark.faults, pytest.mark.slow]


async def test_the_resting_orders_of_a_dead_bot_are_cancelled_for_it(
    scenario: Callable[..., Scenario],
) -> None:
    run = scenario("bot_runtime_lost", limit_offset_bps=3)
    flow = run.flow
    await run.start()
    await flow.wait_filled(since=0, within=120)
    await asyncio.sleep(3.0)

    lost = next(iter(flow.bots))
    bot, watcher = flow.bots[lost], flow.watcher
    assert watcher is not None
    fault = flow.fault("bot runtime died; the supervisor cancels its orders")
    flow.tasks[lost].cancel()  # no on_stop, no cancel of its own: as a kill -9
    with contextlib.suppress(asyncio.CancelledError):
        await flow.tasks.pop(lost)
    await asyncio.sleep(2.0)
    # What the dead runtime had not produced yet never left it: refused, not lost.
    for intent_id in bot.placed.keys() - watcher.intents.keys():
        bot.refused[intent_id] = "runtime.died"
    producer = IntentProducer(flow.endpoints.kafka_bootstrap)
    try:
        cancel = CancelAll(
            intent_id=protocol.new_intent_id(),
            ts_ms=protocol.now_ms(),
            account_id=flow.bot_accounts[lost],
            bot_id=lost,
            origin=IntentOrigin.PLATFORM,
        )
        await asyncio.wrap_future(producer.send(cancel))
    finally:
        producer.close()
    fault.end()

    def dead_bot_answered() -> bool:
        sent = bot.placed.keys() - bot.refused.keys()
        return all(i in watcher.terminal for i in sent)

    await eventually(dead_bot_answered, within=60, what="the dead bot's orders all ended")
    await asyncio.sleep(2.0)
    # Every order of the living bots still resting trades through, so that every intent ends.
    await flow.stop_feed()
    for price in ("0.99000", "1.20000"):
        flow.move_market(Decimal(price))
        await asyncio.sleep(1.0)
    figures = await run.finish()
    cancelled = figures.outcomes.get(OrderStatus.CANCELED.value, 0)
    figures.notes.update(cancelled_for_the_dead_bot=cancelled)
    write_figures(figures)

    assert figures.problems() == []
    assert cancelled > 0, "the dead bot had no resting order to cancel"
    assert figures.notes["executor_running"]
