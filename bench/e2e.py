"""End to end through Kafka: intents in, execution reports out, against a bare pass-through.

The path measured: an intent produced to Kafka as a bot runtime produces it (aiokafka,
``acks=all``, idempotent; pre-encoded market orders keyed by account) → the executor, a process
of its own built as ``coyote-executor run`` builds it (decode, dedupe against PostgreSQL, the
risk engine with every per-order limit set and none binding, the paper broker's book in Redis,
both PostgreSQL transactions, reports and offsets in one Kafka transaction) → the reports
consumed ``read_committed`` back in the producing process, which notes when each intent's
terminal report (here: its fill) arrives.

The baseline, the ceiling of what Kafka and these clients allow here, runs in the same run on
the same broker with the same producer and report consumer: a process with a bare aiokafka
consume→produce loop in the executor's shape (``read_committed`` consumer, steps of up to 500
records, a transactional producer committing the offsets in the transaction) that forwards each
intent record to the reports topic. A variant without transactions (idempotent producer, the
consumer commits the offsets) shows what the transactions cost. The executor runs once more as
two instances in one consumer group (6 of the 12 partitions each, both on this machine): the
scale-out the executor is built for, on the same two cores.

Each system is measured in 3 independent runs (a fresh process, topics, accounts and database
schema each); the best run counts (for latency, the run with the lowest p99). In each run:

- warm-up: 3,000 intents at 1,000/s, answers awaited and discarded;
- latency: 10 s at a fixed 100 intents/s, then 10 s at 1,000/s; for each intent, report
  arrival - send; p50 and p99 at each rate;
- throughput: 50,000 intents over 48 accounts (every partition of the protocol's 12) sent as
  fast as the producer goes; intents/s = 50,000 / (last terminal report - first send). The CPU
  time every process on the machine spent meanwhile is read from ``/proc`` and divided by the
  intents (:class:`CpuMeter`): what an intent costs the machine, and so the most its cores
  could carry.

Every intent must come back filled: a rejection (a risk refusal, a missing price) would be
cheaper than a fill and flatter the figures, so the run fails instead. For the same reason the
executor runs without a maximum intent age (60 s in production): the flood keeps intents
waiting in Kafka longer than that, and expired ones would be such cheap answers.

Targets (issue 5): >= 20,000 intents/s sustained; p99 <= 10 ms at 1,000 intents/s.

Run: .venv/bin/python bench/e2e.py (the stack must be up: make up; about 10 minutes).
``--only executor --profile DIR`` writes a cProfile of the executor's event-loop thread (not of
the worker threads that run the database calls); it slows the executor, so nothing is recorded.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import cProfile
import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import redis
import redis.asyncio as aioredis
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

sys.path.insert(0, str(Path(__file__).parent))
from _common import measurement, percentile, record

from coyote_executor.accounts import accounts_from_mapping
from coyote_executor.brokers import build_brokers
from coyote_executor.service import Executor, ExecutorOptions
from coyote_executor.store import Store
from coyote_sdk import protocol
from coyote_sdk.config import Endpoints, StackSettings
from coyote_sdk.dev import ensure_topics
from coyote_sdk.logs import configure_logging
from coyote_sdk.marketdata import MarketDataWriter
from coyote_sdk.protocol import NewOrder, OrderStatus, Side, Trade

RUNS = 3
ACCOUNTS = 48
BOTS_PER_ACCOUNT = 2
SYMBOL = "EURUSD"
PRICE = Decimal("1.07500")
QUANTITY = Decimal(1000)
WARM_UP = 3000
"""Intents sent at 1,000/s before anything is timed."""
RATES = (100, 1000)
"""Fixed rates (intents/s) whose latency is measured, each for 10 s: 1,000/s is the target's;
100/s shows the latency of a step when the executor is far from saturated."""
PACED_S = 10
FLOOD = 50_000
BATCH = ExecutorOptions().batch_size
"""Records per step, the executor's default; the pass-through takes the same."""
SYSTEMS = ("executor", "executor-x2", "passthrough", "passthrough-no-tx")
INSTANCES = {"executor-x2": 2}
"""Systems run as several processes in one consumer group (the default: one)."""

