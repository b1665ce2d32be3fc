"""Order updates pushed by a venue: one long-lived connection per account served (OANDA's
transaction stream, Alpaca's ``trade_updates``), reopened after any failure.

A stream is a shortcut, not the record: an update names an order that changed, the adapter's
``lookup`` reads the order's state, and the state goes to the executor's listener like the paper
matcher's. What a stream misses while it reconnects, the executor's reconciliation finds.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Collection

import httpx

from coyote_executor.brokers._http import TransientError
from coyote_executor.brokers.base import BrokerError, BrokerOrderState, UpdateListener
from coyote_sdk.tasks import cancel_and_wait

log = logging.getLogger(__name__)

Follow = Callable[[str], Awaitable[None]]
"""Follows one account's stream for one connection: returns when the venue ends it, raises
when it fails."""
Lookup = Callable[[str, str], Awaitable[BrokerOrderState | None]]

_CLOSE_WITHIN_S = 5.0
EXPECTED: tuple[type[Exception], ...] = (
    BrokerError,
    TransientError,
    httpx.HTTPError,
    OSError,
    TimeoutError,
)
"""Failures of a connection that are the network's or the venue's, logged without a trace."""


class AccountStreams:
    """The streams of the accounts served, for one adapter.

    Args:
        venue: The venue's name, for messages.
        follow: One connection's life for an account (see :data:`Follow`).
        lookup: The adapter's ``lookup``: an order's state by client order id.
        retry_s: The pause before reopening a failed stream: the first, doubled after each
            failure up to the second.
        expected: More failures to log as the network's (a WebSocket library's errors).
    """

    def __init__(
        self,
        venue: str,
        follow: Follow,
        lookup: Lookup,
        *,
        retry_s: tuple[float, float] = (1.0, 30.0),
        expected: tuple[type[Exception], ...] = (),
    ) -> None:
        self._venue = venue
        self._follow = follow
        self._lookup = lookup
        self._retry_s = retry_s
        self._expected = EXPECTED + expected
        self._listener: UpdateListener | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def start(self, listener: UpdateListener) -> None:
        """Where the orders' states go; no stream is opened before."""
        self._listener = listener

    async def serve(self, account_ids: Collection[str]) -> None:
        """Follows the streams of ``account_ids`` (once started), and no others."""
        wanted = set(account_ids) if self._listener is not None else set()
        gone = [self._tasks.pop(a) for a in list(self._tasks) if a not in wanted]
        await cancel_and_wait(gone, within=_CLOSE_WITHIN_S, log=log)
        for account_id in sorted(wanted - self._tasks.keys()):
            self._tasks[account_id] = asyncio.create_task(
                self._keep_following(account_id), name=f"{self._venue}-stream-{account_id}"
            )

    async def close(self) -> None:
        tasks, self._tasks = list(self._tasks.values()), {}
        await cancel_and_wait(tasks, within=_CLOSE_WITHIN_S, log=log)

    async def changed(self, account_id: str, client_order_id: str, what: str) -> None:
        """Hands the state of an order the stream said changed (``what``) to the listener."""
        try:
            state = await self._lookup(account_id, client_order_id)
        except BrokerError as exc:
            log.warning(
                "%s: order %s changed (%s) but could not be read (%s); reconciliation will",
                self._venue,
                client_order_id,
                what,
                exc,
            )
            return
        except Exception:  # an answer it cannot read must not end the stream
            log.exception(
                "%s: order %s changed (%s); its state was unreadable",
                self._venue,
                client_order_id,
                what,
            )
            return
        if state is None or self._listener is None:
            return
        outcome = self._listener(account_id, [state])
        if inspect.isawaitable(outcome):
            await outcome

    async def _keep_following(self, account_id: str) -> None:
        first, longest = self._retry_s
        pause = first
        while True:
            began = asyncio.get_running_loop().time()
            try:
                await self._follow(account_id)
                problem = "the venue ended it"
            except self._expected as exc:
                problem = f"{type(exc).__name__}: {exc}"
            except Exception as exc:  # a bug must not end the stream for good: logged, retried
                log.exception("%s: the stream of %s failed", self._venue, account_id)
                problem = repr(exc)
            if asyncio.get_running_loop().time() - began > longest:
                pause = first  # it had been up a while: not a failing venue
            log.warning(
                "%s: stream of %s lost (%s); reopening in %.1f s (reconciliation covers the gap)",
                self._venue,
                account_id,
                problem,
                pause,
            )
            await asyncio.sleep(pause)
            pause = min(pause * 2, longest)
