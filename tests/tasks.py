"""Ending the tasks a test started without ever hanging the suite on them."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterable
from typing import Any

CANCEL_GRACE_S = 10.0
"""How long a task has to end once cancelled."""


async def end_tasks(
    tasks: Iterable[asyncio.Task[Any]], *, within: float, what: str
) -> list[asyncio.Task[Any]]:
    """Waits up to ``within`` seconds for ``tasks`` to end by themselves (they were asked to
    stop), then cancels those left and waits a little more; returns those that had to be
    cancelled. A task that outlives both is left behind, its stack on stderr:
    ``asyncio.wait_for`` would wait for it forever, as a task that swallows its cancellation
    (stuck in a shielded await, say) never ends. What the tasks raised is marked as retrieved
    (``task.result()`` still raises it for a caller that cares)."""
    every = list(tasks)
    if not every:
        return []
    pending = set(every)
    _, pending = await asyncio.wait(pending, timeout=within)
    late = list(pending)
    for task in pending:
        _report(task, f"{what} did not stop within {within:.0f} s; cancelling it")
        task.cancel()
    if pending:
        _, pending = await asyncio.wait(pending, timeout=CANCEL_GRACE_S)
    for task in pending:
        _report(task, f"{what} ignored its cancellation for {CANCEL_GRACE_S:.0f} s; left running")
    for task in every:
        if task.done() and not task.cancelled():
            task.exception()  # retrieved: no "exception was never retrieved" later
    return late


def _report(task: asyncio.Task[Any], message: str) -> None:
    # The real stderr: a teardown's capture is shown only if the test fails.
    print(f"[tests] {task.get_name()}: {message}; its stack:", file=sys.__stderr__)
    task.print_stack(file=sys.__stderr__)
