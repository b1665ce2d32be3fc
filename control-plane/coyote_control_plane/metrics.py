"""Prometheus metrics of the API and of the deployments it supervises."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.engine import Engine
from sqlmodel import Session, func, select
from starlette.requests import Request
from starlette.responses import Response

from coyote_control_plane.models import Deployment


class _DeploymentsByStatus(Collector):
    """Counted at scrape time from the database, so every replica reports the same."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauge = GaugeMetricFamily(
            "coyote_deployments", "Deployments by observed status", labels=["status"]
        )
        with Session(self._engine) as session:
            rows = session.exec(
                select(Deployment.status, func.count()).group_by(Deployment.status)
            ).all()
        for status, count in rows:
            gauge.add_metric([str(status)], count)
        yield gauge


class Metrics:
    def __init__(self, engine: Engine) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "coyote_http_requests",
            "HTTP requests by route template, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "coyote_http_request_seconds",
            "HTTP request latency by route template",
            ["route", "method"],
            registry=self.registry,
        )
        self.registry.register(_DeploymentsByStatus(engine))

    async def middleware(
        self, request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = _template(request)
        # Streams (events, followed logs) would skew latencies: only their count is kept.
        if response.media_type not in ("text/event-stream",):
            self.latency.labels(route, request.method).observe(time.perf_counter() - started)
        self.requests.labels(route, request.method, str(response.status_code)).inc()
        return response


def _template(request: Request) -> str:
    """The matched route's path template (``/v1/bots/{name}``): one label per route, not per
    URL. The router records the route in the scope it shares with this middleware."""
    return str(getattr(request.scope.get("route"), "path", "unmatched"))
