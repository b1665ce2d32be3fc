"""OpenTelemetry traces on the real stack: an intent's trace from the bot runtime through the
risk decision and the order to its fills, the context stored with the order and carried by the
execution reports' Kafka headers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from coyote_executor import traces
from coyote_executor.models import Order
from coyote_sdk.config import Endpoints
from coyote_sdk.control import set_control_flag
from coyote_sdk.protocol import BotState, CancelOrder, ExecType, RuntimeState, Side
from coyote_sdk.runtime import BotRuntime, RuntimeOptions
from coyote_sdk.runtime import _runtime as runtime_module
from coyote_sdk.tracing import headers_of
from tests.executor._harness import ExecutorHarness, risk_section, until
from tests.sdk._runtime_harness import Buyer, make_bar

pytestmark = pytest.mark.integration


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """Every span the executor and the bot runtime finish, kept in memory.

    The SDK is installed in their tracers only, not as the process' global provider, which
    can be set once and would then record every other test's spans too."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(traces, "tracer", provider.get_tracer("coyote_executor"))
    monkeypatch.setattr(runtime_module, "tracer", provider.get_tracer("coyote_sdk.runtime"))
    yield exporter
    provider.shutdown()


@pytest.fixture
async def ex(endpoints: Endpoints, unique: str, tmp_path: Path) -> AsyncIterator[ExecutorHarness]:
    harness = ExecutorHarness(endpoints, unique, tmp_path)
    await harness.setup()
    harness.trade("EURUSD", "1.07500")
    harness.trade("GOOG", "100.00")
    await harness.start_executor()
    yield harness
    await harness.close()


def named(exporter: InMemorySpanExporter, name: str, **attributes: object) -> list[ReadableSpan]:
    """The finished spans called ``name`` whose attributes include ``attributes``."""
    return [
        s
        for s in exporter.get_finished_spans()
        if s.name == name and all((s.attributes or {}).get(k) == v for k, v in attributes.items())
    ]


def order_traceparent(ex: ExecutorHarness, order_id: object) -> str | None:
    table = Order.__table__  # type: ignore[attr-defined]
    with ex.store.engine.connect() as conn:
        value = conn.execute(
            sa.select(table.c.traceparent).where(table.c.order_id == str(order_id))
        ).scalar_one()
    return value if value is None else str(value)


def trace_id_of(traceparent: str | bytes) -> int:
    text = traceparent.decode() if isinstance(traceparent, bytes) else traceparent
    return int(text.split("-")[1], 16)


def span_id_of(traceparent: str | bytes) -> int:
    text = traceparent.decode() if isinstance(traceparent, bytes) else traceparent
    return int(text.split("-")[2], 16)


def event_names(span: ReadableSpan) -> list[str]:
    return [e.name for e in span.events]


async def test_an_intent_sent_by_the_runtime_is_decided_ordered_and_filled_in_its_trace(
    ex: ExecutorHarness, spans: InMemorySpanExporter, endpoints: Endpoints
) -> None:
    bot_id = f"bot-{ex.unique}"
    client = redis.Redis.from_url(endpoints.redis_url)
    set_control_flag(client, bot_id, BotState.RUNNING)
    bot = Buyer()
    options = RuntimeOptions(
        bot_id=bot_id,
        account_id=ex.account,
        venue=ex.venue,
        intents_topic=ex.intents_topic,
        reports_topic=ex.reports_topic,
    )
    runtime = BotRuntime(bot, options, endpoints)
    task = asyncio.create_task(runtime.run())
    try:
        await until(lambda: runtime.state is RuntimeState.RUNNING, "runtime running")
        runtime._events.put_nowait(("bar", make_bar(ex.venue, 1)))
        await until(lambda: len(bot.fills) == 1, "the bot's order filled")
        runtime.request_stop()
        await asyncio.wait_for(task, 20)
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        client.delete(f"coyote:bot:{bot_id}:control", f"coyote:bot:{bot_id}:state")
        client.close()
    order_id = bot.fills[0].order_id
    reports = (await ex.terminal_reports([order_id]))[order_id]

    (sent,) = named(spans, "coyote.intent.send", **{"coyote.intent.id": str(order_id)})
    (processed,) = named(spans, "coyote.intent.process", **{"coyote.intent.id": str(order_id)})
    trace_id = sent.context.trace_id
    # The executor continued the runtime's trace: its span is the child of the one that sent.
    assert sent.kind is SpanKind.PRODUCER and sent.parent is None
    assert processed.kind is SpanKind.CONSUMER
    assert processed.context.trace_id == trace_id
    assert processed.parent is not None and processed.parent.span_id == sent.context.span_id
    attributes = processed.attributes or {}
    assert attributes["coyote.risk.decision"] == "accepted"
    assert "coyote.reject.code" not in attributes
    assert event_names(processed) == ["order.recorded", "order.accepted", "order.trade"]
    # Stored with the order, and on every report the executor published.
    stored = order_traceparent(ex, order_id)
    assert stored is not None
    assert (trace_id_of(stored), span_id_of(stored)) == (trace_id, processed.context.span_id)
    assert [r.exec_type for r in reports] == [ExecType.ACCEPTED, ExecType.TRADE]
    for report in reports:
        assert ex.report_headers[report.report_id]["traceparent"] == stored.encode()
    # The bot runtime read the reports in the order's trace.
    handled = named(spans, "coyote.report.process", **{"coyote.order.id": str(order_id)})
    assert {s.attributes["coyote.exec_type"] for s in handled if s.attributes} == {
        "accepted",
        "trade",
    }
    assert {s.context.trace_id for s in handled} == {trace_id}


