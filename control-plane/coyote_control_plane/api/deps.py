"""Dependencies of the routes: the database session, the caller, and role checks.

Every route names what it needs as an ``Annotated`` alias: ``Reader`` (any role of the
organisation), ``Trader``, ``Halter``, ``RiskOfficer``, ``Auditor``, ``Admin``. The caller's
organisation comes from its credential, never from the request, so no route can be pointed at
another organisation's data.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import APIKeyCookie, HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session, select

from coyote_control_plane.context import ControlPlane
from coyote_control_plane.errors import ApiError
from coyote_control_plane.models import (
    MAX_INT,
    ApiKey,
    AuditEntry,
    DashboardSession,
    Organization,
    Role,
    User,
)
from coyote_control_plane.security import (
    GRANTS,
    Permission,
    hash_token,
    split_api_key,
    token_matches,
)
from coyote_sdk.protocol import now_ms

SESSION_COOKIE = "coyote_session"

RowId = Annotated[int, Path(ge=1, le=MAX_INT, description="A row id or number.")]
"""Ids and numbers in paths: out-of-range ones are a 422, not a database error."""
_LAST_USED_RESOLUTION_MS = 60_000

_bearer = HTTPBearer(auto_error=False, description="An API key: `cyk_<prefix>_<secret>`.")
_cookie = APIKeyCookie(
    name=SESSION_COOKIE, auto_error=False, description="The dashboard's session."
)


def get_context(request: Request) -> ControlPlane:
    context: ControlPlane = request.app.state.context
    return context


ContextDep = Annotated[ControlPlane, Depends(get_context)]


def get_session(context: ContextDep) -> Iterator[Session]:
    with Session(context.engine, expire_on_commit=False) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


@dataclasses.dataclass(frozen=True)
class Principal:
    """Who is calling, for which organisation, with what permissions."""

    org_id: int
    org_slug: str
    user_id: int
    email: str
    role: Role
    permissions: frozenset[Permission]
    actor: str
    """How the audit log names the caller."""
    source_ip: str | None
    key_id: int | None = None

    def require(self, permission: Permission) -> None:
        if permission not in self.permissions:
            raise ApiError(
                403,
                "auth.forbidden",
                f"the {self.role.value} role may not do this (needs {permission.value!r})",
            )

    def audit(self, session: Session, action: str, target: str, **detail: object) -> AuditEntry:
        """Adds an audit entry to ``session``: it commits with the change it records."""
        entry = AuditEntry(
            org_id=self.org_id,
            ts_ms=now_ms(),
            actor=self.actor,
            action=action,
            target=target,
            source_ip=self.source_ip,
            detail=dict(detail),
        )
        session.add(entry)
        return entry


def _unauthenticated(message: str) -> ApiError:
    return ApiError(401, "auth.unauthenticated", message)


def get_principal(
    request: Request,
    session: SessionDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    cookie: Annotated[str | None, Depends(_cookie)],
) -> Principal:
    source_ip = request.client.host if request.client else None
    now = now_ms()
    if bearer is not None:
        parts = split_api_key(bearer.credentials)
        if parts is None:
            raise _unauthenticated("the bearer token is not a Coyote API key")
        prefix, secret = parts
        key = session.exec(select(ApiKey).where(ApiKey.prefix == prefix)).first()
        if key is None or not token_matches(secret, key.secret_hash):
            raise _unauthenticated("unknown API key")
        if key.revoked_ms is not None:
            raise _unauthenticated("this API key was revoked")
        if key.expires_ms is not None and key.expires_ms <= now:
            raise _unauthenticated("this API key has expired")
        user = session.get(User, key.user_id)
        if key.last_used_ms is None or now - key.last_used_ms > _LAST_USED_RESOLUTION_MS:
            key.last_used_ms = now
            session.add(key)
            session.commit()
        role, key_id = key.role, key.id
        actor_of = lambda u: f"key:{key.prefix} ({u.email})"  # noqa: E731
    elif cookie:
        held = session.get(DashboardSession, hash_token(cookie))
        if held is None or held.expires_ms <= now:
            raise _unauthenticated("the session has ended; log in again")
        user = session.get(User, held.user_id)
        role, key_id = (user.role if user else Role.VIEWER), None
        actor_of = lambda u: f"user:{u.email}"  # noqa: E731
    else:
        raise _unauthenticated("send an API key (Authorization: Bearer cyk_...) or log in")
    if user is None or user.disabled:
        raise _unauthenticated("the user of this credential is disabled")
    org = session.get(Organization, user.org_id)
    assert org is not None and org.id is not None and user.id is not None
    return Principal(
        org_id=org.id,
        org_slug=org.slug,
        user_id=user.id,
        email=user.email,
        role=role,
        # A key's role may have been granted before its owner was demoted: both must allow.
        permissions=GRANTS[role] & GRANTS[user.role],
        actor=actor_of(user),
        source_ip=source_ip,
        key_id=key_id,
    )


def requires(permission: Permission) -> Callable[[Principal], Principal]:
    def check(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        principal.require(permission)
        return principal

    return check


Reader = Annotated[Principal, Depends(requires(Permission.READ))]
Trader = Annotated[Principal, Depends(requires(Permission.TRADE))]
Halter = Annotated[Principal, Depends(requires(Permission.HALT))]
RiskOfficer = Annotated[Principal, Depends(requires(Permission.RISK))]
Auditor = Annotated[Principal, Depends(requires(Permission.AUDIT))]
Admin = Annotated[Principal, Depends(requires(Permission.ADMIN))]
