"""Kill switches: anyone who trades may trip one; only a risk officer resets it."""

from __future__ import annotations

import logging
from typing import Annotated

import redis
from fastapi import APIRouter, Query
from sqlmodel import Session, col, select

from coyote_control_plane import events
from coyote_control_plane.api.deps import (
    ContextDep,
    Halter,
    Principal,
    Reader,
    RiskOfficer,
    RowId,
    SessionDep,
)
from coyote_control_plane.api.routes.accounts import find_account
from coyote_control_plane.api.routes.deployments import find_deployment
from coyote_control_plane.context import ControlPlane
from coyote_control_plane.errors import conflict, invalid, not_found, responses
from coyote_control_plane.flags import active_kill_switches, sync_flag, sync_halts
from coyote_control_plane.models import (
    Deployment,
    KillSwitch,
    KillSwitchPublic,
    KillSwitchScope,
    KillSwitchTrip,
)
from coyote_sdk.protocol import now_ms

logger = logging.getLogger("coyote.control_plane")
router = APIRouter(prefix="/v1/kill-switches", tags=["risk"], responses=responses(401, 403))


def _propagate(session: Session, context: ControlPlane, principal: Principal) -> None:
    """Carries the kill switches to Redis: the executor's halts and the bots' flags. If Redis
    is down, the supervisor does it when Redis is back."""
    try:
        sync_halts(session, context.redis)
        switches = active_kill_switches(session, principal.org_id)
        for deployment in session.exec(
            select(Deployment).where(Deployment.org_id == principal.org_id)
        ):
            sync_flag(session, context.redis, deployment, set_by=principal.actor, switches=switches)
        session.commit()
    except redis.RedisError as exc:
        session.rollback()
        logger.warning("kill switches not in Redis yet: %s", exc)


@router.get("")
def list_kill_switches(
    session: SessionDep,
    principal: Reader,
    active: Annotated[bool, Query(description="Only the tripped ones.")] = True,
) -> list[KillSwitchPublic]:
    query = select(KillSwitch).where(KillSwitch.org_id == principal.org_id)
    if active:
        query = query.where(col(KillSwitch.reset_ms).is_(None))
    return [
        KillSwitchPublic.model_validate(s) for s in session.exec(query.order_by(col(KillSwitch.id)))
    ]


@router.post("", status_code=201, responses=responses(404, 409, 422))
def trip(
    body: KillSwitchTrip, session: SessionDep, principal: Halter, context: ContextDep
) -> KillSwitchPublic:
    """Halts trading of the organisation, an account or a deployment at once: the executor
    refuses their new orders and their bots are paused, until a risk officer resets it."""
    if body.scope is KillSwitchScope.ORGANIZATION:
        target = principal.org_slug
    elif body.target is None:
        raise invalid("request.invalid", f"name the {body.scope.value} to halt", field="target")
    elif body.scope is KillSwitchScope.ACCOUNT:
        target = find_account(session, principal.org_id, body.target).name
    else:
        target = find_deployment(session, principal.org_id, body.target).name
    for switch in session.exec(
        select(KillSwitch).where(
            KillSwitch.org_id == principal.org_id,
            KillSwitch.scope == body.scope,
            KillSwitch.target == target,
            col(KillSwitch.reset_ms).is_(None),
        )
    ):
        raise conflict("kill_switch.tripped", f"already tripped (id {switch.id}): {switch.reason}")
    switch = KillSwitch(
        org_id=principal.org_id,
        scope=body.scope,
        target=target,
        reason=body.reason,
        tripped_by=principal.actor,
        tripped_ms=now_ms(),
    )
    session.add(switch)
    principal.audit(session, "kill_switch.trip", f"{body.scope.value}/{target}", reason=body.reason)
    session.commit()
    _propagate(session, context, principal)
    events.publish_safely(
        context.redis,
        events.Event.of(
            "kill_switch.tripped",
            principal.org_slug,
            f"{body.scope.value} {target} halted by {principal.actor}: {body.reason}",
            scope=body.scope.value,
            target=target,
        ),
    )
    return KillSwitchPublic.model_validate(switch)


@router.post("/{switch_id}/reset", responses=responses(404, 409))
def reset(
    switch_id: RowId,
    session: SessionDep,
    principal: RiskOfficer,
    context: ContextDep,
) -> KillSwitchPublic:
    """Lifts a kill switch. Paused bots resume only if they were running before."""
    switch = session.get(KillSwitch, switch_id)
    if switch is None or switch.org_id != principal.org_id:
        raise not_found("kill_switch", switch_id)
    if switch.reset_ms is not None:
        raise conflict("kill_switch.not_tripped", "this kill switch was already reset")
    switch.reset_by, switch.reset_ms = principal.actor, now_ms()
    session.add(switch)
    principal.audit(session, "kill_switch.reset", f"{switch.scope.value}/{switch.target}")
    session.commit()
    _propagate(session, context, principal)
    events.publish_safely(
        context.redis,
        events.Event.of(
            "kill_switch.reset",
            principal.org_slug,
            f"{switch.scope.value} {switch.target} reset by {principal.actor}",
            scope=switch.scope.value,
            target=switch.target,
        ),
    )
    return KillSwitchPublic.model_validate(switch)
