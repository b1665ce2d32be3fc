"""The executor: order intents from Kafka, through the risk engine, to brokers, and back.

One step of the loop takes a batch of intent records and:

1. decodes each strictly — a record that is not a valid intent goes to the dead-letter topic
   (and, if it names its account, bot and intent id, gets a rejection report);
2. drops intents already decided (the in-memory :class:`RecentIds`, then the ``intents`` table);
   if the very same record was decided before, the step that decided it never committed, so
   the reports recorded for it are published again;
3. checks each new order with the account's risk engine;
4. **records** the decisions and the accepted orders as ``pending_new`` (one transaction) —
   nothing reaches a broker that the database does not know about;
5. sends the orders to the brokers under their intent ids as client order ids;
6. records what the brokers answered: statuses, fills, positions, reports (one transaction);
7. publishes the reports and commits the records' offsets in **one Kafka transaction**.

Steps 6 and 7 are the step's *tail*: it runs beside the next step's first five (whose writes are
new rows only: intents and orders), which then waits for it before its own tail begins. Anything
else that writes to the database, publishes or reads what a tail writes (reconciliation, broker
updates, taking accounts on, a rebalance) waits for the tail first (:meth:`Executor._after_tail`).

A crash anywhere leaves one of three pictures for each step, each repaired on restart (two steps
may be caught at once, the older in its tail): nothing recorded (the
records are consumed again and decided afresh); decisions recorded but the outcome not (the
records come again, are recognised, and the ``pending_new`` orders are looked up at the broker by
their client order id — sent only if the broker never saw them); everything recorded but not
published (the recorded reports are published with the offsets). A broker never sees an order
twice, and a consumer reading reports with ``read_committed`` sees each report once.

Late events — a resting order filled, an order expired, drift found by reconciliation — are
recorded first and then published from the ``execution_reports`` table (see docs/executor.md
for the one narrow window in which such a report can be published twice, same ``report_id``).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import dataclasses
import functools
import logging
import time
import types
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any, TypeVar

import msgspec
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError, ProducerFenced
from aiokafka.partitioner import DefaultPartitioner
from opentelemetry.trace import INVALID_SPAN, Span
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from coyote_executor import traces
from coyote_executor._dedupe import RecentIds
from coyote_executor._failpoints import failpoint
from coyote_executor._follow import follow_hash
from coyote_executor.accounts import AccountConfig
from coyote_executor.brokers.base import (
    ZERO,
    Broker,
    BrokerError,
    BrokerOrder,
    BrokerOrderState,
    BrokerUnavailable,
    FencedAtVenue,
    UnknownOrder,
)
from coyote_executor.daily_pnl import DAY_MS, DayBook, day_of
from coyote_executor.daily_pnl import load as load_day
from coyote_executor.health import ExecutorHealth
from coyote_executor.models import Position
from coyote_executor.orders import Advance, LiveOrder, advance, reject
from coyote_executor.prices import PriceBook
from coyote_executor.store import Changes, OrdersChangedMeanwhile, Store, intent_row
from coyote_risk import (
    ACTIVE,
    HALTED,
    REASON_CODES,
    REASONS,
    REDUCING,
    Limits,
    RejectRateBreaker,
    RiskEngine,
)
from coyote_risk.reject_rate import NOT_COUNTED
from coyote_sdk import protocol
from coyote_sdk.protocol import (
    ALERTS_STREAM,
    EXECUTION_REPORTS_TOPIC,
    HALTS_CHANNEL,
    HALTS_KEY,
    INTENTS_DEAD_LETTER_TOPIC,
    INTENTS_TOPIC,
    Alert,
    CancelAll,
    CancelOrder,
    ExecType,
    ExecutionReport,
    Halt,
    NewOrder,
    OrderIntent,
    OrderStatus,
    OrderType,
    ProtocolError,
    ReplaceOrder,
    Side,
    now_ms,
    report_for,
)
from coyote_sdk.tasks import cancel_and_wait
from coyote_sdk.tracing import traceparent_of

log = logging.getLogger("coyote.executor")

_T = TypeVar("_T")
_SIDE = {Side.BUY: 1, Side.SELL: -1}
_HALTED = REASON_CODES["risk.halted"]
_OWNERSHIP_DOUBT_S = 5.0
"""Longer than this between polling the intents and sending them to a broker, and the executor
first proves it was not fenced meanwhile (half the consumer group's 10 s session)."""
_STOP_TASKS_WITHIN_S = 5.0
"""How long a stopping executor waits for its kill-switch watcher to end."""
_CIRCUIT_PROBE_S = 1.0
"""How often reconciliation asks the broker of an account halted by its broker circuit (or not
yet reconciled) whether it is back."""
_RELOADS_WITHIN_S, _MOST_RELOADS = 60.0, 3
"""Reloads after rows were written meanwhile (:class:`_WrittenMeanwhile`) allowed in so long:
a fenced predecessor has at most a step's two transactions in flight; more is a bug, which
must stop the executor rather than loop."""


_IN_TAIL = contextvars.ContextVar("coyote_executor_in_tail", default=False)
"""Whether the running task is a step's tail (:meth:`Executor._finish`)."""


class Fenced(RuntimeError):
    """Another instance has taken this one's partitions over — Kafka refused its transaction (a
    successor with its transactional id started) or the venue its change (a newer executor
    serves the account there) — and this one (a paused or partitioned zombie) must stop.
    Restarting it is safe: it joins the group as a new member."""


class _WrittenMeanwhile(Exception):
    """Rows this executor was writing for the first time exist already, or orders it was
    updating were changed since it read them, and it is not fenced: its predecessor, frozen
    inside a transaction begun before it was fenced, committed that transaction after this one
    read the records (a commit the database alone cannot refuse). What this executor holds in
    memory no longer matches the records: it reloads them."""


@dataclasses.dataclass(frozen=True)
class ExecutorOptions:
    """How the executor runs.

    Attributes:
        group_id: Kafka consumer group of all executors; partitions follow accounts.
        instance_id: This executor's stable name (a pod name); its transactional id is
            ``{group_id}-{instance_id}``, so a restarted instance fences its predecessor.
        batch_size: Most intent records handled in one step.
        reconcile_interval_s: How often open orders are compared with brokers.
        positions_interval_s: How often positions are compared with brokers (a broker may
            answer that from every order the account ever placed: the paper broker does).
        broker_failure_limit: Consecutive failed broker calls after which an account's broker
            circuit opens: the account goes HALTED and an alert is raised.
        dedupe_window: Intent ids remembered in memory before the database is asked.
        max_intent_age_ms: A new order or replace older than this when it arrives is rejected
            (``intent.expired``) rather than traded on a market that has moved on, e.g. after
            an executor outage; cancels are carried out however late. None accepts any age.
        halts_refresh_s: How often the whole kill switch hash is read again, besides the
            changes announced on its channel (catches a missed message or a Redis restart).
        halts_hold_s: After Redis restarted or was unreachable, kill switches missing from
            the hash stay in force this long: a Redis that lost its data must not lift them
            before the control plane has written them again.
        intents_topic, reports_topic, dead_letter_topic: The protocol's topics; other names
            only for isolated tests.
    """

    group_id: str = "coyote-executor"
    instance_id: str = "0"
    batch_size: int = 500
    reconcile_interval_s: float = 5.0
    positions_interval_s: float = 60.0
    broker_failure_limit: int = 5
    dedupe_window: int = 100_000
    max_intent_age_ms: int | None = 60_000
    halts_refresh_s: float = 1.0
    halts_hold_s: float = 10.0
    intents_topic: str = INTENTS_TOPIC.name
    reports_topic: str = EXECUTION_REPORTS_TOPIC.name
    dead_letter_topic: str = INTENTS_DEAD_LETTER_TOPIC.name


@dataclasses.dataclass
class _Account:
    config: AccountConfig
    broker: Broker
    engine: RiskEngine
    failures: int = 0
    circuit_open: bool = False
    """The broker circuit tripped: the account is halted until a reconciliation pass gets
    through to the broker again (see :meth:`Executor._sync_states` for every cause of a halt).
    """
    reconciled: bool = False
    """A reconciliation pass has compared the account with its broker since this executor took
    it on. Until then the account is halted: what is open at the broker is not known (fail
    closed)."""
    unknown_orders: set[str] = dataclasses.field(default_factory=set)
    """Client order ids open at the broker that this executor has no open order for, already
    alerted."""
    drift: dict[str, tuple[Decimal, Decimal]] = dataclasses.field(default_factory=dict)
    """Positions that differed from the broker's at the last pass, by symbol: (ours, theirs)."""
    drift_alerted: dict[str, tuple[Decimal, Decimal]] = dataclasses.field(default_factory=dict)
    """The differences alerted, by symbol; a symbol is forgotten once it agrees again."""
    halted_bots: set[str] = dataclasses.field(default_factory=set)
    """Bots this executor halted in :attr:`engine` for their kill switches."""
    day: DayBook | None = None
    """The day's PnL of the account's bots, for the daily loss limits."""
    loss_tripped: set[str | None] = dataclasses.field(default_factory=set)
    """Scopes the day's losses put in REDUCING (None: the account), lifted when it ends."""


@dataclasses.dataclass
class _Step:
    """What one step decided, sent and must publish."""

    reports_topic: str
    source: tuple[int, int] | None = None
    """Partition and offset of the record being decided."""
    changes: Changes = dataclasses.field(default_factory=Changes)
    publish: list[tuple[str, bytes | None, bytes, list[tuple[str, bytes]]]] = dataclasses.field(
        default_factory=list
    )
    """(topic, key, value, headers) to produce in the step's transaction."""
    actions: list[tuple[OrderIntent, LiveOrder]] = dataclasses.field(default_factory=list)
    """Broker calls in the order their intents arrived: a NewOrder submits its order, a
    cancel or replace acts on the open order it names."""
    span: Span = INVALID_SPAN
    """The trace span of the record being decided (see :mod:`.traces`)."""
    traceparent: str | None = None
    """Its context, which the order it places and the reports it gets carry."""
    spans: list[Span] = dataclasses.field(default_factory=list)
    """The span of every record of the step, ended once the step is published."""

    def decided(self, intent: OrderIntent, raw: bytes, now: int, **decision: Any) -> None:
        """Records the decision on ``intent``, carried by the record at :attr:`source`."""
        self.changes.intents.append(intent_row(intent, raw, now, source=self.source, **decision))
        traces.decided(
            self.span,
            intent,
            decision.get("order_id"),
            decision.get("reject_code"),
            decision.get("reject_reason"),
        )

    def report(self, report: ExecutionReport) -> None:
        self.changes.reports.append(report)
        if self.traceparent is not None:
            self.changes.traceparents[report.report_id] = self.traceparent
        traces.report_events(self.span, [report])
        self.publish.append(
            (
                self.reports_topic,
                report.account_id.encode(),
                self.changes.body(report),
                _trace_headers(self.traceparent),
            )
        )


class Executor:
    """Runs the intent loop for the configured accounts.

    Args:
        accounts: Every account the executors serve (each instance owns those whose intent
            partitions it is assigned).
        brokers: The broker of each account id.
        store: The durable record.
        redis: Async client of the stack's Redis (market data, alerts).
        kafka_bootstrap: Kafka bootstrap servers.
        options: Group, instance id, batch size, intervals.
    """

    def __init__(
        self,
        accounts: Mapping[str, AccountConfig],
        *,
        brokers: Mapping[str, Broker],
        store: Store,
        redis: aioredis.Redis,
        kafka_bootstrap: str,
        options: ExecutorOptions | None = None,
    ) -> None:
        missing = sorted(set(accounts) - set(brokers))
        if missing:
            raise ValueError(f"no broker for account {missing[0]!r}")
        self.options = options or ExecutorOptions()
        self._configs = dict(accounts)
        self._brokers = dict(brokers)
        self._store = store
        self._redis = redis
        self._bootstrap = kafka_bootstrap
        self._prices = PriceBook(redis)
        self._recent = RecentIds(self.options.dedupe_window)
        self._reloads: list[float] = []
        """When the state was last reloaded after rows were written meanwhile (monotonic)."""
        self._accounts: dict[str, _Account] = {}
        """Accounts this instance owns now, with their risk state."""
        self._orders: dict[str, LiveOrder] = {}
        """Open orders of the owned accounts, by order id."""
        self._step_spans: dict[uuid.UUID, Span] = {}
        """The spans of the intents the current step decided, by intent id (see :mod:`.traces`):
        what happens to their orders in the step goes into them."""
        self._updates: asyncio.Queue[tuple[str, Sequence[BrokerOrderState]]] = asyncio.Queue()
        self._assigned: set[TopicPartition] | None = None
        self._stepping = asyncio.Lock()
        """Held by a step's work (not its poll) and by a revocation, which waits for it."""
        self._tail: asyncio.Task[None] | None = None
        """The last step's tail (its outcome recorded, its reports and offsets published),
        running beside the next step: see :meth:`_after_tail`."""
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._last_reconcile = 0.0
        self._last_counted = 0.0
        self._polled_at = 0.0
        """When the consumer last polled (monotonic): until the group's session times out after
        it, no other consumer can have been given this one's partitions."""
        self._last_position_check = 0.0
        self._halts: dict[str, Halt] = {}
        """Kill switches in force here, by hash field (``account:<id>``, ``bot:<id>``)."""
        self._reject_rates: RejectRateBreaker[tuple[str, ...]] = RejectRateBreaker()
        """Scopes halted for their reject rate: ``("account", account id)`` and ``("bot",
        account id, bot id)``."""
        self._halt_values: dict[str, bytes] = {}
        """The stored value of each field in :attr:`_halts`, to tell what changed."""
        self._halts_read = False
        self._halts_unreachable = False
        self._redis_run_id: str | None = None
        self._hold_halts_until = 0.0
        """Until then (monotonic), a field missing from the hash is not a lift."""
        self.ready = asyncio.Event()
        """Set once the executor owns its partitions and has recovered their accounts."""
        self.health = ExecutorHealth()
        """What the loop says about itself, for the health endpoints (:mod:`.health`)."""
        self.between_steps: list[Callable[[asyncio.Event], Awaitable[None]]] = []
        """Called before each step, outside its work (the last step's tail may still be
        running; what writes or reads the records waits for it): where accounts and limits
        from the control plane are applied (:mod:`.remote_accounts`)."""
        self.config_halts: dict[str, str] = {}
        """Accounts halted because their configuration is missing or invalid, with why."""

    @property
    def halts(self) -> Mapping[str, Halt]:
        """The kill switches this executor obeys now, by their field in :data:`HALTS_KEY`."""
        return types.MappingProxyType(self._halts)

    # -- running ---------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Runs until ``stop`` is set (or forever)."""
        stop = stop or asyncio.Event()
        await self._durably(self._store.create_schema, stop)
        # The kill switches are known before the first intent is taken: an intent of a halted
        # account must not slip through while the watcher starts.
        if not await self._read_halts_at_start(stop):
            return
        self._producer = self._new_producer()
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self._bootstrap,
            group_id=self.options.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            max_poll_records=self.options.batch_size,
        )
        await self._producer.start()
        brokers = {id(b): b for b in self._brokers.values()}.values()
        watcher = asyncio.create_task(self._watch_halts(stop), name="coyote-executor-halts")
        try:
            for broker in brokers:
                await broker.start(self._on_broker_update)
                await broker.serve(())  # nothing is owned before the first assignment
            self._consumer.subscribe([self.options.intents_topic], listener=_Rebalance(self))
            await self._consumer.start()
            log.info(
                "executor %s started for %d accounts", self.options.instance_id, len(self._configs)
            )
            while not stop.is_set():
                if watcher.done():
                    watcher.result()  # a watcher that died must stop the executor, not blind it
                for hook in self.between_steps:
                    await hook(stop)
                try:
                    await self._step(stop)
                except _WrittenMeanwhile as exc:
                    await self._reload(exc, stop)
                    continue
                except FencedAtVenue as exc:
                    log.critical(
                        "fenced by a newer instance at the venue (%s): it owns this instance's "
                        "accounts now; stopping without sending or publishing more",
                        exc,
                    )
                    raise Fenced(str(exc)) from exc
                self.health.stepped()
            await self._after_tail()  # the last step's outcome, published before stopping
        finally:
            self.health.stopping = True
            await self._settle_tail()
            await cancel_and_wait([watcher], within=_STOP_TASKS_WITHIN_S, log=log)
            for broker in brokers:
                await broker.close()
            await self._consumer.stop()
            await self._producer.stop()

    def _new_producer(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=self._bootstrap,
            transactional_id=f"{self.options.group_id}-{self.options.instance_id}",
            enable_idempotence=True,
            acks="all",
            # How long a transactional request the broker asks to retry waits (an offsets'
            # commit answered COORDINATOR_NOT_AVAILABLE, say); aiokafka's 100 ms default added
            # as much to many steps. A transaction begun while the last one's markers are still
            # being written waits a fixed 20 ms in aiokafka whatever this says (bench/RESULTS.md).
            retry_backoff_ms=20,
        )

    async def _step(self, stop: asyncio.Event) -> None:
        assert self._consumer is not None
        # A rebalance runs beside the step (aiokafka's coordination task) and waits for it in
        # on_partitions_revoked: what the step decides for an account is recorded, sent and
        # committed before another instance may take the account on. Only the poll is outside.
        async with self._stepping:
            await self._take_over_if_assigned(stop)
            await self._reconcile_when_due(stop)
            self._lift_reject_halts()
        self._polled_at = time.monotonic()  # a process frozen inside the poll looks stale after
        batch = await self._consumer.getmany(timeout_ms=50, max_records=self.options.batch_size)
        async with self._stepping:
            # The group may have moved partitions since the poll began: the new assignment is
            # taken over first, and records of partitions no longer this instance's are left to
            # their new owner — neither decided nor committed here.
            await self._take_over_if_assigned(stop)
            owned = self._consumer.assignment()
            batch = {tp: part for tp, part in batch.items() if tp in owned}
            records = [record for part in batch.values() for record in part]
            if records:
                offsets = {tp: part[-1].offset + 1 for tp, part in batch.items()}
                await self._handle_intents(records, offsets, stop)
            await self._handle_updates(stop)
            if time.monotonic() - self._last_counted >= 1.0:
                self._last_counted = time.monotonic()
                await self._count_for_metrics()
                await self._mark_daily_pnl()

    async def _take_over_if_assigned(self, stop: asyncio.Event) -> None:
        if self._assigned is not None:
            assigned, self._assigned = self._assigned, None
            await self._take_over(assigned, stop)

    async def _reconcile_when_due(self, stop: asyncio.Event) -> None:
        """Reconciles every interval, and every second while an account is halted by its broker
        circuit or not yet reconciled — before the step's intents, so that an account just taken
        on is reconciled before its first intent is decided."""
        interval = self.options.reconcile_interval_s
        if any(a.circuit_open or not a.reconciled for a in self._accounts.values()):
            # A halted account is asked about every second, not every interval: a blip of a
            # second must not halt it for the rest of the interval.
            interval = min(interval, _CIRCUIT_PROBE_S)
        if time.monotonic() - self._last_reconcile >= interval:
            self._last_reconcile = time.monotonic()
            # Orders whose submission failed (broker unreachable) are sent again if the broker
            # never saw them; left pending_new they would never get an answer.
            await self._reconcile(stop, resubmit=True)

    async def _count_for_metrics(self) -> None:
        """Open orders by status and the consumer's lag per partition, for ``/metrics``."""
        self.health.open_orders = dict(
            collections.Counter(o.status.value for o in self._orders.values())
        )
        assert self._consumer is not None
        lag: dict[int, int] = {}
        for tp in self._consumer.assignment():
            # read_committed: what can be consumed ends at the last stable offset.
            end = self._consumer.last_stable_offset(tp)
            if end is not None:
                lag[tp.partition] = max(0, end - await self._consumer.position(tp))
        self.health.consumer_lag = lag

    async def _mark_daily_pnl(self) -> None:
        """Marks each owned account's day to the last prices and tells the risk engine: a bot
        or the account at its ``max_daily_loss`` trips to REDUCING (only orders that reduce a
        position pass) until the UTC day ends."""
        for account in self._accounts.values():
            await self._mark_day(account)

    async def _mark_day(self, account: _Account) -> None:
        book = account.day
        if book is None:
            return
        symbols = book.symbols()
        try:
            latest = await self._prices.latest(account.config.venue, symbols) if symbols else {}
        except aioredis.RedisError as exc:
            log.warning("last prices unavailable (%s): the daily PnL waits", exc)
            return
        marks = {symbol: float(price) for symbol, (_, price) in latest.items()}
        today = day_of(now_ms())
        if today != book.day:
            book.roll(today, marks)
            self._new_day(account)
        total, bots = book.pnl(marks)
        account_id = account.config.account_id
        for bot_id, pnl in [(None, total), *bots.items()]:
            if not account.engine.update_pnl(pnl, bot_id):
                continue
            account.loss_tripped.add(bot_id)
            who = f"account {account_id}" if bot_id is None else f"bot {bot_id}"
            self._alert(
                "critical",
                "risk.daily_loss",
                f"{who} is down {-pnl:,.2f} today, at its max_daily_loss: REDUCING, only "
                "orders that reduce a position pass until the UTC day ends",
                account_id=account_id,
                bot_id=bot_id,
            )

    def _new_day(self, account: _Account) -> None:
        """Lifts the REDUCING state the day's losses tripped, as the day is over."""
        engine = account.engine
        for bot_id in account.loss_tripped:
            scope = engine.account if bot_id is None else engine.slot_bot(bot_id)
            engine.update_pnl(0.0, bot_id)
            if scope.state == REDUCING:
                engine.set_state(ACTIVE, bot_id)
        if account.loss_tripped:
            self._alert(
                "info",
                "risk.daily_loss_reset",
                f"a new day: account {account.config.account_id}'s daily losses start again",
                account_id=account.config.account_id,
            )
        account.loss_tripped.clear()

    # -- intents ---------------------------------------------------------------------------

    async def _unless_fenced(self, stop: asyncio.Event) -> None:
        """Proves this instance still owns its partitions when it was frozen or stalled long
        enough since its poll for the group to have given them to a successor (the group's
        session is 10 s); stops it (:class:`Fenced`) otherwise."""
        if time.monotonic() - self._polled_at > _OWNERSHIP_DOUBT_S:
            await self._check_not_fenced(self._owned_partitions(), stop)

    async def _handle_intents(
        self, records: list[Any], offsets: dict[TopicPartition, int], stop: asyncio.Event
    ) -> None:
        await self._unless_fenced(stop)  # before writing decisions the successor may be making
        now = now_ms()
        step = _Step(self.options.reports_topic)
        decoded: list[tuple[OrderIntent, bytes, tuple[int, int]]] = []
        spans: dict[tuple[int, int], Span] = {}
        for record in records:
            span = traces.intent_span(record)
            step.spans.append(span)
            try:
                intent = protocol.decode_intent(record.value)
            except ProtocolError as exc:
                traces.refused(span, f"decode.{exc.code}", str(exc)[:500])
                step.span, step.traceparent = span, traceparent_of(span)
                self._dead_letter(step, record, exc, now)
                continue
            spans[(record.partition, record.offset)] = span
            decoded.append((intent, record.value, (record.partition, record.offset)))
        # Ids decided by this process are answered from memory; the database knows the rest.
        candidates = [str(i.intent_id) for i, _, _ in decoded if i.intent_id not in self._recent]
        # Beside the last step's tail, which writes no intent.
        known = await self._durably(
            lambda: self._store.known_intents(candidates), stop, beside_tail=True
        )
        fresh: list[tuple[OrderIntent, bytes, tuple[int, int]]] = []
        redelivered: list[str] = []
        for intent, raw, source in decoded:
            key = str(intent.intent_id)
            if intent.intent_id in self._recent:
                traces.skipped(spans[source], "duplicate")
                log.info("duplicate intent %s ignored", key)
            elif key not in known:
                known[key] = source  # a second copy later in this batch is a duplicate
                fresh.append((intent, raw, source))
            elif known[key] == source:
                # This very record was decided before, but that step's transaction never
                # committed (the executor stopped first): publish the recorded reports now.
                traces.skipped(spans[source], "redelivered")
                redelivered.append(key)
            else:
                traces.skipped(spans[source], "duplicate")
                log.info("duplicate intent %s ignored (first seen at %s)", key, known[key])
        if redelivered:
            recorded = await self._durably(  # reports of a step before this process
                lambda: self._store.reports_of_intents(redelivered), stop, beside_tail=True
            )
            for account_id, body, traceparent in recorded:
                step.publish.append(
                    (
                        self.options.reports_topic,
                        account_id.encode(),
                        body,
                        _trace_headers(traceparent),
                    )
                )
            log.info(
                "%d intents redelivered; %d recorded reports published",
                len(redelivered),
                len(recorded),
            )
        await self._refresh_prices(fresh, now)
        self._step_spans.clear()
        actions = collections.Counter(type(intent).__struct_config__.tag for intent, _, _ in fresh)
        for action, count in actions.items():
            self.health.intents.labels(action).inc(count)
        for intent, raw, source in fresh:
            step.source = source
            step.span = self._step_spans[intent.intent_id] = spans[source]
            step.traceparent = traceparent_of(step.span)
            self._decide(step, intent, raw, now)
        step.span, step.traceparent = INVALID_SPAN, None
        # New intents and orders only: beside the last step's tail, which updates older ones.
        await self._record(step.changes, stop, beside_tail=True)
        for intent, _, _ in fresh:  # once recorded: a step reloaded (_reload) decides anew
            self._recent.add(intent.intent_id)
        traces.event((self._step_spans[i.intent_id] for i, _ in step.actions), "order.recorded")
        failpoint("decided")
        await self._unless_fenced(stop)  # before the broker sees the successor's orders again
        self._raise_if_tail_failed()  # a fenced instance (say) must send nothing more
        outcome = Changes()
        await self._send(step, outcome, now)
        failpoint("sent")
        self._note_reject_rates(fresh, [*step.changes.reports, *outcome.reports])
        self._step_spans.clear()
        # One tail at a time, in order; and a step waiting for the last one gathers what
        # arrives meanwhile into the next step, as a step without a tail would.
        await self._after_tail()
        # The orders go on changing (the next step's cancels, the broker's updates) while the
        # tail writes them: it writes them as they are now.
        self._tail = asyncio.create_task(
            self._finish(step, outcome.frozen(), offsets, stop), name="coyote-executor-tail"
        )
        self._tail.add_done_callback(_consume_outcome)

    async def _finish(
        self, step: _Step, outcome: Changes, offsets: dict[TopicPartition, int], stop: asyncio.Event
    ) -> None:
        """A step's tail: records what the brokers answered, then publishes the step's reports
        and commits its offsets."""
        _IN_TAIL.set(True)  # in this task's own context
        await self._record(outcome, stop)
        failpoint("recorded")
        for report in outcome.reports:
            step.publish.append(
                (
                    self.options.reports_topic,
                    report.account_id.encode(),
                    outcome.body(report),
                    _trace_headers(outcome.traceparents.get(report.report_id)),
                )
            )
        await self._publish(step.publish, offsets, stop)
        for span in step.spans:
            span.end()

    async def _after_tail(self) -> None:
        """Waits for the last step's tail, raising what it raised. Called by what writes or
        reads the records (but the next step's decisions) and by what publishes, so that the
        tail's outcome and offsets come first; not by the tail itself."""
        tail = self._tail
        if tail is None or _IN_TAIL.get():
            return
        # Shielded: a caller cancelled (a revocation's coordinator, say) leaves the tail to
        # finish; only the executor's own stop ends it (_settle_tail).
        await asyncio.shield(tail)

    def _raise_if_tail_failed(self) -> None:
        tail = self._tail
        if tail is not None and tail.done() and not tail.cancelled():
            error = tail.exception()
            if error is not None:
                raise error

    async def _settle_tail(self) -> None:
        """When the loop ends on an error: lets the last tail finish still (its step was sent:
        its outcome is recorded and published now rather than recovered at the next start),
        unless the executor is cancelled."""
        tail = self._tail
        if tail is None or tail.done():
            return
        try:
            await asyncio.shield(tail)
        except asyncio.CancelledError:
            tail.cancel()
            raise
        except Exception:  # the loop's own error, being raised, is the one that counts
            log.exception("the last step's tail failed as the executor stopped on an error")

    def _decide(self, step: _Step, intent: OrderIntent, raw: bytes, now: int) -> None:
        account = self._accounts.get(intent.account_id)
        order_id = str(getattr(intent, "order_id", intent.intent_id))
        if account is None:
            code = "account.unknown"
            reason = f"account {intent.account_id!r} is not served by this executor"
            if intent.account_id in self._configs:
                code, reason = (
                    "account.not_owned",
                    f"account {intent.account_id!r} moved to another executor",
                )
            self._refuse(step, intent, raw, now, code, reason)
            return
        max_age = self.options.max_intent_age_ms
        # A cancel only ever reduces risk: however late, it is carried out.
        late = max_age is not None and now - intent.ts_ms > max_age
        if late and isinstance(intent, NewOrder | ReplaceOrder):
            self._refuse(
                step,
                intent,
                raw,
                now,
                "intent.expired",
                f"the intent is {now - intent.ts_ms} ms old; intents older than {max_age} ms "
                "are not traded",
            )
            return
        if isinstance(intent, NewOrder):
            self._decide_new(step, account, intent, raw, now)
            return
        if isinstance(intent, CancelAll):
            targets = [
                o
                for o in self._orders.values()
                if o.intent.account_id == intent.account_id
                and o.intent.bot_id == intent.bot_id
                and intent.symbol in (None, o.intent.symbol)
            ]
            step.decided(intent, raw, now, order_id=None)
            step.actions.extend((intent, o) for o in targets)
            return
        order = self._orders.get(order_id)
        if order is None or order.intent.bot_id != intent.bot_id:
            self._refuse(step, intent, raw, now, "order.not_open", f"order {order_id} is not open")
            return
        if isinstance(intent, CancelOrder):
            step.decided(intent, raw, now, order_id=order_id)
            step.actions.append((intent, order))
            return
        assert isinstance(intent, ReplaceOrder)
        refused = self._check_replace(account, order, intent, now)
        if refused:
            self._refuse(
                step,
                intent,
                raw,
                now,
                REASONS[refused],
                self._halted_because(account, intent.bot_id)
                if refused == _HALTED
                else f"refused by the risk engine: {REASONS[refused]}",
                order=order,
            )
            return
        step.decided(intent, raw, now, order_id=order_id)
        step.actions.append((intent, order))

    def _decide_new(
        self, step: _Step, account: _Account, intent: NewOrder, raw: bytes, now: int
    ) -> None:
        slot = account.engine.slot(intent.bot_id, intent.symbol)
        if slot is None:
            code = REASONS.index("risk.instrument_unknown")
        else:
            price = intent.limit_price if intent.limit_price is not None else intent.stop_price
            code = slot.check(
                _SIDE[intent.side],
                float(intent.quantity),
                float(price) if price is not None else 0.0,
                intent.order_type in (OrderType.MARKET, OrderType.STOP),
                intent.reduce_only,
                now,
            )
        order = LiveOrder.placed(intent, now, traceparent=step.traceparent)
        if code:
            reason = (
                self._halted_because(account, intent.bot_id)
                if code == _HALTED
                else f"refused by the risk engine: {REASONS[code]}"
            )
            step.decided(
                intent,
                raw,
                now,
                order_id=str(intent.intent_id),
                reject_code=REASONS[code],
                reject_reason=reason,
            )
            step.report(reject(order, REASONS[code], reason, now))
            step.changes.new_orders.append(order)
            return
        step.decided(intent, raw, now, order_id=str(intent.intent_id))
        step.changes.new_orders.append(order)
        step.actions.append((intent, order))
        self._orders[order.key] = order

    def _check_replace(
        self, account: _Account, order: LiveOrder, intent: ReplaceOrder, now: int
    ) -> int:
        slot = account.engine.slot(order.intent.bot_id, order.intent.symbol)
        if slot is None:
            return REASONS.index("risk.instrument_unknown")
        side = _SIDE[order.intent.side]
        leaves = float(order.quantity - order.filled_quantity)
        quantity = intent.quantity if intent.quantity is not None else order.quantity
        new_leaves = float(quantity - order.filled_quantity)
        if new_leaves <= 0:
            return REASONS.index("risk.invalid_quantity")
        price = intent.limit_price or order.limit_price or intent.stop_price or order.stop_price
        slot.release(side, leaves)
        code = slot.check(
            side,
            new_leaves,
            float(price) if price is not None else 0.0,
            order.intent.order_type in (OrderType.MARKET, OrderType.STOP),
            order.intent.reduce_only,
            now,
        )
        if not code:
            # A check only: the reservation follows the quantity once the broker confirms the
            # replace (see _advance), so it goes back to the order's current leaves for now.
            slot.release(side, new_leaves)
        slot.reserve(side, leaves)
        return int(code)

    def _refuse(
        self,
        step: _Step,
        intent: OrderIntent,
        raw: bytes,
        now: int,
        code: str,
        reason: str,
        *,
        order: LiveOrder | None = None,
    ) -> None:
        """Rejects an intent that places no order, or acts on one it may not."""
        order_id = getattr(intent, "order_id", intent.intent_id)
        step.decided(
            intent, raw, now, order_id=str(order_id), reject_code=code, reject_reason=reason
        )
        if isinstance(intent, NewOrder):
            placed = LiveOrder.placed(intent, now, traceparent=step.traceparent)
            step.report(reject(placed, code, reason, now))
            step.changes.new_orders.append(placed)
            return
        if order is None:
            order = self._orders.get(str(order_id))
        if order is not None:
            step.report(_action_rejection(intent, order, now, code, reason))
            return
        step.report(_orphan_rejection(intent, order_id, now, code, reason))

    def _dead_letter(self, step: _Step, record: Any, error: ProtocolError, now: int) -> None:
        code = f"decode.{error.code}"
        log.warning(
            "intent at %s/%d offset %d refused: %s",
            record.topic,
            record.partition,
            record.offset,
            error,
        )
        headers = [
            ("coyote-error-code", code.encode()),
            ("coyote-error", str(error)[:500].encode()),
            ("coyote-source", f"{record.topic}/{record.partition}/{record.offset}".encode()),
            # The record's own trace context goes along, like the rest of it, verbatim.
            *(h for h in record.headers or () if h[0] in _TRACE_HEADER_NAMES),
        ]
        step.publish.append(
            (self.options.dead_letter_topic, record.key, record.value or b"", headers)
        )
        ids = _salvage_ids(record.value)
        if ids is not None:
            intent_id, account_id, bot_id, symbol, side = ids
            step.report(
                ExecutionReport(
                    report_id=protocol.new_intent_id(),
                    intent_id=intent_id,
                    order_id=intent_id,
                    ts_ms=now,
                    account_id=account_id,
                    bot_id=bot_id,
                    symbol=symbol,
                    side=side,
                    exec_type=ExecType.REJECTED,
                    order_status=OrderStatus.REJECTED,
                    quantity=Decimal(0),
                    reject_code=code,
                    reject_reason=str(error)[:500],
                )
            )

    # -- brokers ---------------------------------------------------------------------------

    async def _send(self, step: _Step, outcome: Changes, now: int) -> None:
        """Makes the step's broker calls in arrival order, submitting runs of new orders
        together."""
        run: list[LiveOrder] = []
        for intent, order in step.actions:
            if isinstance(intent, NewOrder):
                run.append(order)
                continue
            await self._submit(run, outcome, now)
            run = []
            if isinstance(intent, ReplaceOrder):
                await self._replace(intent, order, outcome, now)
            else:
                await self._cancel(intent, order, outcome, now)
        await self._submit(run, outcome, now)

    async def _submit(self, orders: list[LiveOrder], outcome: Changes, now: int) -> None:
        by_broker: dict[int, list[LiveOrder]] = {}
        for order in orders:
            broker = self._accounts[order.intent.account_id].broker
            by_broker.setdefault(id(broker), []).append(order)
        for group in by_broker.values():
            account = self._accounts[group[0].intent.account_id]
            try:
                with self._timed(account, "submit"):
                    states = await account.broker.submit_many([_broker_order(o) for o in group])
            except BrokerError as exc:
                # The outcome is unknown: the orders stay pending_new and reconciliation asks
                # the broker about them by client order id, sending again only those it never
                # saw; none is ever sent again blindly.
                self._broker_failed(account, exc)
                spans = (self._step_spans.get(o.order_id, INVALID_SPAN) for o in group)
                traces.event(spans, "broker.failed", **{"exception.message": str(exc)})
                continue
            account.failures = 0
            for order, state in zip(group, states, strict=True):
                self._advance(order, state, outcome, now)

    async def _cancel(
        self, intent: OrderIntent, order: LiveOrder, outcome: Changes, now: int
    ) -> None:
        account = self._accounts[order.intent.account_id]
        try:
            with self._timed(account, "cancel"):
                state = await account.broker.cancel(order.intent.account_id, order.key)
        except UnknownOrder as exc:
            self._refuse_action(intent, order, outcome, now, "order.not_open", str(exc))
            return
        except BrokerError as exc:
            self._broker_failed(account, exc)
            self._refuse_action(intent, order, outcome, now, exc.code, str(exc))
            return
        self._advance(order, state, outcome, now, cause=intent)
        self._answered(intent, order, outcome, now)

    async def _replace(
        self, intent: ReplaceOrder, order: LiveOrder, outcome: Changes, now: int
    ) -> None:
        account = self._accounts[order.intent.account_id]
        try:
            with self._timed(account, "replace"):
                state = await account.broker.replace(
                    order.intent.account_id,
                    order.key,
                    quantity=intent.quantity,
                    limit_price=intent.limit_price,
                    stop_price=intent.stop_price,
                )
        except (BrokerError, ValueError) as exc:
            if isinstance(exc, BrokerUnavailable):
                self._broker_failed(account, exc)
            code = exc.code if isinstance(exc, BrokerError) else "broker.replace_refused"
            self._refuse_action(intent, order, outcome, now, code, str(exc))
            return
        self._advance(order, state, outcome, now, cause=intent)
        self._answered(intent, order, outcome, now)

    def _answered(self, intent: OrderIntent, order: LiveOrder, outcome: Changes, now: int) -> None:
        """Rejects a cancel or replace the broker's answer did not carry out (the order had
        ended first), so that every such intent gets an answer."""
        if isinstance(intent, CancelAll):
            return
        if not any(r.intent_id == intent.intent_id for r in outcome.reports):
            self._refuse_action(
                intent, order, outcome, now, "order.not_open", f"order {order.order_id} had ended"
            )

    def _refuse_action(
        self,
        intent: OrderIntent,
        order: LiveOrder,
        outcome: Changes,
        now: int,
        code: str,
        reason: str,
    ) -> None:
        report = _action_rejection(intent, order, now, code, reason)
        outcome.reports.append(report)
        span = self._step_spans.get(intent.intent_id, INVALID_SPAN)
        traces.report_events(span, [report])
        traceparent = traceparent_of(span)
        if traceparent is not None:
            outcome.traceparents[report.report_id] = traceparent

    def _advance(
        self,
        order: LiveOrder,
        state: BrokerOrderState,
        changes: Changes,
        now: int,
        *,
        cause: OrderIntent | None = None,
    ) -> Advance:
        """Moves ``order`` to ``state``: reports and fills into ``changes``, risk booked."""
        quantity_before = order.quantity
        result = advance(order, state, now, cause=cause)
        if not result.changed:
            return result
        self._trace(order, result.reports, changes, cause)
        changes.update(order)
        changes.reports.extend(result.reports)
        changes.fills.extend(result.fills)
        account = self._accounts.get(order.intent.account_id)
        if account is not None:
            slot = account.engine.slot(order.intent.bot_id, order.intent.symbol)
            side = _SIDE[order.intent.side]
            if account.day is not None:
                for fill in result.fills:
                    account.day.on_fill(
                        order.intent.bot_id,
                        order.intent.symbol,
                        side * float(fill.fill.quantity),
                        float(fill.fill.price),
                        float(fill.fill.fee),
                    )
            if slot is not None:
                # A confirmed replace moves the reservation by the change of quantity.
                grown = float(order.quantity - quantity_before)
                if grown > 0:
                    slot.reserve(side, grown)
                elif grown < 0:
                    slot.release(side, -grown)
                for fill in result.fills:
                    slot.on_fill(side, float(fill.fill.quantity))
                if order.status.is_terminal and order.status is not OrderStatus.FILLED:
                    slot.release(side, float(order.quantity - order.filled_quantity))
        if order.status.is_terminal:
            self._orders.pop(order.key, None)
        return result

    def _trace(
        self,
        order: LiveOrder,
        reports: Sequence[ExecutionReport],
        changes: Changes,
        cause: OrderIntent | None,
    ) -> None:
        """Traces what happened to ``order``: in its intent's span while that intent's step
        runs, otherwise in a span of its own in the order's trace (:func:`traces.order_update`);
        the reports carry that span's context."""
        span = self._step_spans.get(order.order_id) if cause is None else None
        if span is not None:
            traces.report_events(span, reports)
            traceparent = order.traceparent  # that span's, given to the order when it was placed
        else:
            caused_by = self._step_spans.get(cause.intent_id) if cause is not None else None
            if caused_by is not None:
                traces.report_events(caused_by, reports)
            span = traces.order_update(order, reports, cause=caused_by)
            traceparent = traceparent_of(span) or order.traceparent
        if traceparent is not None:
            for report in reports:
                changes.traceparents[report.report_id] = traceparent

    def _broker_failed(self, account: _Account, error: Exception) -> None:
        account.failures += 1
        log.warning(
            "account %s: broker call failed (%d in a row): %s",
            account.config.account_id,
            account.failures,
            error,
        )
        if account.failures == self.options.broker_failure_limit:
            account.circuit_open = True
            self._sync_states(account)
            self._alert(
                "critical",
                "broker.circuit_open",
                f"{account.failures} broker calls failed in a row ({error}); account halted",
                account_id=account.config.account_id,
            )

    async def _on_broker_update(self, account_id: str, states: Sequence[BrokerOrderState]) -> None:
        self._updates.put_nowait((account_id, states))

    async def _handle_updates(self, stop: asyncio.Event) -> None:
        if self._updates.empty():
            return
        changes = Changes(with_offsets=False)
        now = now_ms()
        while not self._updates.empty():
            _, states = self._updates.get_nowait()
            for state in states:
                order = self._orders.get(state.client_order_id)
                if order is not None:
                    self._advance(order, state, changes, now)
        await self._record(changes, stop)
        await self._publish_outbox(stop)

    async def _publish_outbox(self, stop: asyncio.Event) -> None:
        """Publishes recorded reports that no intent's transaction carried (late events)."""
        while True:
            pending = await self._durably(self._store.unpublished_reports, stop)
            if not pending:
                return
            await self._publish(
                [
                    (self.options.reports_topic, a.encode(), body, _trace_headers(traceparent))
                    for _, a, body, traceparent in pending
                ],
                None,
                stop,
            )
            published = [report_id for report_id, _, _, _ in pending]
            await self._durably(functools.partial(self._store.mark_published, published), stop)

    # -- ownership and reconciliation ------------------------------------------------------

    async def _take_over(self, assigned: set[TopicPartition], stop: asyncio.Event) -> None:
        """Loads the risk state and open orders of the accounts on ``assigned`` partitions and
        reconciles them with their brokers."""
        await self._check_not_fenced(assigned, stop)
        partitions = sorted(p.partition for p in assigned)
        all_partitions = list(range(INTENTS_TOPIC.partitions))
        if self._consumer is not None:
            known = self._consumer.partitions_for_topic(self.options.intents_topic)
            if known:
                all_partitions = sorted(known)
        partitioner = DefaultPartitioner()
        owned = [
            a
            for a in self._configs
            if partitioner(a.encode(), all_partitions, all_partitions) in partitions
        ]
        self._accounts = {}
        self._orders = {}
        for account_id in owned:
            await self.own_account(account_id, stop)
        log.info(
            "owning partitions %s: %d accounts, %d open orders",
            partitions,
            len(owned),
            len(self._orders),
        )
        await self._reconcile(stop, resubmit=True)
        self.health.assigned(partitions, len(owned))
        self.ready.set()

    async def _check_not_fenced(self, assigned: set[TopicPartition], stop: asyncio.Event) -> None:
        """Commits the assigned partitions' positions in a transaction of their own.

        A zombie — paused while a successor with its transactional id started, then back in the
        group — would otherwise learn it is fenced only from its next transaction, and until
        then would trade: the coordinator refuses this one at once (:class:`Fenced`). Also run
        before writing again after the database connection was lost, which is how a zombie
        frozen inside a transaction finds itself on waking, and when rows it writes for the
        first time already exist."""
        if not assigned or self._consumer is None:
            return
        # The tail's offsets first: read before it commits, the old ones would move back.
        await self._after_tail()
        # The committed offsets, committed again: a no-op for the group, whatever was consumed
        # since (never the positions, which may run ahead of what has been answered).
        committed = {tp: await self._consumer.committed(tp) for tp in assigned}
        offsets = {tp: offset for tp, offset in committed.items() if offset is not None}
        await self._publish([], offsets, stop)

    async def own_account(self, account_id: str, stop: asyncio.Event) -> None:
        """Takes ``account_id`` on: its risk state from its positions and open orders in the
        database. It stays halted until the next reconciliation pass has compared it with its
        broker (the caller runs one, or lets :meth:`_step` run it next)."""
        config = self._configs[account_id]
        engine = RiskEngine(config.risk, now_ms())
        account = _Account(config, self._brokers[account_id], engine)
        positions = await self._durably(functools.partial(self._store.positions, account_id), stop)
        for position in positions:
            slot = engine.slot(position.bot_id, position.symbol)
            if slot is not None:
                slot.book(float(position.quantity))
        account.day = await self._load_day(account, positions, stop)
        await self._mark_day(account)  # a loss of earlier today binds from the first intent on
        open_orders = await self._durably(lambda: self._store.open_orders([account_id]), stop)
        for order in open_orders:
            self._orders[order.key] = order
            slot = engine.slot(order.intent.bot_id, order.intent.symbol)
            if slot is not None:
                slot.reserve(
                    _SIDE[order.intent.side], float(order.quantity - order.filled_quantity)
                )
        self._sync_states(account)
        self._accounts[account_id] = account
        await account.broker.serve(
            [a for a, owned in self._accounts.items() if owned.broker is account.broker]
        )
        self._last_reconcile = 0.0  # reconcile it at the next step, not an interval later

    async def _load_day(
        self, account: _Account, positions: Sequence[Position], stop: asyncio.Event
    ) -> DayBook:
        """The account's PnL today from its records (a restart forgets no loss), the positions
        it opened the day with valued at the prices of midnight UTC."""
        account_id = account.config.account_id
        day = day_of(now_ms())
        fills = await self._durably(
            functools.partial(self._store.fills_since, account_id, day * DAY_MS), stop
        )
        held = {p.symbol for p in positions if p.quantity}
        try:
            marks = await self._prices.before(account.config.venue, held, day * DAY_MS)
        except aioredis.RedisError as exc:
            log.warning("account %s: prices at midnight unavailable (%s)", account_id, exc)
            marks = {}
        return load_day(
            day,
            [(p.bot_id, p.symbol, float(p.quantity)) for p in positions],
            [(b, s, float(q), float(price), float(fee)) for b, s, q, price, fee in fills],
            {symbol: float(price) for symbol, price in marks.items()},
        )

    async def _reconcile(self, stop: asyncio.Event, *, resubmit: bool = False) -> None:
        """Compares every owned account with its broker — open orders, then positions — and
        applies what changed.

        With ``resubmit``, a ``pending_new`` order the broker has never seen is sent now: it
        was recorded but the executor stopped before sending it, or its submission failed
        before it reached the broker. Brokers are idempotent on the client order id, so an
        order the broker does know is never placed twice.

        A pass that gets through to an account's broker lifts the halts that only a broker
        could: the account not yet reconciled since it was taken on, and its broker circuit.
        """
        changes = Changes(with_offsets=False)
        now = now_ms()
        answered: list[_Account] = []
        for account in list(self._accounts.values()):
            try:
                await self._reconcile_orders(account, changes, now, resubmit=resubmit)
            except BrokerError as exc:
                self._reconcile_failed(account, exc)
                continue
            answered.append(account)
        await self._record(changes, stop)
        await self._publish_outbox(stop)
        compare = time.monotonic() - self._last_position_check >= self.options.positions_interval_s
        if compare:
            self._last_position_check = time.monotonic()
        for account in answered:
            self._broker_answered(account)
            if compare:
                await self._compare_positions(account, stop)

    async def _reconcile_orders(
        self, account: _Account, changes: Changes, now: int, *, resubmit: bool
    ) -> None:
        account_id = account.config.account_id
        # One call answers for the orders still open at the broker; only the others (ended
        # there, or never sent) are looked up one by one.
        with self._timed(account, "open_orders"):
            working = {s.client_order_id: s for s in await account.broker.open_orders(account_id)}
        max_age = self.options.max_intent_age_ms
        unsent: list[LiveOrder] = []
        for order in [o for o in list(self._orders.values()) if o.intent.account_id == account_id]:
            key = order.key
            state = working.pop(key, None)
            if state is None:
                with self._timed(account, "lookup"):
                    state = await account.broker.lookup(account_id, key)
            if state is not None:
                self._advance(order, state, changes, now)
            elif order.status is OrderStatus.PENDING_NEW and resubmit:
                age = now - order.intent.ts_ms
                if max_age is None or age <= max_age:
                    unsent.append(order)
                    continue
                # The broker never saw it, and the market it was meant for has moved on: the
                # same rule as for an intent that arrives late.
                expired = BrokerOrderState(
                    key,
                    OrderStatus.REJECTED,
                    order.quantity,
                    reject_code="intent.expired",
                    reject_reason=f"never reached the broker and is now {age} ms old; "
                    f"orders older than {max_age} ms are not sent",
                )
                self._advance(order, expired, changes, now)
        if unsent:
            with self._timed(account, "submit"):
                states = await account.broker.submit_many([_broker_order(o) for o in unsent])
            for order, state in zip(unsent, states, strict=True):
                self._advance(order, state, changes, now)
        self._flag_unknown_orders(account, working.values())

    def _flag_unknown_orders(self, account: _Account, working: Iterable[BrokerOrderState]) -> None:
        """Alerts once about each order open at the broker that is not an open order here:
        placed by hand or by another system on the same account, or ended in our records
        while the broker still works it. It is left alone: cancelling what we do not know
        could do more harm than flagging it."""
        account_id = account.config.account_id
        for state in working:
            if state.client_order_id in account.unknown_orders:
                continue
            account.unknown_orders.add(state.client_order_id)
            self._alert(
                "warning",
                "broker.unknown_order",
                f"account {account_id}: the broker works order {state.client_order_id} "
                f"({state.status}, {state.filled_quantity}/{state.quantity} filled) that is not "
                "an open order of this executor",
                account_id=account_id,
            )

    async def _compare_positions(self, account: _Account, stop: asyncio.Event) -> None:
        """Alerts when the account's positions differ from the broker's on two passes in a row
        (one pass may catch a fill the broker has booked and we are about to)."""
        account_id = account.config.account_id
        try:
            with self._timed(account, "positions"):
                theirs = await account.broker.positions(account_id)
        except BrokerError as exc:
            log.warning("account %s: broker positions unavailable: %s", account_id, exc)
            return
        ours: dict[str, Decimal] = {}
        for position in await self._durably(
            functools.partial(self._store.positions, account_id), stop
        ):
            ours[position.symbol] = ours.get(position.symbol, ZERO) + position.quantity
        drift = {
            symbol: (ours.get(symbol, ZERO), theirs.get(symbol, ZERO))
            for symbol in ours.keys() | theirs.keys()
            if ours.get(symbol, ZERO) != theirs.get(symbol, ZERO)
        }
        for symbol, (mine, broker) in sorted(drift.items()):
            if account.drift.get(symbol) != (mine, broker):
                continue  # new: confirmed or gone at the next pass
            if account.drift_alerted.get(symbol) == (mine, broker):
                continue
            account.drift_alerted[symbol] = (mine, broker)
            self._alert(
                "critical",
                "broker.position_drift",
                f"account {account_id}: position in {symbol} is {mine} in our records (the sum "
                f"of its fills) but {broker} at the broker",
                account_id=account_id,
            )
        for symbol in sorted(account.drift_alerted.keys() - drift.keys()):
            del account.drift_alerted[symbol]
            self._alert(
                "info",
                "broker.position_drift_resolved",
                f"account {account_id}: position in {symbol} agrees with the broker again "
                f"({ours.get(symbol, ZERO)})",
                account_id=account_id,
            )
        account.drift = drift

    def _reconcile_failed(self, account: _Account, error: BrokerError) -> None:
        self._broker_failed(account, error)
        if not account.reconciled and account.failures == 1:
            self._alert(
                "critical",
                "broker.reconcile_failed",
                f"account {account.config.account_id} could not be reconciled with its broker "
                f"({error}); it stays halted until it is",
                account_id=account.config.account_id,
            )

    def _broker_answered(self, account: _Account) -> None:
        """A reconciliation pass got through: the broker is reachable and the account's orders
        are known, so the halts that only the broker could lift are lifted."""
        account_id = account.config.account_id
        account.failures = 0
        if account.reconciled and not account.circuit_open:
            return
        was_open, account.circuit_open = account.circuit_open, False
        account.reconciled = True
        self._sync_states(account)
        if was_open:
            self._alert(
                "info",
                "broker.circuit_closed",
                f"account {account_id}: the broker answers again and its orders are reconciled; "
                "the account trades again",
                account_id=account_id,
            )

    # -- kill switches ---------------------------------------------------------------------

    async def _read_halts_at_start(self, stop: asyncio.Event) -> bool:
        """Reads the kill switches, waiting for Redis if it is down: without them no intent is
        taken (fail safe). Returns False if ``stop`` was set first."""
        delay = 0.2
        while not stop.is_set():
            try:
                await self._read_halts()
                return True
            except (aioredis.RedisError, OSError) as exc:
                self._redis_lost(exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
            delay = min(delay * 2, 5.0)
        return False

    async def _watch_halts(self, stop: asyncio.Event) -> None:
        """Follows the kill switches: a change announced on :data:`HALTS_CHANNEL` is read at
        once, and the whole hash again every ``halts_refresh_s`` for a missed message or a
        Redis that restarted empty (the control plane writes it again). While Redis is
        unreachable the last known kill switches stay in force."""
        await follow_hash(
            self._redis,
            HALTS_CHANNEL,
            refresh_s=self.options.halts_refresh_s,
            read=self._read_halts,
            lost=self._redis_lost,
            stop=stop,
        )

    def _redis_lost(self, error: Exception) -> None:
        if not self._halts_unreachable:
            self._halts_unreachable = True
            log.error(
                "kill switches unreadable (%s): the last known stay in force (%d)",
                error,
                len(self._halts),
            )

    async def _read_halts(self) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.info("server")
            pipe.hgetall(HALTS_KEY)
            info, stored = await pipe.execute(raise_on_error=False)
        if isinstance(stored, Exception):
            raise stored
        # A new run id is a restarted Redis, maybe empty until the control plane writes the
        # hash again; an INFO refused (ACLs) only loses that detection.
        run_id = info.get("run_id") if isinstance(info, dict) else None
        restarted = run_id is not None and self._redis_run_id not in (None, run_id)
        self._redis_run_id = run_id or self._redis_run_id
        if (restarted or self._halts_unreachable) and self._halts:
            log.warning(
                "Redis %s: kill switches missing from it stay in force for %.0f s",
                "restarted" if restarted else "back",
                self.options.halts_hold_s,
            )
            self._hold_halts_until = time.monotonic() + self.options.halts_hold_s
        if self._halts_unreachable:
            self._halts_unreachable = False
            log.info("kill switches readable again")
        self._set_halts(
            {
                (k.decode() if isinstance(k, bytes) else str(k)): (
                    v if isinstance(v, bytes) else str(v).encode()
                )
                for k, v in stored.items()
            },
            keep_missing=time.monotonic() < self._hold_halts_until,
        )

    def _obeys(self, field: str) -> bool:
        """Whether a halts field concerns this executor: an account it is configured for (an
        instance may own it after a rebalance), or any bot (intents name their bot)."""
        scope, colon, target = field.partition(":")
        if not colon or not target:
            return False
        return scope == "bot" or (scope == "account" and target in self._configs)

    def _set_halts(self, stored: Mapping[str, bytes], *, keep_missing: bool = False) -> None:
        """Takes the hash as read: applies new and changed kill switches, lifts the removed
        ones (unless ``keep_missing``), and alerts on each change (not on the first read:
        those were announced when they were tripped; they are logged)."""
        wanted = {f: v for f, v in stored.items() if self._obeys(f)}
        if keep_missing:
            wanted = {**self._halt_values, **wanted}
        alert, self._halts_read = self._halts_read, True
        if wanted == self._halt_values:
            return
        alerts: list[tuple[str, str, str, Halt]] = []
        for field in sorted(self._halt_values.keys() - wanted.keys()):
            del self._halt_values[field]
            halt = self._halts.pop(field)
            alerts.append(("info", "kill_switch.lifted", "lifted", halt))
        for field, value in sorted(wanted.items()):
            if self._halt_values.get(field) == value:
                continue
            self._halt_values[field] = value
            halt = self._halts[field] = _read_halt(field, value)
            alerts.append(("warning", "kill_switch.applied", "applied", halt))
        for account in self._accounts.values():
            self._sync_states(account)
        for severity, kind, what, halt in alerts:
            message = (
                f"kill switch on {halt.scope} {halt.target} {what}: {halt.reason} "
                f"(set by {halt.set_by}); executor {self.options.instance_id}"
            )
            if what == "lifted" and halt.scope == "account":
                lifted = self._accounts.get(halt.target)
                if lifted is not None and lifted.circuit_open:
                    message += "; the account stays halted: its broker circuit is open"
            if not alert:
                log.warning("kill switch in force at start: %s", message)
                continue
            self._alert(
                severity,
                kind,
                message,
                account_id=halt.target if halt.scope == "account" else None,
                bot_id=halt.target if halt.scope == "bot" else None,
            )

    def _sync_states(self, account: _Account) -> None:
        """Derives the risk engine's states of ``account`` from their causes: the broker
        circuit, the kill switches and :attr:`config_halts`. The causes are kept here, apart,
        so that lifting one never re-opens a scope that another still halts."""
        engine = account.engine
        account_id = account.config.account_id
        if (
            account.circuit_open
            or not account.reconciled
            or account_id in self.config_halts
            or f"account:{account_id}" in self._halts
            or self._reject_rates.halted(("account", account_id))
        ):
            engine.set_state(HALTED)
        elif engine.account.state == HALTED:
            # Only a halt is undone: a scope the engine put in REDUCING stays there.
            engine.set_state(ACTIVE)
        bots = {h.target for h in self._halts.values() if h.scope == "bot"}
        bots |= {s[2] for s in self._reject_rates.scopes() if s[:2] == ("bot", account_id)}
        for bot_id in bots:
            engine.set_state(HALTED, bot_id)
        for bot_id in account.halted_bots - bots:
            if engine.slot_bot(bot_id).state == HALTED:
                engine.set_state(ACTIVE, bot_id)
        account.halted_bots = bots

    def _note_reject_rates(
        self, intents: Iterable[tuple[OrderIntent, Any, Any]], reports: Iterable[ExecutionReport]
    ) -> None:
        """Feeds the reject-rate breaker the outcome of the step's new orders (rejected by the
        risk engine or by the broker, or not); a scope that trips is halted."""
        codes = {
            r.intent_id: r.reject_code
            for r in reports
            if r.exec_type is ExecType.REJECTED and r.intent_id == r.order_id
        }
        now = time.monotonic()
        tripped: set[str] = set()
        for intent, _, _ in intents:
            account = self._accounts.get(intent.account_id)
            if account is None or not isinstance(intent, NewOrder):
                continue
            code = codes.get(intent.intent_id)
            if code in NOT_COUNTED:
                continue
            risk = account.config.risk
            scopes: tuple[tuple[tuple[str, ...], Limits | None], ...] = (
                (("account", intent.account_id), risk.account),
                (("bot", intent.account_id, intent.bot_id), risk.bots.get(intent.bot_id)),
            )
            for scope, limits in scopes:
                if limits is None:
                    continue
                trip = self._reject_rates.note(scope, limits, rejected=code is not None, now=now)
                if trip is None:
                    continue
                tripped.add(intent.account_id)
                what = (
                    f"account {intent.account_id}"
                    if scope[0] == "account"
                    else f"bot {intent.bot_id}"
                )
                self._alert(
                    "critical",
                    "risk.reject_rate",
                    f"{what} halted for {trip.until - now:.0f} s: {trip.describe()}",
                    account_id=intent.account_id,
                    bot_id=intent.bot_id if scope[0] == "bot" else None,
                )
        for account_id in tripped:
            self._sync_states(self._accounts[account_id])

    def _lift_reject_halts(self) -> None:
        for scope in self._reject_rates.lift_due(time.monotonic()):
            account = self._accounts.get(scope[1])
            what = f"account {scope[1]}" if scope[0] == "account" else f"bot {scope[2]}"
            self._alert(
                "info",
                "risk.reject_rate_lifted",
                f"{what}: its halt for its reject rate ran out",
                account_id=scope[1],
                bot_id=scope[2] if scope[0] == "bot" else None,
            )
            if account is not None:
                self._sync_states(account)

    def _halted_because(self, account: _Account, bot_id: str) -> str:
        """Why an order of ``bot_id`` on ``account`` is refused as ``risk.halted``."""
        account_id = account.config.account_id
        causes = [
            f"kill switch on {halt.scope} {halt.target}: {halt.reason} (set by {halt.set_by})"
            for halt in (self._halts.get(f"account:{account_id}"), self._halts.get(f"bot:{bot_id}"))
            if halt is not None
        ]
        if account.circuit_open:
            causes.append(f"broker circuit of account {account_id} open")
        if not account.reconciled:
            causes.append(f"account {account_id} not yet reconciled with its broker")
        if account_id in self.config_halts:
            causes.append(f"account {account_id}: {self.config_halts[account_id]}")
        for scope, what in (
            (("account", account_id), f"account {account_id}"),
            (("bot", account_id, bot_id), f"bot {bot_id}"),
        ):
            until = self._reject_rates.halted_until(scope)
            if until is not None:
                causes.append(
                    f"{what} halted for its reject rate for {until - time.monotonic():.0f} s more"
                )
        return "halted: " + ("; ".join(causes) or "refused by the risk engine")

    # -- prices, publishing, alerts ---------------------------------------------------------

    async def _refresh_prices(
        self, intents: Iterable[tuple[OrderIntent, Any, Any]], now: int
    ) -> None:
        wanted: dict[str, set[str]] = {}
        for intent, _, _ in intents:
            if intent.account_id not in self._accounts:
                continue
            symbol = None
            if isinstance(intent, NewOrder):
                symbol = intent.symbol
            elif isinstance(intent, ReplaceOrder):
                order = self._orders.get(str(intent.order_id))
                symbol = order.intent.symbol if order is not None else None
            if symbol is not None:
                wanted.setdefault(intent.account_id, set()).add(symbol)
        for account_id, symbols in wanted.items():
            account = self._accounts[account_id]
            try:
                prices = await self._prices.latest(account.config.venue, symbols)
            except aioredis.RedisError as exc:
                log.warning("last prices unavailable (%s): checks run on the last known", exc)
                return
            for symbol, (ts_ms, price) in prices.items():
                account.engine.update_price(symbol, float(price), ts_ms)

    async def _publish(
        self,
        messages: list[tuple[str, bytes | None, bytes, list[tuple[str, bytes]]]],
        offsets: dict[TopicPartition, int] | None,
        stop: asyncio.Event,
    ) -> None:
        """Produces ``messages`` (and commits ``offsets``) in one Kafka transaction, retrying
        the whole transaction until Kafka takes it, on a new producer if the old one failed for
        good (:meth:`_renew_producer`)."""
        assert self._producer is not None
        if not messages and not offsets:
            return
        await self._after_tail()  # one transaction at a time, the tail's first
        delay = 0.1
        renewed = False
        while True:
            try:
                failure = _producer_failure(self._producer)
                if isinstance(failure, ProducerFenced):
                    raise failure
                if failure is not None:
                    await self._renew_producer(failure)
                    renewed = True
                if renewed and offsets and await self._committed(offsets):
                    self.health.kafka(None)
                    return  # the transaction the old producer failed in had committed
                async with self._producer.transaction():
                    await self._produce(self._producer, messages)
                    if offsets:
                        await self._producer.send_offsets_to_transaction(
                            offsets, self.options.group_id
                        )
                self.health.kafka(None)
                return
            except ProducerFenced as exc:
                transactional_id = f"{self.options.group_id}-{self.options.instance_id}"
                log.critical(
                    "fenced by a newer instance with transactional id %s: it owns this "
                    "instance's partitions now; stopping without publishing",
                    transactional_id,
                )
                raise Fenced(f"transactional id {transactional_id} taken over") from exc
            except KafkaError as exc:
                self.health.kafka(exc)
                if stop.is_set():
                    raise
                log.warning("Kafka transaction failed (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    @staticmethod
    async def _produce(
        producer: AIOKafkaProducer,
        messages: list[tuple[str, bytes | None, bytes, list[tuple[str, bytes]]]],
    ) -> None:
        """Adds ``messages`` to the producer's open transaction, each to the partition its key
        picks (as :meth:`AIOKafkaProducer.send` would), as whole batches per partition.

        Not a ``send`` per message: its partitioner, serialisation and future per message were
        about a tenth of the executor's CPU at full load.
        """
        batches: dict[tuple[str, int], list[tuple[bytes | None, bytes, list[Any]]]] = {}
        partitions_of: dict[str, list[int]] = {}
        partition_of: dict[tuple[str, bytes | None], int] = {}
        for topic, key, value, headers in messages:
            partition = partition_of.get((topic, key))
            if partition is None:
                every = partitions_of.get(topic)
                if every is None:
                    every = partitions_of[topic] = sorted(await producer.partitions_for(topic))
                partition = partition_of[(topic, key)] = _PARTITIONER(key, every, every)
            batches.setdefault((topic, partition), []).append((key, value, headers))
        for (topic, partition), records in batches.items():
            batch = producer.create_batch()
            for key, value, headers in records:
                while batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                    if batch.record_count() == 0:
                        raise KafkaError(f"a record of {len(value)} bytes exceeds a batch")
                    await _send_batch(producer, batch, topic, partition)
                    batch = producer.create_batch()
            await _send_batch(producer, batch, topic, partition)

    async def _renew_producer(self, failure: BaseException) -> None:
        """Replaces a transactional producer that failed for good with a new one under the same
        transactional id, which aborts the transaction the old one left open.

        aiokafka's producer never leaves a fatal error: its sender task ends when, for example,
        a connection breaks while it looks up a coordinator (aio-libs/aiokafka#907, #1151), and
        every transaction after that fails. Retrying on it would never succeed."""
        log.error(
            "Kafka producer failed for good (%s); starting a new one with the same "
            "transactional id",
            failure,
        )
        assert self._producer is not None
        with contextlib.suppress(Exception):
            await self._producer.stop()
        producer = self._new_producer()
        try:
            await producer.start()
        except BaseException:
            with contextlib.suppress(Exception):
                await producer.stop()
            raise
        self._producer = producer

    async def _committed(self, offsets: Mapping[TopicPartition, int]) -> bool:
        """Whether the group's committed offsets have reached ``offsets``: a transaction that
        carried them committed, even if its producer never heard so."""
        assert self._consumer is not None
        for tp, offset in offsets.items():
            committed = await self._consumer.committed(tp)
            if committed is None or committed < offset:
                return False
        return True

    async def _record(
        self, changes: Changes, stop: asyncio.Event, *, beside_tail: bool = False
    ) -> None:
        """Writes ``changes`` in one transaction (see :meth:`Store.apply`), counting their
        reports for the metrics."""
        self.health.reported(changes.reports)
        await self._durably(lambda: self._store.apply(changes), stop, beside_tail=beside_tail)

    async def _durably(
        self, call: Callable[[], _T], stop: asyncio.Event, *, beside_tail: bool = False
    ) -> _T:
        """Runs a database call in a worker thread, waiting out database outages: while the
        database is down the executor consumes and sends nothing. After the last step's tail
        unless ``beside_tail`` (a call that neither reads nor writes what a tail writes)."""
        if not beside_tail:
            await self._after_tail()
        delay = 0.2
        while True:
            try:
                result = await asyncio.to_thread(call)
                self.health.database(None)
                return result
            except OrdersChangedMeanwhile as exc:
                # Orders this executor updates were changed by another writer since it read
                # them: as above, fenced it stops; not fenced, it reloads.
                await self._check_not_fenced(self._owned_partitions(), stop)
                raise _WrittenMeanwhile(str(exc)) from exc
            except (OperationalError, DBAPIError) as exc:
                if isinstance(exc, IntegrityError):
                    # Rows this executor is writing for the first time already exist: another
                    # instance wrote them. Fenced, this one is the zombie and stops here; not
                    # fenced, the other was (or it is a bug, which _reload tells apart).
                    await self._check_not_fenced(self._owned_partitions(), stop)
                    raise _WrittenMeanwhile(str(exc.orig)) from exc
                # Outages only (connection lost, server restarting); a data error is a bug and
                # must surface, not loop.
                if stop.is_set() or not (
                    isinstance(exc, OperationalError) or exc.connection_invalidated
                ):
                    raise
                self.health.database(exc)
                log.error(
                    "database unavailable (%s); holding for %.1fs", exc.__class__.__name__, delay
                )
                if _waited_for_a_lock(exc):  # held, maybe, by a frozen executor's transaction
                    with contextlib.suppress(OperationalError, DBAPIError):
                        ended = await asyncio.to_thread(self._store.end_stale_transactions)
                        if ended:
                            log.warning(
                                "ended the stale transactions of executor sessions %s", ended
                            )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                await self._check_not_fenced(self._owned_partitions(), stop)

    async def _reload(self, error: _WrittenMeanwhile, stop: asyncio.Event) -> None:
        """Takes the owned partitions over again, as after a restart, once a fenced predecessor
        wrote rows this executor was writing: the accounts' state and open orders are read
        from the records (the predecessor's included; its orders recorded but not sent are
        sent by the take-over's reconciliation, by their client order ids), and the intents
        not committed yet are consumed again, the predecessor's answered from its records."""
        while True:
            now = time.monotonic()
            self._reloads = [t for t in self._reloads if now - t < _RELOADS_WITHIN_S] + [now]
            if len(self._reloads) > _MOST_RELOADS:
                log.error(
                    "rows written meanwhile %d times within %.0f s: not a predecessor's",
                    len(self._reloads),
                    _RELOADS_WITHIN_S,
                )
                raise error.__cause__ or error
            log.warning(
                "rows this executor was writing were written meanwhile (%s): reloading", error
            )
            async with self._stepping:
                tail, self._tail = self._tail, None
                try:
                    if tail is not None:
                        with contextlib.suppress(_WrittenMeanwhile):
                            await asyncio.shield(tail)
                    self._recent = RecentIds(self.options.dedupe_window)
                    owned = self._owned_partitions()
                    await self._rewind_to_committed(owned)
                    await self._take_over(owned, stop)
                    return
                except _WrittenMeanwhile as again:  # the predecessor's other transaction
                    error = again

    async def _rewind_to_committed(self, partitions: set[TopicPartition]) -> None:
        """Consumes ``partitions`` again from their committed offsets (from the start where
        none is, as ``auto_offset_reset``; aiokafka's ``seek_to_committed`` skips those)."""
        if self._consumer is None:
            return
        for tp in partitions:
            committed = await self._consumer.committed(tp)
            if committed is None:
                await self._consumer.seek_to_beginning(tp)
            else:
                self._consumer.seek(tp, committed)

    def _owned_partitions(self) -> set[TopicPartition]:
        return set(self._consumer.assignment()) if self._consumer is not None else set()

    def _timed(self, account: _Account, call: str) -> contextlib.AbstractContextManager[None]:
        """Times a call to ``account``'s broker for the metrics."""
        return self.health.broker_call(account.broker.name, call)

    def _alert(
        self,
        severity: str,
        kind: str,
        message: str,
        *,
        account_id: str | None = None,
        bot_id: str | None = None,
    ) -> None:
        alert = Alert(
            alert_id=protocol.new_intent_id(),
            ts_ms=now_ms(),
            severity=severity,  # type: ignore[arg-type]
            kind=kind,
            account_id=account_id,
            bot_id=bot_id,
            message=message,
        )
        self.health.alerts.labels(kind).inc()
        level = {"info": logging.INFO, "warning": logging.WARNING}.get(severity, logging.ERROR)
        log.log(level, "ALERT %s: %s", kind, message)
        task = asyncio.ensure_future(
            self._redis.xadd(ALERTS_STREAM, {"alert": protocol.encode(alert)}, maxlen=10_000)
        )
        task.add_done_callback(_log_failure)


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, executor: Executor) -> None:
        self._executor = executor

    async def on_partitions_revoked(self, revoked: Any) -> None:
        # The rebalance waits here for the step under way to finish (record, send, publish
        # and commit): nothing is in flight when the partitions go, and the next owner
        # rebuilds the state from the database, as this executor does when its new assignment
        # arrives. The lock is free when the poll itself runs the rebalance.
        async with self._executor._stepping:
            await self._executor._after_tail()
            log.info("partitions revoked: %s", sorted(p.partition for p in revoked))
            self._executor.health.revoked()
            for broker in {id(b): b for b in self._executor._brokers.values()}.values():
                await broker.serve(())  # until the next assignment is taken over

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self._executor._assigned = set(assigned)


_PARTITIONER = DefaultPartitioner()
"""The producer's own partitioner (murmur2 of the key), for records added in batches."""
_TRACE_HEADER_NAMES = (protocol.TRACEPARENT_HEADER, protocol.TRACESTATE_HEADER)


def _waited_for_a_lock(error: DBAPIError) -> bool:
    """Whether a statement failed on the executor's lock time-out (SQLSTATE 55P03)."""
    return getattr(error.orig, "sqlstate", None) == "55P03"


def _trace_headers(traceparent: str | None) -> list[tuple[str, bytes]]:
    """The Kafka headers of a report published in the trace ``traceparent``."""
    return [(protocol.TRACEPARENT_HEADER, traceparent.encode())] if traceparent else []


def _broker_order(order: LiveOrder) -> BrokerOrder:
    intent = order.intent
    return BrokerOrder(
        client_order_id=order.key,
        account_id=intent.account_id,
        symbol=intent.symbol,
        side=intent.side,
        quantity=order.quantity,
        order_type=intent.order_type,
        limit_price=order.limit_price,
        stop_price=order.stop_price,
        time_in_force=intent.time_in_force,
    )


def _read_halt(field: str, value: bytes) -> Halt:
    """The kill switch stored in ``field``; one that cannot be read still halts (fail safe)."""
    scope, _, target = field.partition(":")
    try:
        halt = protocol.decode(value, Halt)
    except ProtocolError as exc:
        log.error("kill switch %s cannot be read (%s): treated as a halt", field, exc)
        return Halt(
            scope=scope,  # type: ignore[arg-type]
            target=target,
            reason="undecodable halt",
            set_by="unknown",
            ts_ms=now_ms(),
        )
    if (halt.scope, halt.target) != (scope, target):
        # The field is what the control plane sets and deletes, so it decides what is halted.
        log.warning(
            "kill switch %s names %s:%s: the field is obeyed", field, halt.scope, halt.target
        )
        halt = msgspec.structs.replace(halt, scope=scope, target=target)
    return halt


def _action_rejection(
    intent: OrderIntent, order: LiveOrder, now: int, code: str, reason: str
) -> ExecutionReport:
    """A cancel or replace of ``order`` refused; the order itself is unchanged."""
    return report_for(
        order.intent,
        ExecType.REJECTED,
        order.status,
        cause=intent,
        ts_ms=now,
        quantity=order.quantity,
        filled_quantity=order.filled_quantity,
        reject_code=code,
        reject_reason=reason,
    )


def _orphan_rejection(
    intent: OrderIntent, order_id: uuid.UUID, now: int, code: str, reason: str
) -> ExecutionReport:
    return ExecutionReport(
        report_id=protocol.new_intent_id(),
        intent_id=intent.intent_id,
        order_id=order_id,
        ts_ms=now,
        account_id=intent.account_id,
        bot_id=intent.bot_id,
        symbol=getattr(intent, "symbol", None),
        side=getattr(intent, "side", None),
        exec_type=ExecType.REJECTED,
        order_status=OrderStatus.REJECTED,
        quantity=Decimal(0),
        reject_code=code,
        reject_reason=reason,
    )


class _Ids(msgspec.Struct):
    intent_id: uuid.UUID
    account_id: protocol.Identifier
    bot_id: protocol.Identifier


class _Instrument(msgspec.Struct):
    symbol: protocol.Symbol
    side: Side


def _salvage_ids(raw: bytes | None) -> tuple[uuid.UUID, str, str, str | None, Side | None] | None:
    """The ids a refused record names, if they can be read: enough to tell its bot why."""
    try:
        ids = msgspec.json.decode(raw or b"", type=_Ids)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    try:
        instrument: _Instrument | None = msgspec.json.decode(raw or b"", type=_Instrument)
    except (msgspec.DecodeError, msgspec.ValidationError):
        instrument = None
    return (
        ids.intent_id,
        ids.account_id,
        ids.bot_id,
        instrument.symbol if instrument else None,
        instrument.side if instrument else None,
    )


def _producer_failure(producer: AIOKafkaProducer) -> BaseException | None:
    """The error that ended the producer's sender task — after it aiokafka fails every call of
    that producer — or None while it works (aiokafka has no public way to tell)."""
    task = producer._sender.sender_task
    if task is None or not task.done() or task.cancelled():
        return None
    return task.exception()


async def _send_batch(producer: AIOKafkaProducer, batch: Any, topic: str, partition: int) -> None:
    batch.close()  # nothing else may be added to it (aiokafka's ``send`` would, to an open one)
    delivery = await producer.send_batch(batch, topic, partition=partition)
    # A failed delivery fails the transaction, which is what is handled.
    delivery.add_done_callback(_consume_outcome)


def _consume_outcome(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _log_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("alert not stored: %s", task.exception())
