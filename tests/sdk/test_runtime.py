"""The live runtime on the real stack: bars in, intents out, flags obeyed, failures contained."""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

from coyote_sdk import Bar, protocol
from coyote_sdk.config import Endpoints, StackSettings
from coyote_sdk.control import clear_control_flag, set_control_flag
from coyote_sdk.dev import Stack, ensure_topics
from coyote_sdk.marketdata import MarketDataWriter
from coyote_sdk.protocol import BotState, OrderStatus, RuntimeState, Side, Timeframe
from coyote_sdk.runtime import BotRuntime, SavedPortfolio
from tests.ports import free_ports
from tests.sdk._runtime_harness import (
    MINUTE,
    Buyer,
    Harness,
    eventually,
    filled,
    has,
    make_bar,
    publish_bars,
    publish_report,
    status,
    until_state,
)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


async def test_bars_reach_the_bot_and_its_intents_reach_kafka(harness: Harness) -> None:
    set_control_flag(harness.redis, harness.bot_id, BotState.RUNNING)
    bot = Buyer()
    harness.start(bot)
    await until_state(harness, RuntimeState.RUNNING)

    publish_bars(harness, 1, 2, 3)
    await eventually(lambda: has(harness, 3))
    await eventually(lambda: (s := status(harness)) is not None and s.intents == 3)

    beat = status(harness)
    assert [i.symbol for i in harness.intents] == ["GOOG"] * 3  # type: ignore[union-attr]
    assert all(
        isinstance(i, protocol.NewOrder) and i.account_id == harness.account_id
        for i in harness.intents
    )
    assert beat is not None and beat.bars == 3 and beat.intents == 3
    assert beat.last_bar_ms == 3 * MINUTE
    assert 0 < harness.redis.pttl(protocol.heartbeat_key(harness.bot_id)) <= 2000


async def test_a_paused_bot_sends_nothing_until_resumed(harness: Harness) -> None:
    set_control_flag(harness.redis, harness.bot_id, BotState.RUNNING)
    bot = Buyer()
    harness.start(bot)
    await until_state(harness, RuntimeState.RUNNING)
    publish_bars(harness, 1)
    await eventually(lambda: has(harness, 1))

    set_control_flag(harness.redis, harness.bot_id, BotState.PAUSED, reason="lunch")
    await until_state(harness, RuntimeState.PAUSED, within=1.0)
    publish_bars(harness, 2, 3)
    await eventually(lambda: len(bot.reports) == 2)
    await asyncio.sleep(0.5)
    paused_intents = len(await harness.poll_intents())
    set_control_flag(harness.redis, harness.bot_id, BotState.RUNNING)
    await until_state(harness, RuntimeState.RUNNING, within=1.0)
    publish_bars(harness, 4)
    await eventually(lambda: has(harness, 2))

    assert paused_intents == 1
    assert [r.reject_code for r in bot.reports] == ["control.blocked"] * 2
    assert "the bot is paused" in (bot.reports[0].reject_reason or "")
    assert bot.reports[0].order_status is OrderStatus.REJECTED


async def test_a_bot_without_a_flag_sends_nothing(harness: Harness) -> None:
    bot = Buyer()
    harness.start(bot)
    await until_state(harness, RuntimeState.BLOCKED)

    publish_bars(harness, 1)
    await eventually(lambda: len(bot.reports) == 1)
    await asyncio.sleep(0.5)

    assert await harness.poll_intents() == []
    assert bot.reports[0].reject_code == "control.blocked"
    assert "missing or unreadable" in (bot.reports[0].reject_reason or "")


async def test_clearing_the_flag_mid_run_blocks_intents(harness: Harness) -> None:
    set_control_flag(harness.redis, harness.bot_id, BotState.RUNNING)
    bot = Buyer()
    harness.start(bot)
    await until_state(harness, RuntimeState.RUNNING)

    clear_control_flag(harness.redis, harness.bot_id)
    await until_state(harness, RuntimeState.BLOCKED, within=1.0)
    publish_bars(harness, 1)
    await eventually(lambda: len(bot.reports) == 1)

    assert await harness.poll_intents() == []


class SlowBuyer(Buyer):
    """Thinks (blocking the event loop, as a synchronous model would) before it buys."""

    think_s: float = 0.0

    def on_bar(self, bar: Bar) -> None:
        time.sleep(self.think_s)
        super().on_bar(bar)


