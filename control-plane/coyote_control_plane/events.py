"""Live events of an organisation: what the dashboard shows and webhooks deliver.

Sources, merged by :class:`EventHub`:

* the control plane's own Redis stream :data:`EVENTS_STREAM` (bot status changes and the
  cancels of lost runtimes' orders from the supervisor, kill switches from the API), so every
  API replica sees every change;
* the executor's alerts (:data:`coyote_sdk.protocol.ALERTS_STREAM`);
* execution reports from Kafka: order updates, fills, risk rejections.

Events carry the organisation's slug; it is the prefix of every runtime and account id
(``<org>.<name>``), so reports and alerts are routed without a database lookup.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from typing import Any

import msgspec
import redis
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer
from pydantic import BaseModel, Field

from coyote_sdk import protocol
from coyote_sdk.protocol import Alert, ExecType, ExecutionReport, OrderStatus, now_ms
from coyote_sdk.tasks import cancel_and_wait

logger = logging.getLogger("coyote.control_plane.events")

EVENTS_STREAM = f"{protocol.KEY_PREFIX}:cp:events"
_STREAM_MAXLEN = 10_000
_QUEUE_SIZE = 1_000
_CLOSE_WITHIN_S = 10.0
"""How long the hub's readers have to stop: a Kafka consumer's stop can hang on a broker that
went away, and a control plane asked to stop must stop."""

KINDS = (
    "bot.status",
    "bot.crashed",
    "bot.failed",
    "bot.orders_cancelled",
    "order.update",
    "fill",
    "risk.rejection",
    "alert",
    "kill_switch.tripped",
    "kill_switch.reset",
    "canary.started",
    "canary.promoted",
    "canary.discarded",
    "canary.ended",
)


class Event(BaseModel):
    """One live event, as the stream ``GET /v1/events`` sends it and webhooks deliver it."""

    id: str
    ts_ms: int
    org: str
    kind: str = Field(examples=list(KINDS))
    message: str
    deployment: str | None = None
    account: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def of(
        cls,
        kind: str,
        org: str,
        message: str,
        *,
        deployment: str | None = None,
        account: str | None = None,
        **data: Any,
    ) -> Event:
        return cls(
            id=uuid.uuid4().hex,
            ts_ms=now_ms(),
            org=org,
            kind=kind,
            message=message,
            deployment=deployment,
            account=account,
            data=data,
        )


def publish(client: redis.Redis, event: Event) -> None:
    client.xadd(
        EVENTS_STREAM,
        {"event": event.model_dump_json()},
        maxlen=_STREAM_MAXLEN,
        approximate=True,
    )


def publish_safely(client: redis.Redis, event: Event) -> None:
    """Publishes, logging instead of failing: an event lost to a Redis outage must not undo
    the change it reports (which is in the database)."""
    try:
        publish(client, event)
    except redis.RedisError as exc:
        logger.warning("event %s for %s not published: %s", event.kind, event.org, exc)


def recent(client: redis.Redis, org: str, *, limit: int) -> list[Event]:
    """The organisation's latest events from the control plane's stream, newest first."""
    found: list[Event] = []
    entries: Any = client.xrevrange(EVENTS_STREAM, count=_STREAM_MAXLEN)
    for _id, fields in entries:
        event = Event.model_validate_json(fields[b"event"])
        if event.org == org:
            found.append(event)
            if len(found) >= limit:
                break
    return found


def _split(runtime_id: str | None) -> tuple[str | None, str | None]:
    if not runtime_id or "." not in runtime_id:
        return None, None
    org, _, name = runtime_id.partition(".")
    return org, name


def report_event(report: ExecutionReport) -> Event | None:
    """The event of an execution report, or None if no organisation owns its account."""
    org, account = _split(report.account_id)
    if org is None:
        return None
    _, deployment = _split(report.bot_id)
    if report.exec_type is ExecType.TRADE:
        kind = "fill"
        message = f"{report.side} {report.last_quantity} {report.symbol} @ {report.last_price}"
    elif report.order_status is OrderStatus.REJECTED:
        kind = "risk.rejection"
        message = f"rejected {report.reject_code}: {report.reject_reason}"
    else:
        kind = "order.update"
        message = f"{report.symbol} order {report.order_status}"
    return Event(
        id=str(report.report_id),
        ts_ms=report.ts_ms,
        org=org,
        kind=kind,
        message=message,
        deployment=deployment,
        account=account,
        data=msgspec.to_builtins(report),
    )


def alert_event(alert: Alert) -> Event | None:
    org, account = _split(alert.account_id)
    bot_org, deployment = _split(alert.bot_id)
    org = org or bot_org
    if org is None:
        return None
    return Event(
        id=str(alert.alert_id),
        ts_ms=alert.ts_ms,
        org=org,
        kind="alert",
        message=alert.message,
        deployment=deployment,
        account=account,
        data={"severity": alert.severity, "alert_kind": alert.kind},
    )


class EventHub:
    """Tails the sources and fans events out to subscribers (SSE streams, webhooks).

    A subscriber that falls behind by more than its queue loses its oldest events rather than
    slowing the others; the stream tells it how many with a ``dropped`` count.
    """

    def __init__(self, *, redis_url: str, kafka_bootstrap: str, reports_topic: str) -> None:
        self._redis_url = redis_url
        self._kafka_bootstrap = kafka_bootstrap
        self._reports_topic = reports_topic
        self._subscribers: dict[asyncio.Queue[Event], Callable[[Event], bool]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self.dropped = 0

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._tail_redis(), name="events-redis"),
            asyncio.create_task(self._tail_reports(), name="events-reports"),
        ]

    async def close(self) -> None:
        await cancel_and_wait(self._tasks, within=_CLOSE_WITHIN_S, log=logger)

    def subscribe(self, accept: Callable[[Event], bool]) -> asyncio.Queue[Event]:
        queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=_QUEUE_SIZE)
        self._subscribers[queue] = accept
        return queue

    def unsubscribe(self, queue: asyncio.Queue[Event]) -> None:
        self._subscribers.pop(queue, None)

    def dispatch(self, event: Event) -> None:
        for queue, accept in list(self._subscribers.items()):
            if not accept(event):
                continue
            if queue.full():
                queue.get_nowait()
                self.dropped += 1
            queue.put_nowait(event)

    async def _tail_redis(self) -> None:
        client = aioredis.Redis.from_url(self._redis_url)
        try:
            last = {EVENTS_STREAM: "$", protocol.ALERTS_STREAM: "$"}
            while True:
                try:
                    answer: Any = await client.xread(last, block=1000, count=500)  # type: ignore[arg-type]
                except (redis.RedisError, OSError) as exc:
                    logger.warning("event streams unreadable, retrying: %s", exc)
                    await asyncio.sleep(1)
                    continue
                for stream, entries in answer:
                    name = stream.decode()
                    for entry_id, fields in entries:
                        last[name] = entry_id
                        event = self._decode(name, fields)
                        if event is not None:
                            self.dispatch(event)
        finally:
            await client.aclose()

    @staticmethod
    def _decode(stream: str, fields: dict[bytes, bytes]) -> Event | None:
        try:
            if stream == EVENTS_STREAM:
                return Event.model_validate_json(fields[b"event"])
            return alert_event(protocol.decode(fields[b"alert"], Alert))
        except (KeyError, ValueError, protocol.ProtocolError) as exc:
            logger.warning("undecodable entry in %s skipped: %s", stream, exc)
            return None

    async def _tail_reports(self) -> None:
        while True:
            consumer = AIOKafkaConsumer(
                self._reports_topic,
                bootstrap_servers=self._kafka_bootstrap,
                auto_offset_reset="latest",
                enable_auto_commit=False,
                isolation_level="read_committed",
            )
            try:
                await consumer.start()
                async for record in consumer:
                    try:
                        report = protocol.decode(record.value or b"", ExecutionReport)
                    except protocol.ProtocolError:
                        continue
                    event = report_event(report)
                    if event is not None:
                        self.dispatch(event)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Kafka away: keep the other sources, retry
                logger.warning("execution reports unreadable, retrying: %s", exc)
                await asyncio.sleep(2)
            finally:
                with contextlib.suppress(Exception):
                    await consumer.stop()
