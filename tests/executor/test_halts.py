"""Kill switches: the control plane's halts in Redis reach the executor.

The halts hash is shared by every test (and by the control plane's), so each test uses fields
naming its own account or bots and removes them afterwards.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, cast

import pytest
import redis

from coyote_executor.accounts import accounts_from_mapping
from coyote_executor.service import Executor, ExecutorOptions, _Account
from coyote_executor.store import Store
from coyote_risk import ACTIVE, HALTED, RiskEngine
from coyote_sdk import protocol
from coyote_sdk.config import Endpoints
from coyote_sdk.protocol import (
    ALERTS_STREAM,
    HALTS_CHANNEL,
    HALTS_KEY,
    Alert,
    CancelAll,
    ExecType,
    ExecutionReport,
    Halt,
    OrderStatus,
    ReplaceOrder,
)
from tests.executor._harness import ExecutorHarness, risk_section

integration = pytest.mark.integration


class Switches:
    """Trips and lifts kill switches the way the control plane does; forgets them after."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.fields: set[str] = set()

    def trip(
        self,
        scope: str,
        target: str,
        reason: str = "daily loss beyond plan",
        *,
        raw: bytes | None = None,
        announce: bool = True,
    ) -> str:
        field = f"{scope}:{target}"
        value = raw or protocol.encode(
            Halt(
                scope=scope,  # type: ignore[arg-type]
                target=target,
                reason=reason,
                set_by="user:risk@test.example",
                ts_ms=protocol.now_ms(),
            )
        )
        self.fields.add(field)
        self.client.hset(HALTS_KEY, field, value)
        if announce:
            self.client.publish(HALTS_CHANNEL, field)
        return field

    def lift(self, field: str) -> None:
        self.client.hdel(HALTS_KEY, field)
        self.client.publish(HALTS_CHANNEL, field)

    def close(self) -> None:
        if self.fields:
            self.client.hdel(HALTS_KEY, *self.fields)
        self.client.close()


@pytest.fixture
def switches(endpoints: Endpoints) -> Iterator[Switches]:
    made = Switches(redis.Redis.from_url(endpoints.redis_url))
    yield made
    made.close()


@pytest.fixture
async def ex(endpoints: Endpoints, unique: str, tmp_path: Path) -> AsyncIterator[ExecutorHarness]:
    harness = ExecutorHarness(endpoints, unique, tmp_path)
    await harness.setup()
    harness.trade("EURUSD", "1.07500")
    await harness.start_executor()
    yield harness
    await harness.close()


async def until(condition: Callable[[], Any], within: float = 10.0, what: str = "") -> Any:
    deadline = time.monotonic() + within
    while not (found := condition()):
        assert time.monotonic() < deadline, f"timed out waiting for {what or condition}"
        await asyncio.sleep(0.02)
    return found


async def in_force(ex: ExecutorHarness, field: str, present: bool = True) -> None:
    """Waits until the executor obeys (or no longer obeys) ``field``."""
    assert ex.executor is not None
    executor = ex.executor
    await until(lambda: (field in executor.halts) is present, what=f"{field} present={present}")


async def answer(ex: ExecutorHarness, intent: protocol.OrderIntent) -> ExecutionReport:
    """The first report caused by ``intent``."""
    reports = await ex.reports_until(lambda rs: any(r.intent_id == intent.intent_id for r in rs))
    return next(r for r in reports if r.intent_id == intent.intent_id)


def alerts(client: redis.Redis, kind: str, **about: str) -> list[Alert]:
    entries: Any = client.xrevrange(ALERTS_STREAM, count=1000)
    found = [protocol.decode(fields[b"alert"], Alert) for _, fields in entries]
    return [
        a for a in found if a.kind == kind and all(getattr(a, k) == v for k, v in about.items())
    ]


