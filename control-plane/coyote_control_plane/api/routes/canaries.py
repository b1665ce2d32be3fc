"""Canaries of a deployment (``/v1/deployments/{name}/canary``): start a release as a paper
shadow beside the live deployment, compare their orders and PnL, promote it or discard it.

See :mod:`coyote_control_plane.canaries`.
"""

# No ``from __future__ import annotations``: FastAPI reads the routes' annotations, and the
# Annotated aliases below are local to this module.
from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Body, Query
from sqlmodel import Session

from coyote_control_plane import canaries, events
from coyote_control_plane.api.deps import ContextDep, Principal, Reader, SessionDep, Trader
from coyote_control_plane.api.routes.accounts import check_allocation
from coyote_control_plane.api.routes.deployments import (
    DeploymentName,
    _set_release,
    add_deployment,
    find_deployment,
)
from coyote_control_plane.errors import ApiError, conflict, responses
from coyote_control_plane.models import (
    MAX_INT,
    Account,
    Bot,
    BotVersion,
    Canary,
    CanaryComparison,
    CanaryCreate,
    CanaryPublic,
    CanaryState,
    Deployment,
    DeploymentPublic,
    DesiredState,
    Release,
)
from coyote_control_plane.registry import find_release, find_version, make_release

router = APIRouter(prefix="/v1/deployments", tags=["canaries"], responses=responses(401, 403))

Reason = Annotated[str | None, Body(embed=True, max_length=500)]


def _release_of(
    session: Session, bot: Bot, live: Release, body: CanaryCreate, actor: str
) -> Release:
    """The release the canary runs: ``body.release`` (with ``params`` merged over its own), or
    one made from ``body.version`` with the live parameters and ``params`` merged over them."""
    if body.release is not None:
        if body.version is not None or body.risk_profile is not None:
            raise ApiError(
                422,
                "request.invalid",
                "give either a release or a version (with its risk profile), not both",
                field="release",
            )
        base = find_release(session, bot, body.release)
        if not body.params:
            return base
        version = session.get(BotVersion, base.version_id)
        assert version is not None
        params, risk_profile = {**base.params, **body.params}, base.risk_profile
    else:
        version = find_version(session, bot, body.version)
        params = {**live.params, **(body.params or {})}
        risk_profile = body.risk_profile if body.risk_profile is not None else live.risk_profile
    release, _ = make_release(
        session,
        bot=bot,
        version=version,
        params=params,
        risk_profile=risk_profile,
        actor=actor,
    )
    return release


@router.post("/{name}/canary", status_code=201, responses=responses(404, 409, 422))
def start_canary(
    name: DeploymentName,
    body: CanaryCreate,
    session: SessionDep,
    principal: Trader,
    context: ContextDep,
) -> CanaryPublic:
    """Starts a canary: another release of the deployment's bot, run beside it as a paper
    shadow — the same symbols and market data, the live parameters unless overridden, on a
    paper account (``account``, or ``<live account>-shadow``, made when missing), with its own
    capital (the live deployment's by default). One canary per deployment at a time; the
    deployment must be running or paused."""
    deployment = find_deployment(session, principal.org_id, name)
    if deployment.desired is DesiredState.STOPPED:
        raise conflict(
            "deployment.not_running",
            f"deployment {name!r} is stopped: a canary runs beside a running deployment",
        )
    if canaries.active_canary(session, deployment) is not None:
        raise conflict(
            "canary.exists",
            f"deployment {name!r} has a canary already: promote or discard it first",
        )
    bot = session.get(Bot, deployment.bot_id)
    live_release = session.get(Release, deployment.release_id)
    live_account = session.get(Account, deployment.account_id)
    assert bot is not None and live_release is not None and live_account is not None
    release = _release_of(session, bot, live_release, body, principal.actor)
    account, created = canaries.shadow_account(
        session, org_id=principal.org_id, live=live_account, name=body.account
    )
    if created:
        principal.audit(
            session,
            "account.create",
            f"account/{account.name}",
            broker=account.broker.value,
            shadow_of=live_account.name,
        )
    capital = body.capital if body.capital is not None else deployment.capital
    check_allocation(session, account, capital)
    number = canaries.next_number(session, principal.org_id, name)
    shadow_name = canaries.canary_name(principal.org_slug, name, number)
    shadow = add_deployment(
        session,
        principal,
        name=shadow_name,
        bot_id=deployment.bot_id,
        account=account,
        release=release,
        capital=capital,
        cancel_orders_on_heartbeat_loss=deployment.cancel_orders_on_heartbeat_loss,
        start=True,
        canary=True,
    )
    canary = Canary(
        org_id=principal.org_id,
        deployment_id=deployment.id,
        deployment_name=name,
        number=number,
        active_for=deployment.id,
        shadow_id=shadow.id,  # type: ignore[arg-type]
        release_id=release.id,  # type: ignore[arg-type]
        live_release_id=live_release.id,  # type: ignore[arg-type]
        account_id=account.id,  # type: ignore[arg-type]
        capital=capital,
        started_by=principal.actor,
        started_ms=shadow.created_ms,
    )
    session.add(canary)
    principal.audit(
        session,
        "deployment.canary_start",
        f"deployment/{name}",
        canary=number,
        runtime_id=shadow.runtime_id,
        release=release.number,
        live_release=live_release.number,
        params=release.params,
        account=account.name,
        capital=capital,
    )
    try:
        session.commit()
    except sa.exc.IntegrityError as exc:  # a canary started concurrently
        session.rollback()
        raise conflict(
            "canary.exists", f"deployment {name!r} has a canary already: promote or discard it"
        ) from exc
    canaries.propagate(
        session,
        context.redis,
        shadow,
        set_by=principal.actor,
        org_id=principal.org_id,
        event=events.Event.of(
            "canary.started",
            principal.org_slug,
            f"canary {number} of {name} started: release {release.number} on {account.name} "
            f"beside release {live_release.number}",
            deployment=name,
            account=account.name,
            canary=number,
            runtime_id=shadow.runtime_id,
            release=release.number,
        ),
    )
    return canaries.canary_public(session, canary, context.redis)


