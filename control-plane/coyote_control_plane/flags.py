"""The Redis side of what the database says: deployments' control flags, kill switches and
account documents.

The database is the source of truth; Redis carries it to the bot runtimes (control flags) and
the executor (halts, and the accounts with their limits and capital allocations). Everything
here writes Redis *from* the database, so the API calls it after a change and the supervisor
calls it on every pass, which puts the flags back after a Redis restart or flush.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

import msgspec
import redis
from sqlmodel import Session, col, select

from coyote_control_plane.models import (
    Account,
    Broker,
    Deployment,
    DesiredState,
    KillSwitch,
    KillSwitchScope,
    Organization,
)
from coyote_sdk import protocol
from coyote_sdk.control import read_control_flag, set_control_flag
from coyote_sdk.protocol import AccountDocument, BotState, Halt, ProtocolError

logger = logging.getLogger("coyote.control_plane")


def active_kill_switches(session: Session, org_id: int) -> list[KillSwitch]:
    return list(
        session.exec(
            select(KillSwitch).where(
                KillSwitch.org_id == org_id, col(KillSwitch.reset_ms).is_(None)
            )
        )
    )


def halting(
    switches: list[KillSwitch], *, account: str, deployment: str | None = None
) -> KillSwitch | None:
    """The first of ``switches`` that halts the named account (or deployment on it), or None."""
    for switch in switches:
        if (
            switch.scope is KillSwitchScope.ORGANIZATION
            or (switch.scope is KillSwitchScope.ACCOUNT and switch.target == account)
            or (switch.scope is KillSwitchScope.DEPLOYMENT and switch.target == deployment)
        ):
            return switch
    return None


def effective_state(deployment: Deployment, halted_because: str | None) -> BotState:
    """The flag a deployment's runtime should see: a halt pauses a running one."""
    if deployment.desired is DesiredState.STOPPED:
        return BotState.STOPPED
    if halted_because is not None:
        return BotState.PAUSED
    return BotState(deployment.desired.value)


def sync_flag(
    session: Session,
    client: redis.Redis,
    deployment: Deployment,
    *,
    set_by: str,
    reason: str | None = None,
    force: bool = False,
    switches: list[KillSwitch] | None = None,
) -> bool:
    """Writes the deployment's flag if Redis differs from the database (or ``force``).

    ``switches`` are the organisation's active kill switches when the caller has them (a pass
    over many deployments reads them once). Returns whether it wrote a flag. The caller commits
    the session (the generation written is kept on the deployment).
    """
    account = session.get(Account, deployment.account_id)
    assert account is not None
    if switches is None:
        switches = active_kill_switches(session, deployment.org_id)
    switch = halting(switches, account=account.name, deployment=deployment.name)
    halted = f"kill switch ({switch.scope.value}): {switch.reason}" if switch else None
    wanted = effective_state(deployment, halted)
    current = read_control_flag(client, deployment.runtime_id)
    if not force and current is not None and current.desired is wanted:
        if current.generation > deployment.flag_generation:
            deployment.flag_generation = current.generation
        return False
    flag = set_control_flag(
        client,
        deployment.runtime_id,
        wanted,
        reason=halted or reason,
        set_by=set_by,
        min_generation=max(deployment.flag_generation, current.generation if current else 0),
    )
    deployment.flag_generation = flag.generation
    session.add(deployment)
    return True


def halts_of(session: Session) -> dict[str, Halt]:
    """Every halt the executor should obey, by hash field, from the active kill switches."""
    wanted: dict[str, Halt] = {}
    switches = session.exec(select(KillSwitch).where(col(KillSwitch.reset_ms).is_(None))).all()
    for switch in switches:
        org = session.get(Organization, switch.org_id)
        assert org is not None
        if switch.scope is KillSwitchScope.DEPLOYMENT:
            targets = [("bot", f"{org.slug}.{switch.target}")]
        elif switch.scope is KillSwitchScope.ACCOUNT:
            targets = [("account", f"{org.slug}.{switch.target}")]
        else:
            accounts = session.exec(select(Account).where(Account.org_id == switch.org_id))
            targets = [("account", f"{org.slug}.{account.name}") for account in accounts]
        for scope, target in targets:
            wanted[f"{scope}:{target}"] = Halt(
                scope=scope,  # type: ignore[arg-type]
                target=target,
                reason=switch.reason,
                set_by=switch.tripped_by,
                ts_ms=switch.tripped_ms,
            )
    return wanted


