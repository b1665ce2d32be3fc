"""The supervisor on the real stack with real bot processes (the local backend).

push → deploy → start → the bot's intents reach Kafka → pause → none → resume → stop; a bot
that crashes is restarted with backoff and given up on at the limit; a Redis flush loses no
flag; a restarted supervisor adopts the runtimes it finds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from coyote_control_plane.config import SupervisorSettings
from coyote_control_plane.main import runtime_env
from coyote_control_plane.supervisor import LocalBackend
from coyote_sdk import protocol
from coyote_sdk.config import Endpoints
from coyote_sdk.control import read_control_flag
from coyote_sdk.kafka import account_partition
from coyote_sdk.marketdata import MarketDataWriter
from coyote_sdk.protocol import Bar, BotState, Timeframe
from tests.control_plane.conftest import (
    ControlPlaneUnderTest,
    add_account,
    buyer_bundle,
    control_plane,
    deploy,
    push,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FAST = SupervisorSettings(
    interval_s=0.2,
    backoff_base_s=0.5,
    backoff_max_s=2.0,
    max_restarts=2,
    start_grace_s=30.0,
    stop_grace_s=10.0,
)


@pytest.fixture
def supervised(
    postgres: sqlalchemy.Engine, unique: str, backend: LocalBackend, tmp_path: Path
) -> Iterator[ControlPlaneUnderTest]:
    for cp in control_plane(postgres, unique, backend=backend, supervisor=FAST):
        add_account(cp.acme.admin, venue=f"v{unique}")
        push(cp.acme.trader, buyer_bundle(tmp_path))
        yield cp


async def until(check: Callable[[], Any], *, within: float = 30, what: str = "condition") -> Any:
    deadline = time.monotonic() + within
    while True:
        outcome = check()
        if outcome:
            return outcome
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not met within {within} s")
        await asyncio.sleep(0.1)


def status_of(cp: ControlPlaneUnderTest, name: str) -> dict[str, Any]:
    return dict(cp.acme.viewer.get(f"/v1/deployments/{name}").json())


class IntentWatch:
    """Follows the intents partition of one account from now on."""

    def __init__(self, endpoints: Endpoints, account_id: str, bot_id: str) -> None:
        self.endpoints, self.account_id, self.bot_id = endpoints, account_id, bot_id
        self.seen: list[protocol.OrderIntent] = []

    async def __aenter__(self) -> IntentWatch:
        producer = AIOKafkaProducer(bootstrap_servers=self.endpoints.kafka_bootstrap)
        await producer.start()
        try:
            self.partition: TopicPartition = await account_partition(
                producer, protocol.INTENTS_TOPIC.name, self.account_id
            )
        finally:
            await producer.stop()
        self.consumer = AIOKafkaConsumer(bootstrap_servers=self.endpoints.kafka_bootstrap)
        await self.consumer.start()
        self.consumer.assign([self.partition])
        await self.consumer.seek_to_end(self.partition)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.consumer.stop()

    async def poll(self, seconds: float = 0.5) -> int:
        batches = await self.consumer.getmany(self.partition, timeout_ms=int(seconds * 1000))
        for record in batches.get(self.partition, []):
            intent = protocol.decode_intent(record.value or b"")
            if intent.bot_id == self.bot_id:
                self.seen.append(intent)
        return len(self.seen)


def publish_bar(client: redis.Redis, venue: str, minute: int) -> None:
    bar = Bar(
        symbol="GOOG",
        venue=venue,
        timeframe=Timeframe.M1,
        ts_ms=minute * 60_000,
        open=Decimal(100),
        high=Decimal(101),
        low=Decimal(99),
        close=Decimal(100),
        volume=Decimal(10),
    )
    MarketDataWriter(client, venue=venue).add_bars([bar])


async def test_push_deploy_start_pause_resume_stop_on_real_processes(
    supervised: ControlPlaneUnderTest, endpoints: Endpoints, unique: str
) -> None:
    cp = supervised
    venue = f"v{unique}"
    client = redis.Redis.from_url(endpoints.redis_url)
    made = deploy(cp.acme.trader, params={"quantity": 3}, capital="1000", start=True)
    async with IntentWatch(endpoints, made["account_id"], made["runtime_id"]) as watch:
        await until(lambda: status_of(cp, "buy")["status"] == "running", what="status running")
        heartbeat = status_of(cp, "buy")["heartbeat"]
        assert (
            heartbeat["release"]
            == cp.acme.viewer.get("/v1/bots/buyer/releases").json()[0]["content_hash"]
        )
        minute = 1
        while await watch.poll(0.3) == 0:  # the bot subscribes a moment after its heartbeat
            publish_bar(client, venue, minute)
            minute += 1
            assert minute < 100, "no intent reached Kafka"
        first = watch.seen[0]
        assert isinstance(first, protocol.NewOrder) and first.quantity == Decimal(3)
        assert first.account_id == made["account_id"]

        cp.acme.trader.post("/v1/deployments/buy/pause")
        await until(lambda: status_of(cp, "buy")["status"] == "paused", what="paused")
        await watch.poll(0.5)
        before = len(watch.seen)
        for _ in range(3):
            publish_bar(client, venue, minute)
            minute += 1
        assert await watch.poll(1.5) == before, "a paused bot sent intents"

        cp.acme.trader.post("/v1/deployments/buy/resume")
        await until(lambda: status_of(cp, "buy")["status"] == "running", what="resumed")
        while await watch.poll(0.3) == before:
            minute += 1
            publish_bar(client, venue, minute)
            assert minute < 200, "no intent after resume"

    cp.acme.trader.post("/v1/deployments/buy/stop")
    stopped = await until(
        lambda: (s := status_of(cp, "buy"))["status"] == "stopped" and s, what="stopped"
    )
    assert stopped["status_detail"] is None  # it exited cleanly, on its own
    assert cp.acme.trader.delete("/v1/deployments/buy").status_code == 204
    log_file = Path(cp.app.state.context.supervisor.backend.log_path(made["runtime_id"]))
    logs = await asyncio.to_thread(log_file.read_text)
    assert "runtime running" in logs and "runtime paused" in logs
    events = [
        e["kind"] + ":" + e["data"].get("status", "")
        for e in cp.acme.viewer.get("/v1/events/recent", params={"limit": 50}).json()
    ]
    assert "bot.status:running" in events and "bot.status:stopped" in events
    client.close()


async def test_a_crashing_bot_is_restarted_with_backoff_then_given_up_on(
    supervised: ControlPlaneUnderTest,
) -> None:
    cp = supervised
    deploy(cp.acme.trader, params={"crash": True}, start=True)
    failed = await until(
        lambda: (s := status_of(cp, "buy"))["status"] == "failed" and s,
        within=60,
        what="failed after the restart limit",
    )
    assert failed["restarts"] == FAST.max_restarts + 1
    assert "gave up after 2 restarts" in failed["status_detail"]
    assert "exit code 3" in failed["status_detail"]
    kinds = [e["kind"] for e in cp.acme.viewer.get("/v1/events/recent").json()]
    assert kinds.count("bot.crashed") == FAST.max_restarts and "bot.failed" in kinds

    # A start after giving up begins a fresh series.
    restarted = cp.acme.trader.post("/v1/deployments/buy/start")
    assert restarted.status_code == 200 and restarted.json()["restarts"] == 0


async def test_flags_come_back_after_a_redis_flush(
    supervised: ControlPlaneUnderTest, endpoints: Endpoints
) -> None:
    cp = supervised
    made = deploy(cp.acme.trader)
    cp.acme.trader.post(
        "/v1/kill-switches", json={"scope": "account", "target": "paper", "reason": "test"}
    )
    client = redis.Redis.from_url(endpoints.redis_url)
    before = read_control_flag(client, made["runtime_id"])
    assert before is not None
    # What a flush does to this deployment: flag, generation counter and halts gone.
    client.delete(
        protocol.control_flag_key(made["runtime_id"]),
        protocol.control_flag_key(made["runtime_id"]) + ":generation",
    )
    client.hdel(protocol.HALTS_KEY, f"account:{made['account_id']}")

    flag = await until(lambda: read_control_flag(client, made["runtime_id"]), what="flag back")
    assert flag.desired is BotState.STOPPED
    assert flag.generation > before.generation  # a runtime would not take it for a stale copy
    await until(
        lambda: client.hget(protocol.HALTS_KEY, f"account:{made['account_id']}"), what="halt back"
    )
    client.close()


async def test_account_documents_come_back_after_a_redis_flush(
    supervised: ControlPlaneUnderTest, endpoints: Endpoints
) -> None:
    cp = supervised
    account_id = f"{cp.acme.slug}.paper"
    limits = {"account": {"max_order_notional": "1000"}}
    assert cp.acme.risk.put("/v1/accounts/paper/risk-limits", json=limits).status_code == 200
    client = redis.Redis.from_url(endpoints.redis_url)

    def stored_raw() -> bytes | None:
        raw: Any = client.hget(protocol.ACCOUNTS_KEY, account_id)
        return raw

    def stored() -> protocol.AccountDocument | None:
        raw = stored_raw()
        return None if raw is None else protocol.decode(raw, protocol.AccountDocument)

    before = stored()
    assert before is not None
    client.hdel(protocol.ACCOUNTS_KEY, account_id)  # what a flush does to it
    back = await until(stored, what="account document back")
    client.hset(protocol.ACCOUNTS_KEY, account_id, b"not json")  # and a corrupted one
    healed = await until(
        lambda: (found := stored_raw()) != b"not json" and found, what="document rewritten"
    )
    client.close()

    assert back.risk == limits and back.revision > before.revision  # not taken for stale
    assert protocol.decode(healed, protocol.AccountDocument).revision > back.revision


async def test_a_new_supervisor_adopts_a_running_runtime(
    supervised: ControlPlaneUnderTest, backend: LocalBackend, tmp_path: Path, endpoints: Endpoints
) -> None:
    cp = supervised
    deploy(cp.acme.trader, start=True)
    await until(lambda: status_of(cp, "buy")["status"] == "running", what="running")
    pid = status_of(cp, "buy")["heartbeat"]["pid"]

    # A second backend on the same folder is what a restarted control plane has.
    successor = LocalBackend(backend.home, env=runtime_env(endpoints))
    seen = successor.observe(f"{cp.acme.slug}.buy")
    assert seen.alive and seen.ref == str(pid)
    successor.terminate(f"{cp.acme.slug}.buy")
    await until(lambda: not successor.observe(f"{cp.acme.slug}.buy").alive, what="terminated")
