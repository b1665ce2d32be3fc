"""Dashboard sessions (log in, log out) and who the caller is."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Cookie, Request, Response
from pydantic import BaseModel, Field
from sqlmodel import select

from coyote_control_plane.api.deps import SESSION_COOKIE, ContextDep, Reader, SessionDep
from coyote_control_plane.errors import ApiError, responses
from coyote_control_plane.models import (
    AuditEntry,
    DashboardSession,
    Organization,
    OrganizationPublic,
    Role,
    User,
    UserPublic,
)
from coyote_control_plane.security import (
    DUMMY_PASSWORD_HASH,
    GRANTS,
    Permission,
    hash_token,
    new_session_token,
    verify_password,
)
from coyote_sdk.protocol import now_ms

router = APIRouter(prefix="/v1/auth", tags=["auth"])


class Login(BaseModel):
    email: str = Field(max_length=254)
    password: str = Field(max_length=200)


class Me(BaseModel):
    user: UserPublic
    organization: OrganizationPublic
    role: str
    """The credential's role (an API key's may be narrower than its owner's)."""
    permissions: list[str]


@router.post("/login", responses=responses(401, 422))
def login(
    body: Login, request: Request, response: Response, session: SessionDep, context: ContextDep
) -> Me:
    """Starts a dashboard session: sets an HttpOnly cookie."""
    user = session.exec(select(User).where(User.email == body.email)).first()
    stored = user.password_hash if user and user.password_hash else DUMMY_PASSWORD_HASH
    if not verify_password(body.password, stored) or user is None or user.disabled:
        raise ApiError(401, "auth.bad_credentials", "unknown email or wrong password")
    token, token_hash = new_session_token()
    ttl_ms = int(context.settings.session_ttl_hours * 3_600_000)
    now = now_ms()
    session.add(
        DashboardSession(
            token_hash=token_hash,
            user_id=user.id,  # type: ignore[arg-type]
            created_ms=now,
            expires_ms=now + ttl_ms,
        )
    )
    session.add(
        AuditEntry(
            org_id=user.org_id,
            ts_ms=now,
            actor=f"user:{user.email}",
            action="auth.login",
            target=f"user/{user.email}",
            source_ip=request.client.host if request.client else None,
        )
    )
    session.commit()
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=ttl_ms // 1000,
        httponly=True,
        samesite="lax",  # a cross-site form cannot post with the session
        secure=context.settings.cookie_secure,
    )
    return _me(session, user, user.role, GRANTS[user.role])


@router.post("/logout", status_code=204)
def logout(
    response: Response,
    session: SessionDep,
    coyote_session: Annotated[str | None, Cookie()] = None,
) -> None:
    """Ends the dashboard session."""
    if coyote_session:
        held = session.get(DashboardSession, hash_token(coyote_session))
        if held is not None:
            session.delete(held)
            session.commit()
    response.delete_cookie(SESSION_COOKIE)


@router.get("/me", responses=responses(401))
def me(session: SessionDep, principal: Reader) -> Me:
    """The caller: user, organisation, role and permissions."""
    user = session.get(User, principal.user_id)
    assert user is not None
    return _me(session, user, principal.role, principal.permissions)


def _me(session: SessionDep, user: User, role: Role, permissions: frozenset[Permission]) -> Me:
    org = session.get(Organization, user.org_id)
    assert org is not None
    return Me(
        user=UserPublic.model_validate(user),
        organization=OrganizationPublic.model_validate(org),
        role=role.value,
        permissions=sorted(p.value for p in permissions),
    )