RISK = {
    "instruments": {SYMBOL: {"tick_size": "0.00001", "lot_size": "1"}},
    # Every per-order and account limit set, none binding (as in bench/risk.py). No duplicate
    # window: the same market order of a bot again would be refused as a duplicate.
    "account": {
        "max_order_quantity": "1000000",
        "max_order_notional": "5000000",
        "price_collar_bps": "500",
        "max_price_age_ms": 3_600_000,
        "max_position": "100000000",
        "max_gross_exposure": "1000000000",
        "max_net_exposure": "1000000000",
        "max_daily_loss": "10000000",
        "orders_per_second": 1_000_000,
        "order_burst": 1_000_000,
    },
}


# -- ONE RUN'S OWN NAMES ------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Names:
    """Topics, accounts, venue, consumer group and schema of one run: its own, so that nothing
    it does reaches another user of the shared stack (nor another run)."""

    unique: str

    @classmethod
    def fresh(cls) -> Names:
        return cls(f"{os.getpid()}-{uuid.uuid4().hex[:6]}")

    @property
    def topics(self) -> dict[str, protocol.TopicSpec]:
        """The run's topics, with the protocol's partitions and settings."""
        return {
            "intents_topic": msgspec.structs.replace(
                protocol.INTENTS_TOPIC, name=f"bench.e2e.{self.unique}.intents"
            ),
            "reports_topic": msgspec.structs.replace(
                protocol.EXECUTION_REPORTS_TOPIC, name=f"bench.e2e.{self.unique}.reports"
            ),
            "dead_letter_topic": msgspec.structs.replace(
                protocol.INTENTS_DEAD_LETTER_TOPIC, name=f"bench.e2e.{self.unique}.dead-letter"
            ),
        }

    @property
    def accounts(self) -> list[str]:
        return [f"bench.e2e-{self.unique}-a{i:02d}" for i in range(ACCOUNTS)]

    @property
    def venue(self) -> str:
        return f"bench-e2e-{self.unique}"

    @property
    def group_id(self) -> str:
        return f"bench-e2e-{self.unique}"

    @property
    def schema(self) -> str:
        return f"bench_e2e_{self.unique.replace('-', '_')}"


# -- THE SYSTEMS UNDER TEST, EACH IN A PROCESS OF ITS OWN ---------------------------------------


async def _serve_executor(config: Mapping[str, Any], stop: asyncio.Event) -> None:
    """The executor as ``coyote-executor run`` builds it (paper brokers from the accounts,
    default options), on the run's topics and schema."""
    accounts = accounts_from_mapping({"accounts": config["accounts"]})
    client = aioredis.Redis.from_url(config["redis_url"])
    store = Store(
        config["database_url"], connect_args={"options": f"-csearch_path={config['schema']}"}
    )
    executor = Executor(
        accounts,
        brokers=build_brokers(accounts, redis=client, vault=None),
        store=store,
        redis=client,
        kafka_bootstrap=config["kafka_bootstrap"],
        options=ExecutorOptions(
            group_id=config["group_id"],
            instance_id=config["instance_id"],
            # The flood keeps intents waiting in Kafka for more than the 60 s default: its tail
            # would be refused as expired, cheap answers that flatter the figures.
            max_intent_age_ms=None,
            **config["topics"],
        ),
    )
    try:
        await executor.run(stop)
    finally:
        store.close()
        await client.aclose()


