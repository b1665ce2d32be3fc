"""Deployments: a release of a bot running on an account; start, pause, resume, stop,
promote, roll back, logs."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Annotated

import redis
from fastapi import APIRouter, Body, Path, Query
from fastapi.responses import PlainTextResponse, StreamingResponse
from sqlmodel import Session, col, select

from coyote_control_plane import canaries, events
from coyote_control_plane.api.deps import (
    ContextDep,
    Principal,
    Reader,
    RiskOfficer,
    SessionDep,
    Trader,
)
from coyote_control_plane.api.routes.accounts import check_allocation, find_account, push_accounts
from coyote_control_plane.context import ControlPlane
from coyote_control_plane.errors import ApiError, conflict, not_found, responses
from coyote_control_plane.flags import sync_flag
from coyote_control_plane.models import (
    Account,
    Bot,
    BotVersion,
    Canary,
    CanaryState,
    Deployment,
    DeploymentCreate,
    DeploymentPublic,
    DeploymentRelease,
    DeploymentReleasePublic,
    DeploymentUpdate,
    DesiredState,
    Release,
    ReleaseChange,
    RuntimeStatus,
)
from coyote_control_plane.registry import find_bot, find_release, find_version, make_release
from coyote_sdk.control import read_status
from coyote_sdk.protocol import now_ms

logger = logging.getLogger("coyote.control_plane")
router = APIRouter(prefix="/v1/deployments", tags=["deployments"], responses=responses(401, 403))

DeploymentName = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9_-]{0,38}$")]


def find_deployment(session: Session, org_id: int, name: str) -> Deployment:
    """The organisation's deployment ``name`` (never a canary's runtime: those are reached
    through their deployment's ``/canary`` routes)."""
    deployment = session.exec(
        select(Deployment).where(
            Deployment.org_id == org_id,
            Deployment.name == name,
            col(Deployment.canary).is_(False),
        )
    ).first()
    if deployment is None:
        raise not_found("deployment", name)
    return deployment


def deployment_public(
    session: Session, deployment: Deployment, client: redis.Redis | None = None
) -> DeploymentPublic:
    bot = session.get(Bot, deployment.bot_id)
    account = session.get(Account, deployment.account_id)
    release = session.get(Release, deployment.release_id)
    assert bot and account and release
    version = session.get(BotVersion, release.version_id)
    assert version is not None
    heartbeat = None
    if client is not None:
        try:
            status = read_status(client, deployment.runtime_id)
        except redis.RedisError:
            status = None
        if status is not None:
            import msgspec

            heartbeat = msgspec.to_builtins(status)
    return DeploymentPublic(
        name=deployment.name,
        runtime_id=deployment.runtime_id,
        bot=bot.name,
        account=account.name,
        account_id=deployment.runtime_id.split(".", 1)[0] + "." + account.name,
        release=release.number,
        version=version.number,
        digest=version.digest,
        params=release.params,
        capital=deployment.capital,
        cancel_orders_on_heartbeat_loss=deployment.cancel_orders_on_heartbeat_loss,
        desired=deployment.desired,
        status=deployment.status,
        status_detail=deployment.status_detail,
        status_ms=deployment.status_ms,
        restarts=deployment.restarts,
        heartbeat=heartbeat,
        created_by=deployment.created_by,
        created_ms=deployment.created_ms,
        updated_ms=deployment.updated_ms,
    )


def _push_flag(
    session: Session, context: ControlPlane, deployment: Deployment, principal: Principal
) -> None:
    """Writes the flag now so the runtime obeys at once; if Redis is down the change is still
    recorded and the supervisor writes the flag when Redis is back."""
    try:
        sync_flag(session, context.redis, deployment, set_by=principal.actor, force=True)
        session.commit()
    except redis.RedisError as exc:
        session.rollback()
        logger.warning("flag of %s not written yet: %s", deployment.runtime_id, exc)


@router.get("")
def list_deployments(
    session: SessionDep, principal: Reader, context: ContextDep
) -> list[DeploymentPublic]:
    deployments = session.exec(
        select(Deployment)
        .where(Deployment.org_id == principal.org_id, col(Deployment.canary).is_(False))
        .order_by(Deployment.name)
    )
    return [deployment_public(session, d, context.redis) for d in deployments]