async def test_a_handler_slower_than_flag_stale_s_still_gets_its_order_out(
    harness: Harness,
) -> None:
    # The handler blocks the loop, so the periodic flag read cannot run meanwhile; the flag
    # has not changed, so the order must not be refused as if it had gone stale.
    set_control_flag(harness.redis, harness.bot_id, BotState.RUNNING)
    bot = SlowBuyer(think_s=1.5)  # the harness's flag_stale_s is 1.0
    harness.start(bot)
    await until_state(harness, RuntimeState.RUNNING)

    publish_bars(harness, 1)
    await eventually(lambda: has(harness, 1))

    assert bot.reports == []


async def test_a_flag_paused_while_a_slow_handler_ran_holds_its_order_back(
    harness: Harness,
) -> None:
    set_control_flag(harness.redis, harness.bot_id, BotState.RUNNING)
    bot = SlowBuyer(think_s=1.5)
    harness.start(bot)
    await until_state(harness, RuntimeState.RUNNING)

    # The handler blocks this test's event loop too: the flag changes from another thread.
    pause = threading.Timer(0.5, set_control_flag, (harness.redis, harness.bot_id, BotState.PAUSED))
    pause.start()
    publish_bars(harness, 1)
    await eventually(lambda: len(bot.reports) == 1)
    pause.join()
    await asyncio.sleep(0.5)

    assert await harness.poll_intents() == []
    assert "the bot is paused" in (bot.reports[0].reject_reason or "")


async def test_the_stopped_flag_runs_on_stop_and_ends_the_runtime(harness: Harness) -> None:
    set_control_flag(harness.redis, harness.bot_id, BotState.RUNNING)
    bot = Buyer()
    harness.start(bot)
    await until_state(harness, RuntimeState.RUNNING)

    set_control_flag(harness.redis, harness.bot_id, BotState.STOPPED, set_by="ops")
    outcome = await asyncio.wait_for(harness.tasks[0], timeout=5)

    assert (outcome.code, outcome.state) == (0, RuntimeState.STOPPED)
    assert "control flag stopped" in outcome.reason
    assert bot.stopped
    beat = status(harness)
    assert beat is not None and beat.state is RuntimeState.STOPPED


async def test_handler_errors_are_counted_and_stop_the_bot_at_the_limit(harness: Harness) -> None:
    set_control_flag(harness.redis, harness.bot_id, BotState.RUNNING)
    bot = Buyer(fail_on_bar=True)
    harness.start(bot, max_handler_errors=3)
    await until_state(harness, RuntimeState.RUNNING)

    publish_bars(harness, 1, 2, 3, 4, 5)
    outcome = await asyncio.wait_for(harness.tasks[0], timeout=5)

    assert (outcome.code, outcome.state) == (3, RuntimeState.FAILED)
    assert "stopped after 3 handler errors" in outcome.reason
    assert "ZeroDivisionError: the strategy divided by zero" in outcome.reason
    beat = status(harness)
    assert beat is not None and beat.state is RuntimeState.FAILED and beat.errors == 3
    assert bot.stopped


async def test_reports_drive_on_fill_and_the_portfolio_is_rebuilt_after_a_restart(
    harness: Harness,
) -> None:
    set_control_flag(harness.redis, harness.bot_id, BotState.RUNNING)
    bot = Buyer()
    harness.start(bot)
    await until_state(harness, RuntimeState.RUNNING)
    order = protocol.NewOrder(
        intent_id=protocol.new_intent_id(),
        ts_ms=1,
        account_id=harness.account_id,
        bot_id=harness.bot_id,
        symbol="GOOG",
        side=Side.BUY,
        quantity=Decimal(5),
    )
    await publish_report(harness, filled(order, "101.5", fee="0.5"))

    await eventually(lambda: len(bot.fills) == 1)
    set_control_flag(harness.redis, harness.bot_id, BotState.STOPPED)
    await asyncio.wait_for(harness.tasks[0], timeout=5)
    set_control_flag(harness.redis, harness.bot_id, BotState.RUNNING)
    restarted = Buyer()
    runtime = harness.start(restarted)
    await eventually(lambda: restarted.starts == 2)

    assert runtime.portfolio.position("GOOG").quantity == Decimal(5)
    assert runtime.portfolio.position("GOOG").average_price == Decimal("101.5")
    assert runtime.portfolio.cash == Decimal("-508.0")
    assert restarted.fills == []  # replayed history updates the portfolio, not the handlers