@router.get("/{name}/canary", responses=responses(404, 503))
def compare_canary(
    name: DeploymentName,
    session: SessionDep,
    principal: Reader,
    context: ContextDep,
    number: Annotated[
        int | None,
        Query(ge=1, le=MAX_INT, description="An earlier canary of the deployment; the latest."),
    ] = None,
) -> CanaryComparison:
    """The deployment and its canary side by side over the time the canary has run (to its
    end, for one that has ended): orders by status, refused intents, fills, realised and
    unrealised PnL, fees, per symbol — from the reports' data. ``notes`` say what makes the
    two sides differ besides the release (a live deployment on a real broker, say)."""
    deployment = find_deployment(session, principal.org_id, name)
    canary = canaries.find_canary(session, deployment, number)
    return canaries.compare(
        session,
        context.reports,
        canary,
        org=principal.org_slug,
        live=deployment,
        client=context.redis,
    )


def _end(
    session: Session,
    principal: Principal,
    deployment: Deployment,
    *,
    state: CanaryState,
    reason: str | None,
) -> tuple[Canary, Deployment]:
    canary = canaries.active_canary(session, deployment)
    if canary is None:
        raise ApiError(
            404, "canary.not_found", f"deployment {deployment.name!r} has no active canary"
        )
    shadow = canaries.end(session, canary, state=state, actor=principal.actor, reason=reason)
    principal.audit(
        session,
        canaries.audit_action(state),
        f"deployment/{deployment.name}",
        canary=canary.number,
        runtime_id=shadow.runtime_id,
        reason=reason,
    )
    return canary, shadow


@router.post("/{name}/canary/promote", responses=responses(404, 409))
def promote_canary(
    name: DeploymentName,
    session: SessionDep,
    principal: Trader,
    context: ContextDep,
    reason: Reason = None,
) -> DeploymentPublic:
    """Promotes the canary: the deployment moves to the canary's release (as ``promote`` does,
    so its history and rollback keep it; a running runtime restarts on it gracefully) and the
    canary is stopped. 409 when the deployment already runs that release."""
    deployment = find_deployment(session, principal.org_id, name)
    canary, shadow = _end(session, principal, deployment, state=CanaryState.PROMOTED, reason=reason)
    release = session.get(Release, canary.release_id)
    assert release is not None
    public = _set_release(session, principal, context, deployment, release, "promote")
    canaries.propagate(
        session,
        context.redis,
        shadow,
        set_by=principal.actor,
        org_id=principal.org_id,
        event=events.Event.of(
            "canary.promoted",
            principal.org_slug,
            f"canary {canary.number} of {name} promoted: {name} moves to release {release.number}",
            deployment=name,
            canary=canary.number,
            runtime_id=shadow.runtime_id,
            release=release.number,
        ),
    )
    return public


@router.delete("/{name}/canary", responses=responses(404))
def discard_canary(
    name: DeploymentName,
    session: SessionDep,
    principal: Trader,
    context: ContextDep,
    reason: Reason = None,
) -> CanaryPublic:
    """Discards the canary: its runtime stops (cancelling its orders) and its allocation is
    released; its record, orders and fills are kept."""
    deployment = find_deployment(session, principal.org_id, name)
    canary, shadow = _end(
        session, principal, deployment, state=CanaryState.DISCARDED, reason=reason
    )
    session.commit()
    canaries.propagate(
        session,
        context.redis,
        shadow,
        set_by=principal.actor,
        org_id=principal.org_id,
        event=events.Event.of(
            "canary.discarded",
            principal.org_slug,
            f"canary {canary.number} of {name} discarded",
            deployment=name,
            canary=canary.number,
            runtime_id=shadow.runtime_id,
        ),
    )
    return canaries.canary_public(session, canary, context.redis)
