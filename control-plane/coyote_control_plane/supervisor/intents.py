"""Order intents from the supervisor: produced to Kafka exactly as a bot runtime produces them.

The supervisor cancels the orders of a bot whose runtime lost its heartbeat by sending the
bot's intents topic a :class:`~coyote_sdk.protocol.CancelAll`, so the executor's ordinary path
(risk, records, execution reports) carries it out and the bot's portfolio sees the cancels when
it comes back. The producer is the runtime's: idempotent, ``acks=all``, keyed by account.

The supervisor's passes are synchronous and must never wait on Kafka, so the producer lives on
an event loop of its own, in a thread started by the first send; a send answers a future the
supervisor looks at on a later pass.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import threading

from aiokafka import AIOKafkaProducer

from coyote_sdk import protocol
from coyote_sdk.protocol import OrderIntent

REQUEST_TIMEOUT_MS = 10_000
"""How long one send may take before its future fails (as in the bot runtime)."""


class IntentProducer:
    """Sends order intents to Kafka from any thread, without blocking it.

    Args:
        bootstrap: Kafka's bootstrap servers.
        topic: The intents topic; the protocol's, but for isolated tests.
    """

    def __init__(self, bootstrap: str, *, topic: str = protocol.INTENTS_TOPIC.name) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._producer: AIOKafkaProducer | None = None
        self._starting: asyncio.Lock | None = None
        """Held while the producer starts: sends arriving meanwhile wait for it."""

    def send(self, intent: OrderIntent) -> concurrent.futures.Future[None]:
        """Produces ``intent``, keyed by its account; the future is done when Kafka has it
        (all in-sync replicas), or fails with Kafka's error after at most
        :data:`REQUEST_TIMEOUT_MS`."""
        return asyncio.run_coroutine_threadsafe(self._send(intent), self._running_loop())

    def close(self) -> None:
        """Flushes what is being sent, closes the connection and ends the thread."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        closing = asyncio.run_coroutine_threadsafe(self._close_producer(), loop)
        with contextlib.suppress(Exception):
            closing.result(timeout=REQUEST_TIMEOUT_MS / 1000 + 5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        if not thread.is_alive():
            loop.close()

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="supervisor-intents", daemon=True
                )
                thread.start()
                self._loop, self._thread = loop, thread
                self._starting = asyncio.Lock()
            return self._loop

    async def _send(self, intent: OrderIntent) -> None:
        producer = await self._started()
        await producer.send_and_wait(
            self.topic, protocol.encode(intent), key=intent.account_id.encode()
        )

    async def _started(self) -> AIOKafkaProducer:
        assert self._starting is not None
        async with self._starting:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    bootstrap_servers=self.bootstrap,
                    enable_idempotence=True,
                    acks="all",
                    request_timeout_ms=REQUEST_TIMEOUT_MS,
                )
                try:
                    await producer.start()
                except BaseException:
                    await producer.stop()  # Kafka unreachable: the next send starts a new one
                    raise
                self._producer = producer
            return self._producer

    async def _close_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()