async def _serve_passthrough(
    config: Mapping[str, Any], stop: asyncio.Event, *, transactional: bool
) -> None:
    """Forwards every intent record to the reports topic, in the executor's loop shape."""
    topics, group_id = config["topics"], config["group_id"]
    consumer = AIOKafkaConsumer(
        topics["intents_topic"],
        bootstrap_servers=config["kafka_bootstrap"],
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        max_poll_records=BATCH,
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=config["kafka_bootstrap"],
        transactional_id=f"{group_id}-bench" if transactional else None,
        enable_idempotence=True,
        acks="all",
        retry_backoff_ms=20,  # the executor's producer's (aiokafka's 100 ms default adds to p99)
    )
    await producer.start()
    await consumer.start()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=50, max_records=BATCH)
            if not batch:
                continue
            offsets = {tp: records[-1].offset + 1 for tp, records in batch.items()}
            records = [r for part in batch.values() for r in part]
            if transactional:
                async with producer.transaction():
                    for r in records:
                        await producer.send(topics["reports_topic"], r.value, key=r.key)
                    await producer.send_offsets_to_transaction(offsets, group_id)
            else:
                sent = [
                    await producer.send(topics["reports_topic"], r.value, key=r.key)
                    for r in records
                ]
                await asyncio.gather(*sent)
                await consumer.commit(offsets)
    finally:
        await consumer.stop()
        await producer.stop()


async def _serve(config: Mapping[str, Any]) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    system = config["system"]
    if system.startswith("executor"):
        await _serve_executor(config, stop)
    else:
        await _serve_passthrough(config, stop, transactional=system == "passthrough")


def _serve_main(config: Mapping[str, Any]) -> None:
    configure_logging()
    profile = config.get("profile")
    if not profile:
        asyncio.run(_serve(config))
        return
    profiler = cProfile.Profile()
    try:
        profiler.runcall(asyncio.run, _serve(config))
    finally:
        profiler.dump_stats(profile)


class Server:
    """One system under test as child processes (``e2e.py --serve CONFIG``), ``instances`` of
    them in one consumer group (each its own instance id, so its own transactional id)."""

    def __init__(self, config: Mapping[str, Any], log: Path, instances: int = 1) -> None:
        self.logs = [log.with_suffix(f".{n}.log") for n in range(instances)]
        self.processes = []
        for n, path in enumerate(self.logs):
            with path.open("wb") as out:
                own = {**config, "instance_id": f"bench-{n}"}
                self.processes.append(
                    subprocess.Popen(
                        [sys.executable, __file__, "--serve", json.dumps(own)],
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                )

    def check(self) -> None:
        """Fails, with the tail of its log, if a process has ended."""
        for process, log in zip(self.processes, self.logs, strict=True):
            if process.poll() is not None:
                tail = log.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"a server ended ({process.returncode}):\n{tail}")

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


# -- THE DRIVER: PRODUCES INTENTS, FOLLOWS REPORTS ----------------------------------------------


class _Answer(msgspec.Struct):
    """What the driver reads of a record on the reports topic: an execution report or, from the
    pass-through, the intent itself (no status: its arrival is the answer)."""

    intent_id: uuid.UUID
    order_status: OrderStatus | None = None
    reject_code: str | None = None


_read_answer = msgspec.json.Decoder(_Answer).decode


