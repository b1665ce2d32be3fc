"""Redis killed (kill -9) and restarted while bots trade, coming back without the control plane's
keys: the bots go safe (blocked) and resume once the control plane has written their flags
again; the executor keeps a kill switch in force through the gap (``halts_hold_s``); every
intent still gets exactly one terminal report."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
import redis
import sqlalchemy as sa

from coyote_sdk import protocol
from coyote_sdk.control import read_control_flag, set_control_flag
from coyote_sdk.protocol import BotState, Halt, RuntimeState
from tests.faults._harness import Flow, PrivateStack, Scenario, eventually

pytestmark = [pytest.mark.faults, pytest.mark.slow]

OUTAGE_S = 5.0
KEYS_MISSING_S = 3.0
"""How long after the restart the control plane takes to write its keys again (its supervisor
does so on every pass); less than the executor's ``halts_hold_s`` (10 s)."""


def trip(client: redis.Redis, halt: Halt) -> None:
    """What the control plane writes for a kill switch on a bot: the halt, announced."""
    client.hset(protocol.HALTS_KEY, f"bot:{halt.target}", protocol.encode(halt))
    client.publish(protocol.HALTS_CHANNEL, f"bot:{halt.target}")


def lose_control_plane_keys(client: redis.Redis, bot_ids: list[str]) -> None:
    """A Redis that came back without what the control plane wrote: halts, flags, counters."""
    keys = [protocol.HALTS_KEY]
    for bot_id in bot_ids:
        flag = protocol.control_flag_key(bot_id)
        keys += [flag, f"{flag}:generation"]
    client.delete(*keys)


def states(flow: Flow, bot_ids: list[str]) -> set[RuntimeState]:
    return {flow.runtimes[b].state for b in bot_ids}


async def test_redis_killed_and_restarted_empty_blocks_bots_keeps_halts_and_loses_nothing(
    scenario: Callable[..., Scenario], private_stack: PrivateStack
) -> None:
    run = scenario("redis_kill_9")
    flow = run.flow
    *trading, halted = flow.bot_accounts
    halt = Halt(
        scope="bot", target=halted, reason="fault test", set_by="faults", ts_ms=protocol.now_ms()
    )
    trip(flow.redis, halt)
    await run.start()
    await asyncio.sleep(4.0)
    flags = {b: read_control_flag(flow.redis, b) for b in trading}
    generations = {b: flag.generation if flag else 0 for b, flag in flags.items()}

    fault = flow.fault("Redis kill -9, back without the control plane's keys")
    await asyncio.to_thread(private_stack.kill, "redis")
    await asyncio.sleep(OUTAGE_S)
    during_outage = states(flow, list(flow.bot_accounts))
    await asyncio.to_thread(private_stack.start, "redis")
    # The halted bot keeps its flag on purpose: it goes on sending, and only the executor's
    # hold on the kill switch stands between its orders and the broker.
    await asyncio.to_thread(lose_control_plane_keys, flow.redis, trading)
    back_ms = protocol.now_ms()
    await asyncio.sleep(KEYS_MISSING_S)
    while_missing = states(flow, trading)

    # The control plane's pass: flags above the generations it recorded, halts as they were.
    for bot_id in trading:
        set_control_flag(
            flow.redis,
            bot_id,
            BotState.RUNNING,
            set_by="faults",
            min_generation=generations[bot_id],
        )
    trip(flow.redis, halt)
    rewritten_ms = protocol.now_ms()
    fault.end()
    await eventually(
        lambda: states(flow, trading) == {RuntimeState.RUNNING},
        within=10,
        what="the bots running again",
    )
    await flow.wait_filled(since=fault.ended or 0, within=120)
    await asyncio.sleep(3.0)

    engine = sa.create_engine(run.database_url)
    try:
        with engine.connect() as conn:
            halted_intents = conn.execute(
                sa.text(
                    "SELECT count(*), count(*) FILTER (WHERE accepted),"
                    " count(*) FILTER (WHERE received_ms BETWEEN :back AND :rewritten)"
                    " FROM intents WHERE bot_id = :bot"
                ),
                {"bot": halted, "back": back_ms, "rewritten": rewritten_ms},
            ).one()
    finally:
        engine.dispose()
    flow.notes["halted_bot"] = {
        "intents": halted_intents[0],
        "accepted": halted_intents[1],
        "decided_while_the_halt_was_missing": halted_intents[2],
    }
    flow.notes["bots_during_outage"] = sorted(s.value for s in during_outage)
    flow.notes["bots_while_flags_missing"] = sorted(s.value for s in while_missing)
    flow.notes["submissions_failed"] = run.executor.log_text().count(
        "paper venue unreachable (submit)"
    )
    figures = await run.finish()

    assert figures.problems() == []
    assert figures.notes["executor_running"], (
        f"the executor did not survive the outage:\n{run.executor.log_text()[-3000:]}"
    )
    assert during_outage == {RuntimeState.BLOCKED}
    assert while_missing == {RuntimeState.BLOCKED}
    assert figures.refused_by_runtime.get("control.blocked", 0) > 0
    assert halted_intents[0] > 0 and halted_intents[1] == 0, "a halted bot's order was accepted"
    assert halted_intents[2] > 0, "the halted bot sent nothing while its halt was missing"
    assert "kill switches missing from it stay in force" in run.executor.log_text()
