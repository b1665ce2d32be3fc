"""A supervised control plane whose bots really trade: a real executor with a paper broker
serves the organisation's account, for tests that follow an order all the way (the dashboard's,
the cancel of a lost runtime's orders)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis
import redis.asyncio as aioredis
import sqlalchemy
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition

import tests.control_plane.conftest as cp_conftest
from coyote_control_plane.main import create_app
from coyote_control_plane.supervisor import LocalBackend
from coyote_executor.accounts import accounts_from_mapping
from coyote_executor.brokers.paper import PaperBroker
from coyote_executor.service import Executor, ExecutorOptions
from coyote_executor.store import Store
from coyote_sdk import protocol
from coyote_sdk.config import Endpoints
from coyote_sdk.dev import ensure_topics
from tests.control_plane.conftest import (
    ControlPlaneUnderTest,
    add_account,
    buyer_bundle,
    control_plane,
    push,
)
from tests.control_plane.test_supervisor import FAST
from tests.executor._harness import risk_section
from tests.tasks import end_tasks


async def _start_at_the_end(bootstrap: str, topic: protocol.TopicSpec, group: str) -> None:
    """Commits the group's offsets at the end of ``topic``: the executor takes the intents
    sent from now on, not the shared topic's history."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(topic.name, p) for p in range(topic.partitions)]
        consumer.assign(partitions)
        await consumer.commit(dict(await consumer.end_offsets(partitions)))
    finally:
        await consumer.stop()


@dataclasses.dataclass
class Trading:
    cp: ControlPlaneUnderTest
    venue: str
    redis: redis.Redis
    executor: Executor
    paper: PaperBroker
    """The broker the executor trades ``<org>.paper`` (and the other served accounts) with."""


@contextlib.asynccontextmanager
async def trading_control_plane(
    postgres: sqlalchemy.Engine,
    unique: str,
    backend: LocalBackend,
    tmp_path: Path,
    endpoints: Endpoints,
    monkeypatch: pytest.MonkeyPatch,
    *,
    served: tuple[str, ...] = ("paper",),
) -> AsyncIterator[Trading]:
    """A supervised control plane where the buyer bot is pushed and ``<org>.paper`` (its
    venue the test's own) is served by an executor with a paper broker — with the other
    accounts named in ``served`` (on the same venue; the test makes them in the control plane,
    or a canary does).

    The bot's runtime sends its intents to the protocol's intents topic, so the executor reads
    that topic (from its end, in a consumer group of its own) and refuses anyone else's intents
    into a reports topic of this test's own, which is the one the control plane's live events
    follow. The executor records in the test's schema, where the reports API reads.
    """
    reports_topic, dead_letters = f"test.{unique}.reports", f"test.{unique}.dlq"
    await ensure_topics(
        endpoints.kafka_bootstrap,
        [
            protocol.INTENTS_TOPIC,
            protocol.TopicSpec(name=reports_topic, partitions=3, key="account_id"),
            protocol.TopicSpec(name=dead_letters, partitions=1, key="-"),
        ],
    )
    group = f"test-{unique}"
    await _start_at_the_end(endpoints.kafka_bootstrap, protocol.INTENTS_TOPIC, group)
    # control_plane() makes the app; its live events must follow this test's reports topic.
    monkeypatch.setattr(
        cp_conftest, "create_app", functools.partial(create_app, reports_topic=reports_topic)
    )
    venue = f"v{unique}"
    sync_redis = redis.Redis.from_url(endpoints.redis_url)
    client = aioredis.Redis.from_url(endpoints.redis_url)
    store = Store(endpoints.database_url, connect_args={"options": f"-csearch_path=test_{unique}"})
    async with contextlib.AsyncExitStack() as cleanup:
        cleanup.push_async_callback(_delete_topics, endpoints, [reports_topic, dead_letters])
        cleanup.callback(sync_redis.close)
        cleanup.push_async_callback(client.aclose)
        cleanup.callback(store.close)
        # Runtimes outlive their control plane (they are adopted by the next one): once it has
        # stopped, its bots are killed through their pid files.
        runtimes: list[str] = []
        cleanup.callback(_kill_runtimes, backend, runtimes)
        planes = control_plane(postgres, unique, backend=backend, supervisor=FAST)
        cp = next(planes)
        cleanup.callback(next, planes, None)  # stops the control plane, forgets its Redis keys
        cleanup.callback(
            lambda: runtimes.extend(
                d["runtime_id"] for d in cp.acme.viewer.get("/v1/deployments").json()
            )
        )
        ids = [f"{cp.acme.slug}.{name}" for name in served]
        for account in ids:
            cleanup.callback(_forget_market, sync_redis, venue, account)
        add_account(cp.acme.admin, venue=venue)
        push(cp.acme.trader, buyer_bundle(tmp_path))

        accounts = accounts_from_mapping(
            {
                "accounts": {
                    account: {"broker": "paper", "venue": venue, "risk": risk_section()}
                    for account in ids
                }
            }
        )
        paper = PaperBroker(
            client, {account: accounts[account].paper for account in ids}, match_interval_ms=50
        )
        executor = Executor(
            accounts,
            brokers=dict.fromkeys(ids, paper),
            store=store,
            redis=client,
            kafka_bootstrap=endpoints.kafka_bootstrap,
            options=ExecutorOptions(
                group_id=group,
                instance_id="trading",
                reconcile_interval_s=0.5,
                reports_topic=reports_topic,
                dead_letter_topic=dead_letters,
            ),
        )
        stop = asyncio.Event()
        task = asyncio.create_task(executor.run(stop))

        async def stop_executor() -> None:
            stop.set()
            await end_tasks([task], within=20, what="the executor")

        cleanup.push_async_callback(stop_executor)
        ready = asyncio.create_task(executor.ready.wait())
        done, _ = await asyncio.wait({task, ready}, timeout=60, return_when="FIRST_COMPLETED")
        ready.cancel()
        if task in done:
            task.result()  # raises what stopped it
        assert ready in done, "the executor did not take over its partitions within 60 s"
        yield Trading(cp, venue, sync_redis, executor, paper)


def _kill_runtimes(backend: LocalBackend, runtime_ids: list[str]) -> None:
    for runtime_id in runtime_ids:
        backend.terminate(runtime_id, force=True)
        backend.remove(runtime_id)


def _forget_market(client: redis.Redis, venue: str, account: str) -> None:
    """Removes the test venue's market data and the paper broker's records of the account."""
    for pattern in (f"coyote:md:{venue}:*", f"coyote:paper:{account}:*"):
        keys = list(client.scan_iter(match=pattern, count=1000))
        if keys:
            client.delete(*keys)


async def _delete_topics(endpoints: Endpoints, topics: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=endpoints.kafka_bootstrap)
    await admin.start()
    try:
        await admin.delete_topics(topics)
    finally:
        await admin.close()
