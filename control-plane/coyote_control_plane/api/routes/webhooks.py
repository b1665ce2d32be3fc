"""Notification targets: webhooks (generic, Slack, Telegram) for crashes, breaches, alerts."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Query
from sqlmodel import col, select

from coyote_control_plane.api.deps import Admin, Reader, RowId, SessionDep
from coyote_control_plane.errors import invalid, not_found, responses
from coyote_control_plane.events import KINDS
from coyote_control_plane.models import (
    Webhook,
    WebhookCreate,
    WebhookCreated,
    WebhookDelivery,
    WebhookDeliveryPublic,
    WebhookFormat,
    WebhookPublic,
)
from coyote_sdk.protocol import now_ms

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"], responses=responses(401, 403))


@router.get("")
def list_webhooks(session: SessionDep, principal: Reader) -> list[WebhookPublic]:
    hooks = session.exec(
        select(Webhook).where(Webhook.org_id == principal.org_id).order_by(col(Webhook.id))
    )
    return [WebhookPublic.model_validate(hook) for hook in hooks]


@router.post("", status_code=201, responses=responses(422))
def create_webhook(body: WebhookCreate, session: SessionDep, principal: Admin) -> WebhookCreated:
    """Adds a target. Generic webhooks are signed: ``X-Coyote-Signature: sha256=<hex>`` is the
    HMAC-SHA256 of the body with the secret answered here (once)."""
    unknown = sorted(set(body.kinds) - {*KINDS, "*"})
    if unknown:
        raise invalid("webhook.unknown_kind", f"unknown event kinds {unknown}", field="kinds")
    if body.format is WebhookFormat.TELEGRAM and not body.chat_id:
        raise invalid("webhook.chat_id_missing", "Telegram needs a chat_id", field="chat_id")
    hook = Webhook.model_validate(
        body,
        update={
            "org_id": principal.org_id,
            "secret": secrets.token_hex(32),
            "created_ms": now_ms(),
        },
    )
    session.add(hook)
    principal.audit(session, "webhook.create", f"webhook/{body.url}", kinds=body.kinds)
    session.commit()
    return WebhookCreated.model_validate(hook)


@router.delete("/{webhook_id}", status_code=204, responses=responses(404))
def delete_webhook(webhook_id: RowId, session: SessionDep, principal: Admin) -> None:
    hook = session.get(Webhook, webhook_id)
    if hook is None or hook.org_id != principal.org_id:
        raise not_found("webhook", webhook_id)
    for delivery in session.exec(
        select(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id)
    ):
        session.delete(delivery)
    session.flush()  # deliveries first: they refer to the webhook
    principal.audit(session, "webhook.delete", f"webhook/{hook.url}")
    session.delete(hook)
    session.commit()


@router.get("/{webhook_id}/deliveries", responses=responses(404))
def list_deliveries(
    webhook_id: RowId,
    session: SessionDep,
    principal: Reader,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[WebhookDeliveryPublic]:
    """The latest deliveries to this target, with their attempts and last error."""
    hook = session.get(Webhook, webhook_id)
    if hook is None or hook.org_id != principal.org_id:
        raise not_found("webhook", webhook_id)
    rows = session.exec(
        select(WebhookDelivery)
        .where(WebhookDelivery.webhook_id == webhook_id)
        .order_by(col(WebhookDelivery.id).desc())
        .limit(limit)
    )
    return [WebhookDeliveryPublic.model_validate(row) for row in rows]
