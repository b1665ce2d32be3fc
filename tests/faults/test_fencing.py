"""A zombie executor: frozen (SIGSTOP) mid-flow while a second instance with the same
transactional id takes its partitions over, then thawed. The zombie must stop — fenced by Kafka
(its transaction) or by the database (the intents it had decided are recorded by the new
instance) — and the flow must lose and duplicate nothing."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import pytest

from tests.faults._harness import ARTIFACTS, ExecutorProcess, Scenario

pytestmark = [pytest.mark.faults, pytest.mark.slow]


async def test_a_frozen_executor_is_fenced_by_its_successor_and_stops(
    scenario: Callable[..., Scenario],
) -> None:
    run = scenario("zombie_executor_fenced")
    flow, zombie = run.flow, run.executor
    successor = ExecutorProcess(zombie.config, ARTIFACTS / "zombie_executor_fenced-successor.log")
    successor.log.unlink(missing_ok=True)
    seed = random.randrange(2**32)
    flow.notes["seed"] = seed
    try:
        await run.start()
        await flow.wait_filled(since=0, within=120)  # the executor trades: it is not starting
        await asyncio.sleep(random.Random(seed).uniform(1.0, 4.0))

        fault = flow.fault("executor frozen (SIGSTOP); a successor with its transactional id")
        zombie.pause()
        successor.start()
        # The successor gets the partitions once the zombie's group session times out.
        await flow.wait_filled(since=fault.started, within=120)
        fault.end()
        zombie.resume()
        code = await zombie.wait_exit(within=60)
        await asyncio.sleep(2.0)
        figures = await run.finish()

        assert code != 0, "the zombie ended as if nothing had happened"
        # Frozen in the middle of its send (after its last check that it still owned its
        # partitions, before its submission reached the venue), the zombie delivers that send
        # when thawed, after its successor sent the same recorded orders: the venue sees those
        # client order ids twice and places each once — the last line, by design, for real
        # brokers too (docs/reliability.md, "The zombie's last microseconds"). The books
        # matching the venue's (no position mismatch below) shows none was placed twice. The
        # scenario's figures file lists them (problems: "broker duplicates").
        problems = [p for p in figures.problems() if not p.startswith("broker duplicates")]
        assert problems == []
        assert successor.alive, f"the successor died:\n{successor.log_text()[-3000:]}"
        zombie_log = zombie.log_text()
        assert "fenced by a newer instance" in zombie_log, zombie_log[-3000:]
    finally:
        successor.stop()
