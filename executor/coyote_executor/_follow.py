"""Following a Redis hash that the control plane writes: the kill switches, the account
documents. Shared so both keep the same recovery rules."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis


async def follow_hash(
    client: aioredis.Redis,
    channel: str,
    *,
    refresh_s: float,
    read: Callable[[], Awaitable[None]],
    lost: Callable[[Exception], None],
    stop: asyncio.Event,
) -> None:
    """Calls ``read`` at once when a change is announced on ``channel``, and every
    ``refresh_s`` anyway (a missed message, a Redis that restarted empty), until ``stop``.

    While Redis cannot be reached ``lost`` is told and the subscription is made again every
    ``refresh_s``; what was read last stays in force meanwhile (the caller's business)."""
    while not stop.is_set():
        pubsub = client.pubsub()
        try:
            await pubsub.subscribe(channel)
            while not stop.is_set():
                # Read after (re)subscribing too: a change made while not subscribed is
                # announced to nobody.
                await read()
                deadline = time.monotonic() + refresh_s
                while (left := deadline - time.monotonic()) > 0:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=left)
                    if message is not None:
                        break  # the message names one field; the hash is read whole
        except (aioredis.RedisError, OSError) as exc:
            lost(exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), refresh_s)
        finally:
            with contextlib.suppress(aioredis.RedisError, OSError):
                await pubsub.aclose()
