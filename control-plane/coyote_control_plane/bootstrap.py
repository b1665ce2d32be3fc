"""Making an organisation with its first admin: the one step no API call can do."""

from __future__ import annotations

from sqlmodel import Session, select

from coyote_control_plane.models import ApiKey, Organization, Role, User
from coyote_control_plane.security import hash_password, new_api_key
from coyote_sdk.protocol import now_ms


class BootstrapError(ValueError):
    pass


def create_organization(
    session: Session,
    *,
    slug: str,
    name: str,
    admin_email: str,
    admin_password: str | None = None,
    key_name: str = "bootstrap",
) -> tuple[Organization, User, str]:
    """Creates an organisation, its admin and an admin API key; returns the key (shown once).

    Raises:
        BootstrapError: the slug or the email is taken, or the slug is not valid.
    """
    import re

    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{1,23}", slug):
        raise BootstrapError(
            f"organisation slug {slug!r}: 2-24 lower-case letters, digits and dashes"
        )
    if session.exec(select(Organization).where(Organization.slug == slug)).first():
        raise BootstrapError(f"organisation {slug!r} exists")
    if session.exec(select(User).where(User.email == admin_email)).first():
        raise BootstrapError(f"a user with email {admin_email!r} exists")
    now = now_ms()
    org = Organization(slug=slug, name=name, created_ms=now)
    session.add(org)
    session.flush()
    user = User(
        org_id=org.id,  # type: ignore[arg-type]
        email=admin_email,
        name="",
        role=Role.ADMIN,
        password_hash=hash_password(admin_password) if admin_password else None,
        created_ms=now,
    )
    session.add(user)
    session.flush()
    key, prefix, secret_hash = new_api_key()
    session.add(
        ApiKey(
            org_id=org.id,  # type: ignore[arg-type]
            user_id=user.id,  # type: ignore[arg-type]
            name=key_name,
            prefix=prefix,
            secret_hash=secret_hash,
            role=Role.ADMIN,
            created_ms=now,
        )
    )
    session.commit()
    return org, user, key