@router.post("", status_code=201, responses=responses(404, 409, 422))
def create_deployment(
    body: DeploymentCreate, session: SessionDep, principal: Trader, context: ContextDep
) -> DeploymentPublic:
    """Deploys a release of a bot to an account, stopped unless ``start`` is set.

    Give ``release`` to deploy an existing release; otherwise a release is made (or found)
    from ``version`` (latest by default), ``params`` and ``risk_profile``.
    """
    if session.exec(
        select(Deployment).where(
            Deployment.org_id == principal.org_id, Deployment.name == body.name
        )
    ).first():
        raise conflict("deployment.exists", f"a deployment named {body.name!r} exists")
    bot = find_bot(session, principal.org_id, body.bot)
    account = find_account(session, principal.org_id, body.account)
    if body.release is not None:
        if body.params is not None or body.version is not None:
            raise ApiError(
                422,
                "request.invalid",
                "give either a release or a version with params, not both",
                field="release",
            )
        release = find_release(session, bot, body.release)
    else:
        version = find_version(session, bot, body.version)
        release, _ = make_release(
            session,
            bot=bot,
            version=version,
            params=body.params or {},
            risk_profile=body.risk_profile or {},
            actor=principal.actor,
        )
    check_allocation(session, account, body.capital)
    deployment = add_deployment(
        session,
        principal,
        name=body.name,
        bot_id=bot.id,  # type: ignore[arg-type]
        account=account,
        release=release,
        capital=body.capital,
        cancel_orders_on_heartbeat_loss=body.cancel_orders_on_heartbeat_loss,
        start=body.start,
    )
    principal.audit(
        session,
        "deployment.create",
        f"deployment/{body.name}",
        bot=bot.name,
        account=account.name,
        release=release.number,
        capital=body.capital,
        cancel_orders_on_heartbeat_loss=body.cancel_orders_on_heartbeat_loss,
        start=body.start,
    )
    session.commit()
    _push_flag(session, context, deployment, principal)
    push_accounts(session, context, principal.org_id)
    return deployment_public(session, deployment, context.redis)


def add_deployment(
    session: Session,
    principal: Principal,
    *,
    name: str,
    bot_id: int,
    account: Account,
    release: Release,
    capital: str,
    cancel_orders_on_heartbeat_loss: bool,
    start: bool,
    canary: bool = False,
) -> Deployment:
    """Adds a deployment row of ``release`` on ``account`` (running if ``start``) and the first
    entry of its release history; the caller audits and commits."""
    now = now_ms()
    deployment = Deployment(
        org_id=principal.org_id,
        name=name,
        runtime_id=f"{principal.org_slug}.{name}",
        bot_id=bot_id,
        account_id=account.id,  # type: ignore[arg-type]
        release_id=release.id,  # type: ignore[arg-type]
        capital=capital,
        cancel_orders_on_heartbeat_loss=cancel_orders_on_heartbeat_loss,
        desired=DesiredState.RUNNING if start else DesiredState.STOPPED,
        status=RuntimeStatus.PENDING if start else RuntimeStatus.STOPPED,
        status_ms=now,
        canary=canary,
        created_by=principal.actor,
        created_ms=now,
        updated_ms=now,
    )
    session.add(deployment)
    session.flush()
    session.add(
        DeploymentRelease(
            deployment_id=deployment.id,  # type: ignore[arg-type]
            release_id=release.id,  # type: ignore[arg-type]
            ts_ms=now,
            set_by=principal.actor,
            action="deploy",
        )
    )
    return deployment


@router.get("/{name}", responses=responses(404))
def get_deployment(
    name: DeploymentName, session: SessionDep, principal: Reader, context: ContextDep
) -> DeploymentPublic:
    return deployment_public(
        session, find_deployment(session, principal.org_id, name), context.redis
    )


@router.patch("/{name}", responses=responses(404, 422))
def update_deployment(
    name: DeploymentName,
    body: DeploymentUpdate,
    session: SessionDep,
    principal: Trader,
    context: ContextDep,
) -> DeploymentPublic:
    """Changes the deployment's settings: ``cancel_orders_on_heartbeat_loss`` (the supervisor
    reads it at the moment of a loss, so a change applies to a running bot at once)."""
    deployment = find_deployment(session, principal.org_id, name)
    # An explicit null means "leave it", as an omitted field does.
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    before = {field: getattr(deployment, field) for field in changes}
    for field, value in changes.items():
        setattr(deployment, field, value)
    if changes != before:
        deployment.updated_ms = now_ms()
        session.add(deployment)
        principal.audit(
            session, "deployment.update", f"deployment/{name}", before=before, after=changes
        )
        session.commit()
    return deployment_public(session, deployment, context.redis)