@integration
async def test_an_account_halt_refuses_new_orders_and_replaces_while_cancels_go(
    ex: ExecutorHarness, switches: Switches
) -> None:
    resting, other = ex.limit("1.07000"), ex.limit("1.06900")
    await ex.send(resting, other)
    await ex.reports_until(
        lambda rs: {resting.intent_id, other.intent_id} <= {r.order_id for r in rs}
    )
    field = switches.trip("account", ex.account)
    await in_force(ex, field)

    new = ex.order()
    replace = ReplaceOrder(
        intent_id=protocol.new_intent_id(),
        ts_ms=protocol.now_ms(),
        account_id=ex.account,
        bot_id="bot-a",
        order_id=resting.intent_id,
        quantity=Decimal(2000),
    )
    cancel = ex.cancel(resting.intent_id)
    cancel_all = CancelAll(
        intent_id=protocol.new_intent_id(),
        ts_ms=protocol.now_ms(),
        account_id=ex.account,
        bot_id="bot-a",
    )
    await ex.send(new, replace, cancel, cancel_all)
    await ex.terminal_reports([new.intent_id, resting.intent_id, other.intent_id])

    refused = await answer(ex, new)
    assert refused.exec_type is ExecType.REJECTED
    assert refused.reject_code == "risk.halted"
    assert "daily loss beyond plan" in (refused.reject_reason or "")
    assert "user:risk@test.example" in (refused.reject_reason or "")
    not_replaced = await answer(ex, replace)
    assert not_replaced.exec_type is ExecType.REJECTED
    assert not_replaced.reject_code == "risk.halted"
    assert (await answer(ex, cancel)).exec_type is ExecType.CANCELED
    assert any(
        r.intent_id == cancel_all.intent_id
        and r.order_id == other.intent_id
        and r.exec_type is ExecType.CANCELED
        for r in ex.received
    )
    applied = await until(
        lambda: alerts(ex.sync_redis, "kill_switch.applied", account_id=ex.account)
    )
    assert applied[0].severity == "warning" and "daily loss beyond plan" in applied[0].message


@integration
async def test_lifting_an_account_halt_lets_orders_through(
    ex: ExecutorHarness, switches: Switches
) -> None:
    field = switches.trip("account", ex.account)
    await in_force(ex, field)
    refused = ex.order()
    await ex.send(refused)
    assert (await answer(ex, refused)).reject_code == "risk.halted"

    switches.lift(field)
    await in_force(ex, field, present=False)
    again = ex.order()
    await ex.send(again)

    reports = (await ex.terminal_reports([again.intent_id]))[again.intent_id]
    assert reports[-1].order_status is OrderStatus.FILLED
    lifted = await until(lambda: alerts(ex.sync_redis, "kill_switch.lifted", account_id=ex.account))
    assert lifted[0].severity == "info"


@integration
async def test_a_bot_halt_refuses_only_that_bots_orders(
    ex: ExecutorHarness, switches: Switches, unique: str
) -> None:
    halted_bot, free_bot = f"halted-{unique}", f"free-{unique}"
    field = switches.trip("bot", halted_bot, "runaway strategy")
    await in_force(ex, field)

    refused, traded = ex.order(bot_id=halted_bot), ex.order(bot_id=free_bot)
    await ex.send(refused, traded)

    reports = await ex.terminal_reports([refused.intent_id, traded.intent_id])
    (rejection,) = reports[refused.intent_id]
    assert rejection.reject_code == "risk.halted"
    assert "runaway strategy" in (rejection.reject_reason or "")
    assert reports[traded.intent_id][-1].order_status is OrderStatus.FILLED
    await until(lambda: alerts(ex.sync_redis, "kill_switch.applied", bot_id=halted_bot))


@integration
async def test_a_halt_set_before_the_executor_starts_is_obeyed_from_the_first_intent(
    endpoints: Endpoints, unique: str, tmp_path: Path, switches: Switches
) -> None:
    harness = ExecutorHarness(endpoints, unique, tmp_path)
    await harness.setup()
    harness.trade("EURUSD", "1.07500")
    try:
        # Not announced: the executor was not listening; it must read the hash at start.
        switches.trip("account", harness.account, announce=False)
        first = harness.order()
        await harness.send(first)  # waiting in Kafka before the executor runs
        await harness.start_executor()

        (report,) = (await harness.terminal_reports([first.intent_id]))[first.intent_id]
        assert report.reject_code == "risk.halted"
    finally:
        await harness.close()


