"""Continuous reconciliation with the broker, on the real stack: an account is halted until it
has been reconciled (fail closed), a broker circuit closes when the broker answers again, orders
the executor does not know and positions that drift from the broker's are alerted, and an order
that never reached the broker is not sent once it is too old."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from coyote_executor.brokers.base import BrokerOrder, BrokerUnavailable
from coyote_executor.brokers.paper import PaperBroker
from coyote_risk import ACTIVE, HALTED
from coyote_sdk.config import Endpoints
from coyote_sdk.protocol import ExecType, OrderStatus, OrderType, Side
from tests.executor._harness import ExecutorHarness, until

pytestmark = pytest.mark.integration


class _Venue:
    """Switches the paper venue's answers off and on, per kind of call."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.down: set[str] = set()
        for name in ("open_orders", "lookup", "submit_many", "positions"):
            original = getattr(PaperBroker, name)
            monkeypatch.setattr(PaperBroker, name, self._guard(name, original))

    def _guard(self, name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        async def guarded(broker: PaperBroker, *args: Any, **kwargs: Any) -> Any:
            if name in self.down:
                raise BrokerUnavailable(f"the venue is down ({name})")
            return await original(broker, *args, **kwargs)

        return guarded


@pytest.fixture
async def harness(
    endpoints: Endpoints, unique: str, tmp_path: Path
) -> AsyncIterator[ExecutorHarness]:
    harness = ExecutorHarness(
        endpoints,
        unique,
        tmp_path,
        options={
            "broker_failure_limit": 2,
            "max_intent_age_ms": 2000,
            "positions_interval_s": 0.5,
        },
    )
    await harness.setup()
    harness.trade("EURUSD", "1.07500")
    yield harness
    await harness.close()


def account_state(harness: ExecutorHarness) -> int:
    assert harness.executor is not None
    return int(harness.executor._accounts[harness.account].engine.account.state)


async def test_an_account_not_reconciled_at_start_is_halted_until_its_broker_answers(
    harness: ExecutorHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    venue = _Venue(monkeypatch)
    venue.down = {"open_orders"}
    await harness.start_executor()

    refused = harness.order()
    await harness.send(refused)
    (rejection,) = (await harness.terminal_reports([refused.intent_id]))[refused.intent_id]
    assert rejection.reject_code == "risk.halted"
    assert "not yet reconciled with its broker" in (rejection.reject_reason or "")
    await until(lambda: harness.alerts("broker.reconcile_failed") != [], "alerted")  # by a task
    (alert,) = harness.alerts("broker.reconcile_failed")
    assert "stays halted" in alert.message

    venue.down = set()
    await until(lambda: account_state(harness) == ACTIVE, "the account trades again")
    accepted = harness.order()
    await harness.send(accepted)
    reports = (await harness.terminal_reports([accepted.intent_id]))[accepted.intent_id]
    assert reports[-1].order_status is OrderStatus.FILLED


async def test_a_broker_circuit_closes_when_reconciliation_gets_through_again(
    harness: ExecutorHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    venue = _Venue(monkeypatch)
    await harness.start_executor()
    venue.down = {"open_orders", "lookup", "submit_many"}

    lost = harness.order()
    await harness.send(lost)
    await until(lambda: account_state(harness) == HALTED, "the circuit opens")
    await until(lambda: harness.alerts("broker.circuit_open") != [], "alerted")  # by a task
    assert len(harness.alerts("broker.circuit_open")) == 1
    refused = harness.order()
    await harness.send(refused)
    (rejection,) = (await harness.terminal_reports([refused.intent_id]))[refused.intent_id]
    assert "broker circuit" in (rejection.reject_reason or "")

    venue.down = set()
    await until(lambda: account_state(harness) == ACTIVE, "the circuit closes")
    await until(lambda: harness.alerts("broker.circuit_closed") != [], "alerted")  # by a task
    (closed,) = harness.alerts("broker.circuit_closed")
    assert "trades again" in closed.message
    # The order whose submission failed while the venue was down is sent once it is back.
    after = harness.order()
    await harness.send(after)
    reports = await harness.terminal_reports([lost.intent_id, after.intent_id])
    assert reports[lost.intent_id][-1].order_status is OrderStatus.FILLED
    assert reports[after.intent_id][-1].order_status is OrderStatus.FILLED
    assert harness.broker is not None
    submitted = harness.sync_redis.hgetall(harness.broker.submissions_key(harness.account))
    assert submitted[str(lost.intent_id).encode()] == b"1"


async def test_an_order_that_never_reached_the_broker_is_not_sent_once_too_old(
    harness: ExecutorHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    venue = _Venue(monkeypatch)
    harness.options = dataclasses.replace(harness.options, broker_failure_limit=1_000)
    await harness.start_executor()
    venue.down = {"submit_many"}

    order = harness.order()
    await harness.send(order)
    await asyncio.sleep(2.5)  # the venue refuses it for longer than max_intent_age_ms
    venue.down = set()

    reports = (await harness.terminal_reports([order.intent_id]))[order.intent_id]
    assert reports[-1].exec_type is ExecType.REJECTED
    assert reports[-1].reject_code == "intent.expired"
    assert "never reached the broker" in (reports[-1].reject_reason or "")
    assert harness.broker is not None
    submitted = harness.sync_redis.hgetall(harness.broker.submissions_key(harness.account))
    assert str(order.intent_id).encode() not in submitted


async def test_orders_and_positions_at_the_broker_that_we_do_not_know_are_alerted_once(
    harness: ExecutorHarness,
) -> None:
    await harness.start_executor()
    broker = harness.broker
    assert broker is not None
    # Placed at the venue by someone else: a resting order, and a market order that fills.
    stranger = "placed-by-hand"
    await broker.submit(
        BrokerOrder(
            stranger,
            harness.account,
            "EURUSD",
            Side.BUY,
            Decimal(500),
            order_type=OrderType.LIMIT,
            limit_price=Decimal("1.00000"),
        )
    )
    await broker.submit(BrokerOrder("filled-by-hand", harness.account, "EURUSD", Side.SELL, 300))

    await until(lambda: harness.alerts("broker.position_drift") != [], "drift alerted")
    (unknown,) = harness.alerts("broker.unknown_order")
    assert stranger in unknown.message
    (drift,) = harness.alerts("broker.position_drift")
    assert "is 0 in our records" in drift.message and "-300 at the broker" in drift.message

    # Undone by hand: the positions agree again, which is said once too.
    await broker.submit(BrokerOrder("undone-by-hand", harness.account, "EURUSD", Side.BUY, 300))
    await until(lambda: harness.alerts("broker.position_drift_resolved") != [], "resolved")
    await asyncio.sleep(1.5)  # three more passes
    assert len(harness.alerts("broker.unknown_order")) == 1
    assert len(harness.alerts("broker.position_drift")) == 1
    assert len(harness.alerts("broker.position_drift_resolved")) == 1


async def test_an_open_circuit_is_probed_every_second_not_every_interval(
    endpoints: Endpoints, unique: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness = ExecutorHarness(
        endpoints,
        unique,
        tmp_path,
        options={"broker_failure_limit": 1, "reconcile_interval_s": 60},
    )
    await harness.setup()
    harness.trade("EURUSD", "1.07500")
    try:
        venue = _Venue(monkeypatch)
        await harness.start_executor()
        venue.down = {"submit_many"}
        failed = harness.order()
        await harness.send(failed)
        await until(lambda: account_state(harness) == HALTED, "the circuit opens")
        venue.down = set()

        await until(lambda: account_state(harness) == ACTIVE, "closed", within=5)
        reports = (await harness.terminal_reports([failed.intent_id]))[failed.intent_id]
        assert reports[-1].order_status is OrderStatus.FILLED
    finally:
        await harness.close()
