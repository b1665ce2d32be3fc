"""The audit log: every state-changing action, queryable."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlmodel import col, select

from coyote_control_plane.api.deps import Auditor, SessionDep
from coyote_control_plane.errors import responses
from coyote_control_plane.models import MAX_BIGINT, AuditEntry, AuditEntryPublic

router = APIRouter(prefix="/v1/audit", tags=["audit"], responses=responses(401, 403))


@router.get("")
def query_audit_log(
    session: SessionDep,
    principal: Auditor,
    action: Annotated[str | None, Query(max_length=64, description="e.g. deployment.start")] = None,
    actor: Annotated[
        str | None, Query(max_length=300, description="Substring of the actor.")
    ] = None,
    target: Annotated[str | None, Query(max_length=200, description="e.g. deployment/sma")] = None,
    since_ms: Annotated[int | None, Query(ge=0, le=MAX_BIGINT)] = None,
    until_ms: Annotated[int | None, Query(ge=0, le=MAX_BIGINT)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AuditEntryPublic]:
    """Entries of the caller's organisation, newest first."""
    query = select(AuditEntry).where(AuditEntry.org_id == principal.org_id)
    if action:
        query = query.where(AuditEntry.action == action)
    if actor:
        query = query.where(col(AuditEntry.actor).contains(actor, autoescape=True))
    if target:
        query = query.where(AuditEntry.target == target)
    if since_ms is not None:
        query = query.where(AuditEntry.ts_ms >= since_ms)
    if until_ms is not None:
        query = query.where(AuditEntry.ts_ms <= until_ms)
    rows = session.exec(query.order_by(col(AuditEntry.id).desc()).limit(limit))
    return [AuditEntryPublic.model_validate(row) for row in rows]
