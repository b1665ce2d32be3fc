"""A bot whose runtime loses its heartbeat has its open orders cancelled by the supervisor.

The supervisor here is a real one on the real stack (PostgreSQL, Redis, a Kafka topic of the
test's own for its intents), driven pass by pass with a clock of the test's own. Its backend
runs nothing: a runtime is "alive" until the test kills it, and its heartbeat is what the test
writes into Redis, as a runtime writes it. The last test takes the whole path: a real runtime
process killed with SIGKILL, its resting order cancelled by a real executor at a paper broker.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis
from aiokafka import AIOKafkaConsumer

from coyote_control_plane.config import SupervisorSettings
from coyote_control_plane.supervisor import (
    IntentProducer,
    LogChunk,
    Observation,
    RuntimeBackend,
    RuntimeSpec,
    Supervisor,
)
from coyote_sdk import protocol
from coyote_sdk.bundles import Bundle, build_bundle
from coyote_sdk.config import Endpoints
from coyote_sdk.protocol import BotStatus, CancelAll, IntentOrigin, OrderStatus, RuntimeState
from tests.control_plane._trading import Trading
from tests.control_plane.conftest import (
    ControlPlaneUnderTest,
    add_account,
    buyer_bundle,
    deploy,
    push,
)
from tests.control_plane.test_supervisor import IntentWatch, publish_bar, status_of, until

pytestmark = pytest.mark.integration

SETTINGS = SupervisorSettings(
    backoff_base_s=0.01,
    backoff_max_s=0.01,
    start_grace_s=5.0,
    heartbeat_loss_cancel_after_s=3.0,
    stale_restart_s=30.0,
)


class ScriptedRuntimes(RuntimeBackend):
    """Runs nothing: a launched runtime is alive until :meth:`kill` (or a forced terminate)."""

    name = "scripted"

    def __init__(self) -> None:
        self.launches: list[str] = []
        self.alive: set[str] = set()
        self.exit_codes: dict[str, int] = {}

    def kill(self, runtime_id: str) -> None:
        """What ``kill -9`` of the runtime's process does."""
        self.alive.discard(runtime_id)
        self.exit_codes[runtime_id] = -9

    def launch(self, spec: RuntimeSpec) -> str:
        self.launches.append(spec.runtime_id)
        self.alive.add(spec.runtime_id)
        self.exit_codes.pop(spec.runtime_id, None)
        return str(len(self.launches))

    def observe(self, runtime_id: str) -> Observation:
        if runtime_id in self.alive:
            return Observation(alive=True)
        return Observation(alive=False, exit_code=self.exit_codes.get(runtime_id))

    def terminate(self, runtime_id: str, *, force: bool = False) -> None:
        if runtime_id in self.alive:
            self.alive.discard(runtime_id)
            self.exit_codes[runtime_id] = -9 if force else 0

    def remove(self, runtime_id: str) -> None:
        pass

    def logs(
        self, runtime_id: str, *, tail: int = 200, since_offset: int | None = None
    ) -> LogChunk:
        return LogChunk([], next_offset=0)


@dataclasses.dataclass
class Clock:
    """The supervisor's clock, moved on by the test."""

    now: float = 1000.0
    """Seconds since an arbitrary point, as a monotonic clock's (never zero)."""

    def __call__(self) -> float:
        return self.now


