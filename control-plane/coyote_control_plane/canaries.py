"""Canaries: a release run as a paper shadow beside a live deployment, and compared with it.

A canary is a second runtime of the same bot, on a release of its own, reading the same market
data (its account is on the live account's venue) and trading on a **paper** account, with a
capital allocation of its own. The supervisor runs it as it runs deployments: its runtime is a
deployment row of its own, marked ``canary``, which the deployment routes neither list nor
touch. It is named ``<deployment>.canary-<n>`` (its bot name in orders, fills and reports; the
runtime id is ``<org>.<deployment>.canary-<n>``), numbered per deployment, so no two canaries
ever share a bot id: a canary's portfolio never inherits an earlier one's positions.

Ending a canary (promoted, discarded, or its live deployment stopped) stops its runtime and
releases its allocation; the :class:`~coyote_control_plane.models.Canary` row, its runtime's
row and its orders and fills stay, for the audit.
"""

from __future__ import annotations

import hashlib
import logging
from decimal import Decimal

import msgspec
import redis
from sqlmodel import Session, col, func, select

from coyote_control_plane import events
from coyote_control_plane.errors import conflict, invalid, not_found
from coyote_control_plane.flags import sync_accounts, sync_flag
from coyote_control_plane.models import (
    Account,
    BotVersion,
    Broker,
    Canary,
    CanaryComparison,
    CanaryPublic,
    CanarySide,
    CanaryState,
    Deployment,
    DesiredState,
    OrderCounts,
    Release,
    RuntimeStatus,
    SymbolComparison,
)
from coyote_reports import Reports, Scope
from coyote_sdk.control import read_status
from coyote_sdk.protocol import now_ms

logger = logging.getLogger("coyote.control_plane")

_NAME_MAX = 39
"""Longest deployment name (the column)."""
_ID_MAX = 64
"""Longest runtime id (the protocol's identifiers)."""
SHADOW_SUFFIX = "-shadow"
"""A live account ``live``'s default paper shadow account is ``live-shadow``."""
_VERBS = {
    CanaryState.PROMOTED: "promote",
    CanaryState.DISCARDED: "discard",
    CanaryState.ENDED: "end",
}


def canary_name(org_slug: str, deployment: str, number: int) -> str:
    """The canary's deployment (bot) name: ``<deployment>.canary-<n>``, the deployment's name
    shortened and tagged with a hash of it when the runtime id would be too long. The dot
    keeps it apart from every name a deployment can be given."""
    suffix = f".canary-{number}"
    room = min(_NAME_MAX, _ID_MAX - len(org_slug) - 1) - len(suffix)
    if len(deployment) <= room:
        return deployment + suffix
    digest = hashlib.sha256(deployment.encode()).hexdigest()[:6]
    return f"{deployment[: room - 7]}-{digest}{suffix}"


def active_canary(session: Session, deployment: Deployment) -> Canary | None:
    """The deployment's canary that runs (or should), if any."""
    return session.exec(select(Canary).where(Canary.active_for == deployment.id)).first()


def find_canary(session: Session, deployment: Deployment, number: int | None = None) -> Canary:
    """The deployment's canary ``number``, or its latest.

    Raises:
        ApiError: 404 ``canary.not_found``.
    """
    query = select(Canary).where(Canary.deployment_id == deployment.id)
    query = (
        query.where(Canary.number == number)
        if number is not None
        else query.order_by(col(Canary.number).desc())
    )
    canary = session.exec(query).first()
    if canary is None:
        what = f"{deployment.name} #{number}" if number is not None else deployment.name
        raise not_found("canary", what)
    return canary


def next_number(session: Session, org_id: int, deployment: str) -> int:
    """The next canary number of the deployment named ``deployment`` (numbers continue over a
    deleted deployment of that name: its canaries' bot ids stay unique)."""
    latest = session.exec(
        select(func.max(Canary.number)).where(
            Canary.org_id == org_id, Canary.deployment_name == deployment
        )
    ).one()
    return (latest or 0) + 1


