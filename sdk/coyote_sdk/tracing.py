"""OpenTelemetry traces across Coyote's processes: an intent's way from the bot to its fills.

The trace context travels in Kafka record headers, as W3C Trace Context (``traceparent`` and
``tracestate``, see :data:`coyote_sdk.protocol.TRACEPARENT_HEADER`); the messages themselves
are unchanged. Spans are made with the OpenTelemetry API only: without an SDK configured they
cost next to nothing and export nothing, but a context that arrives is still passed on.

:func:`configure_tracing` installs the SDK in a service process when the standard ``OTEL_*``
variables ask for an exporter (nothing is exported by default). See docs/executor.md#traces.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanContext
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from coyote_sdk.protocol import TRACEPARENT_HEADER, TRACESTATE_HEADER

if TYPE_CHECKING:  # the SDK is optional (coyote-sdk[otel]); imported when configured
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

__all__ = [
    "TRACEPARENT_HEADER",
    "TRACESTATE_HEADER",
    "configure_tracing",
    "context_from_headers",
    "context_from_traceparent",
    "exporter_names",
    "headers_of",
    "traceparent_of",
    "tracer_provider",
]

log = logging.getLogger("coyote.tracing")

_PROPAGATOR = TraceContextTextMapPropagator()
"""W3C Trace Context, whatever ``OTEL_PROPAGATORS`` says: the headers are part of the wire
protocol, read by consumers in any language."""

_EXPORTERS = {
    "otlp": {
        "http/protobuf": "opentelemetry.exporter.otlp.proto.http.trace_exporter",
        "grpc": "opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
    },
    "console": {"": "opentelemetry.sdk.trace.export"},
}
_EXPORTER_CLASS = {"otlp": "OTLPSpanExporter", "console": "ConsoleSpanExporter"}
_DISTRIBUTIONS = {
    "http/protobuf": "opentelemetry-exporter-otlp-proto-http",
    "grpc": "opentelemetry-exporter-otlp-proto-grpc",
    "": "opentelemetry-sdk",
}


# -- PROPAGATION -------------------------------------------------------------------------------


def context_from_headers(headers: Iterable[tuple[str, bytes | None]] | None) -> Context | None:
    """The trace context a Kafka record carries in its headers, or None without a valid one.

    Args:
        headers: The record's headers, as aiokafka gives them.
    """
    if not headers:
        return None
    carrier: dict[str, str] = {}
    for name, value in headers:
        if value is not None and name in (TRACEPARENT_HEADER, TRACESTATE_HEADER):
            carrier[name] = value.decode("latin-1")
    if TRACEPARENT_HEADER not in carrier:
        return None
    context = _PROPAGATOR.extract(carrier)
    return context if trace.get_current_span(context).get_span_context().is_valid else None


def context_from_traceparent(traceparent: str | None) -> Context | None:
    """The context of a stored ``traceparent`` (e.g. an order's), or None if there is none."""
    if not traceparent:
        return None
    context = _PROPAGATOR.extract({TRACEPARENT_HEADER: traceparent})
    return context if trace.get_current_span(context).get_span_context().is_valid else None


def traceparent_of(span: Span | SpanContext) -> str | None:
    """The W3C ``traceparent`` of ``span``, or None when it has no valid context (no SDK and
    no context received)."""
    ctx = span if isinstance(span, SpanContext) else span.get_span_context()
    if not ctx.is_valid:
        return None
    return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{ctx.trace_flags:02x}"


def headers_of(span: Span) -> list[tuple[str, bytes]]:
    """The Kafka headers that carry ``span``'s context (``traceparent``, and ``tracestate``
    when it has one); none when its context is not valid."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, trace.set_span_in_context(span))
    return [(name, value.encode("latin-1")) for name, value in carrier.items()]


# -- CONFIGURATION -----------------------------------------------------------------------------


def configure_tracing(
    service_name: str,
    *,
    attributes: Mapping[str, str] | None = None,
) -> list[str]:
    """Installs the OpenTelemetry SDK, exporting spans, when the ``OTEL_*`` variables ask.

    See :func:`tracer_provider` for the variables read. ``OTEL_SDK_DISABLED=true`` turns
    everything off, and a tracer provider already installed (``opentelemetry-instrument``) is
    left alone.

    Args:
        service_name: ``service.name`` unless ``OTEL_SERVICE_NAME`` or
            ``OTEL_RESOURCE_ATTRIBUTES`` set one.
        attributes: More resource attributes (e.g. the bot id); the environment's win.

    Returns:
        The exporters installed; empty when nothing is exported.

    Raises:
        ValueError: ``OTEL_TRACES_EXPORTER`` or the OTLP protocol names something unknown, or
            the package of a chosen exporter is not installed.
    """
    if not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return []  # someone configured tracing already
    names = exporter_names(os.environ)
    provider = tracer_provider(service_name, attributes=attributes)
    if provider is None:
        return []
    trace.set_tracer_provider(provider)
    log.info("traces exported (%s) as service %s", ", ".join(names), service_name)
    return names


def tracer_provider(
    service_name: str,
    *,
    attributes: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> SdkTracerProvider | None:
    """The SDK's tracer provider the ``OTEL_*`` variables ask for, or None if they ask for none.

    Exporting is off unless ``OTEL_TRACES_EXPORTER`` names exporters (``otlp``, ``console``,
    comma-separated; ``none`` turns it off) or an OTLP endpoint is set
    (``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``), which means
    ``otlp`` (``OTEL_EXPORTER_OTLP_PROTOCOL``: ``http/protobuf``, the default, or ``grpc``).
    The exporters, the sampler (``OTEL_TRACES_SAMPLER``), the batching (``OTEL_BSP_*``) and
    the resource (``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``) read their own
    standard variables from the process' environment.

    Args:
        service_name: ``service.name`` unless the environment sets one.
        attributes: More resource attributes; the environment's win.
        environ: Where to read which exporters are asked for (``os.environ`` by default).
    """
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    names = exporter_names(env)
    if not names:
        return None
    exporters = [_exporter(name, env) for name in names]

    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # The environment's resource (OTEL_RESOURCE_ATTRIBUTES, OTEL_SERVICE_NAME) wins over ours.
    found = dict(Resource.create().attributes)
    if str(found.get(SERVICE_NAME, "")).startswith("unknown_service"):
        del found[SERVICE_NAME]  # the SDK's placeholder, not a name anybody gave
    resource = Resource({SERVICE_NAME: service_name, **(attributes or {})}).merge(Resource(found))
    provider = TracerProvider(resource=resource)
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def exporter_names(env: Mapping[str, str]) -> list[str]:
    """The trace exporters ``env`` asks for (see :func:`tracer_provider`)."""
    configured = env.get("OTEL_TRACES_EXPORTER", "").strip()
    if not configured:
        # The SDK's own default is otlp; here an endpoint must ask for it, so that a process
        # nobody pointed at a collector does not try to reach one on localhost.
        endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get(
            "OTEL_EXPORTER_OTLP_ENDPOINT"
        )
        return ["otlp"] if endpoint else []
    names = [n.strip().lower() for n in configured.split(",") if n.strip()]
    if "none" in names:
        return []
    for name in names:
        if name not in _EXPORTERS:
            raise ValueError(f"OTEL_TRACES_EXPORTER names {name!r}: expected otlp, console or none")
    return list(dict.fromkeys(names))


def _exporter(name: str, env: Mapping[str, str]) -> SpanExporter:
    if name == "otlp":
        protocol = (
            env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
            or "http/protobuf"
        ).strip()
        if protocol not in _EXPORTERS["otlp"]:
            raise ValueError(
                f"OTLP protocol {protocol!r} is not supported: expected http/protobuf or grpc"
            )
    else:
        protocol = ""
    try:
        module = importlib.import_module(_EXPORTERS[name][protocol])
    except ImportError as exc:
        raise ValueError(
            f"the {name} trace exporter ({protocol or 'console'}) needs the package "
            f"{_DISTRIBUTIONS[protocol]}, which is not installed"
        ) from exc
    exporter: SpanExporter = getattr(module, _EXPORTER_CLASS[name])()
    return exporter
