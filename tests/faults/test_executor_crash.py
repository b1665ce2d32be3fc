"""kill -9 the executor again and again while bots trade, at each of its failpoints and from
outside: every intent still gets exactly one terminal report, every report is published once,
the paper broker saw each client order id once, and positions equal the sum of their fills."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import pytest

from tests.faults._harness import Scenario

pytestmark = [pytest.mark.faults, pytest.mark.slow]

KILLS = [
    None,  # kill -9 from outside, wherever the executor happens to be
    "decided",  # orders recorded as pending_new, none sent
    "sent",  # orders at the broker, their outcome not recorded
    "recorded",  # outcome recorded, reports and offsets not committed to Kafka
    None,
]
"""The kills of one run, in order: each restarts the executor armed with the next one."""


@pytest.mark.parametrize("database", ["postgresql", "sqlite"])
async def test_kill_9_at_every_failpoint_loses_no_intent_and_duplicates_no_order(
    scenario: Callable[..., Scenario], database: str
) -> None:
    run = scenario(f"executor_kill_9_{database}", database=database, orders_per_bar=3)
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    run.flow.notes["seed"] = seed
    executor, flow = run.executor, run.flow

    def armed(kill: str | None) -> str | None:
        # A few steps after the takeover, so that the executor dies in a busy step.
        return None if kill is None else f"{kill}:{rng.randint(3, 12)}"

    await run.start(armed(KILLS[0]))
    for index, kill in enumerate(KILLS):
        if kill is None:
            await asyncio.sleep(rng.uniform(2.0, 5.0))
            assert executor.alive, f"the executor died unasked:\n{executor.log_text()[-3000:]}"
            fault = flow.fault("executor kill -9 from outside")
            await asyncio.to_thread(executor.kill)
        else:
            code = await executor.wait_exit(within=120)
            fault = flow.fault(f"executor kill -9 at failpoint {kill}")
            assert code == 137, f"the executor exited with {code}, not at its failpoint"
        await asyncio.sleep(0.5)
        following = KILLS[index + 1] if index + 1 < len(KILLS) else None
        executor.start(armed(following))
        fault.end()
        if following is None:
            await flow.wait_filled(since=fault.ended or 0, within=120)
    await asyncio.sleep(2.0)
    figures = await run.finish()

    assert figures.problems() == []
    assert figures.notes["executor_running"], "the executor did not survive the last restart"
    log = executor.log_text()
    for kill in {k for k in KILLS if k is not None}:
        assert f"failpoint {kill} reached" in log
    assert figures.intents_sent >= 2_000, "the flow was too thin to say much"
    assert all(f["answering_again_s"] is not None for f in figures.faults)
    assert all(f["flow_resumed_s"] is not None for f in figures.faults)
