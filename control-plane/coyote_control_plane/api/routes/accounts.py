"""Trading accounts, their risk limits and capital."""

from __future__ import annotations

import logging
from collections.abc import Callable
from decimal import Decimal
from typing import Annotated, Any

import msgspec
import redis
from fastapi import APIRouter, Body, Path
from sqlmodel import Session, select

from coyote_control_plane.api.deps import (
    Admin,
    ContextDep,
    Principal,
    Reader,
    RiskOfficer,
    SessionDep,
)
from coyote_control_plane.context import ControlPlane
from coyote_control_plane.errors import conflict, invalid, not_found, responses
from coyote_control_plane.flags import active_kill_switches, halting, sync_accounts, sync_halts
from coyote_control_plane.models import (
    Account,
    AccountCreate,
    AccountPublic,
    Broker,
    Deployment,
)
from coyote_sdk import protocol
from coyote_sdk.protocol import now_ms

logger = logging.getLogger("coyote.control_plane")
router = APIRouter(prefix="/v1/accounts", tags=["accounts"], responses=responses(401, 403))

AccountName = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9_-]{0,38}$")]


def find_account(session: Session, org_id: int, name: str) -> Account:
    account = session.exec(
        select(Account).where(Account.org_id == org_id, Account.name == name)
    ).first()
    if account is None:
        raise not_found("account", name)
    return account


def allocated(session: Session, account: Account, *, excluding: int | None = None) -> Decimal:
    """Capital allocated to the account's deployments (all but ``excluding``)."""
    deployments = session.exec(select(Deployment).where(Deployment.account_id == account.id))
    return sum((Decimal(d.capital) for d in deployments if d.id != excluding), start=Decimal(0))


def check_allocation(
    session: Session, account: Account, capital: str, *, excluding: int | None = None
) -> None:
    """Refuses an allocation that would take the account's deployments past its capital."""
    if account.capital is None:
        return
    total = allocated(session, account, excluding=excluding) + Decimal(capital)
    if total > Decimal(account.capital):
        raise invalid(
            "capital.exceeded",
            f"allocating {capital} would take account {account.name!r} to {total}, over its "
            f"capital of {account.capital}",
            field="capital",
        )


def push_accounts(session: Session, context: ControlPlane, org_id: int) -> None:
    """Writes the organisation's account documents to Redis now, so running executors take
    the change at once; if Redis is down the change is still recorded and the supervisor
    writes them when Redis is back."""
    try:
        sync_accounts(session, context.redis, org_id=org_id)
        session.commit()
    except redis.RedisError as exc:
        session.rollback()
        logger.warning("account documents not in Redis yet: %s", exc)


def account_public(session: Session, slug: str, account: Account) -> AccountPublic:
    switches = active_kill_switches(session, account.org_id)
    return AccountPublic(
        **account.model_dump(include=set(AccountCreate.model_fields)),
        account_id=f"{slug}.{account.name}",
        risk_limits=account.risk_limits,
        allocated=str(allocated(session, account)),
        halted=halting(switches, account=account.name) is not None,
        created_ms=account.created_ms,
    )


@router.get("")
def list_accounts(session: SessionDep, principal: Reader) -> list[AccountPublic]:
    accounts = session.exec(
        select(Account).where(Account.org_id == principal.org_id).order_by(Account.name)
    )
    return [account_public(session, principal.org_slug, a) for a in accounts]


@router.post("", status_code=201, responses=responses(409, 422))
def create_account(
    body: AccountCreate, session: SessionDep, principal: Admin, context: ContextDep
) -> AccountPublic:
    """Adds a trading account. Its credentials stay in Vault: only their path is kept."""
    if session.exec(
        select(Account).where(Account.org_id == principal.org_id, Account.name == body.name)
    ).first():
        raise conflict("account.exists", f"an account named {body.name!r} exists")
    check_fill_model(body.broker, body.fill_model)
    check_broker_options(body.broker, body.broker_options)
    account = Account.model_validate(
        body, update={"org_id": principal.org_id, "created_ms": now_ms()}
    )
    session.add(account)
    principal.audit(session, "account.create", f"account/{body.name}", broker=body.broker.value)
    session.commit()
    push_accounts(session, context, principal.org_id)
    return account_public(session, principal.org_slug, account)


@router.get("/{name}", responses=responses(404))
def get_account(name: AccountName, session: SessionDep, principal: Reader) -> AccountPublic:
    return account_public(
        session, principal.org_slug, find_account(session, principal.org_id, name)
    )


@router.put("/{name}/risk-limits", responses=responses(404, 422))
def set_risk_limits(
    name: AccountName,
    limits: Annotated[
        dict[str, Any], Body(examples=[{"account": {"max_order_notional": "50000"}}])
    ],
    session: SessionDep,
    principal: RiskOfficer,
    context: ContextDep,
) -> AccountPublic:
    """Replaces the account's risk limits: a risk document as ``coyote_risk`` reads it
    (sections ``account``, ``bots``, ``symbols``, ``instruments``, ``restricted``). Running
    executors that take their accounts from the control plane apply them at once."""
    from coyote_risk import risk_config_from_mapping

    account = find_account(session, principal.org_id, name)
    try:
        risk_config_from_mapping(limits, account_id=f"{principal.org_slug}.{name}")
    except (ValueError, TypeError) as exc:
        raise invalid("risk_limits.invalid", str(exc), field="body") from exc
    before = account.risk_limits
    account.risk_limits = limits
    session.add(account)
    principal.audit(session, "account.risk_limits", f"account/{name}", before=before, after=limits)
    session.commit()
    push_accounts(session, context, principal.org_id)
    return account_public(session, principal.org_slug, account)