def shadow_account(
    session: Session, *, org_id: int, live: Account, name: str | None
) -> tuple[Account, bool]:
    """The paper account a canary of a deployment on ``live`` trades: ``name``, or by default
    ``<live>-shadow``, made (paper, the live account's venue, currency and risk limits) when
    missing. Returns it and whether it is new (the caller audits and commits).

    Raises:
        ApiError: 404 for an unknown ``name``; 422 ``canary.account_not_paper`` for an account
            of a real broker, ``canary.venue_mismatch`` for one on another venue (the canary
            would not see the live deployment's market data); 409
            ``canary.account_not_paper`` when the default shadow name is taken by a real
            broker's account.
    """
    created = False
    if name is not None:
        account = session.exec(
            select(Account).where(Account.org_id == org_id, Account.name == name)
        ).first()
        if account is None:
            raise not_found("account", name)
        if account.broker is not Broker.PAPER:
            raise invalid(
                "canary.account_not_paper",
                f"account {name!r} trades with the {account.broker.value} broker: a canary "
                "trades on a paper account only",
                field="account",
            )
    else:
        name = live.name[: _NAME_MAX - len(SHADOW_SUFFIX)] + SHADOW_SUFFIX
        account = session.exec(
            select(Account).where(Account.org_id == org_id, Account.name == name)
        ).first()
        if account is None:
            account = Account(
                org_id=org_id,
                name=name,
                broker=Broker.PAPER,
                venue=live.venue,
                currency=live.currency,
                risk_limits=dict(live.risk_limits),
                # A paper live account's fill model, so that both sides fill alike.
                fill_model=live.fill_model if live.broker is Broker.PAPER else None,
                created_ms=now_ms(),
            )
            session.add(account)
            session.flush()
            created = True
        elif account.broker is not Broker.PAPER:
            raise conflict(
                "canary.account_not_paper",
                f"account {name!r} trades with the {account.broker.value} broker; name a "
                "paper account for the canary (account)",
            )
    if account.venue != live.venue:
        raise invalid(
            "canary.venue_mismatch",
            f"account {name!r} is on venue {account.venue!r} but the live deployment's is on "
            f"{live.venue!r}: the canary must read the same market data",
            field="account",
        )
    return account, created


def end(
    session: Session, canary: Canary, *, state: CanaryState, actor: str, reason: str | None
) -> Deployment:
    """Ends an active canary: its runtime is wanted stopped (the runtime cancels its orders and
    exits) and its allocation released. Answers the canary's runtime row; the caller audits,
    commits, then calls :func:`propagate`."""
    shadow = session.get(Deployment, canary.shadow_id)
    assert shadow is not None
    now = now_ms()
    shadow.desired = DesiredState.STOPPED
    shadow.capital = "0"
    shadow.updated_ms = now
    session.add(shadow)
    canary.state = state
    canary.active_for = None
    canary.ended_by = actor
    canary.ended_ms = now
    canary.end_reason = reason
    session.add(canary)
    return shadow


def audit_action(state: CanaryState) -> str:
    """The audit action of a canary reaching ``state``."""
    return f"deployment.canary_{_VERBS.get(state, 'start')}"


def propagate(
    session: Session,
    client: redis.Redis,
    shadow: Deployment,
    *,
    set_by: str,
    org_id: int,
    event: events.Event,
) -> None:
    """After the commit: the canary runtime's flag now (it obeys at once), the account
    documents (its allocation), and the live event. If Redis is down the change is still
    recorded and the supervisor writes the flag and documents when Redis is back."""
    try:
        sync_flag(session, client, shadow, set_by=set_by, force=True)
        sync_accounts(session, client, org_id=org_id)
        session.commit()
    except redis.RedisError as exc:
        session.rollback()
        logger.warning("canary %s not in Redis yet: %s", shadow.runtime_id, exc)
    events.publish_safely(client, event)


def canary_public(
    session: Session, canary: Canary, client: redis.Redis | None = None
) -> CanaryPublic:
    shadow = session.get(Deployment, canary.shadow_id)
    release = session.get(Release, canary.release_id)
    live_release = session.get(Release, canary.live_release_id)
    account = session.get(Account, canary.account_id)
    assert shadow and release and live_release and account
    version = session.get(BotVersion, release.version_id)
    assert version is not None
    heartbeat = None
    if client is not None:
        try:
            status = read_status(client, shadow.runtime_id)
        except redis.RedisError:
            status = None
        if status is not None:
            heartbeat = msgspec.to_builtins(status)
    return CanaryPublic(
        deployment=canary.deployment_name,
        number=canary.number,
        state=canary.state,
        name=shadow.name,
        runtime_id=shadow.runtime_id,
        release=release.number,
        version=version.number,
        live_release=live_release.number,
        params=release.params,
        account=account.name,
        account_id=shadow.runtime_id.split(".", 1)[0] + "." + account.name,
        capital=canary.capital,
        desired=shadow.desired,
        status=shadow.status,
        status_detail=shadow.status_detail,
        heartbeat=heartbeat,
        started_by=canary.started_by,
        started_ms=canary.started_ms,
        ended_by=canary.ended_by,
        ended_ms=canary.ended_ms,
        end_reason=canary.end_reason,
    )


# -- THE COMPARISON ----------------------------------------------------------------------------

_OPEN = {"pending_new": "open", "new": "open", "canceled": "cancelled"}


