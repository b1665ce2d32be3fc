"""PostgreSQL stopped (fast shutdown) and started again while bots trade: the executor stops
consuming and sends the broker nothing it could not record, then resumes; every intent still
gets exactly one terminal report."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
import redis
from aiokafka import AIOKafkaConsumer

from coyote_sdk import protocol
from tests.faults._harness import Flow, PrivateStack, Scenario

pytestmark = [pytest.mark.faults, pytest.mark.slow]

OUTAGE_S = 6.0
SETTLE_S = 1.0
"""Time for the step in flight when the database went to reach its first database call."""


def at_broker(client: redis.Redis, accounts: list[str]) -> int:
    """Client order ids the paper broker has received so far."""
    return sum(int(client.hlen(f"coyote:paper:{a}:submissions")) for a in accounts)


async def published(flow: Flow) -> int:
    """Where the execution report topic ends now, summed over its partitions: it moves with
    every transaction the executor commits (the scenario's executor is its only writer)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=flow.endpoints.kafka_bootstrap)
    await consumer.start()
    try:
        partitions = [
            tp for tp in flow.start_offsets if tp.topic == protocol.EXECUTION_REPORTS_TOPIC.name
        ]
        return sum((await consumer.end_offsets(partitions)).values())
    finally:
        await consumer.stop()


async def test_postgres_stopped_mid_flow_holds_the_executor_and_loses_nothing(
    scenario: Callable[..., Scenario], private_stack: PrivateStack
) -> None:
    run = scenario("postgres_stop")
    flow = run.flow
    await run.start()
    await asyncio.sleep(4.0)
    watcher = flow.watcher
    assert watcher is not None

    fault = flow.fault("PostgreSQL fast shutdown")
    await asyncio.to_thread(private_stack.stop, "postgres")
    await asyncio.sleep(SETTLE_S)
    sent_before, answered_before = at_broker(flow.redis, flow.accounts), await published(flow)
    await asyncio.sleep(OUTAGE_S - SETTLE_S)
    sent_after, answered_after = at_broker(flow.redis, flow.accounts), await published(flow)
    waiting = len(watcher.intents) - len(watcher.terminal)
    await asyncio.to_thread(private_stack.start, "postgres")
    fault.end()
    await flow.wait_filled(since=fault.ended or 0, within=120)
    await asyncio.sleep(3.0)
    flow.notes["outage"] = {
        "sent_to_broker": sent_after - sent_before,
        "report_offsets_published": answered_after - answered_before,
        "intents_waiting_at_restart": waiting,
    }
    figures = await run.finish()

    assert figures.problems() == []
    assert figures.notes["executor_running"], (
        f"the executor did not survive the outage:\n{run.executor.log_text()[-3000:]}"
    )
    assert sent_after == sent_before, "orders reached the broker while the database was down"
    assert answered_after == answered_before, "reports were published while the database was down"
    assert waiting > 0, "the bots sent nothing during the outage: the test proved nothing"
    assert "database unavailable" in run.executor.log_text()
