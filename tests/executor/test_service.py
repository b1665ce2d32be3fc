"""The executor on the real stack: Kafka in and out, Redis prices, the paper broker, SQLite or
PostgreSQL records."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest
import redis.asyncio as aioredis
import sqlalchemy as sa

from coyote_executor.brokers.base import BrokerOrder, BrokerOrderState, BrokerUnavailable
from coyote_executor.brokers.paper import PaperBroker, PaperSettings
from coyote_executor.models import Balance, Fill, Intent, Order, Report
from coyote_executor.service import Fenced
from coyote_executor.store import Changes
from coyote_sdk import protocol
from coyote_sdk.config import Endpoints
from coyote_sdk.protocol import (
    ExecType,
    OrderStatus,
    ReplaceOrder,
    Side,
    TimeInForce,
)
from tests.executor._harness import ExecutorHarness, risk_section
from tests.ports import free_ports

pytestmark = pytest.mark.integration


@pytest.fixture
async def ex(endpoints: Endpoints, unique: str, tmp_path: Path) -> AsyncIterator[ExecutorHarness]:
    harness = ExecutorHarness(endpoints, unique, tmp_path)
    await harness.setup()
    harness.trade("EURUSD", "1.07500")
    await harness.start_executor()
    yield harness
    await harness.close()


def rows(ex: ExecutorHarness, table: type, **where: object) -> list[dict[str, object]]:
    t = table.__table__  # type: ignore[attr-defined]
    query = sa.select(t).where(*(t.c[k] == v for k, v in where.items()))
    with ex.store.engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


async def test_market_order_is_accepted_filled_recorded_and_reported(ex: ExecutorHarness) -> None:
    order = ex.order(quantity="1000")
    await ex.send(order)

    reports = (await ex.terminal_reports([order.intent_id]))[order.intent_id]

    assert [r.exec_type for r in reports] == [ExecType.ACCEPTED, ExecType.TRADE]
    fill = reports[1]
    assert fill.order_status is OrderStatus.FILLED
    assert fill.last_quantity == Decimal(1000)
    assert fill.last_price == Decimal("1.07500")
    (row,) = rows(ex, Order, order_id=str(order.intent_id))
    assert row["status"] == "filled" and row["filled_quantity"] == Decimal(1000)
    (fill_row,) = rows(ex, Fill, order_id=str(order.intent_id))
    assert fill_row["fill_id"] == fill.fill_id
    (balance,) = rows(ex, Balance, account_id=ex.account)
    assert balance["cash"] == Decimal("-1075.00000")
    assert ex.store.verify_positions(ex.account) == []


async def test_order_over_the_notional_limit_is_rejected_with_its_reason_stored(
    endpoints: Endpoints, unique: str, tmp_path: Path
) -> None:
    harness = ExecutorHarness(
        endpoints, unique, tmp_path, risk=risk_section(max_order_notional="5000")
    )
    await harness.setup()
    harness.trade("EURUSD", "1.07500")
    await harness.start_executor()
    try:
        big, small = harness.order(quantity="10000"), harness.order(quantity="100")
        await harness.send(big, small)

        reports = await harness.terminal_reports([big.intent_id, small.intent_id])

        (rejection,) = reports[big.intent_id]
        assert rejection.exec_type is ExecType.REJECTED
        assert rejection.reject_code == "risk.max_order_notional"
        assert reports[small.intent_id][-1].order_status is OrderStatus.FILLED
        (intent_row,) = rows(harness, Intent, intent_id=str(big.intent_id))
        assert intent_row["accepted"] is False or intent_row["accepted"] == 0
        assert intent_row["reject_code"] == "risk.max_order_notional"
        assert json.loads(str(intent_row["body"]))["quantity"] == "10000"
        assert harness.broker is not None
        submitted = harness.sync_redis.hgetall(harness.broker.submissions_key(harness.account))
        assert str(big.intent_id).encode() not in submitted
    finally:
        await harness.close()


async def test_unknown_symbol_and_unknown_account_are_rejected(ex: ExecutorHarness) -> None:
    unknown_symbol = ex.order(symbol="NOPE")
    stranger = protocol.NewOrder(
        intent_id=protocol.new_intent_id(),
        ts_ms=protocol.now_ms(),
        account_id="someone-else",
        bot_id="bot-a",
        symbol="EURUSD",
        side=Side.BUY,
        quantity=Decimal(1),
    )
    await ex.send(unknown_symbol, stranger)

    reports = await ex.terminal_reports([unknown_symbol.intent_id, stranger.intent_id])

    assert reports[unknown_symbol.intent_id][0].reject_code == "risk.instrument_unknown"
    assert reports[stranger.intent_id][0].reject_code == "account.unknown"


async def test_malformed_records_go_to_the_dead_letter_topic_and_the_loop_goes_on(
    ex: ExecutorHarness,
) -> None:
    readable_id = protocol.new_intent_id()
    bad_field = json.dumps(
        {
            "v": 1,
            "action": "new",
            "intent_id": str(readable_id),
            "ts_ms": protocol.now_ms(),
            "account_id": ex.account,
            "bot_id": "bot-a",
            "symbol": "EURUSD",
            "side": "buy",
            "quantity": "-5",
        }
    ).encode()
    future = json.dumps({"v": 2, "action": "new", "intent_id": str(uuid.uuid4())}).encode()
    good = ex.order()
    await ex.send(b"\x00not json", bad_field, future, good)

    reports = await ex.terminal_reports([readable_id, good.intent_id])
    letters = await ex.dead_letters(3)

    (rejection,) = reports[readable_id]
    assert rejection.reject_code == "decode.invalid"
    assert "quantity" in (rejection.reject_reason or "")
    assert rejection.symbol == "EURUSD" and rejection.side is Side.BUY
    assert reports[good.intent_id][-1].order_status is OrderStatus.FILLED
    codes = [dict(letter.headers)["coyote-error-code"] for letter in letters]
    assert codes == [b"decode.malformed", b"decode.invalid", b"decode.unsupported_version"]
    assert letters[0].value == b"\x00not json"


async def test_an_intent_delivered_twice_places_one_order(ex: ExecutorHarness) -> None:
    order = ex.order()
    await ex.send(order, order)
    await ex.terminal_reports([order.intent_id])
    follow = ex.order()
    await ex.send(order, follow)  # once more, in a later batch
    await ex.terminal_reports([follow.intent_id])

    assert len([r for r in ex.received if r.order_id == order.intent_id]) == 2
    assert ex.broker is not None
    count = ex.sync_redis.hget(ex.broker.submissions_key(ex.account), str(order.intent_id))
    assert count == b"1"
    assert len(rows(ex, Order, order_id=str(order.intent_id))) == 1


async def test_resting_limit_order_fills_when_the_market_crosses(ex: ExecutorHarness) -> None:
    order = ex.limit("1.07000", side=Side.BUY)
    await ex.send(order)
    await ex.reports_until(lambda rs: any(r.exec_type is ExecType.ACCEPTED for r in rs))

    ex.trade("EURUSD", "1.06950")
    reports = (await ex.terminal_reports([order.intent_id]))[order.intent_id]

    assert [r.exec_type for r in reports] == [ExecType.ACCEPTED, ExecType.TRADE]
    # A resting order fills at its limit when the market trades through it.
    assert reports[1].last_price == Decimal("1.07000")


async def test_cancel_and_replace_of_a_resting_order(ex: ExecutorHarness) -> None:
    order = ex.limit("1.07000", quantity="1000")
    await ex.send(order)
    await ex.reports_until(lambda rs: any(r.order_id == order.intent_id for r in rs))
    replace = ReplaceOrder(
        intent_id=protocol.new_intent_id(),
        ts_ms=protocol.now_ms(),
        account_id=ex.account,
        bot_id="bot-a",
        order_id=order.intent_id,
        limit_price=Decimal("1.07100"),
        quantity=Decimal(2000),
    )
    cancel = ex.cancel(order.intent_id)
    cancel_unknown = ex.cancel(uuid.uuid4())
    await ex.send(replace, cancel, cancel_unknown)

    await ex.terminal_reports([order.intent_id, cancel_unknown.order_id])

    by_cause = {r.intent_id: r for r in ex.received}
    assert by_cause[replace.intent_id].exec_type is ExecType.REPLACED
    assert by_cause[replace.intent_id].quantity == Decimal(2000)
    assert by_cause[cancel.intent_id].exec_type is ExecType.CANCELED
    orphan = by_cause[cancel_unknown.intent_id]
    assert orphan.reject_code == "order.not_open" and orphan.symbol is None
    (row,) = rows(ex, Order, order_id=str(order.intent_id))
    assert row["status"] == "canceled" and row["limit_price"] == Decimal("1.07100")


async def test_large_order_fills_in_parts_with_limited_liquidity(
    endpoints: Endpoints, unique: str, tmp_path: Path
) -> None:
    harness = ExecutorHarness(endpoints, unique, tmp_path, paper={"liquidity": "1000"})
    await harness.setup()
    harness.trade("EURUSD", "1.07500")
    await harness.start_executor()
    try:
        order = harness.order(quantity="2500")
        await harness.send(order)

        reports = (await harness.terminal_reports([order.intent_id]))[order.intent_id]

        trades = [r for r in reports if r.exec_type is ExecType.TRADE]
        assert [t.last_quantity for t in trades] == [Decimal(1000), Decimal(1000), Decimal(500)]
        assert [t.order_status for t in trades] == [
            OrderStatus.PARTIALLY_FILLED,
            OrderStatus.PARTIALLY_FILLED,
            OrderStatus.FILLED,
        ]
        assert harness.store.verify_positions(harness.account) == []
    finally:
        await harness.close()


async def test_ioc_limit_that_cannot_fill_is_cancelled(ex: ExecutorHarness) -> None:
    order = ex.limit("1.07000", time_in_force=TimeInForce.IOC)
    await ex.send(order)

    reports = (await ex.terminal_reports([order.intent_id]))[order.intent_id]

    assert [r.exec_type for r in reports] == [ExecType.ACCEPTED, ExecType.CANCELED]


async def test_stale_intent_is_rejected(ex: ExecutorHarness) -> None:
    old = ex.order(ts_ms=protocol.now_ms() - 3_600_000)
    await ex.send(old)

    (report,) = (await ex.terminal_reports([old.intent_id]))[old.intent_id]

    assert report.reject_code == "intent.expired"


async def test_a_cancel_is_carried_out_however_late(ex: ExecutorHarness) -> None:
    resting = ex.limit("1.07000")
    await ex.send(resting)
    await ex.reports_until(lambda rs: resting.intent_id in {r.order_id for r in rs})
    late = ex.cancel(resting.intent_id, ts_ms=protocol.now_ms() - 3_600_000)
    await ex.send(late)

    reports = (await ex.terminal_reports([resting.intent_id]))[resting.intent_id]

    assert reports[-1].exec_type is ExecType.CANCELED


async def test_restarted_executor_recovers_open_orders_and_risk_state(ex: ExecutorHarness) -> None:
    resting = ex.limit("1.07000", quantity="1000")
    await ex.send(resting)
    await ex.reports_until(lambda rs: any(r.order_id == resting.intent_id for r in rs))
    await ex.stop_executor()

    await ex.start_executor()
    ex.trade("EURUSD", "1.06900")

    reports = (await ex.terminal_reports([resting.intent_id]))[resting.intent_id]
    assert reports[-1].exec_type is ExecType.TRADE
    assert len([r for r in reports if r.exec_type is ExecType.ACCEPTED]) == 1


async def test_records_to_postgresql(endpoints: Endpoints, unique: str, tmp_path: Path) -> None:
    schema = f"test_{unique}"
    admin = sa.create_engine(endpoints.database_url)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = endpoints.database_url + ("&" if "?" in endpoints.database_url else "?")
    harness = ExecutorHarness(
        endpoints, unique, tmp_path, database_url=f"{url}options=-csearch_path%3D{schema}"
    )
    await harness.setup()
    harness.trade("EURUSD", "1.07500")
    await harness.start_executor()
    try:
        order = harness.order(quantity="1000")
        await harness.send(order)
        reports = (await harness.terminal_reports([order.intent_id]))[order.intent_id]

        assert reports[-1].order_status is OrderStatus.FILLED
        assert harness.store.engine.dialect.name == "postgresql"
        (row,) = rows(harness, Fill, order_id=str(order.intent_id))
        assert row["price"] == Decimal("1.07500")
        assert harness.store.verify_positions(harness.account) == []
    finally:
        await harness.close()
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


async def test_a_replace_moves_the_risk_reservation_to_the_new_quantity(
    endpoints: Endpoints, unique: str, tmp_path: Path
) -> None:
    section = risk_section()
    section["symbols"] = {"EURUSD": {"max_position": "3000"}}
    harness = ExecutorHarness(endpoints, unique, tmp_path, risk=section)
    await harness.setup()
    harness.trade("EURUSD", "1.07500")
    await harness.start_executor()
    try:
        resting = harness.limit("1.07000", quantity="1000")
        await harness.send(resting)
        await harness.reports_until(lambda rs: any(r.order_id == resting.intent_id for r in rs))
        grow = ReplaceOrder(
            intent_id=protocol.new_intent_id(),
            ts_ms=protocol.now_ms(),
            account_id=harness.account,
            bot_id="bot-a",
            order_id=resting.intent_id,
            quantity=Decimal(2000),
        )
        await harness.send(grow)
        await harness.reports_until(lambda rs: any(r.intent_id == grow.intent_id for r in rs))
        # 2000 resting: another 1000 fits under the 3000 limit, 1001 would not.
        fits, too_much = (
            harness.limit("1.07000", quantity="1000"),
            harness.limit("1.07000", quantity="1001"),
        )
        await harness.send(too_much, fits)

        await harness.reports_until(
            lambda rs: {fits.intent_id, too_much.intent_id} <= {r.order_id for r in rs}
        )

        by_order = {r.order_id: r for r in harness.received}
        assert by_order[too_much.intent_id].reject_code == "risk.max_position"
        assert by_order[fits.intent_id].exec_type is ExecType.ACCEPTED
    finally:
        await harness.close()


async def test_an_order_whose_submission_failed_is_sent_by_the_next_reconciliation(
    ex: ExecutorHarness,
) -> None:
    broker = ex.broker
    assert broker is not None
    submit_many = broker.submit_many
    calls: list[int] = []

    async def unavailable_once(orders: list[BrokerOrder]) -> list[BrokerOrderState]:
        calls.append(len(orders))
        if len(calls) == 1:
            raise BrokerUnavailable("the venue is down")
        return await submit_many(orders)

    broker.submit_many = unavailable_once
    order = ex.order()
    await ex.send(order)

    reports = (await ex.terminal_reports([order.intent_id]))[order.intent_id]

    assert reports[-1].order_status is OrderStatus.FILLED
    assert calls == [1, 1]
    submissions = ex.sync_redis.hgetall(broker.submissions_key(ex.account))
    assert submissions == {str(order.intent_id).encode(): b"1"}


async def test_an_order_the_broker_took_but_whose_answer_was_lost_is_not_sent_again(
    ex: ExecutorHarness,
) -> None:
    broker = ex.broker
    assert broker is not None
    submit_many = broker.submit_many
    calls: list[int] = []

    async def answer_lost_once(orders: list[BrokerOrder]) -> list[BrokerOrderState]:
        calls.append(len(orders))
        states = await submit_many(orders)
        if len(calls) == 1:
            raise BrokerUnavailable("HTTP 502 after the venue took the order")
        return states

    broker.submit_many = answer_lost_once
    order = ex.order()
    await ex.send(order)

    reports = (await ex.terminal_reports([order.intent_id]))[order.intent_id]

    assert reports[-1].order_status is OrderStatus.FILLED
    assert len([r for r in reports if r.order_status.is_terminal]) == 1
    assert calls == [1]  # reconciliation found it by its client order id
    submissions = ex.sync_redis.hgetall(broker.submissions_key(ex.account))
    assert submissions == {str(order.intent_id).encode(): b"1"}


async def test_intents_a_fenced_predecessor_recorded_after_the_dedupe_read_are_its_own(
    ex: ExecutorHarness, caplog: pytest.LogCaptureFixture
) -> None:
    # CI: a predecessor frozen inside its transaction (recording decisions) committed it when
    # thawed, after its successor had read the records and while the successor's insert of the
    # same intents waited on its row locks; the successor's insert failed, and it stopped for
    # good. Here the predecessor's transaction is the same step's changes, committed first.
    broker = ex.broker
    assert broker is not None
    apply = ex.store.apply
    written_first: list[int] = []

    def predecessor_commits_first(changes: Changes) -> None:
        if changes.intents and not written_first:
            written_first.append(len(changes.intents))
            apply(changes)  # the predecessor's transaction, committed late
        apply(changes)

    ex.store.apply = predecessor_commits_first  # type: ignore[method-assign]
    orders = [ex.order() for _ in range(3)]
    await ex.send(*orders)

    reports = await ex.terminal_reports([o.intent_id for o in orders])

    assert written_first
    assert not ex.task.done(), "the executor stopped"
    assert "written meanwhile" in caplog.text
    for order in orders:
        terminal = [r for r in reports[order.intent_id] if r.order_status.is_terminal]
        assert [r.order_status for r in terminal] == [OrderStatus.FILLED]
    # Its orders recorded and never sent went to the broker once, by the take-over.
    submissions = ex.sync_redis.hgetall(broker.submissions_key(ex.account))
    assert submissions == {str(o.intent_id).encode(): b"1" for o in orders}
    assert ex.store.verify_positions(ex.account) == []


async def test_an_order_change_a_fenced_predecessor_recorded_late_is_recorded_and_reported_once(
    ex: ExecutorHarness, caplog: pytest.LogCaptureFixture
) -> None:
    # The predecessor, frozen inside the transaction recording a cancel's answer, committed it
    # when thawed, after its successor had read the order: the successor's record of the same
    # cancel (with reports of its own) must not be written too — two cancel reports in the
    # records, both of which a redelivery could publish.
    resting = ex.limit("1.07000")
    await ex.send(resting)
    await ex.reports_until(lambda rs: resting.intent_id in {r.order_id for r in rs})
    apply = ex.store.apply
    predecessors: list[Changes] = []

    def predecessor_commits_first(changes: Changes) -> None:
        cancelled = [o for o in changes.updated_orders.values() if o.status is OrderStatus.CANCELED]
        if cancelled and not predecessors:
            # The same change, decided by the predecessor: its own reports.
            theirs = dataclasses.replace(
                changes.frozen(),
                reports=[
                    msgspec.structs.replace(r, report_id=uuid.uuid4()) for r in changes.reports
                ],
                bodies={},
                traceparents={},
            )
            predecessors.append(theirs)
            apply(theirs)
        apply(changes)

    ex.store.apply = predecessor_commits_first  # type: ignore[method-assign]
    await ex.send(ex.cancel(resting.intent_id))

    reports = (await ex.terminal_reports([resting.intent_id]))[resting.intent_id]
    await asyncio.sleep(1.0)  # a second report would come now
    await ex.reports_until(lambda _: True)

    assert predecessors, "no cancel was recorded"
    assert not ex.task.done(), "the executor stopped"
    assert "written meanwhile" in caplog.text
    cancels = [
        r for r in ex.received if r.order_id == resting.intent_id and r.order_status.is_terminal
    ]
    assert [r.order_status for r in cancels] == [OrderStatus.CANCELED]
    assert reports[-1].order_status is OrderStatus.CANCELED
    recorded = rows(ex, Report, order_id=str(resting.intent_id), exec_type="canceled")
    assert len(recorded) == 1


async def test_rows_written_meanwhile_again_and_again_stop_the_executor(
    ex: ExecutorHarness,
) -> None:
    # Not a predecessor's late commit (it has at most two transactions in flight) but a bug:
    # the executor stops on it rather than reload for ever.
    apply = ex.store.apply

    def always_written(changes: Changes) -> None:
        if changes.intents:
            raise sa.exc.IntegrityError("INSERT INTO intents", {}, Exception("duplicate key"))
        apply(changes)

    ex.store.apply = always_written  # type: ignore[method-assign]
    await ex.send(ex.order())

    done, _ = await asyncio.wait({ex.task}, timeout=30)

    assert done, "the executor reloads for ever"
    with pytest.raises(sa.exc.IntegrityError, match="duplicate key"):
        await ex.stop_executor()


async def test_an_executor_fenced_off_at_the_venue_stops_and_its_successor_sends_its_orders(
    ex: ExecutorHarness, caplog: pytest.LogCaptureFixture
) -> None:
    # The zombie of the fault scenario, in-process: a newer executor took the account on at
    # the venue (its paper broker serves it now) while this one went on deciding.
    client = aioredis.Redis.from_url(ex.endpoints.redis_url)
    newer = PaperBroker(client, {ex.account: PaperSettings(venue=ex.venue)})
    try:
        await newer.serve([ex.account])
    finally:
        await client.aclose()
    order = ex.order()
    await ex.send(order)

    done, _ = await asyncio.wait({ex.task}, timeout=30)

    assert done, "the fenced executor went on"
    with pytest.raises(Fenced, match="another executor has taken account"):
        await ex.stop_executor()
    assert "fenced by a newer instance at the venue" in caplog.text
    orders_key = f"coyote:paper:{ex.account}:orders"
    assert ex.sync_redis.hget(orders_key, str(order.intent_id)) is None
    assert [str(o.order_id) for o in ex.store.open_orders([ex.account])] == [str(order.intent_id)]
    # Recorded and not sent: the successor's take-over sends it, once.
    await ex.start_executor()
    reports = (await ex.terminal_reports([order.intent_id]))[order.intent_id]
    assert [r.order_status for r in reports if r.order_status.is_terminal] == [OrderStatus.FILLED]
    submissions = ex.sync_redis.hgetall(f"coyote:paper:{ex.account}:submissions")
    assert submissions == {str(order.intent_id).encode(): b"1"}


async def test_closing_the_paper_broker_ends_a_matcher_that_swallowed_its_cancellation(
    endpoints: Endpoints,
) -> None:
    # CI caught an executor stopping that waited for ever in the paper broker's close: the
    # matcher, cancelled, carried on (a cancellation lost inside a client library).
    client = aioredis.Redis.from_url(endpoints.redis_url)
    broker = PaperBroker(client, {"a": PaperSettings(venue="v")}, match_interval_ms=10)
    in_match = asyncio.Event()

    async def swallowing_match_once() -> None:
        in_match.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(3600)

    broker.match_once = swallowing_match_once  # type: ignore[method-assign]
    try:
        await broker.start(lambda _account, _states: None)
        await asyncio.wait_for(in_match.wait(), 5)
        matcher = broker._matcher
        assert matcher is not None

        closing = asyncio.create_task(broker.close())
        await asyncio.wait({closing}, timeout=10)  # not wait_for: it would wait for ever too

        assert closing.done(), "close() waits for the matcher for ever"
        assert matcher.done()
    finally:
        await client.aclose()


async def test_the_paper_venue_unreachable_is_a_broker_outage_not_a_crash() -> None:
    (port,) = free_ports(1)  # nothing listens there
    client = aioredis.Redis.from_url(f"redis://127.0.0.1:{port}/0", socket_connect_timeout=1)
    broker = PaperBroker(client, {"a": PaperSettings(venue="v")})
    order = BrokerOrder("c1", "a", "EURUSD", Side.BUY, Decimal(1))
    try:
        await broker.serve(["a"])  # not taken on: the venue does not answer
        with pytest.raises(BrokerUnavailable, match="paper venue unreachable"):
            await broker.submit_many([order])
        with pytest.raises(BrokerUnavailable, match="paper venue unreachable"):
            await broker.lookup("a", "c1")
        with pytest.raises(BrokerUnavailable, match="paper venue unreachable"):
            await broker.cancel("a", "c1")
        with pytest.raises(BrokerUnavailable, match="paper venue unreachable"):
            await broker.open_orders("a")
    finally:
        await client.aclose()


async def test_only_the_owner_of_an_account_works_its_resting_orders(ex: ExecutorHarness) -> None:
    """Two paper brokers on one venue, as two executors have after a rebalance: the one that
    serves the account fills its resting order, the other has let go of it."""
    client = aioredis.Redis.from_url(ex.endpoints.redis_url)
    former = PaperBroker(client, {ex.account: PaperSettings(venue=ex.venue)}, match_interval_ms=20)
    filled_by_former: list[str] = []

    async def note(_account: str, states: Any) -> None:
        filled_by_former.extend(s.client_order_id for s in states if s.filled_quantity)

    resting = ex.limit("1.07000")
    await ex.send(resting)
    await ex.reports_until(lambda rs: resting.intent_id in {r.order_id for r in rs})
    await former.start(note)
    try:
        await former.serve(())  # the account is another executor's
        ex.trade("EURUSD", "1.06900")  # through the limit

        reports = (await ex.terminal_reports([resting.intent_id]))[resting.intent_id]
        await asyncio.sleep(0.2)  # a few more of the former's matching rounds
    finally:
        await former.close()
        await client.aclose()

    assert reports[-1].order_status is OrderStatus.FILLED
    assert filled_by_former == []
    (blob,) = ex.sync_redis.hmget(f"coyote:paper:{ex.account}:orders", [str(resting.intent_id)])
    (fill,) = json.loads(blob)["fills"]
    assert Decimal(str(fill["quantity"])) == 1000