def _side(
    reports: Reports,
    *,
    org: str,
    deployment: Deployment,
    account: Account,
    release: int,
    capital: Decimal,
    start_ms: int,
    end_ms: int,
) -> CanarySide:
    """What one runtime did from ``start_ms`` to ``end_ms``, from the reports' own queries."""
    scope = Scope(org, bot=deployment.name)
    counts = OrderCounts()
    symbols = []
    for activity in reports.activity(scope, start_ms=start_ms, end_ms=end_ms):
        placed = sum(activity.orders.values())
        counts.placed += placed
        for status, count in activity.orders.items():
            field = _OPEN.get(status, status)
            if field in OrderCounts.model_fields and field != "placed":
                setattr(counts, field, getattr(counts, field) + count)
        symbols.append(
            SymbolComparison(
                symbol=activity.symbol,
                orders=placed,
                fills=activity.fills,
                bought=activity.bought,
                sold=activity.sold,
                realized=activity.realized,
            )
        )
    metrics = reports.metrics(
        scope, start_ms=start_ms, end_ms=end_ms, capital={deployment.name: capital}
    ).bots
    refused = reports.rejections(scope, start_ms=start_ms, end_ms=end_ms).total
    zero = Decimal(0)
    only = metrics[0] if len(metrics) == 1 else None
    return CanarySide(
        name=deployment.name,
        runtime_id=deployment.runtime_id,
        account=account.name,
        broker=account.broker,
        release=release,
        capital=capital,
        orders=counts,
        refused_intents=refused,
        fills=sum(m.fills for m in metrics),
        traded_notional=sum((m.traded_notional for m in metrics), zero),
        realized=sum((m.realized for m in metrics), zero),
        unrealized=sum((m.unrealized for m in metrics), zero),
        fees=sum((m.fees for m in metrics), zero),
        net=sum((m.net for m in metrics), zero),
        return_pct=only.return_pct if only else None,
        max_drawdown_pct=only.max_drawdown_pct if only else None,
        symbols=symbols,
    )


def compare(
    session: Session,
    reports: Reports,
    canary: Canary,
    *,
    org: str,
    live: Deployment,
    client: redis.Redis | None = None,
) -> CanaryComparison:
    """The live deployment and its canary side by side, over the time the canary has run.

    Raises:
        ReportsError: the executor's database cannot be read (503).
    """
    shadow = session.get(Deployment, canary.shadow_id)
    live_account = session.get(Account, live.account_id)
    shadow_account_ = session.get(Account, canary.account_id)
    live_release = session.get(Release, live.release_id)
    canary_release = session.get(Release, canary.release_id)
    started_on = session.get(Release, canary.live_release_id)
    assert shadow and live_account and shadow_account_ and live_release and canary_release
    assert started_on is not None
    start_ms = canary.started_ms
    end_ms = max(canary.ended_ms or now_ms(), start_ms + 1)
    live_side = _side(
        reports,
        org=org,
        deployment=live,
        account=live_account,
        release=live_release.number,
        capital=Decimal(live.capital),
        start_ms=start_ms,
        end_ms=end_ms,
    )
    shadow_side = _side(
        reports,
        org=org,
        deployment=shadow,
        account=shadow_account_,
        release=canary_release.number,
        capital=Decimal(canary.capital),
        start_ms=start_ms,
        end_ms=end_ms,
    )
    same_fill_model = live_account.broker is Broker.PAPER
    notes = []
    if not same_fill_model:
        notes.append(
            f"the live deployment trades with the {live_account.broker.value} broker and the "
            "canary with the paper broker: their fills (prices, partial fills, rejections, "
            "fees) come from different models, so compare their orders more than their fills "
            "and PnL"
        )
    if live.release_id != canary.live_release_id:
        notes.append(
            f"the live deployment moved from release {started_on.number} to "
            f"{live_release.number} while the canary ran"
        )
    if Decimal(live.capital) != Decimal(canary.capital):
        notes.append(
            f"their capitals differ (live {live.capital}, canary {canary.capital}): compare "
            "returns rather than amounts"
        )
    if live.desired is not DesiredState.RUNNING or live.status is not RuntimeStatus.RUNNING:
        notes.append(f"the live deployment is {live.status.value} (desired {live.desired.value})")
    if canary.state is CanaryState.ACTIVE and shadow.status is not RuntimeStatus.RUNNING:
        notes.append(f"the canary's runtime is {shadow.status.value}")
    if canary.state is not CanaryState.ACTIVE:
        notes.append(f"the canary was {canary.state.value}: compared up to its end")
    notes.append(
        "unrealised PnL is the change since the canary started in the value of open "
        "positions, marked at the organisation's last traded price; the live side's includes "
        "positions it held before"
    )
    return CanaryComparison(
        canary=canary_public(session, canary, client),
        start_ms=start_ms,
        end_ms=end_ms,
        live=live_side,
        shadow=shadow_side,
        same_fill_model=same_fill_model,
        notes=notes,
    )
