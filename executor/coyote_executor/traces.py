"""The executor's OpenTelemetry spans: each intent's decision and what became of its order.

- ``coyote.intent.process`` (consumer): one per intent record, the child of the context its
  Kafka headers carry (the bot runtime's ``coyote.intent.send``) or the root of a new trace.
  It starts when the record is taken and ends when the step's Kafka transaction committed;
  the risk decision is in its attributes, the order's way in its events (``order.recorded``,
  the broker's answer as one event per execution report, ``broker.failed``).
- ``coyote.order.update``: a later change of an order — a fill of a resting order, a cancel,
  an expiry, a state found by reconciliation — as a child of the order's stored context
  (:attr:`~coyote_executor.orders.LiveOrder.traceparent`), linked to the cancel or replace
  intent that caused it.

Events rather than child spans for the steps inside an intent's processing: they are shared by
the whole batch (one transaction, one broker call), and a span costs ~15 us with the SDK against
~3 us for an event (see docs/executor.md#traces). Without an SDK every span is a non-recording
one that only carries the context it was given: attributes and events are skipped.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from importlib.metadata import version
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode

from coyote_executor.orders import LiveOrder
from coyote_sdk.protocol import ExecType, ExecutionReport, OrderIntent
from coyote_sdk.tracing import context_from_headers, context_from_traceparent

tracer = trace.get_tracer("coyote_executor", version("coyote-executor"))

INTENT_SPAN = "coyote.intent.process"
ORDER_UPDATE_SPAN = "coyote.order.update"


def intent_span(record: Any) -> Span:
    """Starts the span of the intent ``record`` (an aiokafka record) in the trace its headers
    carry, or in a new one."""
    span = tracer.start_span(
        INTENT_SPAN, context_from_headers(record.headers), kind=SpanKind.CONSUMER
    )
    if span.is_recording():
        span.set_attributes(
            {
                "messaging.system": "kafka",
                "messaging.operation.type": "process",
                "messaging.destination.name": record.topic,
                "messaging.destination.partition.id": str(record.partition),
                "messaging.kafka.offset": record.offset,
            }
        )
    return span


def decided(
    span: Span,
    intent: OrderIntent,
    order_id: str | None,
    reject_code: str | None,
    reject_reason: str | None,
) -> None:
    """The decision on ``intent``: ``coyote.risk.decision`` is ``accepted`` or ``rejected``,
    with ``coyote.reject.code`` and ``coyote.reject.reason``."""
    if not span.is_recording():
        return
    attributes: dict[str, str] = {
        "coyote.intent.id": str(intent.intent_id),
        "coyote.intent.action": str(type(intent).__struct_config__.tag),
        "coyote.account.id": intent.account_id,
        "coyote.bot.id": intent.bot_id,
        "coyote.risk.decision": "accepted" if reject_code is None else "rejected",
    }
    if order_id is not None:
        attributes["coyote.order.id"] = order_id
    symbol = getattr(intent, "symbol", None)
    if symbol is not None:
        attributes["coyote.symbol"] = symbol
    if reject_code is not None:
        attributes["coyote.reject.code"] = reject_code
        attributes["coyote.reject.reason"] = reject_reason or ""
    span.set_attributes(attributes)


def refused(span: Span, code: str, reason: str) -> None:
    """A record that is not a valid intent: rejected with ``code``, an error."""
    if span.is_recording():
        span.set_attributes(
            {
                "coyote.risk.decision": "rejected",
                "coyote.reject.code": code,
                "coyote.reject.reason": reason,
            }
        )
        span.set_status(Status(StatusCode.ERROR, code))


def skipped(span: Span, why: str) -> None:
    """A record not decided here: ``duplicate`` or ``redelivered`` (its recorded reports are
    published again)."""
    if span.is_recording():
        span.set_attribute("coyote.intent.skipped", why)


def event(spans: Iterable[Span], name: str, **attributes: str) -> None:
    """Adds the event ``name`` to each recording span of ``spans``."""
    for span in spans:
        if span.is_recording():
            span.add_event(name, attributes)


def report_events(span: Span, reports: Sequence[ExecutionReport]) -> None:
    """One event per report, named ``order.<exec_type>`` (``order.accepted``,
    ``order.trade``, ``order.canceled``, ...)."""
    if not span.is_recording():
        return
    for report in reports:
        attributes = {
            "coyote.report.id": str(report.report_id),
            "coyote.order.status": report.order_status.value,
        }
        if report.exec_type is ExecType.TRADE:
            attributes["coyote.fill.id"] = report.fill_id or ""
            attributes["coyote.fill.quantity"] = str(report.last_quantity)
            attributes["coyote.fill.price"] = str(report.last_price)
        elif report.reject_code is not None:
            attributes["coyote.reject.code"] = report.reject_code
        span.add_event(f"order.{report.exec_type.value}", attributes)


def order_update(
    order: LiveOrder, reports: Sequence[ExecutionReport], *, cause: Span | None = None
) -> Span:
    """The span of a change of ``order`` outside its intent's processing, in the order's
    trace, linked to the span of the intent that caused it; ended on return."""
    links = None
    if cause is not None and cause.get_span_context().is_valid:
        links = [Link(cause.get_span_context())]
    span = tracer.start_span(
        ORDER_UPDATE_SPAN, context_from_traceparent(order.traceparent), links=links
    )
    if span.is_recording():
        intent = order.intent
        span.set_attributes(
            {
                "coyote.order.id": str(order.order_id),
                "coyote.account.id": intent.account_id,
                "coyote.bot.id": intent.bot_id,
                "coyote.symbol": intent.symbol,
                "coyote.order.status": order.status.value,
            }
        )
        report_events(span, reports)
    span.end()
    return span