# Which desired states each action may start from.
_TRANSITIONS: dict[str, tuple[set[DesiredState], DesiredState]] = {
    "start": ({DesiredState.STOPPED}, DesiredState.RUNNING),
    "pause": ({DesiredState.RUNNING}, DesiredState.PAUSED),
    "resume": ({DesiredState.PAUSED}, DesiredState.RUNNING),
    "stop": ({DesiredState.RUNNING, DesiredState.PAUSED}, DesiredState.STOPPED),
}


def _transition(
    action: str,
    name: str,
    reason: str | None,
    session: Session,
    principal: Principal,
    context: ControlPlane,
) -> DeploymentPublic:
    deployment = find_deployment(session, principal.org_id, name)
    allowed, target = _TRANSITIONS[action]
    failed = deployment.status is RuntimeStatus.FAILED
    if deployment.desired not in allowed and not (action == "start" and failed):
        raise conflict(
            "deployment.invalid_transition",
            f"cannot {action} deployment {name!r}: it is {deployment.desired.value}",
        )
    before = deployment.desired
    now = now_ms()
    deployment.desired = target
    deployment.updated_ms = now
    if action == "start":
        # A start after the supervisor gave up begins a fresh series of restarts.
        deployment.restarts = 0
        deployment.next_start_ms = None
        deployment.status, deployment.status_detail, deployment.status_ms = (
            RuntimeStatus.PENDING,
            None,
            now,
        )
    session.add(deployment)
    principal.audit(
        session,
        f"deployment.{action}",
        f"deployment/{name}",
        before=before.value,
        after=target.value,
        reason=reason,
    )
    ended = _end_canary(session, principal, deployment) if action == "stop" else None
    session.commit()
    _push_flag(session, context, deployment, principal)
    if ended is not None:
        _propagate_end(session, context, principal, *ended)
    return deployment_public(session, deployment, context.redis)


def _end_canary(
    session: Session, principal: Principal, deployment: Deployment
) -> tuple[Canary, Deployment] | None:
    """Ends the deployment's active canary, if any (it is stopped or deleted): audited, in
    the caller's transaction."""
    canary = canaries.active_canary(session, deployment)
    if canary is None:
        return None
    reason = f"deployment {deployment.name} stopped"
    shadow = canaries.end(
        session, canary, state=CanaryState.ENDED, actor=principal.actor, reason=reason
    )
    principal.audit(
        session,
        canaries.audit_action(CanaryState.ENDED),
        f"deployment/{deployment.name}",
        canary=canary.number,
        runtime_id=shadow.runtime_id,
        reason=reason,
    )
    return canary, shadow


def _propagate_end(
    session: Session,
    context: ControlPlane,
    principal: Principal,
    canary: Canary,
    shadow: Deployment,
) -> None:
    canaries.propagate(
        session,
        context.redis,
        shadow,
        set_by=principal.actor,
        org_id=principal.org_id,
        event=events.Event.of(
            "canary.ended",
            principal.org_slug,
            f"canary {canary.number} of {canary.deployment_name} ended: {canary.end_reason}",
            deployment=canary.deployment_name,
            canary=canary.number,
            runtime_id=shadow.runtime_id,
        ),
    )


Reason = Annotated[str | None, Body(embed=True, max_length=500)]


@router.post("/{name}/start", responses=responses(404, 409))
def start(
    name: DeploymentName,
    session: SessionDep,
    principal: Trader,
    context: ContextDep,
    reason: Reason = None,
) -> DeploymentPublic:
    """Runs the deployment: the supervisor launches its runtime, its flag says running."""
    return _transition("start", name, reason, session, principal, context)


@router.post("/{name}/pause", responses=responses(404, 409))
def pause(
    name: DeploymentName,
    session: SessionDep,
    principal: Trader,
    context: ContextDep,
    reason: Reason = None,
) -> DeploymentPublic:
    """Pauses it: the runtime keeps running and following its orders but sends no new one."""
    return _transition("pause", name, reason, session, principal, context)


