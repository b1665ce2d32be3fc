"""Stopping background tasks: bounded, and nothing a task did at the end goes unsaid."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest

from coyote_sdk.tasks import cancel_and_wait

log = logging.getLogger("test.tasks")


async def test_tasks_that_honour_the_cancellation_end_at_once() -> None:
    tasks = [asyncio.create_task(asyncio.sleep(3600)) for _ in range(3)]
    await asyncio.sleep(0)

    await asyncio.wait_for(cancel_and_wait(tasks, within=5, log=log), 1)

    assert all(task.cancelled() for task in tasks)


async def test_a_task_that_swallows_its_cancellation_holds_the_stop_no_longer_than_within(
    caplog: pytest.LogCaptureFixture,
) -> None:
    release = asyncio.Event()

    async def swallowing() -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(3600)
        await release.wait()  # carries on as if nothing had happened

    stuck = asyncio.create_task(swallowing(), name="swallower")
    await asyncio.sleep(0)
    stopping = asyncio.create_task(cancel_and_wait([stuck], within=0.2, log=log))
    await asyncio.wait({stopping}, timeout=5)  # not wait_for: it would wait for ever too

    assert stopping.done()
    assert not stuck.done()
    assert "swallower did not stop within 0.2 s; left" in caplog.text
    release.set()
    await stuck


async def test_a_task_that_had_failed_is_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def failing() -> None:
        raise RuntimeError("the connection broke")

    failed = asyncio.create_task(failing(), name="reader")
    await asyncio.sleep(0)

    await cancel_and_wait([failed], within=1, log=log)

    assert "reader ended on an error" in caplog.text
    assert "the connection broke" in caplog.text


async def test_nothing_to_stop_is_fine() -> None:
    await cancel_and_wait([], within=1, log=log)
