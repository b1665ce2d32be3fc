"""Bots, their versions and releases: push, and content-addressed releases.

A push is verified with :func:`coyote_sdk.bundles.verify_bundle` (no bundle code runs on the
server) and stored with its version in one transaction. Versions are numbered per bot; the
same digest pushed again answers the version it already has.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import jsonschema
import msgspec
import sqlalchemy as sa
from sqlmodel import Session, col, func, select

from coyote_control_plane.errors import ApiError, invalid, not_found
from coyote_control_plane.models import (
    Bot,
    BotVersion,
    BotVersionPublic,
    BundleBlob,
    Release,
    ReleasePublic,
    SigningKey,
)
from coyote_sdk import bundles, signing
from coyote_sdk.protocol import now_ms


def find_bot(session: Session, org_id: int, name: str) -> Bot:
    bot = session.exec(select(Bot).where(Bot.org_id == org_id, Bot.name == name)).first()
    if bot is None:
        raise not_found("bot", name)
    return bot


def find_version(session: Session, bot: Bot, number: int | None) -> BotVersion:
    query = select(BotVersion).where(BotVersion.bot_id == bot.id)
    query = (
        query.where(BotVersion.number == number)
        if number is not None
        else query.order_by(col(BotVersion.number).desc())
    )
    version = session.exec(query).first()
    if version is None:
        raise not_found("version", f"{bot.name}@{number}" if number else bot.name)
    return version


def find_release(session: Session, bot: Bot, number: int) -> Release:
    release = session.exec(
        select(Release).where(Release.bot_id == bot.id, Release.number == number)
    ).first()
    if release is None:
        raise not_found("release", f"{bot.name}#{number}")
    return release


def push(
    session: Session,
    *,
    org_id: int,
    name: str,
    data: bytes,
    expected_digest: str | None,
    actor: str,
    signature: str | None = None,
) -> tuple[BotVersion, bool]:
    """Verifies and stores a bundle as the next version of bot ``name`` (made if new).

    When the organisation has signing keys, the bundle must come with a ``signature`` of its
    digest by one of them; pushing a known bundle again with a valid signature attaches the
    signature to its version (a version pushed before the keys were registered).

    Returns the version and whether it is new. The caller commits.

    Raises:
        ApiError: 422 ``bundle.invalid`` saying what is wrong with the bundle;
            ``bundle.unsigned`` or ``bundle.bad_signature``.
    """
    try:
        manifest = bundles.verify_bundle(data, expected_digest=expected_digest)
    except bundles.BundleError as exc:
        raise invalid("bundle.invalid", str(exc), field="body") from exc
    if manifest.name != name:
        raise invalid(
            "bundle.name_mismatch",
            f"the bundle is named {manifest.name!r} but was pushed as {name!r}",
            field="name",
        )
    digest = bundles.digest_of(data)
    if signing_required(session, org_id):
        if signature is None:
            raise invalid(
                "bundle.unsigned",
                "this organisation runs signed bundles only: push with a signing key "
                "(coyote-sdk push --sign-key KEY.pem)",
                field="X-Bundle-Signature",
            )
        try:
            signing.verify_signature(digest, signature, trusted_keys(session, org_id))
        except signing.SignatureError as exc:
            raise invalid("bundle.bad_signature", str(exc), field="X-Bundle-Signature") from exc
    else:
        signature = None  # nothing to check it against: not kept
    bot = session.exec(select(Bot).where(Bot.org_id == org_id, Bot.name == name)).first()
    if bot is None:
        bot = Bot(org_id=org_id, name=name, created_ms=now_ms(), created_by=actor)
        session.add(bot)
        session.flush()
    else:
        existing = session.exec(
            select(BotVersion).where(BotVersion.bot_id == bot.id, BotVersion.digest == digest)
        ).first()
        if existing is not None:
            if signature is not None and existing.signature != signature:
                existing.signature = signature
                session.add(existing)
                session.flush()
            return existing, False
    if session.get(BundleBlob, digest) is None:
        session.add(BundleBlob(digest=digest, data=data, size=len(data)))
    latest = session.exec(
        select(func.max(BotVersion.number)).where(BotVersion.bot_id == bot.id)
    ).one()
    version = BotVersion(
        bot_id=bot.id,  # type: ignore[arg-type]
        number=(latest or 0) + 1,
        digest=digest,
        manifest=msgspec.to_builtins(manifest),
        size=len(data),
        pushed_by=actor,
        pushed_ms=now_ms(),
        signature=signature,
    )
    session.add(version)
    session.flush()
    return version, True


def signing_required(session: Session, org_id: int) -> bool:
    """Whether the organisation runs signed bundles only: it has signing keys, revoked or not
    (revoking every key leaves nothing trusted, it does not turn signing off)."""
    key = session.exec(select(SigningKey.id).where(SigningKey.org_id == org_id)).first()
    return key is not None


def trusted_keys(session: Session, org_id: int) -> list[str]:
    """The public keys of the organisation's unrevoked signing keys."""
    return list(
        session.exec(
            select(SigningKey.public_key).where(
                SigningKey.org_id == org_id, col(SigningKey.revoked_ms).is_(None)
            )
        )
    )


