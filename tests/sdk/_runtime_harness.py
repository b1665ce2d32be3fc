"""A bot runtime under test, and the bot and helpers the runtime tests share."""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
import warnings
from collections.abc import Awaitable, Callable
from decimal import Decimal

import pytest
import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from coyote_sdk import Bar, Bot, ExecutionReport, protocol
from coyote_sdk.config import Endpoints
from coyote_sdk.control import read_status
from coyote_sdk.kafka import account_partition
from coyote_sdk.marketdata import MarketDataWriter
from coyote_sdk.protocol import RuntimeState, Timeframe
from coyote_sdk.runtime import BotRuntime, RuntimeExit, RuntimeOptions

MINUTE = 60_000


class Buyer(Bot):
    """Buys one share on every bar, and keeps what it was told."""

    symbols = ["GOOG"]
    timeframe = "1m"
    fail_on_bar: bool = False

    def __init__(self, **params: object) -> None:
        super().__init__(**params)
        self.reports: list[ExecutionReport] = []
        self.fills: list[ExecutionReport] = []
        self.stopped = False
        self.starts = 0

    def on_start(self) -> None:
        self.starts = self.state.get("starts", 0) + 1
        self.state["starts"] = self.starts

    def on_bar(self, bar: Bar) -> None:
        if self.fail_on_bar:
            raise ZeroDivisionError("the strategy divided by zero")
        self.buy(bar.symbol, 1)

    def on_order_update(self, report: ExecutionReport) -> None:
        self.reports.append(report)

    def on_fill(self, report: ExecutionReport) -> None:
        self.fills.append(report)

    def on_stop(self) -> None:
        self.stopped = True


async def eventually(check: Callable[[], bool | Awaitable[bool]], within: float = 10) -> None:
    deadline = time.monotonic() + within
    while True:
        outcome = check()
        if not isinstance(outcome, bool):
            outcome = await outcome
        if outcome:
            return
        if time.monotonic() > deadline:
            pytest.fail("condition not met in time")
        await asyncio.sleep(0.05)


def make_bar(venue: str, minute: int) -> Bar:
    return Bar(
        symbol="GOOG",
        venue=venue,
        timeframe=Timeframe.M1,
        ts_ms=minute * MINUTE,
        open=Decimal(100),
        high=Decimal(101),
        low=Decimal(99),
        close=Decimal(100),
        volume=Decimal(10),
    )


class Harness:
    """One bot runtime under test, with a plain Kafka consumer watching its intents."""

    def __init__(self, endpoints: Endpoints, unique: str) -> None:
        self.endpoints = endpoints
        self.bot_id = f"bot-{unique}"
        self.account_id = f"acct-{unique}"
        self.venue = f"v{unique}"
        self.redis = redis.Redis.from_url(endpoints.redis_url)
        self.intents: list[protocol.OrderIntent] = []
        self.tasks: list[asyncio.Task[RuntimeExit]] = []

    def options(self, **overrides: object) -> RuntimeOptions:
        values: dict[str, object] = dict(
            bot_id=self.bot_id,
            account_id=self.account_id,
            venue=self.venue,
            heartbeat_interval_s=0.2,
            heartbeat_ttl_s=2.0,
            flag_refresh_s=0.2,
            flag_stale_s=1.0,
            # No executor answers the orders of most tests: a stop waits this long for them.
            stop_drain_s=0.5,
        )
        values.update(overrides)
        return RuntimeOptions(**values)  # type: ignore[arg-type]

    def start(self, bot: Bot, **overrides: object) -> BotRuntime:
        runtime = BotRuntime(bot, self.options(**overrides), self.endpoints)
        self.tasks.append(asyncio.create_task(runtime.run()))
        return runtime

    async def watch_intents(self) -> None:
        """Follows the intents partition of this account from now on."""
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.endpoints.kafka_bootstrap, group_id=None
        )
        await self._consumer.start()
        producer = AIOKafkaProducer(bootstrap_servers=self.endpoints.kafka_bootstrap)
        await producer.start()
        try:
            self._partition = await account_partition(
                producer, protocol.INTENTS_TOPIC.name, self.account_id
            )
        finally:
            await producer.stop()
        self._consumer.assign([self._partition])
        await self._consumer.seek_to_end(self._partition)

    async def poll_intents(self) -> list[protocol.OrderIntent]:
        batches = await self._consumer.getmany(self._partition, timeout_ms=200)
        for record in batches.get(self._partition, []):
            assert record.key == self.account_id.encode()
            intent = protocol.decode_intent(record.value)
            if intent.bot_id == self.bot_id:
                self.intents.append(intent)
        return self.intents

    async def close(self) -> None:
        for task in self.tasks:
            if not task.done():
                task.cancel()
        # Bounded: a runtime that does not end once cancelled is reported with where it is
        # stuck (CI once spent its 300 s time-out here, with no trace of which await hung).
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=20)
        for task in self.tasks:
            if not task.done():
                stack = io.StringIO()
                task.print_stack(file=stack)
                warnings.warn(
                    f"a runtime did not end within 20 s of its cancel:\n{stack.getvalue()}",
                    stacklevel=1,
                )
                continue
            with contextlib.suppress(asyncio.CancelledError, Exception):
                task.result()
        if hasattr(self, "_consumer"):
            await asyncio.wait_for(self._consumer.stop(), 20)
        for key in self.redis.scan_iter(match=f"coyote:*{self.bot_id}*", count=1000):
            self.redis.delete(key)
        for key in self.redis.scan_iter(match=f"coyote:md:{self.venue}:*", count=1000):
            self.redis.delete(key)
        self.redis.close()


async def has(h: Harness, count: int) -> bool:
    return len(await h.poll_intents()) >= count


def publish_bars(h: Harness, *minutes: int) -> None:
    MarketDataWriter(h.redis, venue=h.venue).add_bars([make_bar(h.venue, m) for m in minutes])


def status(h: Harness) -> protocol.BotStatus | None:
    return read_status(h.redis, h.bot_id)


async def until_state(h: Harness, state: RuntimeState, within: float = 10) -> None:
    """Waits until the bot's heartbeat reports ``state``."""
    await eventually(lambda: (s := status(h)) is not None and s.state is state, within=within)


def filled(order: protocol.NewOrder, price: str, fee: str = "0") -> ExecutionReport:
    """The report of a broker filling all of ``order`` at ``price``."""
    return protocol.report_for(
        order,
        protocol.ExecType.TRADE,
        protocol.OrderStatus.FILLED,
        ts_ms=protocol.now_ms(),
        filled_quantity=order.quantity,
        last_quantity=order.quantity,
        last_price=Decimal(price),
        fee=Decimal(fee),
        fill_id=f"venue-{order.intent_id}",
    )


async def publish_report(
    h: Harness, report: ExecutionReport, topic: str = protocol.EXECUTION_REPORTS_TOPIC.name
) -> None:
    """Publishes ``report`` as the executor would: to the reports topic, keyed by account."""
    producer = AIOKafkaProducer(bootstrap_servers=h.endpoints.kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(
            topic,
            protocol.encode(report),
            key=h.account_id.encode(),
        )
    finally:
        await producer.stop()
