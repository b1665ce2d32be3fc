"""An executor on the real stack, with topics, a venue and an account of the test's own."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from coyote_executor.accounts import accounts_from_mapping
from coyote_executor.brokers.base import Broker, BrokerOrderState, UpdateListener
from coyote_executor.brokers.paper import PaperBroker
from coyote_executor.remote_accounts import RemoteAccounts
from coyote_executor.service import Executor, ExecutorOptions
from coyote_executor.store import Store
from coyote_sdk import protocol
from coyote_sdk.config import Endpoints
from coyote_sdk.dev import ensure_topics
from coyote_sdk.marketdata import MarketDataWriter
from coyote_sdk.protocol import CancelOrder, ExecutionReport, NewOrder, OrderType, Side, Trade
from tests.tasks import end_tasks


async def holds_within(check: Callable[[], bool], within: float) -> bool:
    """Whether ``check()`` holds within ``within`` seconds (polled every 0.1 s)."""
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.1)
    return True


async def until(check: Callable[[], bool], what: str, within: float = 15.0) -> None:
    """Waits until ``check()`` holds; fails naming ``what`` after ``within`` seconds."""
    if not await holds_within(check, within):
        raise AssertionError(f"{what}: not within {within:.0f} s")


def risk_section(**account: Any) -> dict[str, Any]:
    return {
        "instruments": {
            "EURUSD": {"tick_size": "0.00001", "lot_size": "1"},
            "GOOG": {"tick_size": "0.01", "lot_size": "1"},
        },
        "account": account,
    }


class ExecutorHarness:
    """Runs an :class:`Executor` in-process and talks to it through Kafka.

    Args:
        endpoints: The stack.
        unique: The test's unique name.
        database_url: Where the executor records (SQLite in ``tmp`` by default).
        risk: The account's ``risk`` section.
        paper: The account's ``paper`` section.
    """

    def __init__(
        self,
        endpoints: Endpoints,
        unique: str,
        tmp: Path,
        *,
        database_url: str | None = None,
        risk: dict[str, Any] | None = None,
        paper: dict[str, Any] | None = None,
        options: dict[str, Any] | None = None,
    ) -> None:
        self.endpoints = endpoints
        self.unique = unique
        self.account = f"acct-{unique}"
        self.venue = f"v{unique}"
        self.intents_topic = f"test.{unique}.intents"
        self.reports_topic = f"test.{unique}.reports"
        self.dead_letter_topic = f"test.{unique}.dlq"
        self.database_url = database_url or f"sqlite:///{tmp / 'executor.db'}"
        self.accounts = accounts_from_mapping(
            {
                "accounts": {
                    self.account: {
                        "broker": "paper",
                        "venue": self.venue,
                        "paper": paper or {},
                        "risk": risk or risk_section(),
                    }
                }
            }
        )
        self.options = ExecutorOptions(
            **{
                "group_id": f"test-{unique}",
                "instance_id": "t",
                "batch_size": 500,
                "reconcile_interval_s": 0.5,
                "intents_topic": self.intents_topic,
                "reports_topic": self.reports_topic,
                "dead_letter_topic": self.dead_letter_topic,
                **(options or {}),
            }
        )
        self.sync_redis = redis.Redis.from_url(endpoints.redis_url)
        self.writer = MarketDataWriter(self.sync_redis, venue=self.venue, publish=False)
        self.store = Store(self.database_url)
        self._tasks: list[tuple[asyncio.Task[None], asyncio.Event]] = []
        self._remotes: list[RemoteAccounts] = []
        self.executor: Executor | None = None
        self.broker: PaperBroker | None = None
        self._producer: AIOKafkaProducer | None = None
        self._reports: AIOKafkaConsumer | None = None
        self.received: list[ExecutionReport] = []
        self.report_headers: dict[uuid.UUID, dict[str, bytes]] = {}
        """The Kafka headers of each received report, by report id."""

    async def setup(self) -> None:
        await ensure_topics(
            self.endpoints.kafka_bootstrap,
            [
                protocol.TopicSpec(name=self.intents_topic, partitions=3, key="account_id"),
                protocol.TopicSpec(name=self.reports_topic, partitions=3, key="account_id"),
                protocol.TopicSpec(name=self.dead_letter_topic, partitions=1, key="-"),
            ],
        )
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.endpoints.kafka_bootstrap, acks="all", enable_idempotence=True
        )
        await self._producer.start()
        self._reports = AIOKafkaConsumer(
            self.reports_topic,
            bootstrap_servers=self.endpoints.kafka_bootstrap,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            group_id=None,
        )
        await self._reports.start()

    async def start_executor(self, broker: Broker | None = None) -> Executor:
        """An executor trading the account with the paper broker, or with ``broker``."""
        client = aioredis.Redis.from_url(self.endpoints.redis_url)
        if broker is None:
            settings = {a: c.paper for a, c in self.accounts.items() if c.paper is not None}
            broker = self.broker = PaperBroker(client, settings, match_interval_ms=50)
        executor = Executor(
            self.accounts,
            brokers=dict.fromkeys(self.accounts, broker),
            store=self.store,
            redis=client,
            kafka_bootstrap=self.endpoints.kafka_bootstrap,
            options=self.options,
        )
        return await self._run(executor, asyncio.Event())

    async def start_remote_executor(
        self, match: str, *, vault: Any = None, **remote: Any
    ) -> Executor:
        """An executor whose accounts come from the control plane's account documents in Redis
        (``match``: a glob of the account ids it serves), built as ``coyote-executor run``
        builds it with ``ACCOUNTS_SOURCE=control-plane``; ``vault`` (a client) is where real
        brokers read their credentials; ``remote`` goes to :class:`RemoteAccounts` (``key``,
        ``channel`` for a test's own hash)."""
        client = aioredis.Redis.from_url(self.endpoints.redis_url)
        stop = asyncio.Event()
        source = RemoteAccounts(
            client, vault=vault, match=match, refresh_s=0.2, paper_match_interval_ms=50, **remote
        )
        self._remotes.append(source)
        found = await asyncio.wait_for(source.initial(stop), 30)
        assert found is not None
        accounts, brokers = found
        executor = Executor(
            accounts,
            brokers=brokers,
            store=self.store,
            redis=client,
            kafka_bootstrap=self.endpoints.kafka_bootstrap,
            options=self.options,
        )
        source.attach(executor)
        return await self._run(executor, stop)

    async def _run(self, executor: Executor, stop: asyncio.Event) -> Executor:
        task = asyncio.create_task(executor.run(stop))
        self._tasks.append((task, stop))
        ready = asyncio.create_task(executor.ready.wait())
        done, _ = await asyncio.wait({task, ready}, timeout=30, return_when="FIRST_COMPLETED")
        if task in done:
            task.result()  # raises what stopped it
        assert ready in done, "the executor did not take over its partitions within 30 s"
        self.executor = executor
        return executor

    @property
    def task(self) -> asyncio.Task[None]:
        """The task running the executor last started."""
        return self._tasks[-1][0]

    async def stop_executor(self) -> None:
        for _, stop in self._tasks:
            stop.set()
        tasks = [task for task, _ in self._tasks]
        self._tasks.clear()
        late = await end_tasks(tasks, within=20, what="an executor")
        assert not late, "an executor did not stop within 20 s of being asked"
        for task in tasks:
            if not task.cancelled():
                task.result()  # raises what stopped it
        for source in self._remotes:
            await source.close()
        self._remotes.clear()

    async def close(self) -> None:
        await self.stop_executor()
        if self._producer is not None:
            await self._producer.stop()
        if self._reports is not None:
            await self._reports.stop()
        self.store.close()
        for pattern in (f"coyote:md:{self.venue}:*", f"coyote:paper:{self.account}:*"):
            keys = list(self.sync_redis.scan_iter(match=pattern, count=1000))
            if keys:
                self.sync_redis.delete(*keys)
        self.sync_redis.close()

    def alerts(self, kind: str) -> list[protocol.Alert]:
        """The alerts of ``kind`` about the test's account in the stack's alert stream."""
        found = [
            protocol.decode(fields[b"alert"], protocol.Alert)
            for _, fields in self.sync_redis.xrange(protocol.ALERTS_STREAM)
        ]
        return [a for a in found if a.kind == kind and a.account_id == self.account]

    # -- market data ---------------------------------------------------------------------------

    def trade(self, symbol: str, price: str, size: str = "1000000") -> None:
        """Prints a trade on the test's venue: the last price the executor and paper broker see."""
        self.writer.add_trades(
            [
                Trade(
                    symbol=symbol,
                    venue=self.venue,
                    ts_ms=protocol.now_ms(),
                    price=Decimal(price),
                    size=Decimal(size),
                )
            ]
        )

    # -- intents and reports -----------------------------------------------------------------

    def order(
        self, symbol: str = "EURUSD", side: Side = Side.BUY, quantity: str = "1000", **fields: Any
    ) -> NewOrder:
        fields.setdefault("bot_id", "bot-a")
        fields.setdefault("ts_ms", protocol.now_ms())
        return NewOrder(
            intent_id=protocol.new_intent_id(),
            account_id=self.account,
            symbol=symbol,
            side=side,
            quantity=Decimal(quantity),
            **fields,
        )

    def limit(self, price: str, **fields: Any) -> NewOrder:
        return self.order(order_type=OrderType.LIMIT, limit_price=Decimal(price), **fields)

    def cancel(self, order_id: uuid.UUID, **fields: Any) -> CancelOrder:
        fields.setdefault("bot_id", "bot-a")
        fields.setdefault("ts_ms", protocol.now_ms())
        return CancelOrder(
            intent_id=protocol.new_intent_id(), account_id=self.account, order_id=order_id, **fields
        )

    async def send(
        self,
        *intents: protocol.OrderIntent | bytes,
        key: str | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        assert self._producer is not None
        for intent in intents:
            value = intent if isinstance(intent, bytes) else protocol.encode(intent)
            await self._producer.send(
                self.intents_topic, value, key=(key or self.account).encode(), headers=headers
            )
        await self._producer.flush()

    async def reports_until(self, done: Any, within: float = 20.0) -> list[ExecutionReport]:
        """Reads reports until ``done(all_received)`` holds; returns all received so far."""
        assert self._reports is not None
        deadline = time.monotonic() + within
        while not done(self.received):
            if time.monotonic() > deadline:
                seen = [(r.exec_type.value, r.reject_code) for r in self.received]
                raise AssertionError(f"timed out; received {seen}")
            batch = await self._reports.getmany(timeout_ms=200)
            for records in batch.values():
                for record in records:
                    report = protocol.decode(record.value, ExecutionReport)
                    self.received.append(report)
                    self.report_headers[report.report_id] = dict(record.headers or ())
        return self.received

    async def terminal_reports(
        self, order_ids: Iterable[uuid.UUID], within: float = 20.0
    ) -> dict[uuid.UUID, list[ExecutionReport]]:
        """Waits until every order has a terminal report; returns the reports per order."""
        wanted = set(order_ids)

        def finished(received: list[ExecutionReport]) -> bool:
            return wanted <= {r.order_id for r in received if r.order_status.is_terminal}

        await self.reports_until(finished, within)
        return {o: [r for r in self.received if r.order_id == o] for o in wanted}

    async def dead_letters(self, count: int, within: float = 20.0) -> list[Any]:
        consumer = AIOKafkaConsumer(
            self.dead_letter_topic,
            bootstrap_servers=self.endpoints.kafka_bootstrap,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            group_id=None,
        )
        await consumer.start()
        found: list[Any] = []
        deadline = time.monotonic() + within
        try:
            while len(found) < count and time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=200)
                for records in batch.values():
                    found.extend(records)
        finally:
            await consumer.stop()
        return found


class Updates:
    """What a broker handed to its update listener (:attr:`listener`), call by call."""

    def __init__(self) -> None:
        self.calls: list[list[BrokerOrderState]] = []
        self.accounts: list[str] = []
        """The account of each call."""
        self.arrived = asyncio.Event()

    @property
    def listener(self) -> UpdateListener:
        def note(account_id: str, states: Sequence[BrokerOrderState]) -> None:
            self.calls.append(list(states))
            self.accounts.append(account_id)
            self.arrived.set()

        return note

    @property
    def states(self) -> list[BrokerOrderState]:
        return [state for call in self.calls for state in call]

    async def first(self, within: float = 5.0) -> None:
        """Waits for the first call."""
        await asyncio.wait_for(self.arrived.wait(), within)