@router.put("/{name}/fill-model", responses=responses(404, 422))
def set_fill_model(
    name: AccountName,
    fill_model: Annotated[
        dict[str, Any], Body(examples=[{"slippage_bps": "2", "fee_bps": "1", "latency_ms": 20}])
    ],
    session: SessionDep,
    principal: Admin,
    context: ContextDep,
) -> AccountPublic:
    """Replaces a paper account's fill model; a field left out takes its default (``{}``: fills
    at the last price, no fee, no latency). Running executors that take their accounts from the
    control plane fill the account's next orders by it; orders resting meanwhile keep their
    place."""
    return _replace_setting(
        session, principal, context, name, "fill_model", fill_model, check_fill_model
    )


def check_fill_model(broker: Broker, fill_model: dict[str, Any] | None) -> None:
    """Refuses a fill model that is not valid (naming the field), or one for a real broker:
    the protocol's ``PaperFillModel`` is the one definition of what is valid."""
    if fill_model is None:
        return
    if broker is not Broker.PAPER:
        raise invalid(
            "fill_model.not_paper",
            f"a fill model is for paper accounts; this one trades with {broker.value}",
            field="fill_model",
        )
    try:
        msgspec.convert(fill_model, protocol.PaperFillModel, strict=False)
    except (msgspec.ValidationError, ValueError) as exc:
        raise invalid("fill_model.invalid", str(exc), field="fill_model") from exc


@router.put("/{name}/broker-options", responses=responses(404, 422))
def set_broker_options(
    name: AccountName,
    broker_options: Annotated[
        dict[str, Any],
        Body(examples=[{"environment": "live", "oanda_account_id": "101-004-1435156-001"}]),
    ],
    session: SessionDep,
    principal: Admin,
    context: ContextDep,
) -> AccountPublic:
    """Replaces a real broker's adapter options (``{}``: every default, the broker's sandbox):
    alpaca ``environment`` (``paper`` | ``live``); oanda ``environment`` (``practice`` |
    ``live``) and ``oanda_account_id``. Never credentials: those stay in Vault. A running
    executor does not switch an account's broker under its open orders: it halts the account
    (``risk.halted``, alerted) until it is restarted, and then trades with the new options."""
    return _replace_setting(
        session, principal, context, name, "broker_options", broker_options, check_broker_options
    )


def _replace_setting(
    session: Session,
    principal: Principal,
    context: ControlPlane,
    name: str,
    field: str,
    value: dict[str, Any],
    check: Callable[[Broker, dict[str, Any]], None],
) -> AccountPublic:
    """Replaces one of an account's settings after ``check`` passed it: audited as
    ``account.<field>`` with the value before and after, and pushed to running executors."""
    account = find_account(session, principal.org_id, name)
    check(account.broker, value)
    before = getattr(account, field)
    setattr(account, field, value)
    session.add(account)
    principal.audit(session, f"account.{field}", f"account/{name}", before=before, after=value)
    session.commit()
    push_accounts(session, context, principal.org_id)
    return account_public(session, principal.org_slug, account)


def check_broker_options(broker: Broker, broker_options: dict[str, Any]) -> None:
    """Refuses adapter options the account's broker does not take (naming the key and what is
    expected), or any for a paper account: the protocol's ``BROKER_OPTIONS`` is the one
    definition of what is valid."""
    if not broker_options:
        return
    if broker is Broker.PAPER:
        raise invalid(
            "broker_options.not_for_paper",
            "a paper account takes no broker options (its fill model is set with "
            f"PUT /v1/accounts/{{name}}/fill-model); got {sorted(broker_options)}",
            field="broker_options",
        )
    try:
        protocol.check_broker_options(broker.value, broker_options)
    except ValueError as exc:
        raise invalid(
            "broker_options.invalid", f"broker_options.{exc}", field="broker_options"
        ) from exc


@router.put("/{name}/capital", responses=responses(404, 422))
def set_capital(
    name: AccountName,
    capital: Annotated[str, Body(embed=True, pattern=r"^[0-9]+(\.[0-9]+)?$")],
    session: SessionDep,
    principal: RiskOfficer,
) -> AccountPublic:
    """Sets the capital the account's deployments may be allocated in total."""
    account = find_account(session, principal.org_id, name)
    if allocated(session, account) > Decimal(capital):
        raise invalid(
            "capital.below_allocated",
            f"{allocated(session, account)} is already allocated to deployments",
            field="capital",
        )
    principal.audit(
        session, "account.capital", f"account/{name}", before=account.capital, after=capital
    )
    account.capital = capital
    session.add(account)
    session.commit()
    return account_public(session, principal.org_slug, account)


@router.delete("/{name}", status_code=204, responses=responses(404, 409))
def delete_account(
    name: AccountName, session: SessionDep, principal: Admin, context: ContextDep
) -> None:
    account = find_account(session, principal.org_id, name)
    if session.exec(select(Deployment).where(Deployment.account_id == account.id)).first():
        raise conflict("account.in_use", f"deployments still trade account {name!r}")
    principal.audit(session, "account.delete", f"account/{name}")
    session.delete(account)
    session.commit()
    sync_halts(session, context.redis)
    push_accounts(session, context, principal.org_id)
