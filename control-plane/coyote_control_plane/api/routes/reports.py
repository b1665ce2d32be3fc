"""The reports (``/v1/reports``): :mod:`coyote_reports`' routes behind this service's auth.

Any role may read them (a viewer reads reports and nothing else); each caller sees its own
organisation's trading only: the scope comes from the credential.
"""

from __future__ import annotations

from decimal import Decimal

from sqlmodel import select

from coyote_control_plane.api.deps import ContextDep, Reader, SessionDep
from coyote_control_plane.errors import responses
from coyote_control_plane.models import Account, Deployment
from coyote_reports import Reports, Tenant, make_router


def _tenant(principal: Reader, session: SessionDep) -> Tenant:
    org_id = principal.org_id

    def bot_capital() -> dict[str, Decimal]:
        rows = session.exec(
            select(Deployment.name, Deployment.capital).where(Deployment.org_id == org_id)
        )
        return {name: Decimal(capital) for name, capital in rows}

    def account_capital() -> dict[str, Decimal]:
        rows = session.exec(select(Account.name, Account.capital).where(Account.org_id == org_id))
        return {name: Decimal(capital) for name, capital in rows if capital is not None}

    return Tenant(principal.org_slug, bot_capital=bot_capital, account_capital=account_capital)


def _reports(context: ContextDep) -> Reports:
    return context.reports


router = make_router(_tenant, _reports, responses=responses(401, 403, 422))
