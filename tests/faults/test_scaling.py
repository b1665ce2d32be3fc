"""Scaling the executor under a flow: a second instance joins the consumer group and takes half
of the partitions, the first leaves (SIGTERM) and the second takes them all, the first comes
back. Each handover moves accounts between processes that share the database and the venue:
the new owner takes the account's open orders and risk state from the records, the old one
lets go of it first (its resting orders included). Nothing may be lost or sent twice, and the
broker must see each client order id once."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

import pytest

from tests.executor._harness import until
from tests.faults._harness import ARTIFACTS, ExecutorProcess, Scenario

pytestmark = [pytest.mark.faults, pytest.mark.slow]

ACCOUNTS = 10
"""Accounts hashed over the intents topic's 12 partitions: the chance that they all fall to
one member of a group of two is (1/2)^9."""
BETWEEN_S = 4.0
_OWNING = re.compile(r"owning partitions .*?: (\d+) accounts")


def owned_accounts(process: ExecutorProcess) -> list[int]:
    """How many accounts the process took at each assignment it logged, in order."""
    return [int(n) for n in _OWNING.findall(process.log_text())]


async def test_executors_joining_and_leaving_the_group_hand_accounts_over_losing_nothing(
    scenario: Callable[..., Scenario],
) -> None:
    run = scenario("executor_scale_out_in", accounts=ACCOUNTS, bots_per_account=1)
    flow, first = run.flow, run.executor
    second = ExecutorProcess(
        {**first.config, "instance_id": "1"}, ARTIFACTS / "executor_scale_out_in-second.log"
    )
    second.log.unlink(missing_ok=True)
    try:
        await run.start()
        await flow.wait_filled(since=0, within=120)
        await asyncio.sleep(BETWEEN_S)

        joined = flow.fault("a second executor joins the group: the partitions are split")
        second.start()
        await until(
            lambda: (
                owned_accounts(second) != []
                and owned_accounts(first)[-1] + owned_accounts(second)[-1] == ACCOUNTS
            ),
            "both executors own accounts, each its own",
            within=60,
        )
        await flow.wait_filled(since=joined.started, within=120)
        joined.end()
        split = owned_accounts(first)[-1], owned_accounts(second)[-1]
        flow.notes["accounts_when_split"] = list(split)
        await asyncio.sleep(BETWEEN_S)

        left = flow.fault("the first executor leaves (SIGTERM): the second takes every account")
        first.stop()
        await until(
            lambda: owned_accounts(second)[-1] == ACCOUNTS, "the second took all", within=60
        )
        await flow.wait_filled(since=left.started, within=120)
        left.end()
        await asyncio.sleep(BETWEEN_S)

        back = flow.fault("the first executor comes back: the partitions are split again")
        assignments = len(owned_accounts(first))
        first.start()
        await until(
            lambda: len(owned_accounts(first)) > assignments, "the first took accounts again", 60
        )
        await flow.wait_filled(since=back.started, within=120)
        back.end()
        await asyncio.sleep(BETWEEN_S)
        figures = await run.finish()
    finally:
        second.stop()

    assert figures.problems() == []
    assert 0 < split[0] < ACCOUNTS and split[0] + split[1] == ACCOUNTS, split
    assert first.alive, f"the first executor died:\n{first.log_text()[-3000:]}"
    assert second.returncode == 0, second.log_text()[-3000:]  # it ran until stopped