async def test_an_intent_without_trace_headers_starts_a_new_trace(
    ex: ExecutorHarness, spans: InMemorySpanExporter
) -> None:
    order = ex.order(quantity="1000")

    await ex.send(order)

    reports = (await ex.terminal_reports([order.intent_id]))[order.intent_id]
    assert reports[-1].exec_type is ExecType.TRADE
    (processed,) = named(
        spans, "coyote.intent.process", **{"coyote.intent.id": str(order.intent_id)}
    )
    assert processed.parent is None
    stored = order_traceparent(ex, order.intent_id)
    assert stored is not None and trace_id_of(stored) == processed.context.trace_id
    for report in reports:
        assert ex.report_headers[report.report_id]["traceparent"] == stored.encode()


async def test_an_intent_without_trace_headers_and_without_the_sdk_is_traded_untraced(
    ex: ExecutorHarness,
) -> None:
    order = ex.order(quantity="1000")

    await ex.send(order)

    reports = (await ex.terminal_reports([order.intent_id]))[order.intent_id]
    assert reports[-1].exec_type is ExecType.TRADE
    assert order_traceparent(ex, order.intent_id) is None
    assert all("traceparent" not in ex.report_headers[r.report_id] for r in reports)


async def test_a_trace_context_is_passed_on_without_the_sdk(ex: ExecutorHarness) -> None:
    sender = TracerProvider().get_tracer("test")
    span = sender.start_span("test.send")
    order = ex.order(quantity="1000")

    await ex.send(order, headers=headers_of(span))

    reports = (await ex.terminal_reports([order.intent_id]))[order.intent_id]
    stored = order_traceparent(ex, order.intent_id)
    # No SDK in the executor: no span of its own, but the context it received goes on.
    assert stored is not None
    assert (trace_id_of(stored), span_id_of(stored)) == (
        span.get_span_context().trace_id,
        span.get_span_context().span_id,
    )
    assert all(ex.report_headers[r.report_id]["traceparent"] == stored.encode() for r in reports)