@dataclasses.dataclass
class Rig:
    """A deployment ``buy`` (desired running) and the supervisor that watches it."""

    cp: ControlPlaneUnderTest
    supervisor: Supervisor
    clock: Clock
    runtimes: ScriptedRuntimes
    redis: redis.Redis
    endpoints: Endpoints
    topic: str
    runtime_id: str
    account_id: str

    def beat(self, state: RuntimeState = RuntimeState.RUNNING) -> None:
        """Writes the runtime's heartbeat, as the runtime does."""
        status = BotStatus(
            bot_id=self.runtime_id,
            account_id=self.account_id,
            state=state,
            ts_ms=protocol.now_ms(),
            started_ms=protocol.now_ms(),
            sdk_version="test",
            pid=1,
            host="test",
        )
        self.redis.set(protocol.heartbeat_key(self.runtime_id), protocol.encode(status), px=10_000)

    def silence(self) -> None:
        """What the heartbeat's expiry does."""
        self.redis.delete(protocol.heartbeat_key(self.runtime_id))

    def run(self, seconds: float = 0.0) -> None:
        """Moves the supervisor's clock on, then runs one pass."""
        self.clock.now += seconds
        self.supervisor.run_once()

    async def run_until(self, check: Callable[[], Any], *, what: str, within: float = 30) -> None:
        """Runs passes (the clock still) until ``check`` holds."""
        deadline = time.monotonic() + within
        while not check():
            assert time.monotonic() < deadline, f"{what} not within {within} s"
            self.supervisor.run_once()
            await asyncio.sleep(0.05)

    def deployment(self) -> dict[str, Any]:
        return dict(self.cp.acme.viewer.get("/v1/deployments/buy").json())

    def audited(self) -> list[dict[str, Any]]:
        answer = self.cp.acme.admin.get(
            "/v1/audit", params={"action": "deployment.orders_cancelled"}
        )
        return list(answer.json())

    async def cancels(self) -> list[tuple[bytes | None, CancelAll]]:
        """Every intent of the test's intents topic (all cancels), with its key."""
        consumer = AIOKafkaConsumer(
            self.topic,
            bootstrap_servers=self.endpoints.kafka_bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            partitions = consumer.assignment() or set()
            while not partitions:
                await asyncio.sleep(0.05)
                partitions = consumer.assignment()
            ends = await consumer.end_offsets(list(partitions))
            found: list[tuple[bytes | None, CancelAll]] = []
            while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
                batches = await consumer.getmany(timeout_ms=1000)
                for records in batches.values():
                    for record in records:
                        intent = protocol.decode_intent(record.value or b"")
                        assert isinstance(intent, CancelAll)
                        found.append((record.key, intent))
            return found
        finally:
            await consumer.stop()

    async def running(self) -> None:
        """Launches the runtime and has it send a heartbeat: it looks after its orders."""
        self.run()
        assert self.runtimes.launches == [self.runtime_id]
        self.beat()
        self.run()
        assert self.deployment()["status"] == "running"


@pytest.fixture
async def rig(
    cp: ControlPlaneUnderTest, endpoints: Endpoints, kafka_topic: str, tmp_path: Path
) -> AsyncIterator[Rig]:
    add_account(cp.acme.admin, capital="10000")
    push(cp.acme.trader, buyer_bundle(tmp_path))
    made = deploy(cp.acme.trader, start=True)
    client = redis.Redis.from_url(endpoints.redis_url)
    runtimes, clock = ScriptedRuntimes(), Clock()
    supervisor = Supervisor(
        cp.engine,
        client,
        runtimes,
        SETTINGS,
        IntentProducer(endpoints.kafka_bootstrap, topic=kafka_topic),
        clock=clock,
    )
    yield Rig(
        cp,
        supervisor,
        clock,
        runtimes,
        client,
        endpoints,
        kafka_topic,
        made["runtime_id"],
        made["account_id"],
    )
    await asyncio.to_thread(supervisor.stop)
    client.close()


async def test_a_runtime_found_dead_has_its_orders_cancelled_once(rig: Rig) -> None:
    await rig.running()

    rig.runtimes.kill(rig.runtime_id)
    rig.run()
    await rig.run_until(lambda: len(rig.runtimes.launches) == 2, what="a relaunch")
    for _ in range(5):
        rig.run(1.0)  # the relaunched one, not yet beating, is no new loss

    cancels = await rig.cancels()
    assert len(cancels) == 1
    key, cancel = cancels[0]
    assert key == rig.account_id.encode()  # the account's partition, as the bot's intents
    assert (cancel.account_id, cancel.bot_id, cancel.symbol) == (
        rig.account_id,
        rig.runtime_id,
        None,
    )
    assert cancel.origin is IntentOrigin.PLATFORM
    [entry] = rig.audited()
    assert entry["actor"] == "system:supervisor"
    assert entry["target"] == "deployment/buy"
    assert entry["detail"] == {
        "reason": "its runtime died (exit code -9)",
        "intent_id": str(cancel.intent_id),
    }
    events = rig.cp.acme.viewer.get("/v1/events/recent", params={"limit": 50}).json()
    [event] = [e for e in events if e["kind"] == "bot.orders_cancelled"]
    assert (event["deployment"], event["account"]) == ("buy", "paper")
    assert event["data"]["intent_id"] == str(cancel.intent_id)


async def test_a_stale_runtime_has_its_orders_cancelled_after_the_grace_and_not_again(
    rig: Rig,
) -> None:
    await rig.running()

    rig.silence()
    rig.run(SETTINGS.start_grace_s)  # stale from now
    rig.run(SETTINGS.heartbeat_loss_cancel_after_s - 1)
    assert rig.deployment()["status"] == "stale"
    rig.run(1.0)
    await rig.run_until(lambda: rig.audited(), what="the cancel in the audit log")
    # Stale for long enough, it is killed: the same loss, so no second cancel.
    rig.run(SETTINGS.stale_restart_s)
    await rig.run_until(lambda: len(rig.runtimes.launches) == 2, what="a relaunch")

    cancels = await rig.cancels()
    assert len(cancels) == 1 and cancels[0][1].origin is IntentOrigin.PLATFORM
    [entry] = rig.audited()
    assert entry["detail"]["reason"] == (
        f"its runtime sent no heartbeat for {SETTINGS.heartbeat_loss_cancel_after_s:.0f} s"
    )


async def test_a_deployment_that_keeps_its_orders_gets_no_cancel(rig: Rig) -> None:
    answer = rig.cp.acme.trader.patch(
        "/v1/deployments/buy", json={"cancel_orders_on_heartbeat_loss": False}
    )
    assert answer.status_code == 200
    await rig.running()

    rig.runtimes.kill(rig.runtime_id)
    await rig.run_until(lambda: len(rig.runtimes.launches) == 2, what="a relaunch")

    assert await rig.cancels() == []
    assert rig.audited() == []
    kinds = [e["kind"] for e in rig.cp.acme.viewer.get("/v1/events/recent").json()]
    assert "bot.crashed" in kinds and "bot.orders_cancelled" not in kinds


async def test_each_loss_of_a_runtime_that_beat_since_the_last_gets_its_cancel(
    rig: Rig,
) -> None:
    await rig.running()
    rig.runtimes.kill(rig.runtime_id)
    await rig.run_until(lambda: len(rig.runtimes.launches) == 2, what="a relaunch")
    rig.run()  # the dead runtime's last heartbeat is not the new one's

    # The next one dies before its first heartbeat: it looked after no orders.
    rig.runtimes.kill(rig.runtime_id)
    await rig.run_until(lambda: len(rig.runtimes.launches) == 3, what="a second relaunch")
    # The one after beats, then dies: a new loss.
    rig.beat()
    rig.run()
    rig.runtimes.kill(rig.runtime_id)
    await rig.run_until(lambda: len(rig.runtimes.launches) == 4, what="a third relaunch")

    cancels = await rig.cancels()
    assert len(cancels) == 2
    assert len({cancel.intent_id for _, cancel in cancels}) == 2
    assert len(rig.audited()) == 2


async def test_a_stop_keeps_the_runtimes_own_cancel_unless_it_must_be_killed(
    rig: Rig,
) -> None:
    await rig.running()
    # Stopped on purpose: the runtime says it stops (it cancels its orders itself) and exits.
    assert rig.cp.acme.trader.post("/v1/deployments/buy/stop").status_code == 200
    rig.run()
    rig.beat(RuntimeState.STOPPED)
    rig.runtimes.terminate(rig.runtime_id)
    await rig.run_until(lambda: rig.deployment()["status"] == "stopped", what="stopped")

    # Stopped again, but its runtime hangs looking after its orders until it is killed.
    assert rig.cp.acme.trader.post("/v1/deployments/buy/start").status_code == 200
    rig.run()
    rig.beat()
    rig.run()
    assert rig.cp.acme.trader.post("/v1/deployments/buy/stop").status_code == 200
    rig.run()
    rig.run(2 * SETTINGS.stop_grace_s)  # SIGKILL
    await rig.run_until(lambda: rig.audited(), what="the cancel in the audit log")

    cancels = await rig.cancels()
    assert len(cancels) == 1
    [entry] = rig.audited()
    assert entry["detail"]["reason"] == "its runtime died (exit code -9)"


@pytest.fixture
def unresponsive_kafka() -> Iterator[str]:
    """An address that accepts connections and never answers (a Kafka that hangs)."""
    with socket.create_server(("127.0.0.1", 0), backlog=8) as server:
        host, port = server.getsockname()
        yield f"{host}:{port}"


async def test_the_next_runtime_waits_until_kafka_has_the_cancel(
    rig: Rig, endpoints: Endpoints, unresponsive_kafka: str
) -> None:
    rig.supervisor.intents.bootstrap = unresponsive_kafka
    await rig.running()
    rig.runtimes.kill(rig.runtime_id)

    slowest = 0.0
    for _ in range(10):
        started = time.monotonic()
        rig.run(1.0)
        slowest = max(slowest, time.monotonic() - started)
        await asyncio.sleep(0.1)
    held = rig.deployment()

    assert slowest < 5.0, "a pass waited on Kafka"  # a send waits up to 10 s
    assert rig.runtimes.launches == [rig.runtime_id]
    assert held["status"] == "crashed"
    assert held["status_detail"].startswith("waiting to cancel its orders before it starts again")
    assert rig.audited() == []

    rig.supervisor.intents.bootstrap = endpoints.kafka_bootstrap  # Kafka is back
    await rig.run_until(lambda: len(rig.runtimes.launches) == 2, what="a relaunch", within=60)

    assert len(rig.audited()) == 1
    assert len(await rig.cancels()) == 1


# -- the whole path: a real runtime process, kill -9, a real executor and paper broker ---------

RESTER_SOURCE = '''
from coyote_sdk import Bot


class Rester(Bot):
    """Rests one limit buy at half the market, and leaves it there."""

    symbols = ["GOOG"]
    timeframe = "1m"

    def on_start(self):
        self.placed = False

    def on_bar(self, bar):
        if not self.placed:
            self.placed = True
            self.buy(bar.symbol, 1, limit=bar.close / 2)
'''


def rester_bundle(tmp_path: Path) -> Bundle:
    folder = tmp_path / "src-rester"
    folder.mkdir()
    (folder / "rester.py").write_text(RESTER_SOURCE)
    return build_bundle(folder / "rester.py", name="rester")


@pytest.mark.slow
async def test_kill_9_of_a_bot_runtime_cancels_its_resting_order_at_the_broker(
    trading: Trading, endpoints: Endpoints, tmp_path: Path
) -> None:
    cp = trading.cp
    assert push(cp.acme.trader, rester_bundle(tmp_path)).status_code == 201
    made = deploy(cp.acme.trader, name="rester", bot="rester", capital="10000", start=True)
    account_id, runtime_id = made["account_id"], made["runtime_id"]

    def orders() -> list[dict[str, Any]]:
        return list(cp.acme.viewer.get("/v1/reports/orders").json()["items"])

    async with IntentWatch(endpoints, account_id, runtime_id) as watch:
        await until(lambda: status_of(cp, "rester")["status"] == "running", what="running")
        minute = 1
        while not orders():  # the bot subscribes a moment after its first heartbeat
            publish_bar(trading.redis, trading.venue, minute)
            minute += 1
            assert minute < 100, "the bot placed no order"
            await watch.poll(0.3)
        [resting] = await until(
            lambda: [o for o in orders() if o["status"] == "new"], what="the order resting"
        )
        pid = status_of(cp, "rester")["heartbeat"]["pid"]

        os.kill(pid, signal.SIGKILL)
        [cancelled] = await until(
            lambda: [o for o in orders() if o["status"] == "canceled"],
            within=60,
            what="the order cancelled in the executor's records",
        )
        at_broker = await trading.paper.lookup(account_id, resting["order_id"])
        await until(lambda: status_of(cp, "rester")["status"] == "running", what="back")
        await watch.poll(1.0)

    assert cancelled["order_id"] == resting["order_id"]
    assert Decimal(resting["limit_price"]) == 50
    assert at_broker is not None and at_broker.status is OrderStatus.CANCELED
    cancels = [i for i in watch.seen if isinstance(i, CancelAll)]
    assert len(cancels) == 1 and cancels[0].origin is IntentOrigin.PLATFORM
    audit = cp.acme.admin.get("/v1/audit", params={"action": "deployment.orders_cancelled"}).json()
    assert [e["detail"]["intent_id"] for e in audit] == [str(cancels[0].intent_id)]
    assert audit[0]["detail"]["reason"] == "its runtime died (exit code -9)"
