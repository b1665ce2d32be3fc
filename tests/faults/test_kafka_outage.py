"""Kafka's broker killed (kill -9) and restarted while bots trade: the bots' producers and the
executor's transactions wait it out, and every intent still gets exactly one terminal report."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from tests.faults._harness import PrivateStack, Scenario

pytestmark = [pytest.mark.faults, pytest.mark.slow]

OUTAGE_S = 5.0


async def test_kafka_killed_and_restarted_mid_flow_loses_and_duplicates_nothing(
    scenario: Callable[..., Scenario], private_stack: PrivateStack
) -> None:
    run = scenario("kafka_kill_9")
    flow = run.flow
    await run.start()
    await asyncio.sleep(4.0)

    fault = flow.fault("Kafka broker kill -9")
    await asyncio.to_thread(private_stack.kill, "kafka")
    await asyncio.sleep(OUTAGE_S)
    await asyncio.to_thread(private_stack.start, "kafka")
    fault.end()
    await flow.wait_filled(since=fault.ended or 0, within=180)
    await asyncio.sleep(3.0)
    figures = await run.finish()

    assert figures.problems() == []
    assert figures.notes["executor_running"], (
        f"the executor did not survive Kafka's restart:\n{run.executor.log_text()[-3000:]}"
    )
