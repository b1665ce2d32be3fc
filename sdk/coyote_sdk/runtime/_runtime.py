"""The live bot runtime: the same bot as in a backtest, on the real stack.

Bars arrive by Redis pub/sub, intents leave through Kafka's idempotent producer keyed by
account, execution reports come back from Kafka and drive the portfolio and ``on_fill``. The
control flag in Redis gates every intent, failing safe: a flag that is missing, not
``running``, or unreadable for longer than ``flag_stale_s`` lets nothing out.

Under the supervisor the runtime's Redis user may run exactly the commands on exactly the keys
and channels used here (``docs/runtime.md``, "What it does in Redis"): a new one must also be
allowed in ``coyote_control_plane.supervisor.redis_acl``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import socket
import time
import traceback
from collections import deque
from collections.abc import Callable, MutableMapping
from typing import Any

import msgspec
import redis
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from coyote_sdk import protocol
from coyote_sdk._version import __version__
from coyote_sdk.bot import Bot
from coyote_sdk.config import Endpoints
from coyote_sdk.kafka import account_partition
from coyote_sdk.marketdata import MarketDataReader
from coyote_sdk.portfolio import Portfolio, PortfolioSnapshot
from coyote_sdk.protocol import (
    Bar,
    BotState,
    BotStatus,
    CancelAll,
    ControlFlag,
    ExecType,
    ExecutionReport,
    NewOrder,
    OrderIntent,
    OrderStatus,
    RuntimeState,
    Timeframe,
    Trade,
)
from coyote_sdk.state import RedisState
from coyote_sdk.tasks import cancel_and_wait
from coyote_sdk.tracing import context_from_headers, headers_of

logger = logging.getLogger("coyote.runtime")
_MAX_FLUSH_ROUNDS = 10
_STOP_TASKS_WITHIN_S = 5.0
"""How long a stopping runtime waits for its background tasks (market data, flag, heartbeat,
reports, portfolio) to end."""
_HISTORY_SEED = 500
"""Bars read per symbol on a bot's first history() call, kept and extended in memory."""
bot_logger = logging.getLogger("coyote.bot")
tracer = trace.get_tracer("coyote_sdk.runtime", __version__)


@dataclasses.dataclass(frozen=True)
class RuntimeOptions:
    """How one bot runtime runs.

    Attributes:
        bot_id: The bot's id (its control flag, heartbeat, state and intents carry it).
        account_id: The trading account its intents name.
        venue: The market-data venue of its symbols.
        cash: The capital allocation its portfolio starts from.
        max_handler_errors: Handler exceptions tolerated before the bot stops itself.
        heartbeat_interval_s: Seconds between heartbeats.
        heartbeat_ttl_s: Lifetime of a heartbeat key; its expiry marks the bot dead or stuck.
        flag_refresh_s: Seconds between reads of the control flag (pub/sub makes changes
            immediate; the reads catch a missed message and tell when Redis is gone).
        flag_stale_s: After this long without a successful read, the flag counts as unknown
            and intents are blocked.
        release: The release the runtime was launched from, for its heartbeat.
        portfolio_save_s: Seconds between saves of the portfolio to Redis (and one at the
            end), from which the next start resumes instead of replaying every report.
        stop_drain_s: How long a stopping runtime waits for the answers to the orders it left
            open or in flight (their last fills, the shutdown's cancels), so the portfolio it
            saves at the end holds them; what comes later is replayed at the next start.
        intents_topic, reports_topic: The protocol's topics; other names only for isolated
            tests.
    """

    bot_id: str
    account_id: str
    venue: str
    cash: Any = 0
    max_handler_errors: int = 10
    heartbeat_interval_s: float = 2.0
    heartbeat_ttl_s: float = 10.0
    flag_refresh_s: float = 1.0
    flag_stale_s: float = 3.0
    release: str | None = None
    portfolio_save_s: float = 30.0
    stop_drain_s: float = 5.0
    intents_topic: str = protocol.INTENTS_TOPIC.name
    reports_topic: str = protocol.EXECUTION_REPORTS_TOPIC.name