async def test_a_stopping_bot_waits_for_the_answers_to_its_orders_in_flight_and_saves_them(
    harness: Harness,
) -> None:
    # The demo's market maker: fills of orders sent just before the stop reached Kafka after
    # the runtime had saved its portfolio, so they counted in the next run's figures.
    set_control_flag(harness.redis, harness.bot_id, BotState.RUNNING)
    bot = Buyer()
    runtime = harness.start(bot, stop_drain_s=10)
    await until_state(harness, RuntimeState.RUNNING)
    publish_bars(harness, 1)
    await eventually(lambda: has(harness, 1))
    (order,) = harness.intents
    assert isinstance(order, protocol.NewOrder)

    set_control_flag(harness.redis, harness.bot_id, BotState.STOPPED)
    # Its order is still in flight: the runtime cancels what it may leave behind...
    await eventually(lambda: has(harness, 2))
    assert isinstance(harness.intents[1], protocol.CancelAll)
    assert not harness.tasks[0].done()
    # ...and the executor, which had filled the order first, answers after the stop.
    await publish_report(harness, filled(order, "101.5"))
    ended = await asyncio.wait_for(harness.tasks[0], timeout=5)

    assert ended.state is RuntimeState.STOPPED
    assert [f.order_id for f in bot.fills] == [order.intent_id]
    assert runtime.portfolio.unfinished_orders == set()
    raw = harness.redis.get(protocol.portfolio_key(harness.bot_id))
    assert raw is not None
    saved = protocol.decode(raw, SavedPortfolio)
    (position,) = saved.portfolio.positions
    assert (position.symbol, position.quantity) == ("GOOG", Decimal(1))


