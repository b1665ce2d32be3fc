"""Users of an organisation and their API keys."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from sqlmodel import col, select

from coyote_control_plane.api.deps import Admin, Reader, RowId, SessionDep
from coyote_control_plane.errors import ApiError, conflict, not_found, responses
from coyote_control_plane.models import (
    ApiKey,
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyPublic,
    User,
    UserCreate,
    UserPublic,
    UserUpdate,
)
from coyote_control_plane.security import GRANTS, Permission, hash_password, may_grant, new_api_key
from coyote_sdk.protocol import now_ms

router = APIRouter(tags=["users"], responses=responses(401, 403))


@router.get("/v1/users")
def list_users(session: SessionDep, principal: Reader) -> list[UserPublic]:
    users = session.exec(select(User).where(User.org_id == principal.org_id).order_by(col(User.id)))
    return [UserPublic.model_validate(user) for user in users]


@router.post("/v1/users", status_code=201, responses=responses(409, 422))
def create_user(body: UserCreate, session: SessionDep, principal: Admin) -> UserPublic:
    if session.exec(select(User).where(User.email == body.email)).first():
        raise conflict("user.exists", f"a user with email {body.email!r} exists")
    user = User(
        org_id=principal.org_id,
        email=body.email,
        name=body.name,
        role=body.role,
        password_hash=hash_password(body.password) if body.password else None,
        created_ms=now_ms(),
    )
    session.add(user)
    principal.audit(session, "user.create", f"user/{body.email}", role=body.role.value)
    session.commit()
    return UserPublic.model_validate(user)


@router.patch("/v1/users/{user_id}", responses=responses(404, 409, 422))
def update_user(
    user_id: RowId, body: UserUpdate, session: SessionDep, principal: Admin
) -> UserPublic:
    """Changes a user's name, role, password, or disables them (their keys stop working)."""
    user = session.get(User, user_id)
    if user is None or user.org_id != principal.org_id:
        raise not_found("user", user_id)
    if user.id == principal.user_id and (body.disabled or (body.role and body.role != user.role)):
        raise conflict("user.self_lockout", "admins cannot disable or demote themselves")
    # An explicit null means "leave it": none of these columns may be emptied.
    changes = body.model_dump(exclude_unset=True, exclude_none=True, exclude={"password"})
    for field, value in changes.items():
        setattr(user, field, value)
    if body.password:
        user.password_hash = hash_password(body.password)
    session.add(user)
    principal.audit(
        session,
        "user.update",
        f"user/{user.email}",
        **{k: str(v) for k, v in changes.items()},
        password_changed=bool(body.password),
    )
    session.commit()
    return UserPublic.model_validate(user)


def _key_public(key: ApiKey, email: str) -> ApiKeyPublic:
    return ApiKeyPublic(
        **key.model_dump(exclude={"secret_hash", "org_id", "user_id"}), user_email=email
    )


@router.get("/v1/api-keys")
def list_api_keys(session: SessionDep, principal: Reader) -> list[ApiKeyPublic]:
    """The caller's own keys; an admin sees every key of the organisation."""
    query = (
        select(ApiKey, User)
        .join(User, col(User.id) == ApiKey.user_id)
        .where(ApiKey.org_id == principal.org_id)
        .order_by(col(ApiKey.id))
    )
    if Permission.ADMIN not in principal.permissions:
        query = query.where(ApiKey.user_id == principal.user_id)
    return [_key_public(key, user.email) for key, user in session.exec(query)]


@router.post("/v1/api-keys", status_code=201, responses=responses(422))
def create_api_key(body: ApiKeyCreate, session: SessionDep, principal: Reader) -> ApiKeyCreated:
    """Makes an API key for the caller. The key is in this answer only; it is kept hashed."""
    owner = session.get(User, principal.user_id)
    assert owner is not None
    role = body.role or principal.role
    if not may_grant(principal.role, role) or not GRANTS[role] <= principal.permissions:
        raise ApiError(
            422,
            "api_key.role_too_high",
            f"a {principal.role.value} cannot make a {role} key",
            field="role",
        )
    key, prefix, secret_hash = new_api_key()
    now = now_ms()
    row = ApiKey(
        org_id=principal.org_id,
        user_id=principal.user_id,
        name=body.name,
        prefix=prefix,
        secret_hash=secret_hash,
        role=role,
        created_ms=now,
        expires_ms=now + body.expires_in_days * 86_400_000 if body.expires_in_days else None,
    )
    session.add(row)
    principal.audit(session, "api_key.create", f"api_key/{prefix}", name=body.name, role=role.value)
    session.commit()
    return ApiKeyCreated(**_key_public(row, owner.email).model_dump(), key=key)


@router.delete("/v1/api-keys/{prefix}", status_code=204, responses=responses(404))
def revoke_api_key(
    prefix: Annotated[str, Path(pattern=r"^[0-9a-f]{12}$")], session: SessionDep, principal: Reader
) -> None:
    """Revokes a key at once. Users revoke their own; admins any of the organisation's."""
    key = session.exec(select(ApiKey).where(ApiKey.prefix == prefix)).first()
    if (
        key is None
        or key.org_id != principal.org_id
        or (key.user_id != principal.user_id and Permission.ADMIN not in principal.permissions)
    ):
        raise not_found("api_key", prefix)
    if key.revoked_ms is None:
        key.revoked_ms = now_ms()
        session.add(key)
        principal.audit(session, "api_key.revoke", f"api_key/{prefix}")
        session.commit()
