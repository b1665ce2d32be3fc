"""The fault-injection harness: a private stack, the executor as a process, a steady flow of
intents from real bot runtimes, and the accounting of every intent once the fault is over.

- :class:`PrivateStack` runs Kafka, Redis and PostgreSQL of the fault tests' own, on free ports
  under ``.coyote/test-stacks/faults-<unique>``: a test kills, stops and restarts them without
  touching the shared stack that other tests and engineers use.
- :class:`ExecutorProcess` runs the executor as a child process (``_executor_process``), which a
  test kills with ``SIGKILL`` or lets die at a failpoint (``COYOTE_EXECUTOR_FAILPOINT``).
  :meth:`PrivateStack.proxy_executor` puts it behind Toxiproxy (``_toxiproxy.py``) on its way to
  Kafka and Redis, for the network faults.
- :class:`Flow` drives the intents: real :class:`~coyote_sdk.runtime.BotRuntime` instances
  (bars in by Redis pub/sub, intents out by the runtime's idempotent Kafka producer, reports back
  into their portfolios), fed a bar every ``bar_interval_s``. A :class:`Watcher` follows the
  intent and report topics live, for the recovery times.
- :func:`account` reads everything back after recovery — every intent and execution report from
  Kafka (``read_committed``), the executor's database, the paper broker's book in Redis — and
  returns the scenario's :class:`Figures`; :func:`write_figures` keeps them under
  ``.coyote/test-artifacts/faults/`` for ``docs/reliability.md``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import datetime
import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import psycopg
import redis
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from coyote_executor.store import Store
from coyote_sdk import Bar, Bot, ExecutionReport, Param, protocol
from coyote_sdk.config import Endpoints, StackSettings
from coyote_sdk.control import set_control_flag
from coyote_sdk.dev import Stack
from coyote_sdk.dev._process import PidFile, stop_group
from coyote_sdk.marketdata import MarketDataWriter
from coyote_sdk.protocol import BotState, NewOrder, OrderStatus, RuntimeState, Timeframe
from coyote_sdk.runtime import BotRuntime, RuntimeExit, RuntimeOptions
from tests.faults._toxiproxy import TOXIPROXY, Proxy, Toxiproxy
from tests.ports import free_ports
from tests.tasks import end_tasks

REPO = Path(__file__).resolve().parents[2]
STACKS = REPO / ".coyote" / "test-stacks"
ARTIFACTS = REPO / ".coyote" / "test-artifacts" / "faults"
SERVICES = ("postgres", "redis", "kafka")
SYMBOL = "EURUSD"
LOCAL_REFUSALS = ("control.blocked", "produce.failed")
"""Reject codes of reports the bot runtime makes itself for intents that never left it."""


async def eventually(
    check: Callable[[], bool | Awaitable[bool]], *, within: float, what: str
) -> None:
    """Waits until ``check`` holds; fails naming ``what`` after ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        outcome = check()
        if not isinstance(outcome, bool):
            outcome = await outcome
        if outcome:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within:.0f} s")
        await asyncio.sleep(0.1)


# -- PRIVATE STACK ---------------------------------------------------------------------------


