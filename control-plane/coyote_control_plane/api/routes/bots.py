"""Bots, their versions (``push``) and releases."""

from __future__ import annotations

from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Header, Path, Request, Response
from fastapi.responses import Response as RawResponse
from sqlmodel import col, func, select

from coyote_control_plane.api.deps import ContextDep, Reader, RowId, SessionDep, Trader
from coyote_control_plane.errors import ApiError, responses
from coyote_control_plane.models import (
    Bot,
    BotPublic,
    BotVersion,
    BotVersionPublic,
    BundleBlob,
    Release,
    ReleaseCreate,
    ReleasePublic,
)
from coyote_control_plane.registry import (
    find_bot,
    find_version,
    make_release,
    push,
    release_public,
    version_public,
)

router = APIRouter(prefix="/v1/bots", tags=["bots"], responses=responses(401, 403))

BotName = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$", description="Bot name.")]


def _bot_public(session: SessionDep, bot: Bot) -> BotPublic:
    latest, count = session.exec(
        select(func.max(BotVersion.number), func.count()).where(BotVersion.bot_id == bot.id)
    ).one()
    return BotPublic(
        name=bot.name,
        created_ms=bot.created_ms,
        created_by=bot.created_by,
        latest_version=latest,
        versions=count,
    )


@router.get("")
def list_bots(session: SessionDep, principal: Reader) -> list[BotPublic]:
    """Every bot of the caller's organisation."""
    bots = session.exec(select(Bot).where(Bot.org_id == principal.org_id).order_by(Bot.name))
    return [_bot_public(session, bot) for bot in bots]


@router.get("/{name}", responses=responses(404))
def get_bot(name: BotName, session: SessionDep, principal: Reader) -> BotPublic:
    return _bot_public(session, find_bot(session, principal.org_id, name))


_BUNDLE_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/gzip": {"schema": {"type": "string", "format": "binary"}}},
        "description": "The bundle made by `coyote_sdk.build_bundle` (a gzip-compressed tar).",
    }
}


@router.post(
    "/{name}/versions",
    status_code=201,
    openapi_extra=_BUNDLE_BODY,
    responses={
        200: {"model": BotVersionPublic, "description": "This bundle was pushed before"},
        **responses(400, 413, 422),
    },
)
async def push_version(
    name: BotName,
    request: Request,
    response: Response,
    context: ContextDep,
    principal: Trader,
    x_bundle_digest: Annotated[
        str | None,
        Header(
            pattern=r"^sha256:[0-9a-f]{64}$",
            description="The bundle's digest as the client computed it; checked on arrival.",
        ),
    ] = None,
    x_bundle_signature: Annotated[
        str | None,
        Header(
            max_length=200,
            description="``ed25519:<key id>:<base64>``: the digest signed by one of the "
            "organisation's signing keys; required once it has any.",
        ),
    ] = None,
) -> BotVersionPublic:
    """Uploads a bundle as the bot's next version (``coyote-sdk push``).

    The server checks the archive, the manifest and every file's digest without running any of
    the bot's code. The same bundle pushed again answers its existing version (200), so a push
    can be retried safely.
    """
    limit = context.settings.max_upload_bytes
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "bundle.too_large", f"the bundle is {declared} bytes; limit {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "bundle.too_large", f"the bundle exceeds the {limit}-byte limit")
        chunks.append(chunk)
    data = b"".join(chunks)
    if not data:
        raise ApiError(400, "bundle.missing", "the request body must be the bundle")

    from sqlmodel import Session

    def store() -> tuple[BotVersionPublic, bool]:
        for attempt in range(2):
            with Session(context.engine, expire_on_commit=False) as session:
                try:
                    version, created = push(
                        session,
                        org_id=principal.org_id,
                        name=name,
                        data=data,
                        expected_digest=x_bundle_digest,
                        actor=principal.actor,
                        signature=x_bundle_signature,
                    )
                    bot = session.get(Bot, version.bot_id)
                    assert bot is not None
                    if created:
                        principal.audit(
                            session,
                            "bot.push",
                            f"bot/{name}",
                            version=version.number,
                            digest=version.digest,
                        )
                    session.commit()
                    return version_public(bot, version, created=created), created
                except sa.exc.IntegrityError:
                    # Two pushes of one bot at once: the loser retries and finds the winner's.
                    session.rollback()
                    if attempt:
                        raise
        raise AssertionError("unreachable")

    from starlette.concurrency import run_in_threadpool

    public, created = await run_in_threadpool(store)
    response.status_code = 201 if created else 200
    return public


@router.get("/{name}/versions", responses=responses(404))
def list_versions(name: BotName, session: SessionDep, principal: Reader) -> list[BotVersionPublic]:
    bot = find_bot(session, principal.org_id, name)
    versions = session.exec(
        select(BotVersion).where(BotVersion.bot_id == bot.id).order_by(col(BotVersion.number))
    )
    return [version_public(bot, version) for version in versions]


@router.get("/{name}/versions/{number}", responses=responses(404))
def get_version(
    name: BotName, number: RowId, session: SessionDep, principal: Reader
) -> BotVersionPublic:
    bot = find_bot(session, principal.org_id, name)
    return version_public(bot, find_version(session, bot, number))


@router.get(
    "/{name}/versions/{number}/bundle",
    response_class=RawResponse,
    responses={
        200: {"content": {"application/gzip": {}}, "description": "The bundle's bytes"},
        **responses(404),
    },
)
def download_bundle(
    name: BotName, number: RowId, session: SessionDep, principal: Reader
) -> RawResponse:
    """The bundle as pushed; its digest is in ``X-Bundle-Digest``."""
    bot = find_bot(session, principal.org_id, name)
    version = find_version(session, bot, number)
    blob = session.get(BundleBlob, version.digest)
    assert blob is not None
    return RawResponse(
        blob.data, media_type="application/gzip", headers={"X-Bundle-Digest": blob.digest}
    )


@router.post(
    "/{name}/releases",
    status_code=201,
    responses={
        200: {"model": ReleasePublic, "description": "The same release existed"},
        **responses(404, 409, 422),
    },
)
def create_release(
    name: BotName,
    body: ReleaseCreate,
    response: Response,
    session: SessionDep,
    principal: Trader,
) -> ReleasePublic:
    """Makes an immutable release: a version with its parameters and risk profile.

    Releases are content-addressed: asking for the same content again answers the existing
    release (200).
    """
    bot = find_bot(session, principal.org_id, name)
    version = find_version(session, bot, body.version)
    release, created = make_release(
        session,
        bot=bot,
        version=version,
        params=body.params,
        risk_profile=body.risk_profile,
        actor=principal.actor,
    )
    if created:
        principal.audit(
            session, "release.create", f"bot/{name}", release=release.number, version=version.number
        )
    session.commit()
    response.status_code = 201 if created else 200
    return release_public(session, bot, release)


@router.get("/{name}/releases", responses=responses(404))
def list_releases(name: BotName, session: SessionDep, principal: Reader) -> list[ReleasePublic]:
    """The bot's releases, oldest first, with who made them and when."""
    bot = find_bot(session, principal.org_id, name)
    releases = session.exec(
        select(Release).where(Release.bot_id == bot.id).order_by(col(Release.number))
    )
    return [release_public(session, bot, release) for release in releases]