@router.post("/{name}/resume", responses=responses(404, 409))
def resume(
    name: DeploymentName,
    session: SessionDep,
    principal: Trader,
    context: ContextDep,
    reason: Reason = None,
) -> DeploymentPublic:
    return _transition("resume", name, reason, session, principal, context)


@router.post("/{name}/stop", responses=responses(404, 409))
def stop(
    name: DeploymentName,
    session: SessionDep,
    principal: Trader,
    context: ContextDep,
    reason: Reason = None,
) -> DeploymentPublic:
    """Stops it: the runtime cancels its open orders, runs ``on_stop`` and exits."""
    return _transition("stop", name, reason, session, principal, context)


def _set_release(
    session: Session,
    principal: Principal,
    context: ControlPlane,
    deployment: Deployment,
    release: Release,
    action: str,
) -> DeploymentPublic:
    if release.id == deployment.release_id:
        raise conflict(
            "deployment.same_release", f"deployment already runs release {release.number}"
        )
    before = session.get(Release, deployment.release_id)
    assert before is not None
    now = now_ms()
    deployment.release_id = release.id  # type: ignore[assignment]
    deployment.updated_ms = now
    session.add(deployment)
    session.add(
        DeploymentRelease(
            deployment_id=deployment.id,  # type: ignore[arg-type]
            release_id=release.id,  # type: ignore[arg-type]
            ts_ms=now,
            set_by=principal.actor,
            action=action,
        )
    )
    principal.audit(
        session,
        f"deployment.{action}",
        f"deployment/{deployment.name}",
        before=before.number,
        after=release.number,
    )
    session.commit()
    return deployment_public(session, deployment, context.redis)


@router.post("/{name}/promote", responses=responses(404, 409, 422))
def promote(
    name: DeploymentName,
    body: Annotated[ReleaseChange, Body()],
    session: SessionDep,
    principal: Trader,
    context: ContextDep,
) -> DeploymentPublic:
    """Moves the deployment to another release of its bot; a running runtime is restarted on
    it (gracefully: its open orders are cancelled first)."""
    deployment = find_deployment(session, principal.org_id, name)
    if body.release is None:
        raise ApiError(422, "request.invalid", "name the release to promote", field="release")
    bot = session.get(Bot, deployment.bot_id)
    assert bot is not None
    release = find_release(session, bot, body.release)
    return _set_release(session, principal, context, deployment, release, "promote")


@router.post("/{name}/rollback", responses=responses(404, 409))
def rollback(
    name: DeploymentName,
    session: SessionDep,
    principal: Trader,
    context: ContextDep,
    body: Annotated[ReleaseChange | None, Body()] = None,
) -> DeploymentPublic:
    """Goes back to an earlier release in one call: the one named, or else the release the
    deployment ran before the current one."""
    deployment = find_deployment(session, principal.org_id, name)
    bot = session.get(Bot, deployment.bot_id)
    assert bot is not None
    if body is not None and body.release is not None:
        release = find_release(session, bot, body.release)
    else:
        history = session.exec(
            select(DeploymentRelease)
            .where(DeploymentRelease.deployment_id == deployment.id)
            .order_by(col(DeploymentRelease.id).desc())
        )
        previous = next((h for h in history if h.release_id != deployment.release_id), None)
        if previous is None:
            raise conflict("deployment.no_previous_release", "there is no earlier release")
        release = session.get(Release, previous.release_id)  # type: ignore[assignment]
        assert release is not None
    return _set_release(session, principal, context, deployment, release, "rollback")


@router.get("/{name}/history", responses=responses(404))
def release_history(
    name: DeploymentName, session: SessionDep, principal: Reader
) -> list[DeploymentReleasePublic]:
    """Which release the deployment ran when, and who put it there; newest first."""
    deployment = find_deployment(session, principal.org_id, name)
    rows = session.exec(
        select(DeploymentRelease, Release)
        .join(Release, col(Release.id) == DeploymentRelease.release_id)
        .where(DeploymentRelease.deployment_id == deployment.id)
        .order_by(col(DeploymentRelease.id).desc())
    )
    return [
        DeploymentReleasePublic(
            release=release.number, ts_ms=row.ts_ms, set_by=row.set_by, action=row.action
        )
        for row, release in rows
    ]