class PrivateStack:
    """Kafka, Redis and PostgreSQL of the fault tests' own, which they may kill and restart.

    The stack's home holds an ``owner`` file with this process's pid: :func:`sweep_orphans`
    stops stacks whose test process died without cleaning up (killed by a CI timeout).

    Kafka has a second listener for clients behind a proxy (:meth:`proxy_executor`): it tells
    them to connect to the proxy's port, so that all their connections, not only the first,
    go through the proxy.
    """

    def __init__(self, name: str) -> None:
        kafka, controller, redis_port, postgres, kafka_extra, kafka_proxy = free_ports(6)
        self.home = STACKS / name
        self.kafka_proxy_port = kafka_proxy
        self.stack = Stack(
            StackSettings(
                home=self.home,
                kafka_port=kafka,
                kafka_controller_port=controller,
                kafka_extra_port=kafka_extra,
                kafka_extra_advertised=f"127.0.0.1:{kafka_proxy}",
                redis_port=redis_port,
                postgres_port=postgres,
                # Ours, whatever the environment names as external services.
                kafka_bootstrap=None,
                redis_url=None,
                database_url=None,
            )
        )
        self.endpoints: Endpoints = self.stack.settings.endpoints()

    def up(self) -> None:
        """Starts every service that is not running (idempotent) and waits until healthy."""
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "owner").write_text(f"{os.getpid()}\n")
        self.stack.up(SERVICES)

    def kill(self, service: str) -> None:
        """``kill -9`` of the service's whole process group: no shutdown, no flush."""
        pid_file = PidFile(self.stack.services[service].pid_path)
        pid = pid_file.read()
        assert pid is not None, f"{service} of the private stack is not running"
        stop_group(pid, sig=signal.SIGKILL, timeout=15)
        pid_file.remove()

    def stop(self, service: str) -> None:
        """Stops the service with its own shutdown signal (PostgreSQL: SIGINT, fast mode)."""
        self.stack.down([service])

    def start(self, service: str) -> None:
        """Starts the service again and waits until it answers its protocol."""
        self.stack.up([service])

    def create_database(self, name: str) -> str:
        """A new database on the stack's PostgreSQL; returns its SQLAlchemy URL."""
        port = self.stack.settings.postgres_port
        with psycopg.connect(
            f"postgresql://coyote@127.0.0.1:{port}/postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://coyote@127.0.0.1:{port}/{name}"

    def proxy_executor(self, toxiproxy: Toxiproxy) -> ProxiedPaths:
        """Creates proxies on ``toxiproxy`` in front of Kafka (its second listener, whose
        advertised address is the proxy's) and Redis, for an executor behind them."""
        settings = self.stack.settings
        (redis_listen,) = free_ports(1)
        kafka_proxy = toxiproxy.proxy(
            "kafka",
            listen=self.kafka_proxy_port,
            upstream=f"127.0.0.1:{settings.kafka_extra_port}",
        )
        redis_proxy = toxiproxy.proxy(
            "redis", listen=redis_listen, upstream=f"127.0.0.1:{settings.redis_port}"
        )
        endpoints = dataclasses.replace(
            self.endpoints,
            kafka_bootstrap=kafka_proxy.listen,
            redis_url=f"redis://{redis_proxy.listen}/0",
        )
        return ProxiedPaths(toxiproxy, kafka_proxy, redis_proxy, endpoints)

    def close(self) -> None:
        """Stops every service and removes the stack's files (data directories included)."""
        postgres = self.stack.services["postgres"]
        server_dir = getattr(postgres, "server_dir", postgres.dir)
        try:
            self.stack.down(SERVICES)
        finally:
            shutil.rmtree(self.home, ignore_errors=True)
            if server_dir != postgres.dir:
                shutil.rmtree(server_dir, ignore_errors=True)


def sweep_orphans() -> None:
    """Stops and removes fault stacks whose test process is gone (it was killed before its
    clean-up ran); stacks of live test runs, this machine's other engineers', are left alone."""
    for home in STACKS.glob("faults-*"):
        try:
            owner = int((home / "owner").read_text())
        except (FileNotFoundError, ValueError):
            continue
        if Path(f"/proc/{owner}").exists():
            continue
        for service in (*SERVICES, TOXIPROXY):
            pid = PidFile(home / service / f"{service}.pid").read()
            if pid is not None:
                stop_group(pid, sig=signal.SIGKILL, timeout=15)
        shutil.rmtree(home, ignore_errors=True)


@dataclasses.dataclass(frozen=True)
class ProxiedPaths:
    """The executor's network paths through Toxiproxy (:meth:`PrivateStack.proxy_executor`):
    to Kafka, and to Redis — the paper broker's venue, and the kill switches too, since the
    executor reads both on the same connection."""

    toxiproxy: Toxiproxy
    kafka: Proxy
    redis: Proxy
    endpoints: Endpoints
    """The stack's endpoints, with Kafka and Redis through the proxies."""


# -- EXECUTOR --------------------------------------------------------------------------------


class ExecutorProcess:
    """The executor in a process of its own, as ``tests.faults._executor_process`` runs it.

    Args:
        config: The JSON configuration of ``_executor_process``.
        log: Where its output goes (appended across restarts).
    """

    def __init__(self, config: Mapping[str, Any], log: Path) -> None:
        self.config = dict(config)
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, failpoint: str | None = None) -> None:
        """Starts a new executor process, with ``failpoint`` (``name:n``) armed if given."""
        assert not self.alive, "the executor is already running"
        env = dict(os.environ)
        env.pop("COYOTE_EXECUTOR_FAILPOINT", None)
        if failpoint is not None:
            env["COYOTE_EXECUTOR_FAILPOINT"] = failpoint
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            out.write(f"--- start {self.starts + 1}, failpoint {failpoint}\n".encode())
            out.flush()
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.faults._executor_process", json.dumps(self.config)],
                cwd=REPO,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )
        self.starts += 1

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def kill(self) -> None:
        """``kill -9``."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def pause(self) -> None:
        """``SIGSTOP``: frozen mid-flight, as by a long GC pause or a VM migration."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """``SIGCONT``."""
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    async def wait_exit(self, within: float) -> int:
        """Waits for the process to end by itself (a failpoint); returns its exit code."""
        assert self.process is not None
        return await asyncio.to_thread(self.process.wait, within)

    def stop(self) -> None:
        """Stops it gracefully (SIGTERM), killing it if it lingers."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


# -- BOTS AND THEIR FLOW ---------------------------------------------------------------------


