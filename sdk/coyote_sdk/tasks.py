"""Stopping a process's background tasks without letting one of them hold its shutdown."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from typing import Any


async def cancel_and_wait(
    tasks: Collection[asyncio.Task[Any]],
    *,
    within: float,
    log: logging.Logger | logging.LoggerAdapter[Any],
) -> None:
    """Cancels ``tasks`` and waits for them to end, at most ``within`` seconds in all.

    Bounded because a task whose cancellation is swallowed somewhere below it (in a client
    library racing a reply, say) would otherwise keep its owner from stopping for ever. A task
    still running then is logged and left; so is the error of one that had failed.
    """
    if not tasks:
        return
    for task in tasks:
        task.cancel()
    done, stuck = await asyncio.wait(tasks, timeout=within)
    for task in stuck:
        log.warning("%s did not stop within %g s; left", task.get_name(), within)
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            log.warning("%s ended on an error", task.get_name(), exc_info=task.exception())