class SavedPortfolio(msgspec.Struct, frozen=True, kw_only=True):
    """A runtime's portfolio as saved in Redis (:func:`~coyote_sdk.protocol.portfolio_key`),
    with where in the reports topic it was taken: the next start restores it and reads the
    reports after ``offset`` only, so it neither replays the whole history nor loses what the
    topic's retention has since deleted."""

    account_id: str
    topic: str
    partition: int
    offset: int
    """The first report it has not taken."""
    saved_ms: int
    portfolio: PortfolioSnapshot


@dataclasses.dataclass(frozen=True)
class RuntimeExit:
    """How a runtime ended: ``code`` 0 when asked to stop, 3 when it failed."""

    code: int
    state: RuntimeState
    reason: str


class _LiveContext:
    """The runtime's side of :class:`coyote_sdk.bot.BotContext`."""

    def __init__(self, runtime: BotRuntime, client: redis.Redis) -> None:
        options = runtime.options
        self._runtime = runtime
        self.account_id = options.account_id
        self.bot_id = options.bot_id
        self.portfolio = runtime.portfolio
        self.state: MutableMapping[str, Any] = RedisState(client, options.bot_id)
        self.log = logging.LoggerAdapter(
            bot_logger, {"bot_id": options.bot_id, "account_id": options.account_id}
        )
        self._reader = MarketDataReader(client, venue=options.venue)
        self._bars: dict[tuple[str, Timeframe], deque[Bar]] = {}
        self.outbox: list[OrderIntent] = []
        self.bar_ts_ms: int | None = None

    def now_ms(self) -> int:
        return protocol.now_ms()

    def submit(self, intent: OrderIntent) -> None:
        self.outbox.append(intent)

    def ticks(self, symbol: str, count: int) -> list[Trade]:
        return self._reader.trades(symbol, count=count)

    def history(self, symbol: str, count: int, timeframe: Timeframe) -> list[Bar]:
        # Served from the bars the runtime has seen when they reach back far enough and have
        # no gap; otherwise read from RedisTimeSeries, which also re-seeds the cache.
        key = (symbol, timeframe)
        cached = self._bars.get(key)
        if cached is not None and len(cached) >= count:
            return list(cached)[len(cached) - count :]
        bars = self._reader.bars([symbol], timeframe, count=max(count, _HISTORY_SEED))[symbol]
        self._bars[key] = deque(bars, maxlen=max(count, _HISTORY_SEED))
        return bars[len(bars) - count :] if count < len(bars) else bars

    def remember(self, bar: Bar) -> None:
        """Extends the history cache with a bar just received, or drops it on a gap."""
        key = (bar.symbol, bar.timeframe)
        cached = self._bars.get(key)
        if cached is None:
            return
        if cached and bar.ts_ms <= cached[-1].ts_ms:
            return  # a bar already seen (a replay): the cache keeps the first copy
        if cached and bar.ts_ms - cached[-1].ts_ms != bar.timeframe.milliseconds:
            # Missed bars in between (a lost subscription), or a market gap: ask Redis next time.
            del self._bars[key]
            return
        cached.append(bar)

    def last_price(self, symbol: str) -> Any:
        found = self._reader.last_prices([symbol]).get(symbol)
        if found is not None:
            return found[1]
        bar = self._runtime.last_bars.get(symbol)
        return bar.close if bar else None


