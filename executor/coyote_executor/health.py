"""The executor's health endpoints: ``/healthz``, ``/readyz`` and ``/metrics``.

The intent loop reports on itself into an :class:`ExecutorHealth` (the executor owns one, as
:attr:`Executor.health <coyote_executor.service.Executor.health>`), and a small HTTP server in
a thread of its own answers from it, so a probe never waits on the event loop:

- ``/healthz`` (liveness) is 200 while the loop makes progress: a step finished, or an outage
  is being waited out (a database or Kafka retry), within ``stale_after_s``. A loop stuck
  elsewhere fails it and Kubernetes restarts the pod; an outage does not, since a restart would
  not cure it.
- ``/readyz`` (readiness) is 200 once the executor has taken over the partitions of its latest
  assignment and neither the database nor Kafka is failing; during a rebalance, an outage or
  shutdown it is 503 and names what is wrong.
- ``/metrics`` is Prometheus' text format, with :mod:`prometheus_client` as in the control plane:
  readiness, steps, partitions and accounts owned, seconds since the last progress; the trading
  itself — intents decided by action, execution reports by type, rejections by reason code,
  alerts by kind, broker call latency by broker and call, open orders by status (``pending_new``
  is in flight at the broker) and the consumer lag per partition; and the process's own metrics.

The server is off unless ``COYOTE_EXECUTOR_HEALTH_PORT`` is set (the Helm chart sets it).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from coyote_executor.config import Settings
from coyote_sdk.protocol import ExecutionReport

log = logging.getLogger("coyote.executor.health")


@dataclasses.dataclass(frozen=True)
class Verdict:
    """The answer of one probe: whether it passes, and a line per thing it checked."""

    ok: bool
    checks: dict[str, str]

    def body(self) -> dict[str, Any]:
        return {"status": "ok" if self.ok else "unavailable", "checks": self.checks}


class ExecutorHealth:
    """What the intent loop says about itself; written by the loop, read by the server thread.

    Every field is replaced whole (never mutated in place), so a reader in another thread sees
    either the old or the new value.

    Args:
        clock: Monotonic seconds (tests inject their own).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.last_progress = clock()
        """When the loop last finished a step or retried through an outage (monotonic)."""
        self.steps = 0
        """Steps finished since start."""
        self.partitions: tuple[int, ...] | None = None
        """Intent partitions taken over; None while joining the group or rebalancing."""
        self.accounts = 0
        """Accounts owned through those partitions."""
        self.database_error: str | None = None
        """Why the last database call failed, until one succeeds."""
        self.kafka_error: str | None = None
        """Why the last Kafka transaction failed, until one succeeds."""
        self.stopping = False
        # The trading, counted as it happens (prometheus_client's metrics are thread-safe; they
        # are registered with the health server's registry, not the process-wide one, so that
        # several executors in one process keep apart).
        self.intents = Counter(
            "coyote_executor_intents", "Intents decided", ["action"], registry=None
        )
        self.reports = Counter(
            "coyote_executor_reports", "Execution reports recorded", ["exec_type"], registry=None
        )
        self.rejections = Counter(
            "coyote_executor_rejections", "Rejections by reason code", ["reason"], registry=None
        )
        self.alerts = Counter("coyote_executor_alerts", "Alerts raised", ["kind"], registry=None)
        self.broker_seconds = Histogram(
            "coyote_executor_broker_call_seconds",
            "Broker calls' duration, failed calls included",
            ["broker", "call"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=None,
        )
        self.open_orders: dict[str, int] = {}
        """Open orders by status, as of the last count."""
        self.consumer_lag: dict[int, int] = {}
        """Intent records not yet consumed, per owned partition, as of the last count."""

    # -- written by the loop -------------------------------------------------------------------

    def progressed(self) -> None:
        """The loop is alive: a step finished, or it is retrying through an outage."""
        self.last_progress = self._clock()

    def stepped(self) -> None:
        """One step of the loop finished."""
        self.steps += 1
        self.last_progress = self._clock()

    def assigned(self, partitions: Iterable[int], accounts: int) -> None:
        """The executor took over ``partitions`` and the ``accounts`` on them."""
        self.partitions = tuple(sorted(partitions))
        self.accounts = accounts

    def revoked(self) -> None:
        """A rebalance began: nothing is owned until the next assignment is taken over."""
        self.partitions = None
        self.accounts = 0

    def database(self, error: BaseException | None) -> None:
        """A database call succeeded (``None``) or failed with ``error``."""
        self.database_error = None if error is None else _describe(error)
        if error is not None:
            self.progressed()

    def kafka(self, error: BaseException | None) -> None:
        """A Kafka transaction succeeded (``None``) or failed with ``error``."""
        self.kafka_error = None if error is None else _describe(error)
        if error is not None:
            self.progressed()

    def reported(self, reports: Iterable[ExecutionReport]) -> None:
        """Counts execution reports about to be recorded, and the rejections among them."""
        # Counted first, then added per label: a labelled child's lookup costs ~1 us.
        kinds: collections.Counter[str] = collections.Counter()
        codes: collections.Counter[str] = collections.Counter()
        for report in reports:
            kinds[report.exec_type.value] += 1
            if report.reject_code is not None:
                codes[report.reject_code] += 1
        for kind, count in kinds.items():
            self.reports.labels(kind).inc(count)
        for code, count in codes.items():
            self.rejections.labels(code).inc(count)

    @contextlib.contextmanager
    def broker_call(self, broker: str, call: str) -> Iterator[None]:
        """Times one broker call (``with health.broker_call("paper", "submit"): ...``)."""
        with self.broker_seconds.labels(broker, call).time():
            yield

    # -- read by the server --------------------------------------------------------------------

    def seconds_since_progress(self) -> float:
        return max(0.0, self._clock() - self.last_progress)

    def liveness(self, stale_after_s: float) -> Verdict:
        """Passes while the loop has progressed within ``stale_after_s`` seconds."""
        idle = self.seconds_since_progress()
        if idle <= stale_after_s:
            return Verdict(True, {"loop": f"ok (last progress {idle:.1f} s ago)"})
        return Verdict(
            False, {"loop": f"stalled: no progress for {idle:.0f} s (limit {stale_after_s:g} s)"}
        )

    def readiness(self) -> Verdict:
        """Passes when the partitions are taken over and the database and Kafka answer."""
        checks: dict[str, str] = {}
        partitions = self.partitions
        if self.stopping:
            checks["executor"] = "down: stopping"
        if partitions is None:
            checks["partitions"] = "down: not assigned yet (joining the group or rebalancing)"
        else:
            listed = ", ".join(map(str, partitions)) or "none"
            checks["partitions"] = f"ok ({listed}; {self.accounts} accounts)"
        database, kafka = self.database_error, self.kafka_error
        checks["database"] = "ok" if database is None else f"down: {database}"
        checks["kafka"] = "ok" if kafka is None else f"down: {kafka}"
        return Verdict(all(c.startswith("ok") for c in checks.values()), checks)


def _describe(error: BaseException) -> str:
    # The exception's class and first line: enough to tell an outage, short, and without the
    # connection string a driver may put further down.
    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {first}"[:200] if first else type(error).__name__


class _ExecutorCollector(Collector):
    """Metrics read from :class:`ExecutorHealth` at scrape time."""

    def __init__(self, health: ExecutorHealth) -> None:
        self._health = health

    def collect(self) -> Iterator[Any]:
        health = self._health
        ready = GaugeMetricFamily(
            "coyote_executor_ready",
            "1 when the executor owns its partitions and its services answer",
        )
        ready.add_metric([], 1.0 if health.readiness().ok else 0.0)
        yield ready
        steps = CounterMetricFamily("coyote_executor_steps", "Steps of the intent loop finished")
        steps.add_metric([], health.steps)
        yield steps
        idle = GaugeMetricFamily(
            "coyote_executor_seconds_since_progress", "Seconds since the loop last made progress"
        )
        idle.add_metric([], health.seconds_since_progress())
        yield idle
        partitions = GaugeMetricFamily(
            "coyote_executor_partitions", "Intent partitions this executor owns"
        )
        partitions.add_metric([], len(health.partitions or ()))
        yield partitions
        accounts = GaugeMetricFamily("coyote_executor_accounts", "Accounts this executor owns")
        accounts.add_metric([], health.accounts)
        yield accounts
        up = GaugeMetricFamily(
            "coyote_executor_dependency_up",
            "1 when the dependency's last call succeeded",
            labels=["dependency"],
        )
        up.add_metric(["database"], 0.0 if health.database_error else 1.0)
        up.add_metric(["kafka"], 0.0 if health.kafka_error else 1.0)
        yield up
        for metric in (
            health.intents,
            health.reports,
            health.rejections,
            health.alerts,
            health.broker_seconds,
        ):
            yield from metric.collect()
        open_orders = GaugeMetricFamily(
            "coyote_executor_open_orders", "Open orders by status", labels=["status"]
        )
        for status, count in sorted(health.open_orders.items()):
            open_orders.add_metric([status], count)
        yield open_orders
        lag = GaugeMetricFamily(
            "coyote_executor_consumer_lag",
            "Intent records not yet consumed, per partition",
            labels=["partition"],
        )
        for partition, behind in sorted(health.consumer_lag.items()):
            lag.add_metric([str(partition)], behind)
        yield lag


class HealthServer:
    """Serves ``/healthz``, ``/readyz`` and ``/metrics`` of ``health`` from a thread.

    Args:
        health: The executor's :class:`ExecutorHealth`.
        host: Address to bind.
        port: Port to bind; 0 picks a free one (see :attr:`port`).
        stale_after_s: ``/healthz`` fails after this long without progress.

    Example:
        >>> with HealthServer(executor.health, port=8410):
        ...     await executor.run(stop)
    """

    def __init__(
        self,
        health: ExecutorHealth,
        *,
        host: str = "0.0.0.0",
        port: int = 0,
        stale_after_s: float = 60.0,
    ) -> None:
        self.health = health
        self.stale_after_s = stale_after_s
        self.registry = CollectorRegistry()
        self.registry.register(_ExecutorCollector(health))
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self._server = ThreadingHTTPServer((host, port), _handler(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port bound (useful with ``port=0``)."""
        return int(self._server.server_address[1])

    def start(self) -> HealthServer:
        """Starts answering, in a daemon thread."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever, name="coyote-executor-health", daemon=True
            )
            self._thread.start()
            log.info("health endpoints on port %d: /healthz /readyz /metrics", self.port)
        return self

    def close(self) -> None:
        """Stops answering and releases the port."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> HealthServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.close()


def _handler(server: HealthServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "coyote-executor"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                self._verdict(server.health.liveness(server.stale_after_s))
            elif path == "/readyz":
                self._verdict(server.health.readiness())
            elif path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, generate_latest(server.registry))
            else:
                body = {"error": {"code": "not_found", "message": f"no route {path}"}}
                self._send(404, "application/json", json.dumps(body).encode())

        def _verdict(self, verdict: Verdict) -> None:
            body = json.dumps(verdict.body()).encode()
            self._send(200 if verdict.ok else 503, "application/json", body)

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            # Probes every few seconds would drown the executor's log.
            log.debug("health: " + format, *args)

    return Handler


def health_server(settings: Settings, health: ExecutorHealth) -> HealthServer | None:
    """The health server ``settings`` ask for (``health_port``), started; None when off."""
    if settings.health_port is None:
        return None
    return HealthServer(
        health,
        host=settings.health_host,
        port=settings.health_port,
        stale_after_s=settings.health_stale_after_s,
    ).start()