class FlowBot(Bot):
    """Places ``orders_per_bar`` orders on every bar, alternating buys and sells, and keeps the
    id and time of each intent it placed and of each the runtime refused to send.

    Market orders, or with ``limit_offset_bps`` limit orders that far from the bar's close
    (buys below, sells above): they rest at the venue until the walk of prices reaches them.
    """

    symbols = [SYMBOL]
    timeframe = "1m"
    orders_per_bar: int = Param(2, ge=1)
    limit_offset_bps: int = Param(0, ge=0)

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.placed: dict[uuid.UUID, int] = {}
        self.refused: dict[uuid.UUID, str] = {}

    def on_bar(self, bar: Bar) -> None:
        for _ in range(self.orders_per_bar):
            n = len(self.placed)
            buy = n % 2 == 0
            limit = None
            if self.limit_offset_bps:
                offset = bar.close * self.limit_offset_bps / 10_000
                limit = (bar.close - offset if buy else bar.close + offset).quantize(bar.close)
            order = (self.buy if buy else self.sell)(bar.symbol, 1 + n % 3, limit=limit)
            self.placed[order.intent_id] = order.intent.ts_ms

    def on_order_update(self, report: ExecutionReport) -> None:
        if report.reject_code in LOCAL_REFUSALS:
            self.refused[report.order_id] = report.reject_code or ""


@dataclasses.dataclass
class Fault:
    """One fault injected: what, when it began and when it was over (wall clock, seconds)."""

    what: str
    started: float
    ended: float | None = None

    def end(self) -> None:
        self.ended = time.time()


@dataclasses.dataclass
class Watcher:
    """Follows the intent and report topics from given offsets, noting when each record
    arrived: the clock behind the recovery times."""

    endpoints: Endpoints
    accounts: frozenset[str]
    start: dict[TopicPartition, int]
    intents: dict[uuid.UUID, float] = dataclasses.field(default_factory=dict)
    """NewOrder intent id → its ``ts_ms`` in seconds."""
    terminal: dict[uuid.UUID, float] = dataclasses.field(default_factory=dict)
    """Order id → when its (first) terminal report arrived."""
    filled: set[uuid.UUID] = dataclasses.field(default_factory=set)
    """Orders whose terminal report is a fill."""
    _task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.endpoints.kafka_bootstrap,
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
        )
        await consumer.start()
        try:
            consumer.assign(list(self.start))
            for tp, offset in self.start.items():
                consumer.seek(tp, offset)
            while True:
                try:
                    batches = await consumer.getmany(timeout_ms=200)
                except KafkaError:
                    await asyncio.sleep(0.5)
                    continue
                now = time.time()
                for tp, records in batches.items():
                    for record in records:
                        if record.key is None or record.key.decode() not in self.accounts:
                            continue
                        if tp.topic == protocol.INTENTS_TOPIC.name:
                            intent = protocol.decode_intent(record.value)
                            if isinstance(intent, NewOrder):
                                self.intents[intent.intent_id] = intent.ts_ms / 1000
                        else:
                            report = protocol.decode(record.value, ExecutionReport)
                            if report.order_status.is_terminal:
                                self.terminal.setdefault(report.order_id, now)
                            if report.order_status is OrderStatus.FILLED:
                                self.filled.add(report.order_id)
        finally:
            await consumer.stop()

    def begin(self) -> None:
        self._task = asyncio.create_task(self.run(), name="faults-watcher")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def unanswered(self) -> int:
        """NewOrder intents seen in Kafka without a terminal report yet."""
        return len(self.intents.keys() - self.terminal.keys())