def sync_halts(session: Session, client: redis.Redis) -> bool:
    """Makes the Redis halts hash match the active kill switches; returns whether it changed."""
    wanted = {field: protocol.encode(halt) for field, halt in halts_of(session).items()}
    stored: Any = client.hgetall(protocol.HALTS_KEY)
    present = {key.decode(): value for key, value in stored.items()}
    # Only halts of this database's organisations are ours to lift: a shared Redis may carry
    # those of another control plane (a test's, a staging one's).
    ours = {org.slug for org in session.exec(select(Organization))}
    stale = [
        field
        for field in present
        if field not in wanted and field.partition(":")[2].partition(".")[0] in ours
    ]
    missing: dict[Any, Any] = {f: v for f, v in wanted.items() if present.get(f) != v}
    return _write_hash(client, protocol.HALTS_KEY, protocol.HALTS_CHANNEL, stale, missing)


def account_document(
    org_slug: str, account: Account, deployments: list[Deployment]
) -> AccountDocument:
    """The account as the executors should trade it (with the ``deployments`` on it), at the
    revision last written."""
    return AccountDocument(
        account_id=f"{org_slug}.{account.name}",
        revision=account.config_revision,
        ts_ms=0,
        broker=account.broker.value,
        venue=account.venue,
        currency=account.currency,
        credentials_path=account.credentials_path,
        risk=dict(account.risk_limits),
        fill_model=(
            msgspec.convert(account.fill_model, protocol.PaperFillModel, strict=False)
            if account.fill_model is not None and account.broker is Broker.PAPER
            else None
        ),
        broker_options=dict(account.broker_options) if account.broker is not Broker.PAPER else {},
        deployments={
            d.runtime_id: Decimal(d.capital) for d in sorted(deployments, key=lambda d: d.name)
        },
    )


def sync_accounts(session: Session, client: redis.Redis, *, org_id: int | None = None) -> bool:
    """Makes the Redis account documents match the database: those of one organisation, or of
    all. Returns whether it wrote anything.

    A document is written when its content differs from the stored one (or that is missing or
    unreadable), with a revision above both the database's and the stored one, which the
    account keeps: a document written again after a Redis flush is never taken for an older
    one. The caller commits the session.
    """
    query = select(Organization)
    if org_id is not None:
        query = query.where(Organization.id == org_id)
    orgs = {org.id: org.slug for org in session.exec(query)}
    accounts = session.exec(select(Account).where(col(Account.org_id).in_(list(orgs))))
    wanted = {f"{orgs[a.org_id]}.{a.name}": a for a in accounts}
    stored: Any = client.hgetall(protocol.ACCOUNTS_KEY)
    present = {key.decode(): value for key, value in stored.items()}
    # Only documents of these organisations are ours to remove: a shared Redis may carry
    # those of another control plane (a test's, a staging one's).
    stale = [
        field
        for field in present
        if field not in wanted and field.partition(".")[0] in orgs.values()
    ]
    missing: dict[Any, Any] = {}
    deployments: dict[int | None, list[Deployment]] = {}
    for deployment in session.exec(
        select(Deployment).where(col(Deployment.org_id).in_(list(orgs)))
    ):
        deployments.setdefault(deployment.account_id, []).append(deployment)
    for field, account in wanted.items():
        on_it = deployments.get(account.id, [])
        document = account_document(field.partition(".")[0], account, on_it)
        current = _stored_document(field, present.get(field))
        if current is not None and _content(current) == _content(document):
            if current.revision > account.config_revision:
                account.config_revision = current.revision  # continue above it next time
                session.add(account)
            continue
        revision = max(account.config_revision, current.revision if current else 0) + 1
        account.config_revision = revision
        session.add(account)
        missing[field] = protocol.encode(
            msgspec.structs.replace(document, revision=revision, ts_ms=protocol.now_ms())
        )
    return _write_hash(client, protocol.ACCOUNTS_KEY, protocol.ACCOUNTS_CHANNEL, stale, missing)


def _stored_document(field: str, value: bytes | None) -> AccountDocument | None:
    if value is None:
        return None
    try:
        return protocol.decode(value, AccountDocument)
    except ProtocolError as exc:
        logger.warning("account document %s in Redis is unreadable (%s): rewritten", field, exc)
        return None


def _content(document: AccountDocument) -> AccountDocument:
    """The document without its revision and time, to compare what it says."""
    return msgspec.structs.replace(document, revision=0, ts_ms=0)


def _write_hash(
    client: redis.Redis, key: str, channel: str, stale: list[str], missing: dict[Any, Any]
) -> bool:
    """Deletes ``stale`` fields and writes ``missing`` ones of the hash ``key`` in one
    transaction, announcing each field on ``channel`` (the executors follow it); answers
    whether anything changed."""
    if not stale and not missing:
        return False
    with client.pipeline(transaction=True) as pipe:
        if stale:
            pipe.hdel(key, *stale)
        if missing:
            pipe.hset(key, mapping=missing)
        for field in [*stale, *missing]:
            pipe.publish(channel, field)
        pipe.execute()
    return True