@router.put("/{name}/capital", responses=responses(404, 422))
def set_capital(
    name: DeploymentName,
    capital: Annotated[str, Body(embed=True, pattern=r"^[0-9]+(\.[0-9]+)?$", max_length=40)],
    session: SessionDep,
    principal: RiskOfficer,
    context: ContextDep,
) -> DeploymentPublic:
    """Changes the deployment's capital allocation: the executors enforce it at once (as the
    bot's capital limit on the account); a running runtime's portfolio takes it on restart."""
    deployment = find_deployment(session, principal.org_id, name)
    account = session.get(Account, deployment.account_id)
    assert account is not None
    check_allocation(session, account, capital, excluding=deployment.id)
    principal.audit(
        session,
        "deployment.capital",
        f"deployment/{name}",
        before=deployment.capital,
        after=capital,
    )
    deployment.capital = capital
    deployment.updated_ms = now_ms()
    session.add(deployment)
    session.commit()
    push_accounts(session, context, principal.org_id)
    return deployment_public(session, deployment, context.redis)


@router.delete("/{name}", status_code=204, responses=responses(404, 409))
def delete_deployment(
    name: DeploymentName, session: SessionDep, principal: Trader, context: ContextDep
) -> None:
    """Removes a stopped deployment (its releases and audit entries stay)."""
    deployment = find_deployment(session, principal.org_id, name)
    if deployment.desired is not DesiredState.STOPPED or deployment.status not in (
        RuntimeStatus.STOPPED,
        RuntimeStatus.FAILED,
    ):
        raise conflict("deployment.not_stopped", f"stop deployment {name!r} first")
    # Stopping it ended its canary; this ends one that outlived that all the same.
    ended = _end_canary(session, principal, deployment)
    if context.supervisor is not None:
        context.supervisor.forget(deployment.runtime_id)
    for row in session.exec(
        select(DeploymentRelease).where(DeploymentRelease.deployment_id == deployment.id)
    ):
        session.delete(row)
    # Its canaries' records stay for the audit, no longer pointing at it.
    for canary in session.exec(select(Canary).where(Canary.deployment_id == deployment.id)):
        canary.deployment_id = None
        session.add(canary)
    session.flush()  # the history goes first: it refers to the deployment
    principal.audit(session, "deployment.delete", f"deployment/{name}")
    session.delete(deployment)
    session.commit()
    push_accounts(session, context, principal.org_id)
    if ended is not None:
        _propagate_end(session, context, principal, *ended)


@router.get(
    "/{name}/logs",
    response_class=PlainTextResponse,
    response_model=None,
    responses={
        200: {"content": {"text/plain": {}}, "description": "Log lines, one per line"},
        **responses(404, 503),
    },
)
async def logs(
    name: DeploymentName,
    context: ContextDep,
    principal: Reader,
    tail: Annotated[int, Query(ge=1, le=10_000)] = 200,
    follow: Annotated[bool, Query(description="Keep streaming new lines.")] = False,
) -> PlainTextResponse | StreamingResponse:
    """The runtime's log: the last ``tail`` lines, and with ``follow`` every new line as it is
    written (``coyote-sdk logs NAME -f``)."""
    from starlette.concurrency import run_in_threadpool

    def lookup() -> str:
        with Session(context.engine) as session:
            return find_deployment(session, principal.org_id, name).runtime_id

    runtime_id = await run_in_threadpool(lookup)
    supervisor = context.supervisor
    if supervisor is None:
        raise ApiError(503, "logs.unavailable", "no supervisor runs in this control plane")
    chunk = await run_in_threadpool(supervisor.backend.logs, runtime_id, tail=tail)
    if not follow:
        return PlainTextResponse("".join(f"{line}\n" for line in chunk.lines))

    async def stream() -> AsyncIterator[str]:
        offset = chunk.next_offset
        for line in chunk.lines:
            yield line + "\n"
        while True:
            await asyncio.sleep(0.25)
            more = await run_in_threadpool(supervisor.backend.logs, runtime_id, since_offset=offset)
            offset = more.next_offset
            for line in more.lines:
                yield line + "\n"

    return StreamingResponse(stream(), media_type="text/plain")
