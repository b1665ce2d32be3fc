"""The broker misbehaving under a steady flow: answers lost after it took the orders, server
errors before it did, and a venue that goes on working — filling and cancelling resting orders,
taking an order placed by hand — while the executor is dead. Every intent still gets exactly one
terminal report and the broker sees each client order id once."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from decimal import Decimal

import pytest
import redis.asyncio as aioredis

from coyote_executor.brokers.base import BrokerOrder, BrokerOrderState
from coyote_executor.brokers.paper import PaperBroker, PaperSettings
from coyote_sdk.protocol import OrderStatus, OrderType, Side
from tests.faults._harness import SYMBOL, Scenario, write_figures

pytestmark = [pytest.mark.faults, pytest.mark.slow]


async def test_lost_answers_and_server_errors_are_resolved_by_client_order_id(
    scenario: Callable[..., Scenario],
) -> None:
    run = scenario("broker_lost_answers", paper={"lost_answer_rate": 0.1, "error_rate": 0.05})
    flow = run.flow
    fault = flow.fault("paper venue: 10% of answers lost after acceptance, 5% server errors")
    await run.start()
    await asyncio.sleep(20.0)
    fault.end()  # the rates stay: the flow's end is worked off under them too
    figures = await run.finish()

    log = run.executor.log_text()
    lost = log.count("the orders were taken but the answer was lost")
    refused = log.count("server error before the orders were taken")
    figures.notes.update(answers_lost=lost, server_errors=refused)
    write_figures(figures)
    assert figures.problems() == []
    assert lost >= 5 and refused >= 2, "too few broker faults to say much"
    assert figures.notes["executor_running"]
    assert figures.intents_sent >= 2_000


class _Venue:
    """The paper venue working on its own while the executor is down: its matcher fills
    resting orders as prices move, as a real broker's would."""

    def __init__(self, run: Scenario) -> None:
        self.client = aioredis.Redis.from_url(run.stack.endpoints.redis_url)
        self.broker = PaperBroker(
            self.client,
            {a: PaperSettings(venue=run.flow.venue) for a in run.flow.accounts},
            match_interval_ms=50,
        )
        self.accounts = list(run.flow.accounts)
        self.filled: list[str] = []

    async def _noted(self, _account_id: str, states: Sequence[BrokerOrderState]) -> None:
        self.filled += [s.client_order_id for s in states if s.filled_quantity]

    async def open(self) -> None:
        await self.broker.start(self._noted)
        await self.broker.serve(self.accounts)

    async def close(self) -> None:
        await self.broker.close()
        await self.client.aclose()


async def test_a_restarted_executor_picks_up_what_the_venue_did_while_it_was_down(
    scenario: Callable[..., Scenario],
) -> None:
    run = scenario("venue_worked_while_executor_down", limit_offset_bps=2)
    flow, executor = run.flow, run.executor
    await run.start()
    await asyncio.sleep(6.0)

    fault = flow.fault("executor kill -9; the venue fills, cancels and takes an order by hand")
    await asyncio.to_thread(executor.kill)
    venue = _Venue(run)
    await venue.open()
    try:
        # The bots go on placing orders (the executor's backlog), then the market trades
        # through every resting buy, with no bar of the feed to move it back meanwhile.
        await asyncio.sleep(2.0)
        await flow.stop_feed()
        flow.move_market(Decimal("0.99000"))
        await asyncio.sleep(1.0)
        cancelled = []
        for account in flow.accounts:
            for order in (await venue.broker.open_orders(account))[:3]:
                # The venue's own matcher may fill it first, now that the market has moved.
                state = await venue.broker.cancel(account, order.client_order_id)
                if state.status is OrderStatus.CANCELED:
                    cancelled.append(order.client_order_id)
            by_hand = f"by-hand-{account}"
            await venue.broker.submit(
                BrokerOrder(
                    by_hand,
                    account,
                    SYMBOL,
                    Side.BUY,
                    Decimal(1),
                    order_type=OrderType.LIMIT,
                    limit_price=Decimal("0.90000"),  # never reached: it rests to the end
                )
            )
            flow.outside_orders.add(by_hand)
    finally:
        await venue.close()
    flow.resume_feed()
    await asyncio.sleep(1.0)
    executor.start()
    fault.end()
    await flow.wait_filled(since=fault.ended or 0, within=120)
    await asyncio.sleep(3.0)
    # Every order still resting trades through, so that every intent ends.
    await flow.stop_feed()
    for price in ("0.99000", "1.20000"):
        flow.move_market(Decimal(price))
        await asyncio.sleep(1.0)
    figures = await run.finish()

    figures.notes.update(filled_at_venue=len(venue.filled), cancelled_at_venue=len(cancelled))
    write_figures(figures)
    assert figures.problems() == []
    assert venue.filled, "the venue filled nothing while the executor was down"
    assert len(cancelled) >= 2, "the venue had too few resting orders to cancel"
    assert figures.outcomes.get(OrderStatus.CANCELED.value, 0) == len(cancelled)
    log = executor.log_text()
    for account in flow.accounts:
        assert f"order by-hand-{account}" in log, "an order placed by hand was not flagged"
    assert log.count("ALERT broker.unknown_order") == len(flow.accounts)
    assert "ALERT broker.position_drift" not in log
    assert figures.notes["executor_running"]