class Driver:
    """Produces intents to the run's intent topic and notes when each one's answer arrives."""

    def __init__(self, endpoints: Endpoints, names: Names) -> None:
        self.names = names
        self.topics = names.topics
        self.producer = AIOKafkaProducer(
            bootstrap_servers=endpoints.kafka_bootstrap, enable_idempotence=True, acks="all"
        )
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=endpoints.kafka_bootstrap,
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
        )
        self.sent: dict[uuid.UUID, float] = {}
        """Intent id → when it was handed to the producer (``perf_counter``)."""
        self.answered: dict[uuid.UUID, float] = {}
        """Intent id → when its terminal report (or forwarded copy) was consumed."""
        self.outcomes: collections.Counter[str] = collections.Counter()
        self._follower: asyncio.Task[None] | None = None
        self._count = 0

    async def start(self) -> None:
        await self.producer.start()
        await self.consumer.start()
        reports = self.topics["reports_topic"]
        partitions = [TopicPartition(reports.name, p) for p in range(reports.partitions)]
        self.consumer.assign(partitions)
        await self.consumer.seek_to_beginning(*partitions)
        self._follower = asyncio.create_task(self._follow(), name="bench-reports")

    async def close(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower
        await self.consumer.stop()
        await self.producer.stop()

    async def _follow(self) -> None:
        while True:
            batches = await self.consumer.getmany(timeout_ms=100)
            arrived = time.perf_counter()
            for records in batches.values():
                for r in records:
                    answer = _read_answer(r.value)
                    status = answer.order_status
                    if status is not None and not status.is_terminal:
                        continue
                    if answer.intent_id not in self.answered:
                        self.answered[answer.intent_id] = arrived
                        outcome = "forwarded" if status is None else status.value
                        if answer.reject_code:
                            outcome += f":{answer.reject_code}"
                        self.outcomes[outcome] += 1

    def intents(self, count: int) -> list[tuple[uuid.UUID, bytes, bytes]]:
        """``count`` market orders, encoded, round-robin over the accounts and their bots;
        each bot alternates buys and sells, so positions stay small."""
        accounts = self.names.accounts
        now = protocol.now_ms()
        batch = []
        for _ in range(count):
            n = self._count
            self._count += 1
            account = accounts[n % len(accounts)]
            turn = n // len(accounts)
            intent = NewOrder(
                intent_id=protocol.new_intent_id(),
                ts_ms=now,
                account_id=account,
                bot_id=f"{account.removeprefix('bench.')}-b{turn % BOTS_PER_ACCOUNT}",
                symbol=SYMBOL,
                side=Side.BUY if turn // BOTS_PER_ACCOUNT % 2 == 0 else Side.SELL,
                quantity=QUANTITY,
            )
            batch.append((intent.intent_id, account.encode(), protocol.encode(intent)))
        return batch

    async def send_paced(
        self, intents: Sequence[tuple[uuid.UUID, bytes, bytes]], rate: float
    ) -> None:
        """Sends at a fixed ``rate``: intent ``i`` is due ``i / rate`` s after the first."""
        topic = self.topics["intents_topic"].name
        started = time.perf_counter()
        for i, (intent_id, key, value) in enumerate(intents):
            delay = started + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            self.sent[intent_id] = time.perf_counter()
            await self.producer.send(topic, value, key=key)

    async def send_all(self, intents: Sequence[tuple[uuid.UUID, bytes, bytes]]) -> None:
        """Sends as fast as the producer takes them."""
        topic = self.topics["intents_topic"].name
        send, sent = self.producer.send, self.sent
        for intent_id, key, value in intents:
            sent[intent_id] = time.perf_counter()
            await send(topic, value, key=key)

    async def wait_answered(
        self, intents: Sequence[tuple[uuid.UUID, bytes, bytes]], server: Server
    ) -> None:
        """Waits until every intent has its answer; fails if none comes for 60 s."""
        waiting = [i for i, _, _ in intents]
        progress_at, left = time.monotonic(), 0
        while True:
            waiting = [i for i in waiting if i not in self.answered]
            if not waiting:
                return
            server.check()
            if self._follower is not None and self._follower.done():
                self._follower.result()  # raises what stopped it
            if len(waiting) != left:
                progress_at, left = time.monotonic(), len(waiting)
            elif time.monotonic() - progress_at > 60:
                raise RuntimeError(
                    f"{len(waiting)} intents unanswered for 60 s; answers so far: "
                    f"{dict(self.outcomes)}"
                )
            await asyncio.sleep(0.05)

    def check_outcomes(self, expected: str) -> None:
        """Fails unless every answer so far is ``expected`` (``filled``, ``forwarded``)."""
        if set(self.outcomes) != {expected}:
            raise RuntimeError(f"every intent must end {expected}; they ended {self.outcomes}")


# -- ONE RUN ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Latency:
    """Report arrival - send of the intents sent at one fixed rate, in ms."""

    p50_ms: float
    p99_ms: float
    max_ms: float

    @classmethod
    def of(cls, latencies_ms: Sequence[float]) -> Latency:
        return cls(
            p50_ms=round(percentile(latencies_ms, 50), 2),
            p99_ms=round(percentile(latencies_ms, 99), 2),
            max_ms=round(max(latencies_ms), 2),
        )


@dataclasses.dataclass(frozen=True)
class RunFigures:
    intents_per_s: float
    """The flood's intents over the time from its first send to its last answer."""
    send_per_s: float
    """How fast the producer took the flood: the driver's own ceiling."""
    latency: dict[int, Latency]
    """By rate (intents/s)."""
    cpu_us: dict[str, float]
    """CPU time per intent of the flood, in µs, by process group (:class:`CpuMeter`)."""


class CpuMeter:
    """CPU time (user + system) spent by each group of processes between :meth:`start` and
    :meth:`stop`, read from ``/proc`` (Linux): the system under test, PostgreSQL, Kafka, Redis,
    the driver (this process) and the rest of the machine, plus ``machine``, every core's busy
    time from ``/proc/stat``. Divided by the intents handled, it shows what an intent costs the
    whole machine, and so the most this machine could handle with every core busy. A process
    that ends in between is not counted (a process of the stack or the system under test does
    not)."""

    _COMMANDS = {"postgres": "postgres", "java": "kafka", "redis-server": "redis"}

    def __init__(self, server_pids: Sequence[int]) -> None:
        self.server_pids = set(server_pids)
        self._hz = os.sysconf("SC_CLK_TCK")
        self._started: dict[int | str, tuple[str, int]] = {}

    def start(self) -> None:
        self._started = self._sample()

    def stop(self, intents: int) -> dict[str, float]:
        """µs of CPU per intent by group since :meth:`start`."""
        spent: collections.Counter[str] = collections.Counter()
        for key, (group, ticks) in self._sample().items():
            spent[group] += ticks - self._started.get(key, (group, 0))[1]
        return {
            group: round(ticks / self._hz * 1e6 / intents, 1)
            for group, ticks in sorted(spent.items())
        }

    def _sample(self) -> dict[int | str, tuple[str, int]]:
        """Each process's group and CPU ticks so far, by pid."""
        found: dict[int | str, tuple[str, int]] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:  # ended meanwhile
                continue
            # pid (comm) state ppid ... utime stime: comm may hold spaces and parentheses.
            command = stat[stat.index("(") + 1 : stat.rindex(")")]
            fields = stat[stat.rindex(")") + 2 :].split()
            pid = int(entry)
            if pid in self.server_pids:
                group = "system under test"
            elif pid == os.getpid():
                group = "driver"
            else:
                group = self._COMMANDS.get(command, "rest")
            found[pid] = (group, int(fields[11]) + int(fields[12]))
        with open("/proc/stat") as cpus:
            # cpu user nice system idle iowait irq softirq steal ...
            times = [int(t) for t in cpus.readline().split()[1:9]]
        found["machine"] = ("machine", sum(times) - times[3] - times[4])
        return found


class Setup:
    """The shared stack's resources of one run, made and removed again."""

    def __init__(self, endpoints: Endpoints, names: Names) -> None:
        self.endpoints = endpoints
        self.names = names
        self.redis = redis.Redis.from_url(endpoints.redis_url)
        self.database = sa.create_engine(endpoints.database_url)

    async def create(self) -> None:
        await ensure_topics(self.endpoints.kafka_bootstrap, list(self.names.topics.values()))
        with self.database.begin() as conn:
            conn.execute(sa.text(f"CREATE SCHEMA {self.names.schema}"))
        # The last price the risk engine and the paper broker see.
        MarketDataWriter(self.redis, venue=self.names.venue, publish=False).add_trades(
            [
                Trade(
                    symbol=SYMBOL,
                    venue=self.names.venue,
                    ts_ms=protocol.now_ms(),
                    price=PRICE,
                    size=Decimal(1_000_000),
                )
            ]
        )

    async def remove(self) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.endpoints.kafka_bootstrap)
        await admin.start()
        try:
            await admin.delete_topics([t.name for t in self.names.topics.values()])
        finally:
            await admin.close()
        with self.database.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA IF EXISTS {self.names.schema} CASCADE"))
        self.database.dispose()
        patterns = [f"coyote:md:{self.names.venue}:*"]
        patterns += [f"coyote:paper:{a}:*" for a in self.names.accounts]
        for pattern in patterns:
            keys = list(self.redis.scan_iter(match=pattern, count=1000))
            if keys:
                self.redis.delete(*keys)
        self.redis.close()