def version_public(bot: Bot, version: BotVersion, *, created: bool = False) -> BotVersionPublic:
    manifest = version.manifest
    return BotVersionPublic(
        bot=bot.name,
        number=version.number,
        digest=version.digest,
        size=version.size,
        bot_class=manifest["bot_class"],
        symbols=manifest["symbols"],
        timeframe=manifest["timeframe"],
        params_schema=manifest["params_schema"],
        requirements=manifest.get("requirements", []),
        sdk_version=manifest["sdk_version"],
        pushed_by=version.pushed_by,
        pushed_ms=version.pushed_ms,
        signed_by=version.signature.split(":")[1] if version.signature else None,
        created=created,
    )


def validate_params(schema: dict[str, Any], params: dict[str, Any], *, field: str) -> None:
    """Checks ``params`` against a bundle's parameters schema.

    Raises:
        ApiError: 422 ``params.invalid`` naming the parameter and what was expected.
    """
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(params), key=lambda e: list(e.absolute_path))
    if errors:
        error = errors[0]
        path = ".".join(str(p) for p in error.absolute_path)
        if error.validator == "additionalProperties":
            known = sorted(schema.get("properties", {}))
            message = f"{error.message}; the bot's parameters are {known}"
        else:
            message = f"{path or 'params'}: {error.message}"
        raise invalid("params.invalid", message, field=f"{field}.{path}" if path else field)


def validate_risk_profile(profile: dict[str, Any], *, field: str) -> None:
    """Checks a bot's risk profile as the risk engine will read it (``[bots.<id>]``)."""
    from coyote_risk import risk_config_from_mapping

    try:
        risk_config_from_mapping({"bots": {"bot": profile}}, account_id="check")
    except (ValueError, TypeError) as exc:
        raise invalid("risk_profile.invalid", str(exc), field=field) from exc


def content_hash(digest: str, requirements: list[str], params: Any, risk: Any) -> str:
    canonical = json.dumps(
        {"digest": digest, "requirements": requirements, "params": params, "risk_profile": risk},
        sort_keys=True,
        separators=(",", ":"),
    )
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def make_release(
    session: Session,
    *,
    bot: Bot,
    version: BotVersion,
    params: dict[str, Any],
    risk_profile: dict[str, Any],
    actor: str,
) -> tuple[Release, bool]:
    """The release of ``version`` with ``params`` and ``risk_profile``: the existing one if the
    same content was released before, else a new one. The caller commits."""
    validate_params(version.manifest["params_schema"], params, field="params")
    validate_risk_profile(risk_profile, field="risk_profile")
    requirements = list(version.manifest.get("requirements", []))
    address = content_hash(version.digest, requirements, params, risk_profile)
    existing = session.exec(
        select(Release).where(Release.bot_id == bot.id, Release.content_hash == address)
    ).first()
    if existing is not None:
        return existing, False
    latest = session.exec(select(func.max(Release.number)).where(Release.bot_id == bot.id)).one()
    release = Release(
        org_id=bot.org_id,
        bot_id=bot.id,  # type: ignore[arg-type]
        number=(latest or 0) + 1,
        version_id=version.id,  # type: ignore[arg-type]
        content_hash=address,
        params=params,
        risk_profile=risk_profile,
        created_by=actor,
        created_ms=now_ms(),
    )
    session.add(release)
    try:
        session.flush()
    except sa.exc.IntegrityError as exc:  # a concurrent release of the same content
        session.rollback()
        raise ApiError(409, "release.conflict", "a release was made concurrently; retry") from exc
    return release, True


def release_public(session: Session, bot: Bot, release: Release) -> ReleasePublic:
    version = session.get(BotVersion, release.version_id)
    assert version is not None
    return ReleasePublic(
        bot=bot.name,
        number=release.number,
        version=version.number,
        digest=version.digest,
        requirements=list(version.manifest.get("requirements", [])),
        content_hash=release.content_hash,
        params=release.params,
        risk_profile=release.risk_profile,
        created_by=release.created_by,
        created_ms=release.created_ms,
    )