@integration
async def test_an_undecodable_halt_is_obeyed_as_a_halt(
    ex: ExecutorHarness, switches: Switches
) -> None:
    # Not announced either: the periodic read of the whole hash finds it.
    field = switches.trip("account", ex.account, raw=b"\x00garbage", announce=False)
    await in_force(ex, field)
    order = ex.order()
    await ex.send(order)

    report = await answer(ex, order)
    assert report.reject_code == "risk.halted"
    assert "undecodable halt" in (report.reject_reason or "")


# -- the causes of a halt, without services ------------------------------------------------


class _AlertSink:
    """Stands in for Redis where the executor writes alerts."""

    def __init__(self) -> None:
        self.alerts: list[Alert] = []

    async def xadd(self, key: str, fields: dict[str, bytes], **_: Any) -> None:
        self.alerts.append(protocol.decode(fields["alert"], Alert))


def _offline(sink: _AlertSink) -> tuple[Executor, _Account]:
    """An executor owning account ``acct``, not running: its bookkeeping only."""
    accounts = accounts_from_mapping(
        {"accounts": {"acct": {"broker": "paper", "venue": "v", "risk": risk_section()}}}
    )
    broker: Any = object()
    executor = Executor(
        accounts,
        brokers={"acct": broker},
        store=cast(Store, None),
        redis=cast(Any, sink),
        kafka_bootstrap="",
        options=ExecutorOptions(broker_failure_limit=1),
    )
    config = accounts["acct"]
    account = _Account(config, broker, RiskEngine(config.risk, protocol.now_ms()))
    account.reconciled = True  # as after the take-over's reconciliation
    executor._accounts["acct"] = account
    executor._set_halts({})  # the first read: nothing in force
    return executor, account


def _stored(*halts: tuple[str, str]) -> dict[str, bytes]:
    return {
        f"{scope}:{target}": protocol.encode(
            Halt(
                scope=scope,  # type: ignore[arg-type]
                target=target,
                reason="test",
                set_by="user:test",
                ts_ms=protocol.now_ms(),
            )
        )
        for scope, target in halts
    }


@pytest.mark.unit
async def test_a_kill_switch_and_the_broker_circuit_halt_an_account_independently() -> None:
    sink = _AlertSink()
    executor, account = _offline(sink)
    halt = _stored(("account", "acct"))

    executor._set_halts(halt)
    executor._broker_failed(account, RuntimeError("down"))
    executor._set_halts({})  # lifted: the open circuit still halts the account
    assert account.engine.account.state == HALTED
    account.circuit_open = False  # (as a closing circuit would)
    executor._set_halts(halt)
    executor._sync_states(account)  # the kill switch alone still halts it
    assert account.engine.account.state == HALTED
    executor._set_halts({})
    assert account.engine.account.state == ACTIVE

    await asyncio.sleep(0)  # the alerts are written by tasks
    kinds = [a.kind for a in sink.alerts]
    assert kinds == [
        "kill_switch.applied",
        "broker.circuit_open",
        "kill_switch.lifted",
        "kill_switch.applied",
        "kill_switch.lifted",
    ]
    assert "broker circuit is open" in sink.alerts[2].message


@pytest.mark.unit
async def test_bot_halts_are_lifted_and_held_across_a_redis_restart() -> None:
    executor, account = _offline(_AlertSink())
    slot = account.engine.slot("b1", "EURUSD")
    assert slot is not None

    executor._set_halts(_stored(("bot", "b1"), ("account", "someone-else")))
    assert executor.halts.keys() == {"bot:b1"}  # accounts of other executors do not matter
    assert slot.bot.state == HALTED and account.engine.slot_bot("b2").state == ACTIVE
    executor._set_halts({}, keep_missing=True)  # an empty Redis, just restarted
    assert slot.bot.state == HALTED
    executor._set_halts({})
    assert slot.bot.state == ACTIVE and not executor.halts
    await asyncio.sleep(0)