async def run_once(
    system: str, endpoints: Endpoints, work: Path, profile: Path | None
) -> RunFigures:
    """One independent run of ``system``: warm-up, latency at each of :data:`RATES`, then the
    flood."""
    names = Names.fresh()
    setup = Setup(endpoints, names)
    await setup.create()
    config = {
        "system": system,
        "kafka_bootstrap": endpoints.kafka_bootstrap,
        "redis_url": endpoints.redis_url,
        "database_url": endpoints.database_url,
        "schema": names.schema,
        "group_id": names.group_id,
        "topics": {field: spec.name for field, spec in names.topics.items()},
        "accounts": {
            a: {"broker": "paper", "venue": names.venue, "risk": RISK} for a in names.accounts
        },
        "profile": str(profile / f"{system}-{names.unique}.prof") if profile else None,
    }
    instances = INSTANCES.get(system, 1)
    server = Server(config, work / f"{system}-{names.unique}.log", instances)
    driver = Driver(endpoints, names)
    expected = "filled" if system.startswith("executor") else "forwarded"
    try:
        await driver.start()
        # Every instance holding partitions before anything is sent: a rebalance in the middle
        # of a timed phase would be timed too.
        await _wait_for_members(endpoints, names.group_id, instances, server)
        warm_up = driver.intents(WARM_UP)
        await driver.send_paced(warm_up, 1000)
        await driver.wait_answered(warm_up, server)

        latency = {}
        for rate in RATES:
            paced = driver.intents(rate * PACED_S)
            await driver.send_paced(paced, rate)
            await driver.wait_answered(paced, server)
            latency[rate] = Latency.of(
                [(driver.answered[i] - driver.sent[i]) * 1000 for i, _, _ in paced]
            )

        flood = driver.intents(FLOOD)
        meter = CpuMeter([p.pid for p in server.processes])
        meter.start()
        started = time.perf_counter()
        await driver.send_all(flood)
        sent_in = time.perf_counter() - started
        await driver.wait_answered(flood, server)
        cpu_us = meter.stop(FLOOD)
        took = max(driver.answered[i] for i, _, _ in flood) - driver.sent[flood[0][0]]
        driver.check_outcomes(expected)
    finally:
        await driver.close()
        server.stop()
        await setup.remove()
    figures = RunFigures(
        intents_per_s=round(FLOOD / took),
        send_per_s=round(FLOOD / sent_in),
        latency=latency,
        cpu_us=cpu_us,
    )
    print(f"  {system:18} {figures}", flush=True)
    return figures


