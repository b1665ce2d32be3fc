"""Delivers events to the organisations' webhooks, with retries that survive a restart.

Each matching event becomes a :class:`~coyote_control_plane.models.WebhookDelivery` row first;
a delivery loop sends due rows and, on failure, retries with exponential backoff until
``max_attempts``. Generic webhooks get the event as JSON, signed with HMAC-SHA256; Slack and
Telegram get a message in their own format.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from typing import Any

import httpx
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select
from starlette.concurrency import run_in_threadpool

from coyote_control_plane.events import Event, EventHub
from coyote_control_plane.models import (
    Organization,
    Webhook,
    WebhookDelivery,
    WebhookFormat,
)
from coyote_sdk.protocol import now_ms
from coyote_sdk.tasks import cancel_and_wait

logger = logging.getLogger("coyote.control_plane.notifications")

_CLOSE_WITHIN_S = 5.0
"""How long stopping waits for the delivery tasks (a delivery under way is retried later)."""


def signature(secret: str, body: bytes) -> str:
    """The ``X-Coyote-Signature`` of a generic webhook's body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def render(hook: Webhook, event: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
    """The request body and headers of ``event`` for ``hook``'s format."""
    text = f"[{event['org']}] {event['kind']}: {event['message']}"
    if hook.format is WebhookFormat.SLACK:
        body = json.dumps({"text": text}).encode()
        return body, {"Content-Type": "application/json"}
    if hook.format is WebhookFormat.TELEGRAM:
        body = json.dumps({"chat_id": hook.chat_id, "text": text}).encode()
        return body, {"Content-Type": "application/json"}
    body = json.dumps(event, sort_keys=True).encode()
    return body, {
        "Content-Type": "application/json",
        "X-Coyote-Event": event["kind"],
        "X-Coyote-Delivery": event["id"],
        "X-Coyote-Signature": signature(hook.secret, body),
    }


class Notifier:
    """Turns hub events into deliveries and sends them.

    Args:
        engine: The control plane's database.
        hub: Where events come from.
        max_attempts: Attempts before a delivery is given up.
        backoff_base_s: First retry delay; it doubles per attempt, up to ``backoff_max_s``.
    """

    def __init__(
        self,
        engine: Engine,
        hub: EventHub,
        *,
        max_attempts: int = 8,
        backoff_base_s: float = 2.0,
        backoff_max_s: float = 300.0,
        poll_s: float = 0.5,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.engine = engine
        self.hub = hub
        self.max_attempts = max_attempts
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.poll_s = poll_s
        self._client = httpx.AsyncClient(timeout=10, transport=transport)
        self._queue: asyncio.Queue[Event] | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._queue = self.hub.subscribe(lambda _event: True)
        self._tasks = [
            asyncio.create_task(self._enqueue_loop(), name="webhooks-enqueue"),
            asyncio.create_task(self._deliver_loop(), name="webhooks-deliver"),
        ]

    async def close(self) -> None:
        if self._queue is not None:
            self.hub.unsubscribe(self._queue)
        await cancel_and_wait(self._tasks, within=_CLOSE_WITHIN_S, log=logger)
        await self._client.aclose()

    # -- enqueue -------------------------------------------------------------------------------

    async def _enqueue_loop(self) -> None:
        assert self._queue is not None
        while True:
            event = await self._queue.get()
            try:
                await run_in_threadpool(self.enqueue, event)
            except sa.exc.SQLAlchemyError as exc:
                logger.warning("event %s not queued for webhooks: %s", event.id, exc)

    def enqueue(self, event: Event) -> int:
        """Records a delivery of ``event`` for every webhook of its organisation that wants
        it; returns how many."""
        with Session(self.engine) as session:
            org = session.exec(select(Organization).where(Organization.slug == event.org)).first()
            if org is None:
                return 0
            hooks = session.exec(select(Webhook).where(Webhook.org_id == org.id)).all()
            count = 0
            for hook in hooks:
                if "*" in hook.kinds or event.kind in hook.kinds:
                    session.add(
                        WebhookDelivery(
                            webhook_id=hook.id,  # type: ignore[arg-type]
                            event=event.model_dump(),
                            next_attempt_ms=now_ms(),
                        )
                    )
                    count += 1
            session.commit()
            return count

    # -- deliver -------------------------------------------------------------------------------

    async def _deliver_loop(self) -> None:
        while True:
            try:
                await self.deliver_due()
            except sa.exc.SQLAlchemyError as exc:
                logger.warning("webhook deliveries paused: %s", exc)
            await asyncio.sleep(self.poll_s)

    async def deliver_due(self) -> int:
        """Sends every delivery that is due; returns how many succeeded."""
        due = await run_in_threadpool(self._due)
        delivered = 0
        for delivery, hook in due:
            body, headers = render(hook, delivery.event)
            error: str | None = None
            try:
                answer = await self._client.post(hook.url, content=body, headers=headers)
                if answer.status_code >= 300:
                    error = f"HTTP {answer.status_code}: {answer.text[:200]}"
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"
            await run_in_threadpool(self._record, delivery.id, error)
            delivered += error is None
        return delivered

    def _due(self) -> list[tuple[WebhookDelivery, Webhook]]:
        with Session(self.engine, expire_on_commit=False) as session:
            rows = session.exec(
                select(WebhookDelivery, Webhook)
                .join(Webhook, col(Webhook.id) == WebhookDelivery.webhook_id)
                .where(
                    col(WebhookDelivery.delivered).is_(False),
                    col(WebhookDelivery.given_up).is_(False),
                    WebhookDelivery.next_attempt_ms <= now_ms(),
                )
                .order_by(col(WebhookDelivery.id))
                .limit(100)
            )
            return list(rows.all())

    def _record(self, delivery_id: int | None, error: str | None) -> None:
        with Session(self.engine) as session:
            delivery = session.get(WebhookDelivery, delivery_id)
            if delivery is None:  # its webhook was deleted meanwhile
                return
            delivery.attempts += 1
            if error is None:
                delivery.delivered, delivery.last_error = True, None
            else:
                delivery.last_error = error[:1000]
                if delivery.attempts >= self.max_attempts:
                    delivery.given_up = True
                    logger.warning("webhook delivery %s given up: %s", delivery.id, error)
                else:
                    delay = min(
                        self.backoff_base_s * 2 ** (delivery.attempts - 1), self.backoff_max_s
                    )
                    delivery.next_attempt_ms = now_ms() + int(delay * 1000)
            session.add(delivery)
            session.commit()