class BotRuntime:
    """Runs one bot live until its flag says ``stopped``, it is told to stop, or it fails.

    Args:
        bot: The bot, constructed with its parameters.
        options: Ids, venue, limits and timings.
        endpoints: Where Kafka and Redis are.
    """

    def __init__(self, bot: Bot, options: RuntimeOptions, endpoints: Endpoints) -> None:
        self.bot = bot
        self.options = options
        self.endpoints = endpoints
        self.portfolio = Portfolio(options.cash)
        self.last_bars: dict[str, Bar] = {}
        self.state = RuntimeState.STARTING
        self.flag: ControlFlag | None = None
        self.errors = 0
        self.bars = 0
        self.intents = 0
        self._flag_read_at = 0.0
        self._flag_tried_at = 0.0
        self._flag_client: aioredis.Redis | None = None
        self._started_ms = protocol.now_ms()
        self._events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._reports_applied_to: int | None = None
        """The offset after the last report the portfolio took, in the account's partition of
        the reports topic: where a runtime started from a saved portfolio goes on reading."""
        self._reports_partition: TopicPartition | None = None
        self._stop = asyncio.Event()
        self._exit: RuntimeExit | None = None
        self._log = logging.LoggerAdapter(
            logger, {"bot_id": options.bot_id, "account_id": options.account_id}
        )

    # -- control ----------------------------------------------------------------------------

    def gate_open(self) -> bool:
        """Whether an intent may leave now: the flag is ``running`` and freshly read."""
        return (
            self.flag is not None
            and self.flag.desired is BotState.RUNNING
            and time.monotonic() - self._flag_read_at <= self.options.flag_stale_s
        )

    def request_stop(self, reason: str = "asked to stop") -> None:
        """Stops the runtime gracefully (open orders cancelled, ``on_stop`` run)."""
        if self._exit is None:
            self._exit = RuntimeExit(0, RuntimeState.STOPPED, reason)
        self._stop.set()

    async def _read_flag(self, client: aioredis.Redis) -> None:
        self._flag_tried_at = time.monotonic()
        try:
            raw = await client.get(protocol.control_flag_key(self.options.bot_id))
        except (redis.RedisError, OSError) as exc:
            if self.state is not RuntimeState.BLOCKED and not self.gate_open():
                self._set_state(RuntimeState.BLOCKED, f"Redis unreachable: {exc}")
            return
        self._flag_read_at = time.monotonic()
        if raw is None:
            self.flag = None
            self._set_state(RuntimeState.BLOCKED, "control flag missing")
            return
        try:
            flag = protocol.decode(raw, ControlFlag)
        except protocol.ProtocolError as exc:
            self.flag = None
            self._set_state(RuntimeState.BLOCKED, f"control flag unreadable: {exc}")
            return
        if self.flag is not None and flag.generation < self.flag.generation:
            return  # an older flag restored from a replica or a backup: keep the newer
        self.flag = flag
        if flag.desired is BotState.STOPPED:
            self.request_stop(f"control flag stopped (generation {flag.generation})")
        else:
            self._set_state(
                RuntimeState.RUNNING if flag.desired is BotState.RUNNING else RuntimeState.PAUSED,
                flag.reason,
            )

    def _set_state(self, state: RuntimeState, detail: str | None = None) -> None:
        if state is not self.state:
            self._log.info("runtime %s%s", state.value, f": {detail}" if detail else "")
            self.state = state

    # -- main ---------------------------------------------------------------------------------

    async def run(self) -> RuntimeExit:
        """Runs until stopped; returns how it ended."""
        sync_client = redis.Redis.from_url(self.endpoints.redis_url, socket_timeout=2)
        client = aioredis.Redis.from_url(self.endpoints.redis_url, socket_timeout=2)
        producer = AIOKafkaProducer(
            bootstrap_servers=self.endpoints.kafka_bootstrap,
            enable_idempotence=True,
            acks="all",
            request_timeout_ms=10_000,
        )
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.endpoints.kafka_bootstrap,
            group_id=None,
            enable_auto_commit=False,
            # The executor publishes reports in transactions: never act on an aborted one.
            isolation_level="read_committed",
        )
        context = _LiveContext(self, sync_client)
        self._flag_client = client
        tasks: list[asyncio.Task[None]] = []
        await producer.start()
        await consumer.start()
        try:
            await self._replay_reports(consumer, producer, client)
            await self._read_flag(client)
            self.bot._bind(context)
            await self._call("on_start")
            await self._flush(context, producer)
            tasks = [
                asyncio.create_task(self._watch_market_and_control(client), name="pubsub"),
                asyncio.create_task(self._refresh_flag(client), name="flag"),
                asyncio.create_task(self._heartbeat(client), name="heartbeat"),
                asyncio.create_task(self._follow_reports(consumer), name="reports"),
                asyncio.create_task(self._save_portfolio_every(client), name="portfolio"),
            ]
            await self._dispatch_events(context, producer)
            await self._shut_down(context, producer)
        finally:
            await cancel_and_wait(tasks, within=_STOP_TASKS_WITHIN_S, log=self._log)
            self.bot._bind(None)
            with contextlib.suppress(redis.RedisError, OSError):
                await self._save_portfolio(client)
            exit_ = self._exit or RuntimeExit(0, RuntimeState.STOPPED, "ended")
            self.state = exit_.state
            with contextlib.suppress(redis.RedisError, OSError):
                await self._beat(client, detail=exit_.reason)
            await consumer.stop()
            await producer.stop()
            await client.aclose()
            sync_client.close()
        self._log.info("runtime ended: %s", exit_.reason)
        return exit_

    async def _dispatch_events(self, context: _LiveContext, producer: AIOKafkaProducer) -> None:
        stop = asyncio.create_task(self._stop.wait())
        try:
            while not self._stop.is_set():
                get = asyncio.create_task(self._events.get())
                done, _ = await asyncio.wait({get, stop}, return_when=asyncio.FIRST_COMPLETED)
                if get not in done:
                    get.cancel()
                    break
                kind, payload = get.result()
                if kind == "bar":
                    await self.on_bar_event(payload, context, producer)
                elif kind == "tick":
                    await self._call("on_tick", payload)
                    await self._flush(context, producer)
                else:
                    report, headers, offset = payload
                    await self._on_report(report, context, producer, headers=headers, offset=offset)
        finally:
            stop.cancel()

    async def on_bar_event(
        self, bar: Bar, context: _LiveContext, producer: AIOKafkaProducer
    ) -> None:
        """Delivers one bar to the bot and sends what it ordered."""
        self.last_bars[bar.symbol] = bar
        context.remember(bar)
        self.bars += 1
        context.bar_ts_ms = bar.ts_ms
        try:
            await self._call("on_bar", bar)
        finally:
            context.bar_ts_ms = None
        await self._flush(context, producer)

    async def _on_report(
        self,
        report: ExecutionReport,
        context: _LiveContext,
        producer: AIOKafkaProducer,
        *,
        headers: Any = None,
        offset: int | None = None,
    ) -> None:
        await self._apply_report(report, headers=headers, offset=offset)
        await self._flush(context, producer)

    async def _apply_report(
        self, report: ExecutionReport, *, headers: Any = None, offset: int | None = None
    ) -> None:
        """Books ``report`` in the portfolio and runs the bot's handlers on it."""
        # In the trace of the order the report is about (its Kafka headers carry it); what the
        # bot sends in answer starts traces of its own, linked to this span.
        span = tracer.start_span(
            "coyote.report.process", context_from_headers(headers), kind=SpanKind.CONSUMER
        )
        if span.is_recording():
            span.set_attributes(
                {
                    "messaging.system": "kafka",
                    "messaging.operation.type": "process",
                    "messaging.destination.name": self.options.reports_topic,
                    "coyote.report.id": str(report.report_id),
                    "coyote.order.id": str(report.order_id),
                    "coyote.intent.id": str(report.intent_id),
                    "coyote.bot.id": report.bot_id,
                    "coyote.exec_type": report.exec_type.value,
                    "coyote.order.status": report.order_status.value,
                }
            )
        with trace.use_span(span, end_on_exit=True):
            fill = self.portfolio.apply(report)
            if offset is not None:  # a save from now on holds this report
                self._reports_applied_to = offset + 1
            await self._call("on_order_update", report)
            if fill is not None:
                await self._call("on_fill", report)

    async def _shut_down(self, context: _LiveContext, producer: AIOKafkaProducer) -> None:
        self._set_state(RuntimeState.STOPPING, self._exit.reason if self._exit else None)
        if self.portfolio.unfinished_orders:
            # Leaving orders behind a stopped bot would leave risk nobody manages; one still in
            # flight may rest at the broker too.
            cancel = CancelAll(
                intent_id=protocol.new_intent_id(),
                ts_ms=protocol.now_ms(),
                account_id=self.options.account_id,
                bot_id=self.options.bot_id,
            )
            with contextlib.suppress(KafkaError):
                await self._produce(producer, cancel)
        self._drop_outbox(context)
        await self._drain_reports(context)
        await self._call("on_stop")
        self._drop_outbox(context)  # nothing leaves after on_stop: the bot is stopping

    def _drop_outbox(self, context: _LiveContext) -> None:
        """Drops what the bot ordered and will not be sent: no answer is awaited for it."""
        for intent in context.outbox:
            self.portfolio.forget(intent.intent_id)
        context.outbox.clear()

    async def _drain_reports(self, context: _LiveContext) -> None:
        """Applies the reports of the orders still open or in flight as the bot stops, for at
        most ``stop_drain_s``: intents are handled in order on the account's partition, so once
        the shutdown's cancel is answered none of them fills any more. The bot's handlers see
        these reports; what they order is not sent (the bot is stopping)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.stop_drain_s
        while self.portfolio.unfinished_orders:
            try:
                async with asyncio.timeout_at(deadline):
                    kind, payload = await self._events.get()
            except TimeoutError:
                self._log.warning(
                    "stopping with %d orders unanswered after %g s; the next start replays "
                    "their reports",
                    len(self.portfolio.unfinished_orders),
                    self.options.stop_drain_s,
                )
                return
            if kind == "report":
                report, headers, offset = payload
                await self._apply_report(report, headers=headers, offset=offset)
                self._drop_outbox(context)

    # -- handlers ---------------------------------------------------------------------------

    async def _call(self, name: str, *args: Any) -> None:
        handler: Callable[..., Any] = getattr(self.bot, name)
        try:
            result = handler(*args)
            if name in type(self.bot)._async_handlers:
                await result
        except Exception as exc:
            self.errors += 1
            self._log.error(
                "%s raised %s: %s",
                name,
                type(exc).__name__,
                exc,
                extra={"handler": name, "traceback": traceback.format_exc()},
            )
            if self.errors >= self.options.max_handler_errors:
                self._exit = RuntimeExit(
                    3,
                    RuntimeState.FAILED,
                    f"stopped after {self.errors} handler errors; last: {name} raised "
                    f"{type(exc).__name__}: {exc}",
                )
                self._stop.set()

    async def _flush(self, context: _LiveContext, producer: AIOKafkaProducer) -> None:
        """Sends what the last handler ordered, if the gate is open; tells the bot otherwise."""
        for _ in range(_MAX_FLUSH_ROUNDS):
            if not context.outbox:
                return
            pending, context.outbox = context.outbox, []
            await self._reread_flag_if_starved()
            for intent in pending:
                if not self.gate_open():
                    await self._refuse(intent, "control.blocked", f"not sent: {self._blocked_by()}")
                    continue
                try:
                    await self._produce(producer, intent)
                except KafkaError as exc:
                    await self._refuse(intent, "produce.failed", f"Kafka refused it: {exc}")
        # A bot that answers every refusal with a new order would spin here forever.
        self._log.error(
            "dropped %d intents placed in answer to refusals, %d rounds in a row",
            len(context.outbox),
            _MAX_FLUSH_ROUNDS,
        )
        self._drop_outbox(context)

    async def _reread_flag_if_starved(self) -> None:
        """Reads the flag now if the gate is closed because the periodic read has not run: a
        handler that blocked the event loop (a synchronous model, a long computation) kept it
        from running, and its orders would be refused for a flag nobody changed. When Redis
        itself is failing, the periodic read has tried recently and nothing is read here."""
        if (
            not self.gate_open()
            and self._flag_client is not None
            and time.monotonic() - self._flag_tried_at > self.options.flag_refresh_s
        ):
            await self._read_flag(self._flag_client)

    def _blocked_by(self) -> str:
        """Why the gate is closed, for the bot's rejection report."""
        if self.flag is None:
            return "the control flag is missing or unreadable"
        if self.flag.desired is not BotState.RUNNING:
            return f"the bot is {self.flag.desired.value}"
        unread_s = time.monotonic() - self._flag_read_at
        return f"the control flag could not be read for {unread_s:.1f} s (Redis unreachable?)"

    async def _produce(self, producer: AIOKafkaProducer, intent: OrderIntent) -> None:
        # Every intent starts a trace of its own, which the executor continues through the
        # W3C trace context in the record's headers; a span current now (the report being
        # answered) is linked, not made its parent: traces would otherwise chain forever.
        current = trace.get_current_span().get_span_context()
        span = tracer.start_span(
            "coyote.intent.send",
            Context(),
            kind=SpanKind.PRODUCER,
            links=[Link(current)] if current.is_valid else None,
        )
        if span.is_recording():
            span.set_attributes(_intent_attributes(intent, self.options.intents_topic))
        try:
            await producer.send_and_wait(
                self.options.intents_topic,
                protocol.encode(intent),
                key=intent.account_id.encode(),
                headers=headers_of(span) or None,
            )
        except KafkaError as exc:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, "produce.failed"))
            raise
        finally:
            span.end()
        self.intents += 1
        self._log.info(
            "intent sent",
            extra={"intent_id": str(intent.intent_id), "action": type(intent).__name__},
        )

    async def _refuse(self, intent: OrderIntent, code: str, reason: str) -> None:
        """Answers an intent that never left with a local rejection the bot can see."""
        self._log.warning(
            "intent refused: %s", reason, extra={"intent_id": str(intent.intent_id), "code": code}
        )
        order = intent if isinstance(intent, NewOrder) else None
        if order is None:
            open_order = self.portfolio.open_orders.get(getattr(intent, "order_id", None))  # type: ignore[arg-type]
            if open_order is None or open_order.intent is None:
                return
            order = open_order.intent
        report = protocol.report_for(
            order,
            ExecType.REJECTED,
            OrderStatus.REJECTED if intent is order else OrderStatus.NEW,
            cause=intent,
            ts_ms=protocol.now_ms(),
            reject_code=code,
            reject_reason=reason,
        )
        if intent is order:
            self.portfolio.apply(report)
        await self._call("on_order_update", report)

    # -- background tasks -------------------------------------------------------------------

    async def _watch_market_and_control(self, client: aioredis.Redis) -> None:
        bot_class = type(self.bot)
        channels = [
            protocol.bar_channel(self.options.venue, symbol, Timeframe(bot_class.timeframe))
            for symbol in bot_class.symbols
        ]
        ticks = {
            protocol.trade_channel(self.options.venue, symbol)
            for symbol in bot_class.symbols
            if bot_class.on_tick is not Bot.on_tick  # only bots that want ticks pay for them
        }
        channels += sorted(ticks)
        # The bot's own flag channel: the only control channel its Redis user may follow.
        control = protocol.control_channel(self.options.bot_id)
        while True:
            pubsub = client.pubsub()
            try:
                await pubsub.subscribe(control, *channels)
                async for message in pubsub.listen():
                    if message["type"] != "message":
                        continue
                    channel = message["channel"].decode()
                    if channel == control:
                        await self._read_flag(client)
                        continue
                    kind, message_type = ("tick", Trade) if channel in ticks else ("bar", Bar)
                    try:
                        event = protocol.decode(message["data"], message_type)
                    except protocol.ProtocolError as exc:
                        self._log.error("bad %s on %s: %s", kind, channel, exc)
                        continue
                    self._events.put_nowait((kind, event))
            except (redis.RedisError, OSError) as exc:
                self._log.warning("market data subscription lost: %s; retrying", exc)
                await asyncio.sleep(0.5)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    async def _refresh_flag(self, client: aioredis.Redis) -> None:
        while True:
            await asyncio.sleep(self.options.flag_refresh_s)
            await self._read_flag(client)
            if not self.gate_open() and self.state is RuntimeState.RUNNING:
                self._set_state(RuntimeState.BLOCKED, "control flag not read recently")

    async def _heartbeat(self, client: aioredis.Redis) -> None:
        while True:
            with contextlib.suppress(redis.RedisError, OSError):
                await self._beat(client)
            await asyncio.sleep(self.options.heartbeat_interval_s)

    async def _beat(self, client: aioredis.Redis, detail: str | None = None) -> None:
        last = max((b.ts_ms for b in self.last_bars.values()), default=None)
        status = BotStatus(
            bot_id=self.options.bot_id,
            account_id=self.options.account_id,
            state=self.state,
            ts_ms=protocol.now_ms(),
            started_ms=self._started_ms,
            sdk_version=__version__,
            release=self.options.release,
            pid=os.getpid(),
            host=socket.gethostname(),
            flag_generation=self.flag.generation if self.flag else None,
            last_bar_ms=last,
            bars=self.bars,
            intents=self.intents,
            errors=self.errors,
            detail=detail,
        )
        await client.set(
            protocol.heartbeat_key(self.options.bot_id),
            protocol.encode(status),
            px=int(self.options.heartbeat_ttl_s * 1000),
        )

    async def _replay_reports(
        self, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer, client: aioredis.Redis
    ) -> None:
        """Rebuilds the portfolio before the first handler runs: from the portfolio saved at
        the last stop (or save) and the reports after it, or from every report still kept."""
        partition = await account_partition(
            producer, self.options.reports_topic, self.options.account_id
        )
        self._reports_partition = partition
        consumer.assign([partition])
        first = (await consumer.beginning_offsets([partition]))[partition]
        end = (await consumer.end_offsets([partition]))[partition]
        resume = await self._load_portfolio(client, partition, first, end)
        if resume is None:
            await consumer.seek_to_beginning(partition)
            if first > 0:
                self._log.warning(
                    "portfolio rebuilt from the reports still kept: the first %d of the "
                    "account's partition are gone (retention) and no saved portfolio covers "
                    "them; positions may be missing (the executor's records are the reference)",
                    first,
                )
        else:
            consumer.seek(partition, resume)
        replayed = 0
        while await consumer.position(partition) < end:
            batches = await consumer.getmany(partition, timeout_ms=1000)
            for record in batches.get(partition, []):
                report = self._decode_report(record.value)
                if report is not None:
                    self.portfolio.apply(report)
                    replayed += 1
        self._reports_applied_to = end
        if replayed or resume is not None:
            self._log.info(
                "portfolio rebuilt from %s and %d execution reports",
                "its saved copy" if resume is not None else "the start",
                replayed,
            )

    async def _load_portfolio(
        self, client: aioredis.Redis, partition: TopicPartition, first: int, end: int
    ) -> int | None:
        """Restores the saved portfolio if it can be resumed in ``partition`` (whose kept
        offsets are ``first`` to ``end``); returns the offset to read on from, or None."""
        try:
            raw = await client.get(protocol.portfolio_key(self.options.bot_id))
        except (redis.RedisError, OSError) as exc:
            self._log.warning("saved portfolio unreadable (%s): rebuilt from the reports", exc)
            return None
        if raw is None:
            return None
        try:
            saved = msgspec.json.decode(raw, type=SavedPortfolio)
        except msgspec.MsgspecError as exc:
            self._log.warning("saved portfolio undecodable (%s): rebuilt from the reports", exc)
            return None
        here = (self.options.account_id, partition.topic, partition.partition)
        if (saved.account_id, saved.topic, saved.partition) != here:
            self._log.info("saved portfolio is of another account or topic: not used")
            return None
        if saved.offset > end:
            # The topic holds fewer reports than the saved copy had read: it was recreated.
            self._log.warning(
                "saved portfolio is ahead of the reports topic (offset %d > %d): the topic was "
                "recreated; rebuilt from the reports",
                saved.offset,
                end,
            )
            return None
        if saved.offset < first:
            self._log.warning(
                "reports %d to %d after the saved portfolio are gone (retention): they are "
                "missing from the portfolio (the executor's records are the reference)",
                saved.offset,
                first - 1,
            )
        self.portfolio.restore(saved.portfolio)
        return max(saved.offset, first)

    async def _save_portfolio(self, client: aioredis.Redis) -> None:
        if self._reports_partition is None or self._reports_applied_to is None:
            return
        saved = SavedPortfolio(
            account_id=self.options.account_id,
            topic=self._reports_partition.topic,
            partition=self._reports_partition.partition,
            offset=self._reports_applied_to,
            saved_ms=protocol.now_ms(),
            portfolio=self.portfolio.snapshot(),
        )
        await client.set(protocol.portfolio_key(self.options.bot_id), msgspec.json.encode(saved))

    async def _save_portfolio_every(self, client: aioredis.Redis) -> None:
        saved_at: int | None = None
        while True:
            await asyncio.sleep(self.options.portfolio_save_s)
            if self._reports_applied_to == saved_at:
                continue
            try:
                await self._save_portfolio(client)
                saved_at = self._reports_applied_to
            except (redis.RedisError, OSError) as exc:
                self._log.warning("portfolio not saved (%s); the next save retries", exc)

    async def _follow_reports(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            try:
                batches = await consumer.getmany(timeout_ms=1000)
            except KafkaError as exc:
                self._log.warning("execution reports unavailable: %s; retrying", exc)
                await asyncio.sleep(1)
                continue
            for records in batches.values():
                for record in records:
                    report = self._decode_report(record.value)
                    if report is not None:
                        self._events.put_nowait(("report", (report, record.headers, record.offset)))

    def _decode_report(self, raw: bytes | None) -> ExecutionReport | None:
        if raw is None:
            return None
        try:
            report = protocol.decode(raw, ExecutionReport)
        except protocol.ProtocolError as exc:
            self._log.error("undecodable execution report skipped: %s", exc)
            return None
        return report if report.bot_id == self.options.bot_id else None


def _intent_attributes(intent: OrderIntent, topic: str) -> dict[str, str]:
    attributes = {
        "messaging.system": "kafka",
        "messaging.operation.type": "send",
        "messaging.destination.name": topic,
        "coyote.intent.id": str(intent.intent_id),
        "coyote.intent.action": str(type(intent).__struct_config__.tag),
        "coyote.account.id": intent.account_id,
        "coyote.bot.id": intent.bot_id,
    }
    symbol = getattr(intent, "symbol", None)
    if symbol is not None:
        attributes["coyote.symbol"] = symbol
    return attributes


async def run_until_signalled(runtime: BotRuntime) -> RuntimeExit:
    """Runs ``runtime``, turning SIGTERM and SIGINT into a graceful stop."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, runtime.request_stop, f"received {sig.name}")
    try:
        return await runtime.run()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