async def test_a_stopping_bot_waits_for_unanswered_orders_no_longer_than_stop_drain_s(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    set_control_flag(harness.redis, harness.bot_id, BotState.RUNNING)
    harness.start(Buyer(), stop_drain_s=0.5)
    await until_state(harness, RuntimeState.RUNNING)
    publish_bars(harness, 1)
    await eventually(lambda: has(harness, 1))

    set_control_flag(harness.redis, harness.bot_id, BotState.STOPPED)  # no executor answers
    ended = await asyncio.wait_for(harness.tasks[0], timeout=5)

    assert ended.state is RuntimeState.STOPPED
    assert "stopping with 1 orders unanswered after 0.5 s" in caplog.text


async def test_a_restart_resumes_from_the_saved_portfolio_even_after_retention_deleted_the_reports(
    harness: Harness, unique: str, caplog: pytest.LogCaptureFixture
) -> None:
    topic = f"test.{unique}.reports"
    await ensure_topics(
        harness.endpoints.kafka_bootstrap,
        [protocol.TopicSpec(name=topic, partitions=1, key="account_id")],
    )
    bought, sold = (
        protocol.NewOrder(
            intent_id=protocol.new_intent_id(),
            ts_ms=1,
            account_id=harness.account_id,
            bot_id=harness.bot_id,
            symbol="GOOG",
            side=side,
            quantity=Decimal(quantity),
        )
        for side, quantity in ((Side.BUY, 5), (Side.SELL, 2))
    )
    await publish_report(harness, filled(bought, "101.5", fee="0.5"), topic)
    set_control_flag(harness.redis, harness.bot_id, BotState.RUNNING)
    first = harness.start(Buyer(), reports_topic=topic)
    await eventually(lambda: first.portfolio.position("GOOG").quantity == 5)
    set_control_flag(harness.redis, harness.bot_id, BotState.STOPPED)
    await asyncio.wait_for(harness.tasks[0], timeout=5)  # saves its portfolio as it stops

    # While the bot is stopped, the retention deletes every report it has read; one more
    # comes after.
    admin = AIOKafkaAdminClient(bootstrap_servers=harness.endpoints.kafka_bootstrap)
    await admin.start()
    try:
        partition = TopicPartition(topic, 0)
        await admin.delete_records({partition: RecordsToDelete(before_offset=1)})
    finally:
        await admin.close()
    await publish_report(harness, filled(sold, "103", fee="0.25"), topic)

    set_control_flag(harness.redis, harness.bot_id, BotState.RUNNING)
    restarted = Buyer()
    runtime = harness.start(restarted, reports_topic=topic)
    await eventually(lambda: restarted.starts == 2)
    position = runtime.portfolio.position("GOOG")
    assert (position.quantity, position.average_price) == (Decimal(3), Decimal("101.5"))
    assert position.realized_pnl == Decimal(3)  # 2 × (103 - 101.5)
    assert runtime.portfolio.cash == Decimal("-302.25")  # -5 × 101.5 - 0.5 + 2 × 103 - 0.25
    assert runtime.portfolio.fees == Decimal("0.75")
    assert restarted.fills == []  # the saved copy and the replay update the portfolio only

    # Without the saved copy, the deleted report is lost: said, not hidden.
    set_control_flag(harness.redis, harness.bot_id, BotState.STOPPED)
    await asyncio.wait_for(harness.tasks[1], timeout=5)
    harness.redis.delete(protocol.portfolio_key(harness.bot_id))
    set_control_flag(harness.redis, harness.bot_id, BotState.RUNNING)
    forgetful = harness.start(Buyer(), reports_topic=topic)
    await eventually(lambda: forgetful.state is RuntimeState.RUNNING)
    assert forgetful.portfolio.position("GOOG").quantity == Decimal(-2)
    assert "the first 1 of the account's partition are gone (retention)" in caplog.text


@pytest.fixture
def private_redis(unique: str) -> Iterator[Stack]:
    """A Redis of this test's own, which it may stop and start."""
    (port,) = free_ports(1)
    home = REPO / ".coyote" / "test-stacks" / unique
    stack = Stack(StackSettings(home=home, redis_port=port))
    stack.up(["redis"])
    yield stack
    stack.down(["redis"])
    shutil.rmtree(home, ignore_errors=True)


async def test_a_redis_outage_blocks_intents_until_it_is_back(
    endpoints: Endpoints, unique: str, private_redis: Stack
) -> None:
    local = private_redis.settings.endpoints()
    h = Harness(
        Endpoints(
            endpoints.kafka_bootstrap,
            local.redis_url,
            endpoints.database_url,
            endpoints.vault_addr,
            endpoints.vault_token,
        ),
        unique,
    )
    await h.watch_intents()
    try:
        set_control_flag(h.redis, h.bot_id, BotState.RUNNING)
        bot = Buyer()
        runtime = h.start(bot)
        await eventually(lambda: runtime.state is RuntimeState.RUNNING)
        publish_bars(h, 1)
        await eventually(lambda: has(h, 1))

        private_redis.down(["redis"])
        await eventually(lambda: runtime.state is RuntimeState.BLOCKED, within=3)
        # Market data is gone with Redis; an order can still come from a report or a timer.
        runtime._events.put_nowait(("bar", make_bar(h.venue, 2)))
        await eventually(lambda: len(bot.reports) == 1)
        await asyncio.sleep(0.5)
        during_outage = len(await h.poll_intents())

        private_redis.up(["redis"])  # the flag survives in the append-only file
        await eventually(lambda: runtime.state is RuntimeState.RUNNING, within=5)
        runtime._events.put_nowait(("bar", make_bar(h.venue, 3)))
        await eventually(lambda: has(h, 2))
    finally:
        await h.close()

    assert during_outage == 1
    assert bot.reports[0].reject_code == "control.blocked"


class TickTaker(Buyer):
    """Buys one share on every trade it sees."""

    def on_tick(self, trade: protocol.Trade) -> None:
        self.buy(trade.symbol, 1, limit=trade.price)


async def test_a_bot_with_on_tick_receives_every_trade_a_live_feed_writes(
    harness: Harness,
) -> None:
    set_control_flag(harness.redis, harness.bot_id, BotState.RUNNING)
    bot = TickTaker()
    harness.start(bot)
    await until_state(harness, RuntimeState.RUNNING)
    writer = MarketDataWriter(harness.redis, venue=harness.venue, publish_trades=True)
    trades = [
        protocol.Trade(
            symbol="GOOG", venue=harness.venue, ts_ms=i, price=Decimal(f"100.{i}"), size=Decimal(1)
        )
        for i in range(1, 4)
    ]

    writer.add_trades(trades)
    await eventually(lambda: has(harness, 3))

    assert [i.limit_price for i in harness.intents] == [
        Decimal("100.1"),
        Decimal("100.2"),
        Decimal("100.3"),
    ]  # type: ignore[union-attr]


def test_history_is_served_from_memory_once_seeded_and_reread_after_a_gap(
    harness: Harness,
) -> None:
    from coyote_sdk.runtime._runtime import _LiveContext

    runtime = BotRuntime(Buyer(), harness.options(), harness.endpoints)
    context = _LiveContext(runtime, harness.redis)
    publish_bars(harness, 1, 2, 3)

    seeded = context.history("GOOG", 2, Timeframe.M1)
    publish_bars(harness, 4)
    context.remember(make_bar(harness.venue, 4))
    for key in harness.redis.scan_iter(match=f"coyote:md:{harness.venue}:*"):
        harness.redis.delete(key)
    from_memory = context.history("GOOG", 3, Timeframe.M1)
    context.remember(make_bar(harness.venue, 6))  # minute 5 never arrived
    after_gap = context.history("GOOG", 3, Timeframe.M1)

    assert [b.ts_ms // MINUTE for b in seeded] == [2, 3]
    assert [b.ts_ms // MINUTE for b in from_memory] == [2, 3, 4]
    assert after_gap == []  # back to Redis, whose series this test deleted