async def _wait_for_members(
    endpoints: Endpoints, group_id: str, instances: int, server: Server
) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=endpoints.kafka_bootstrap)
    await admin.start()
    try:
        deadline = time.monotonic() + 120
        while True:
            server.check()
            (response,) = await admin.describe_consumer_groups([group_id])
            # DescribeGroups v0: (error, group, state, protocol type, protocol, members), each
            # member (id, client id, host, metadata, assignment).
            (_, _, state, _, _, members) = response.groups[0]
            if state == "Stable" and sum(1 for m in members if m[4]) == instances:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{instances} instances did not join {group_id} in 120 s")
            await asyncio.sleep(0.2)
    finally:
        await admin.close()


def best_latency(runs: Sequence[RunFigures], rate: int) -> Latency:
    """The latency at ``rate`` of the run with the lowest p99 (its p50 goes with it)."""
    return min((r.latency[rate] for r in runs), key=lambda latency: latency.p99_ms)


async def measure(
    systems: Sequence[str], runs: int, profile: Path | None
) -> dict[str, list[RunFigures]]:
    endpoints = StackSettings().endpoints()
    found: dict[str, list[RunFigures]] = {s: [] for s in systems}
    print(f"load average {os.getloadavg()[0]:.2f} before timing (other work skews timings)")
    with tempfile.TemporaryDirectory(prefix="coyote-bench-e2e-") as work:
        # Interleaved, so that a burst of other work on the machine hits every system alike.
        for _ in range(runs):
            for system in systems:
                found[system].append(await run_once(system, endpoints, Path(work), profile))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--serve", metavar="CONFIG", help=argparse.SUPPRESS)
    parser.add_argument("--runs", type=int, default=RUNS, help="independent runs per system")
    parser.add_argument(
        "--profile", type=Path, help="cProfile each server's loop thread into this folder"
    )
    parser.add_argument(
        "--only", choices=SYSTEMS, action="append", help="run only these systems (no record)"
    )
    parser.add_argument("--no-record", action="store_true", help="print, do not record")
    args = parser.parse_args()
    if args.serve:
        _serve_main(json.loads(args.serve))
        return
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    # A fresh topic's partitions have no leader for a moment; aiokafka logs that and retries.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    found = asyncio.run(measure(args.only or SYSTEMS, args.runs, args.profile))
    if args.only:
        return
    ours, bare = found["executor"], found["passthrough"]
    bare_rate = max(r.intents_per_s for r in bare)
    # CPU per intent as the fastest flood of each spent it.
    our_cpu = max(ours, key=lambda r: r.intents_per_s).cpu_us
    bare_cpu = max(bare, key=lambda r: r.intents_per_s).cpu_us
    entries = [
        measurement(
            "executor.e2e_intents_per_s",
            max(r.intents_per_s for r in ours),
            "intents/s",
            "bare aiokafka consume->produce pass-through, transactional",
            bare_rate,
        ),
        measurement(
            "executor.e2e_intents_per_s_two_instances",
            max(r.intents_per_s for r in found["executor-x2"]),
            "intents/s",
            "bare aiokafka consume->produce pass-through, transactional",
            bare_rate,
        ),
        measurement(
            "executor.passthrough_no_tx_intents_per_s",
            max(r.intents_per_s for r in found["passthrough-no-tx"]),
            "intents/s",
            "the pass-through with transactions",
            bare_rate,
        ),
    ]
    entries += [
        measurement(
            "executor.e2e_machine_cpu_us_per_intent",
            our_cpu["machine"],
            "us/intent",
            "the same pass-through (every process on the machine: Kafka, the driver, ...)",
            bare_cpu["machine"],
        ),
        measurement(
            "executor.e2e_process_cpu_us_per_intent",
            our_cpu["system under test"],
            "us/intent",
            "the pass-through's process",
            bare_cpu["system under test"],
        ),
    ]
    for rate in RATES:
        latency, bare_latency = best_latency(ours, rate), best_latency(bare, rate)
        entries += [
            measurement(
                f"executor.e2e_{name}_ms_at_{rate}_per_s",
                getattr(latency, f"{name}_ms"),
                "ms",
                "the same pass-through",
                getattr(bare_latency, f"{name}_ms"),
            )
            for name in ("p50", "p99")
        ]
    if args.no_record or args.profile:
        for entry in entries:
            print(entry)
    else:
        record(entries)


if __name__ == "__main__":
    main()
