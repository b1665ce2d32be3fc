"""A zombie executor: frozen (SIGSTOP) mid-flow while a second instance with the same
transactional id takes its partitions over, then thawed. The zombie must stop — fenced by Kafka
(its transaction), by the paper venue (its accounts taken on by the new instance) or by the
database (the intents it had decided are recorded by the new instance) — and the flow must lose
and duplicate nothing."""

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
        # Frozen anywhere — in a transaction, between its checks and its send, in the middle of
        # the send — the zombie delivers nothing late: the venue refuses its writes once the
        # successor has taken its accounts on there (the paper venue's fence), so no client
        # order id reaches it twice ("broker duplicates" would be a problem).
        assert figures.problems() == []
        assert successor.alive, f"the successor died:\n{successor.log_text()[-3000:]}"
        zombie_log = zombie.log_text()
        # Kafka's fence or the venue's, whichever the zombie meets first.
        assert "fenced by a newer instance" in zombie_log, zombie_log[-3000:]
    finally:
        successor.stop()