async def test_a_rejected_intent_span_carries_the_reason_code(
    endpoints: Endpoints, unique: str, tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    harness = ExecutorHarness(
        endpoints, unique, tmp_path, risk=risk_section(max_order_notional="5000")
    )
    await harness.setup()
    harness.trade("EURUSD", "1.07500")
    await harness.start_executor()
    try:
        order = harness.order(quantity="10000")  # 10,750 notional
        await harness.send(order)
        (report,) = (await harness.terminal_reports([order.intent_id]))[order.intent_id]
        await harness.send(
            b"{not json", headers=headers_of(TracerProvider().get_tracer("t").start_span("x"))
        )
        (dead,) = await harness.dead_letters(1)
    finally:
        await harness.close()

    assert report.reject_code == "risk.max_order_notional"
    (processed,) = named(
        spans, "coyote.intent.process", **{"coyote.intent.id": str(order.intent_id)}
    )
    attributes = processed.attributes or {}
    assert attributes["coyote.risk.decision"] == "rejected"
    assert attributes["coyote.reject.code"] == "risk.max_order_notional"
    assert "max_order_notional" in str(attributes["coyote.reject.reason"])
    assert (
        harness.report_headers[report.report_id]["traceparent"]
        == order_traceparent(harness, order.intent_id).encode()
    )  # type: ignore[union-attr]
    (malformed,) = named(
        spans, "coyote.intent.process", **{"coyote.reject.code": "decode.malformed"}
    )
    assert malformed.status.status_code is StatusCode.ERROR
    # The dead letter keeps the record's trace context, as it keeps the rest of it.
    assert trace_id_of(dict(dead.headers)["traceparent"]) == malformed.context.trace_id


async def test_a_resting_order_filled_later_is_traced_in_the_orders_trace(
    ex: ExecutorHarness, spans: InMemorySpanExporter
) -> None:
    order = ex.limit("1.07000", quantity="1000")
    await ex.send(order)
    await ex.reports_until(
        lambda rs: any(
            r.exec_type is ExecType.ACCEPTED and r.order_id == order.intent_id for r in rs
        )
    )

    ex.trade("EURUSD", "1.06900")  # the paper matcher fills it, steps after its intent's

    reports = (await ex.terminal_reports([order.intent_id]))[order.intent_id]
    fill = reports[-1]
    assert fill.exec_type is ExecType.TRADE
    (processed,) = named(
        spans, "coyote.intent.process", **{"coyote.intent.id": str(order.intent_id)}
    )
    assert event_names(processed) == ["order.recorded", "order.accepted"]
    (update,) = named(spans, "coyote.order.update", **{"coyote.order.id": str(order.intent_id)})
    assert update.context.trace_id == processed.context.trace_id
    assert update.parent is not None and update.parent.span_id == processed.context.span_id
    assert event_names(update) == ["order.trade"]
    assert update.events[0].attributes["coyote.fill.id"] == fill.fill_id  # type: ignore[index]
    # Published late, from the table: the header came from the stored report.
    header = ex.report_headers[fill.report_id]["traceparent"]
    assert trace_id_of(header) == processed.context.trace_id
    assert span_id_of(header) == update.context.span_id


async def test_a_cancel_is_traced_in_the_orders_trace_and_linked_to_the_cancel_intent(
    ex: ExecutorHarness, spans: InMemorySpanExporter
) -> None:
    order = ex.limit("1.07000", quantity="1000")
    await ex.send(order)
    await ex.reports_until(
        lambda rs: any(
            r.exec_type is ExecType.ACCEPTED and r.order_id == order.intent_id for r in rs
        )
    )
    cancel = CancelOrder(
        intent_id=ex.order().intent_id,
        ts_ms=order.ts_ms,
        account_id=ex.account,
        bot_id=order.bot_id,
        order_id=order.intent_id,
    )

    await ex.send(cancel)

    reports = (await ex.terminal_reports([order.intent_id]))[order.intent_id]
    canceled = reports[-1]
    assert canceled.exec_type is ExecType.CANCELED
    placed = named(spans, "coyote.intent.process", **{"coyote.intent.id": str(order.intent_id)})
    (asked,) = named(spans, "coyote.intent.process", **{"coyote.intent.id": str(cancel.intent_id)})
    (update,) = named(spans, "coyote.order.update", **{"coyote.order.id": str(order.intent_id)})
    assert update.context.trace_id == placed[0].context.trace_id != asked.context.trace_id
    assert [link.context.span_id for link in update.links] == [asked.context.span_id]
    assert (asked.attributes or {})["coyote.order.id"] == str(order.intent_id)
    assert "order.canceled" in event_names(asked)
    header = ex.report_headers[canceled.report_id]["traceparent"]
    assert trace_id_of(header) == placed[0].context.trace_id
    assert canceled.side is Side.BUY


async def test_an_order_taken_over_after_a_restart_is_filled_in_its_trace_on_postgresql(
    endpoints: Endpoints, unique: str, tmp_path: Path, spans: InMemorySpanExporter
) -> None:
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
        resting = harness.limit("1.07000", quantity="1000")
        await harness.send(resting)
        await harness.reports_until(lambda rs: any(r.order_id == resting.intent_id for r in rs))
        await harness.stop_executor()

        await harness.start_executor()  # the open order comes back from the database
        harness.trade("EURUSD", "1.06900")

        reports = (await harness.terminal_reports([resting.intent_id]))[resting.intent_id]
        stored = order_traceparent(harness, resting.intent_id)
    finally:
        await harness.close()
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()

    assert reports[-1].exec_type is ExecType.TRADE
    (processed,) = named(
        spans, "coyote.intent.process", **{"coyote.intent.id": str(resting.intent_id)}
    )
    (update,) = named(spans, "coyote.order.update", **{"coyote.order.id": str(resting.intent_id)})
    assert stored is not None and span_id_of(stored) == processed.context.span_id
    assert update.context.trace_id == processed.context.trace_id
    assert update.parent is not None and update.parent.span_id == processed.context.span_id
