"""Live events of the caller's organisation, as a Server-Sent Events stream."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from coyote_control_plane import events
from coyote_control_plane.api.deps import ContextDep, Reader
from coyote_control_plane.errors import responses
from coyote_control_plane.events import Event

router = APIRouter(prefix="/v1/events", tags=["events"], responses=responses(401, 403))

_KEEPALIVE_S = 15.0


@router.get(
    "",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/event-stream": {"schema": Event.model_json_schema()}},
            "description": "`event: <kind>` and `data: <Event as JSON>` per event",
        }
    },
)
async def stream_events(
    request: Request,
    context: ContextDep,
    principal: Reader,
    kinds: Annotated[
        list[str] | None,
        Query(description=f"Only these kinds; any of {', '.join(events.KINDS)}."),
    ] = None,
) -> StreamingResponse:
    """Bot status changes, order updates, fills, risk rejections, alerts and kill switches of
    the caller's organisation, as they happen (Server-Sent Events; a comment line every 15 s
    keeps proxies from closing an idle stream)."""
    wanted = set(kinds or [])
    org = principal.org_slug
    queue = context.events.subscribe(
        lambda event: event.org == org and (not wanted or event.kind in wanted)
    )

    async def stream() -> AsyncIterator[str]:
        try:
            yield ": connected\n\n"
            while not await request.is_disconnected():
                try:
                    event = await asyncio.wait_for(queue.get(), timeout=_KEEPALIVE_S)
                except TimeoutError:
                    yield ": keepalive\n\n"
                    continue
                yield f"id: {event.id}\nevent: {event.kind}\ndata: {event.model_dump_json()}\n\n"
        finally:
            context.events.unsubscribe(queue)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get("/recent")
async def recent_events(
    context: ContextDep,
    principal: Reader,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> list[Event]:
    """The latest bot status and kill-switch events, newest first (what a dashboard shows
    before the live stream takes over)."""
    return await run_in_threadpool(events.recent, context.redis, principal.org_slug, limit=limit)
