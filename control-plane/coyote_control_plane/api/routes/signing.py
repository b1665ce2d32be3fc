"""Bundle signing keys: once an organisation has one, its pushes must be signed and its
runtimes load only bundles signed by an unrevoked key (``coyote_sdk.signing``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from sqlmodel import col, select

from coyote_control_plane.api.deps import Admin, Reader, SessionDep
from coyote_control_plane.errors import ApiError, invalid, not_found, responses
from coyote_control_plane.models import SigningKey, SigningKeyCreate, SigningKeyPublic
from coyote_sdk import signing
from coyote_sdk.protocol import now_ms

router = APIRouter(prefix="/v1/signing-keys", tags=["signing"], responses=responses(401, 403))

KeyId = Annotated[str, Path(pattern=r"^[0-9a-f]{16}$", description="A signing key's id.")]


@router.get("")
def list_signing_keys(session: SessionDep, principal: Reader) -> list[SigningKeyPublic]:
    """The organisation's signing keys, revoked ones included."""
    keys = session.exec(
        select(SigningKey)
        .where(SigningKey.org_id == principal.org_id)
        .order_by(col(SigningKey.created_ms))
    )
    return [SigningKeyPublic.model_validate(key) for key in keys]


@router.post("", status_code=201, responses=responses(409, 422))
def add_signing_key(
    body: SigningKeyCreate, session: SessionDep, principal: Admin
) -> SigningKeyPublic:
    """Registers a public key. From then on every push must be signed by one of the
    organisation's unrevoked keys, and runtimes check the signature before loading."""
    try:
        key_id = signing.key_id(body.public_key)
    except signing.SignatureError as exc:
        raise invalid("signing.bad_key", str(exc), field="public_key") from exc
    known = session.exec(
        select(SigningKey).where(SigningKey.org_id == principal.org_id, SigningKey.key_id == key_id)
    ).first()
    if known is not None:
        raise ApiError(409, "signing.key_exists", f"key {key_id} is already registered")
    key = SigningKey(
        org_id=principal.org_id,
        key_id=key_id,
        public_key=body.public_key,
        name=body.name,
        created_by=principal.actor,
        created_ms=now_ms(),
    )
    session.add(key)
    principal.audit(session, "signing_key.add", f"signing-key/{key_id}", name=body.name)
    session.commit()
    return SigningKeyPublic.model_validate(key)


@router.delete("/{key_id}", responses=responses(404))
def revoke_signing_key(key_id: KeyId, session: SessionDep, principal: Admin) -> SigningKeyPublic:
    """Revokes a key: bundles signed only by it no longer push or launch. A running runtime
    keeps running until it is restarted."""
    key = session.exec(
        select(SigningKey).where(SigningKey.org_id == principal.org_id, SigningKey.key_id == key_id)
    ).first()
    if key is None:
        raise not_found("signing key", key_id)
    if key.revoked_ms is None:
        key.revoked_ms = now_ms()
        session.add(key)
        principal.audit(session, "signing_key.revoke", f"signing-key/{key_id}")
        session.commit()
    return SigningKeyPublic.model_validate(key)
