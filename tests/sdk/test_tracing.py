"""Trace context in Kafka headers, and the SDK configured from the standard OTEL_* variables."""

from __future__ import annotations

import importlib.util

import pytest
from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import INVALID_SPAN, NonRecordingSpan, SpanContext, TraceFlags, TraceState

from coyote_sdk.tracing import (
    context_from_headers,
    context_from_traceparent,
    exporter_names,
    headers_of,
    traceparent_of,
    tracer_provider,
)

pytestmark = pytest.mark.unit

TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def test_headers_carry_a_span_context_and_read_back_the_same() -> None:
    context = SpanContext(
        0x0AF7651916CD43DD8448EB211C80319C,
        0xB7AD6B7169203331,
        is_remote=False,
        trace_flags=TraceFlags(1),
        trace_state=TraceState([("vendor", "x")]),
    )
    headers = headers_of(NonRecordingSpan(context))

    assert dict(headers) == {"traceparent": TRACEPARENT.encode(), "tracestate": b"vendor=x"}
    read = trace.get_current_span(context_from_headers(headers)).get_span_context()
    assert (read.trace_id, read.span_id, read.trace_state) == (
        context.trace_id,
        context.span_id,
        context.trace_state,
    )
    assert traceparent_of(read) == TRACEPARENT


@pytest.mark.parametrize(
    "headers",
    [
        None,
        [],
        [("coyote-error", b"x")],
        [("traceparent", b"not a trace context")],
        [("traceparent", b"00-00000000000000000000000000000000-b7ad6b7169203331-01")],
        [("traceparent", None)],
    ],
)
def test_records_without_a_valid_traceparent_have_no_context(headers: object) -> None:
    assert context_from_headers(headers) is None  # type: ignore[arg-type]


def test_a_span_without_a_valid_context_has_no_headers_and_no_traceparent() -> None:
    assert headers_of(INVALID_SPAN) == []
    assert traceparent_of(INVALID_SPAN) is None
    assert context_from_traceparent(None) is None
    assert context_from_traceparent("garbage") is None


def test_stored_traceparent_reads_back_as_a_parent() -> None:
    span = (
        TracerProvider().get_tracer("t").start_span("child", context_from_traceparent(TRACEPARENT))
    )

    assert span.get_span_context().trace_id == 0x0AF7651916CD43DD8448EB211C80319C
    assert span.parent is not None and span.parent.span_id == 0xB7AD6B7169203331  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, []),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, ["otlp"]),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, ["otlp"]),
        ({"OTEL_TRACES_EXPORTER": "console, OTLP"}, ["console", "otlp"]),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"}, []),
    ],
)
def test_exporting_is_off_unless_the_environment_asks(
    environ: dict[str, str], expected: list[str]
) -> None:
    assert exporter_names(environ) == expected


def test_an_unknown_exporter_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match=r"'zipkin'.*expected otlp, console or none"):
        exporter_names({"OTEL_TRACES_EXPORTER": "zipkin"})


def test_no_provider_unless_asked_or_when_disabled() -> None:
    assert tracer_provider("coyote-test", environ={}) is None
    disabled = {"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "console"}
    assert tracer_provider("coyote-test", environ=disabled) is None


def test_the_console_exporter_names_the_service_unless_the_environment_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test")
    provider = tracer_provider(
        "coyote-test",
        attributes={"coyote.bot.id": "b1"},
        environ={"OTEL_TRACES_EXPORTER": "console"},
    )
    assert provider is not None
    attributes = provider.resource.attributes
    assert attributes[SERVICE_NAME] == "coyote-test"
    assert attributes["coyote.bot.id"] == "b1"
    assert attributes["deployment.environment"] == "test"

    monkeypatch.setenv("OTEL_SERVICE_NAME", "renamed")
    provider = tracer_provider("coyote-test", environ={"OTEL_TRACES_EXPORTER": "console"})
    assert provider is not None and provider.resource.attributes[SERVICE_NAME] == "renamed"


def test_otlp_over_http_needs_its_exporter_package() -> None:
    environ = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}
    try:
        installed = importlib.util.find_spec("opentelemetry.exporter.otlp.proto.http") is not None
    except ModuleNotFoundError:  # not even its namespace package
        installed = False
    if not installed:
        with pytest.raises(ValueError, match="opentelemetry-exporter-otlp-proto-http"):
            tracer_provider("coyote-test", environ=environ)
    else:
        provider = tracer_provider("coyote-test", environ=environ)
        assert provider is not None
        provider.shutdown()
    with pytest.raises(ValueError, match="'thrift'"):
        tracer_provider("coyote-test", environ={**environ, "OTEL_EXPORTER_OTLP_PROTOCOL": "thrift"})