class Flow:
    """Bot runtimes on ``accounts`` accounts (``bots_per_account`` each) of one venue, fed a bar
    every ``bar_interval_s``: each bar makes each bot place ``orders_per_bar`` intents.

    Args:
        endpoints: The private stack's services.
        name: Unique among the stack's users: accounts, bots and venue are named after it.
    """

    def __init__(
        self,
        endpoints: Endpoints,
        name: str,
        *,
        accounts: int = 2,
        bots_per_account: int = 2,
        orders_per_bar: int = 2,
        bar_interval_s: float = 0.05,
        limit_offset_bps: int = 0,
        paper: Mapping[str, float | int | str] | None = None,
    ) -> None:
        self.endpoints = endpoints
        self.name = name
        self.venue = f"faults-{name}"
        self.accounts = [f"faults.{name}-a{i}" for i in range(accounts)]
        self.bot_accounts = {
            f"{name}-a{i}-b{j}": account
            for i, account in enumerate(self.accounts)
            for j in range(bots_per_account)
        }
        self.orders_per_bar = orders_per_bar
        self.bar_interval_s = bar_interval_s
        self.limit_offset_bps = limit_offset_bps
        self.paper = dict(paper or {})
        """The paper broker's settings of the flow's accounts (``lost_answer_rate`` ...)."""
        self.outside_orders: set[str] = set()
        """Client order ids placed at the venue by the scenario itself, not by the executor."""
        self.redis = redis.Redis.from_url(
            endpoints.redis_url, socket_timeout=2, socket_connect_timeout=1
        )
        self.bots: dict[str, FlowBot] = {}
        self.runtimes: dict[str, BotRuntime] = {}
        self.tasks: dict[str, asyncio.Task[RuntimeExit]] = {}
        self.faults: list[Fault] = []
        self.notes: dict[str, Any] = {}
        """What a scenario wants in its figures besides the accounting (a seed, a check)."""
        self.feed_errors = 0
        self.bars = 0
        self.started = time.time()
        self.start_offsets: dict[TopicPartition, int] = {}
        self.watcher: Watcher | None = None
        self._feed: asyncio.Task[None] | None = None
        self._price = Decimal("1.07500")
        self._bar_ms = (protocol.now_ms() // 60_000 - 7 * 24 * 60) * 60_000
        self._random = random.Random(name)

    def accounts_toml(self) -> str:
        """The executor's accounts file: paper accounts on the flow's venue, no limits but the
        instrument's tick size (the scenarios are about delivery, not risk)."""
        paper = "".join(f"{name} = {json.dumps(value)}\n" for name, value in self.paper.items())
        return "".join(
            f"""
[accounts."{account}"]
broker = "paper"
venue = "{self.venue}"
[accounts."{account}".paper]
{paper}[accounts."{account}".risk.instruments.{SYMBOL}]
tick_size = "0.00001"
"""
            for account in self.accounts
        )

    # -- start and stop ---------------------------------------------------------------------

    async def open(self) -> None:
        """Notes where the topics end now (the flow's records come after), seeds a price and
        starts the watcher. Call before the executor and the bots start."""
        producer = AIOKafkaProducer(bootstrap_servers=self.endpoints.kafka_bootstrap)
        consumer = AIOKafkaConsumer(bootstrap_servers=self.endpoints.kafka_bootstrap)
        await producer.start()
        await consumer.start()
        try:
            partitions = [
                TopicPartition(topic.name, p)
                for topic in (protocol.INTENTS_TOPIC, protocol.EXECUTION_REPORTS_TOPIC)
                for p in sorted(await producer.partitions_for(topic.name))
            ]
            self.start_offsets = dict(await consumer.end_offsets(partitions))
        finally:
            await consumer.stop()
            await producer.stop()
        self._publish_bar()
        self.watcher = Watcher(self.endpoints, frozenset(self.accounts), self.start_offsets)
        self.watcher.begin()

    async def start_group_at_end(self, group_id: str) -> None:
        """Commits the intent topic's current ends for ``group_id``, so a new executor group
        starts with this flow rather than with the records of the stack's earlier tests."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.endpoints.kafka_bootstrap,
            group_id=group_id,
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            intents = [tp for tp in self.start_offsets if tp.topic == protocol.INTENTS_TOPIC.name]
            consumer.assign(intents)
            await consumer.commit({tp: self.start_offsets[tp] for tp in intents})
        finally:
            await consumer.stop()

    async def start_bots(self) -> None:
        """Sets each bot's flag to ``running`` and starts its runtime; returns once all run."""
        for bot_id, account in self.bot_accounts.items():
            set_control_flag(self.redis, bot_id, BotState.RUNNING, set_by="faults")
            bot = FlowBot(
                orders_per_bar=self.orders_per_bar, limit_offset_bps=self.limit_offset_bps
            )
            runtime = BotRuntime(
                bot,
                RuntimeOptions(bot_id=bot_id, account_id=account, venue=self.venue),
                self.endpoints,
            )
            self.bots[bot_id], self.runtimes[bot_id] = bot, runtime
            self.tasks[bot_id] = asyncio.create_task(runtime.run(), name=f"bot-{bot_id}")
        await eventually(
            lambda: all(r.state is RuntimeState.RUNNING for r in self.runtimes.values()),
            within=60,
            what="bot runtimes running",
        )

    def start_feed(self) -> None:
        self.started = time.time()
        self.resume_feed()

    def resume_feed(self) -> None:
        """Feeds bars again after :meth:`stop_feed`."""
        self._feed = asyncio.create_task(self._run_feed(), name="faults-feed")

    async def stop_feed(self) -> None:
        if self._feed is not None:
            self._feed.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._feed
            self._feed = None

    async def _run_feed(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await asyncio.to_thread(self._publish_bar)
            except (redis.RedisError, OSError):
                self.feed_errors += 1  # Redis is down: no market data, the bots wait
            await asyncio.sleep(max(0.0, self.bar_interval_s - (time.monotonic() - started)))

    def _publish_bar(self) -> None:
        step = Decimal(self._random.randint(-3, 3)) / 100_000
        self._price = max(Decimal("1.00000"), self._price + step)
        self._write_bar(self._price, publish=True)

    def move_market(self, price: Decimal) -> None:
        """Prints a bar at ``price`` that the venue sees (its last price) but the bots are not
        told of: the market moves without making them trade."""
        self._write_bar(price, publish=False)

    def _write_bar(self, price: Decimal, *, publish: bool) -> None:
        bar = Bar(
            symbol=SYMBOL,
            venue=self.venue,
            timeframe=Timeframe.M1,
            ts_ms=self._bar_ms,
            open=price,
            high=price,
            low=price,
            close=price,
            volume=Decimal(100),
        )
        MarketDataWriter(self.redis, venue=self.venue, publish=publish).add_bars([bar])
        self._bar_ms += 60_000
        self.bars += 1

    async def close(self) -> None:
        """Stops the feed, the bots and the watcher; safe to call more than once."""
        await self.stop_feed()
        for runtime in self.runtimes.values():
            runtime.request_stop("the fault test is over")
        await end_tasks(self.tasks.values(), within=30, what="a bot runtime")
        self.tasks.clear()
        if self.watcher is not None:
            await self.watcher.close()
        self.redis.close()

    # -- faults and recovery ----------------------------------------------------------------

    def fault(self, what: str) -> Fault:
        """Notes a fault beginning now; call :meth:`Fault.end` when it is over."""
        fault = Fault(what, time.time())
        self.faults.append(fault)
        return fault

    def placed(self) -> dict[uuid.UUID, int]:
        return {i: ts for bot in self.bots.values() for i, ts in bot.placed.items()}

    def refused(self) -> dict[uuid.UUID, str]:
        return {i: code for bot in self.bots.values() for i, code in bot.refused.items()}

    async def wait_filled(self, *, since: float, within: float) -> None:
        """Waits until some intent placed after ``since`` has been filled: trading resumed."""
        watcher = self.watcher
        assert watcher is not None

        def resumed() -> bool:
            return any(watcher.intents.get(i, 0) > since for i in watcher.filled)

        await eventually(resumed, within=within, what="orders filled again")

    async def drain(self, *, within: float) -> None:
        """Stops the feed and waits until every intent the bots sent is in Kafka with a
        terminal report (or ``within`` seconds pass: the accounting then names what is
        missing)."""
        await self.stop_feed()
        watcher = self.watcher
        assert watcher is not None

        def done() -> bool:
            sent = self.placed().keys() - self.refused().keys()
            return sent <= watcher.intents.keys() and watcher.unanswered() == 0

        with contextlib.suppress(AssertionError):
            await eventually(done, within=within, what="every intent answered")

    def recovery(self) -> list[dict[str, Any]]:
        """Per fault: how long it lasted, and after it ended how long until the first terminal
        report arrived (the executor answering again), until the first intent placed after it
        was filled (the flow resumed: new orders trade again) and until every intent placed
        before it had its terminal report (the backlog worked off). A later fault may fall
        inside the last two: the figures then include it."""
        watcher = self.watcher
        assert watcher is not None
        rows = []
        for fault in self.faults:
            ended = fault.ended or fault.started
            answering = [at for at in watcher.terminal.values() if at > ended]
            after = [
                watcher.terminal[order]
                for order in watcher.filled
                if watcher.intents.get(order, 0) > ended
            ]
            before = [watcher.terminal.get(i) for i, ts in watcher.intents.items() if ts <= ended]
            drained = (
                max(at for at in before if at is not None) - ended
                if before and None not in before
                else None
            )
            rows.append(
                {
                    "fault": fault.what,
                    "at_s": round(fault.started - self.started, 2),
                    "lasted_s": round(ended - fault.started, 2),
                    "answering_again_s": round(min(answering) - ended, 2) if answering else None,
                    "flow_resumed_s": round(min(after) - ended, 2) if after else None,
                    "backlog_answered_s": round(max(drained, 0.0), 2)
                    if drained is not None
                    else None,
                }
            )
        return rows


# -- ACCOUNTING ------------------------------------------------------------------------------


@dataclasses.dataclass
class Figures:
    """What one scenario's run did to every intent."""

    scenario: str
    intents_placed: int
    """NewOrder intents the bots placed."""
    refused_by_runtime: dict[str, int]
    """Placed but not sent by the runtime (flag blocked, Kafka refused), by reject code."""
    intents_sent: int
    """NewOrder intents of the scenario's accounts in Kafka's intent topic."""
    lost: int
    """Sent, without a terminal execution report."""
    duplicated: int
    """Sent, with more than one terminal execution report."""
    duplicate_report_ids: int
    """Report ids published more than once."""
    unaccounted: int
    """Placed, neither refused by the runtime nor in Kafka: vanished in the producer."""
    refused_but_sent: int
    """Refused by the runtime (the bot was told so) and yet in Kafka."""
    broker_orders: int
    """Client order ids the paper broker received."""
    broker_duplicates: int
    """Client order ids submitted to the paper broker more than once."""
    sent_unrecorded: int
    """Client order ids at the broker with no order in the executor's database."""
    accepted_not_at_broker: int
    """Orders accepted and recorded that never reached the broker."""
    position_mismatches: list[str]
    """:meth:`Store.verify_positions` per account: positions that are not the sum of fills."""
    broker_position_mismatches: list[str]
    """Account positions in the database that differ from the paper broker's."""
    outcomes: dict[str, int]
    """Terminal reports by final status and reject code (``rejected:intent.expired``)."""
    faults: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    notes: dict[str, Any] = dataclasses.field(default_factory=dict)

    def problems(self) -> list[str]:
        """Every broken guarantee, named; empty when the run kept them all."""
        found = [
            f"{name.replace('_', ' ')}: {value}"
            for name, value in (
                ("lost", self.lost),
                ("duplicated", self.duplicated),
                ("duplicate_report_ids", self.duplicate_report_ids),
                ("unaccounted", self.unaccounted),
                ("refused_but_sent", self.refused_but_sent),
                ("broker_duplicates", self.broker_duplicates),
                ("sent_unrecorded", self.sent_unrecorded),
                ("accepted_not_at_broker", self.accepted_not_at_broker),
            )
            if value
        ]
        found += self.position_mismatches + self.broker_position_mismatches
        if not self.intents_sent:
            found.append("no intent was sent")
        return found

    def summary(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


async def read_topic(
    bootstrap: str, start: Mapping[TopicPartition, int], topic: str
) -> list[tuple[bytes | None, bytes]]:
    """Every committed record of ``topic`` from the ``start`` offsets to its end now."""
    partitions = [tp for tp in start if tp.topic == topic]
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    await consumer.start()
    records: list[tuple[bytes | None, bytes]] = []
    try:
        consumer.assign(partitions)
        for tp in partitions:
            consumer.seek(tp, start[tp])
        end = await consumer.end_offsets(partitions)
        while [tp for tp in partitions if await consumer.position(tp) < end[tp]]:
            batches = await consumer.getmany(timeout_ms=1000, max_records=5000)
            for batch in batches.values():
                records.extend((r.key, r.value) for r in batch)
    finally:
        await consumer.stop()
    return records


def _paper(client: redis.Redis, account: str, part: str) -> dict[str, bytes]:
    raw: Any = client.hgetall(f"coyote:paper:{account}:{part}")
    return {k.decode(): v for k, v in raw.items()}


async def account(flow: Flow, database_url: str, scenario: str) -> Figures:
    """Accounts for every intent of ``flow`` once the fault is over and the flow drained.

    Reads the intent and report topics (``read_committed``) from where they ended when the
    flow began, the executor's database and the paper broker's book and submission counts.
    """
    ours = set(flow.accounts)
    intent_records = await read_topic(
        flow.endpoints.kafka_bootstrap, flow.start_offsets, protocol.INTENTS_TOPIC.name
    )
    report_records = await read_topic(
        flow.endpoints.kafka_bootstrap, flow.start_offsets, protocol.EXECUTION_REPORTS_TOPIC.name
    )
    sent: dict[uuid.UUID, NewOrder] = {}
    for key, value in intent_records:
        if key is not None and key.decode() in ours:
            intent = protocol.decode_intent(value)
            if isinstance(intent, NewOrder):
                sent[intent.intent_id] = intent
    reports = [
        r
        for key, value in report_records
        if key is not None and key.decode() in ours
        for r in [protocol.decode(value, ExecutionReport)]
    ]
    terminal = collections.Counter(r.order_id for r in reports if r.order_status.is_terminal)
    final: dict[uuid.UUID, ExecutionReport] = {
        r.order_id: r for r in reports if r.order_status.is_terminal
    }
    report_ids = collections.Counter(r.report_id for r in reports)
    outcomes = collections.Counter(
        r.order_status.value + (f":{r.reject_code}" if r.reject_code else "")
        for i, r in final.items()
        if i in sent
    )
    placed, refused = flow.placed(), flow.refused()

    store = Store(database_url)
    try:
        orders_table = sa.table(
            "orders", sa.column("order_id"), sa.column("account_id"), sa.column("status")
        )
        intents_table = sa.table(
            "intents",
            sa.column("intent_id"),
            sa.column("account_id"),
            sa.column("accepted"),
            sa.column("action"),
        )
        with store.engine.connect() as conn:
            recorded_orders = {
                row[0]
                for row in conn.execute(
                    sa.select(orders_table.c.order_id).where(orders_table.c.account_id.in_(ours))
                )
            }
            accepted = {
                row[0]
                for row in conn.execute(
                    sa.select(intents_table.c.intent_id).where(
                        intents_table.c.account_id.in_(ours),
                        intents_table.c.accepted.is_(True),
                        intents_table.c.action == "new",  # cancels never reach the broker
                    )
                )
            }
        position_mismatches = [p for a in flow.accounts for p in store.verify_positions(a)]
        book: dict[tuple[str, str], Decimal] = collections.defaultdict(Decimal)
        for a in flow.accounts:
            for position in store.positions(a):
                book[(a, position.symbol)] += position.quantity
    finally:
        store.close()

    submissions: dict[str, int] = {}
    broker: dict[tuple[str, str], Decimal] = collections.defaultdict(Decimal)
    client = redis.Redis.from_url(flow.endpoints.redis_url)
    try:
        for a in flow.accounts:
            submissions |= {k: int(v) for k, v in _paper(client, a, "submissions").items()}
            for blob in _paper(client, a, "orders").values():
                order = msgspec.json.decode(blob)
                filled = sum((Decimal(str(f["quantity"])) for f in order["fills"]), Decimal(0))
                broker[(a, order["symbol"])] += filled if order["side"] == "buy" else -filled
    finally:
        client.close()
    broker_mismatches = [
        f"{a}/{symbol}: the book holds {book.get((a, symbol), 0)}, the broker "
        f"{broker.get((a, symbol), 0)}"
        for a, symbol in sorted(book.keys() | broker.keys())
        if book.get((a, symbol), 0) != broker.get((a, symbol), 0)
    ]
    refused_codes = collections.Counter(refused.values())
    return Figures(
        scenario=scenario,
        intents_placed=len(placed),
        refused_by_runtime=dict(sorted(refused_codes.items())),
        intents_sent=len(sent),
        lost=sum(1 for i in sent if terminal[i] == 0),
        duplicated=sum(1 for i in sent if terminal[i] > 1),
        duplicate_report_ids=sum(1 for n in report_ids.values() if n > 1),
        unaccounted=len(placed.keys() - refused.keys() - sent.keys()),
        refused_but_sent=len(refused.keys() & sent.keys()),
        broker_orders=len(submissions),
        broker_duplicates=sum(1 for n in submissions.values() if n > 1),
        sent_unrecorded=len(submissions.keys() - recorded_orders - flow.outside_orders),
        accepted_not_at_broker=len(accepted - submissions.keys()),
        position_mismatches=position_mismatches,
        broker_position_mismatches=broker_mismatches,
        outcomes=dict(sorted(outcomes.items())),
        faults=flow.recovery(),
        notes={
            "bars": flow.bars,
            "bots": len(flow.bots),
            "accounts": len(flow.accounts),
            "flow_s": round(time.time() - flow.started, 1),
            "reports": len(reports),
            "feed_errors": flow.feed_errors,
            **flow.notes,
        },
    )


# -- FIGURES ---------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """The machine the figures were measured on."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    memory = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        kb = int(Path("/proc/meminfo").read_text().splitlines()[0].split()[1])
        memory = f"{kb / 1024 / 1024:.0f} GiB"
    return {
        "cpus": os.cpu_count(),
        "cpu": model,
        "memory": memory,
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "ci": bool(os.environ.get("CI")),
    }


def _median(faults: list[dict[str, Any]], key: str) -> float | None:
    values = [f[key] for f in faults if f.get(key) is not None]
    return round(statistics.median(values), 2) if values else None


def write_figures(figures: Figures) -> Path:
    """Writes the scenario's figures to ``.coyote/test-artifacts/faults/<scenario>.json`` and
    rebuilds ``summary.json`` from every scenario's latest file."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    document = {
        "measured": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "problems": figures.problems(),
        **figures.summary(),
    }
    path = ARTIFACTS / f"{figures.scenario}.json"
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    rows = []
    for each in sorted(ARTIFACTS.glob("*.json")):
        if each.name == "summary.json":
            continue
        data = json.loads(each.read_text())
        faults = data["faults"]
        rows.append(
            {
                "scenario": data["scenario"],
                "measured": data["measured"],
                "problems": data.get("problems", []),
                "intents_sent": data["intents_sent"],
                "lost": data["lost"],
                "duplicated": data["duplicated"],
                "faults": len(faults),
                "answering_again_s_median": _median(faults, "answering_again_s"),
                "flow_resumed_s_median": _median(faults, "flow_resumed_s"),
            }
        )
    (ARTIFACTS / "summary.json").write_text(
        json.dumps({"machine": machine(), "scenarios": rows}, indent=2) + "\n"
    )
    return path


# -- ONE SCENARIO ----------------------------------------------------------------------------


class Scenario:
    """One scenario on the private stack: its flow of bots, its executor and its database.

    Args:
        stack: The private stack (shared by the module's scenarios; each has its own accounts,
            bots, venue, consumer group and database).
        name: The scenario's name, for its figures file; made unique for the stack's names.
        work: A directory of the test's own (the accounts file, a SQLite database).
        database: ``postgresql`` (a database of its own on the private stack, as in
            production) or ``sqlite`` (the executor's embedded default).
        executor_endpoints: Where the executor reaches Kafka and Redis (default: the stack's
            own; :attr:`ProxiedPaths.endpoints` puts it behind Toxiproxy). The bots and the
            accounting always use the stack's own.
        flow_options: Passed to :class:`Flow`.
    """

    def __init__(
        self,
        stack: PrivateStack,
        name: str,
        work: Path,
        *,
        database: str = "postgresql",
        executor_endpoints: Endpoints | None = None,
        **flow_options: Any,
    ) -> None:
        self.stack = stack
        self.name = name
        unique = f"{name.replace('_', '-')}-{uuid.uuid4().hex[:6]}"
        self.flow = Flow(stack.endpoints, unique, **flow_options)
        if database == "postgresql":
            self.database_url = stack.create_database(unique.replace("-", "_"))
        elif database == "sqlite":
            self.database_url = f"sqlite:///{work / 'executor.db'}"
        else:
            raise ValueError(f"database {database!r}: expected postgresql or sqlite")
        self.flow.notes["database"] = database
        accounts_file = work / "accounts.toml"
        accounts_file.write_text(self.flow.accounts_toml())
        self.group_id = f"faults-{unique}"
        executor_endpoints = executor_endpoints or stack.endpoints
        self.executor = ExecutorProcess(
            {
                "accounts_file": str(accounts_file),
                "database_url": self.database_url,
                "group_id": self.group_id,
                "instance_id": "0",
                "kafka_bootstrap": executor_endpoints.kafka_bootstrap,
                "redis_url": executor_endpoints.redis_url,
            },
            ARTIFACTS / f"{name}-executor.log",
        )
        self.executor.log.unlink(missing_ok=True)

    async def start(self, failpoint: str | None = None) -> None:
        """Opens the flow, starts the executor (on the flow's records only) and the bots, and
        begins feeding bars."""
        await self.flow.open()
        await self.flow.start_group_at_end(self.group_id)
        self.executor.start(failpoint)
        await self.flow.start_bots()
        self.flow.start_feed()

    async def finish(self, *, drain_s: float = 180) -> Figures:
        """Stops the feed, waits for every intent's answer, accounts and writes the figures."""
        await self.flow.drain(within=drain_s)
        figures = await account(self.flow, self.database_url, self.name)
        figures.notes["executor_starts"] = self.executor.starts
        figures.notes["executor_running"] = self.executor.alive
        figures.notes["broker_circuits_opened"] = self.executor.log_text().count(
            "ALERT broker.circuit_open"
        )
        write_figures(figures)
        return figures

    async def close(self) -> None:
        try:
            await self.flow.close()
        finally:
            self.executor.stop()


# -- THE TABLE OF docs/reliability.md --------------------------------------------------------


def figures_table(directory: Path = ARTIFACTS) -> str:
    """The figures of the latest run of each scenario as the Markdown table of
    ``docs/reliability.md`` (``python -m tests.faults._harness`` prints it)."""
    lines = [
        "| scenario | faults | intents sent | lost | duplicated | broker saw twice "
        "| fault lasted (s) | answering again after (s) | new intents filled after (s) "
        "| backlog answered after (s) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- | --- | --- | --- |",
    ]

    def spread(faults: list[dict[str, Any]], key: str) -> str:
        values = [f[key] for f in faults if f[key] is not None]
        if not values:
            return "-"
        low, high = f"{min(values):.1f}", f"{max(values):.1f}"
        if low == high:
            return low
        return f"{low} to {high} (median {statistics.median(values):.1f})"

    for path in sorted(directory.glob("*.json")):
        if path.name == "summary.json":
            continue
        data = json.loads(path.read_text())
        faults = data["faults"]
        lines.append(
            f"| `{data['scenario']}` | {len(faults)} | {data['intents_sent']:,} | {data['lost']} "
            f"| {data['duplicated']} | {data['broker_duplicates']} "
            f"| {spread(faults, 'lasted_s')} | {spread(faults, 'answering_again_s')} "
            f"| {spread(faults, 'flow_resumed_s')} | {spread(faults, 'backlog_answered_s')} |"
        )
    return "\n".join(lines)


def reliability_rows(directory: Path = ARTIFACTS) -> list[dict[str, Any]]:
    """The rows of ``docs/reliability.json``: per scenario of the latest run, ``{scenario,
    intents, lost, duplicated, recovery_s}`` — ``recovery_s`` the longest, over the scenario's
    faults, from the end of a fault until every intent placed before that end was answered."""
    rows = []
    for path in sorted(directory.glob("*.json")):
        if path.name == "summary.json":
            continue
        data = json.loads(path.read_text())
        recoveries = [
            f["backlog_answered_s"]
            if f["backlog_answered_s"] is not None
            else f["answering_again_s"]
            for f in data["faults"]
        ]
        known = [r for r in recoveries if r is not None]
        rows.append(
            {
                "scenario": data["scenario"],
                "intents": data["intents_sent"],
                "lost": data["lost"],
                "duplicated": data["duplicated"],
                "recovery_s": max(known) if known else None,
            }
        )
    return rows


if __name__ == "__main__":
    # python -m tests.faults._harness [--json]: the table of docs/reliability.md, or the rows
    # of docs/reliability.json.
    if sys.argv[1:] == ["--json"]:
        print(json.dumps(reliability_rows(), indent=2))
    else:
        print(figures_table())
