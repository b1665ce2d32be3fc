"""Backtest/live divergence: replay a live session through the backtester, show where they part.

A live session is what the stack recorded anyway: the bars in RedisTimeSeries, the bot's
intents on Kafka and the executor's reports. :func:`record_session` gathers them;
:func:`compare` backtests the same bot (the same release, the same parameters) on the same bars
and lines the two order streams up by the bar that produced each order (``bar_ts_ms``), then
compares their fills. Typical causes it reveals: a bar the live bot missed or saw late, a
paused or blocked bot, a fill model that is kinder than the market, state the bot kept across a
restart.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, Literal

import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from coyote_sdk import protocol
from coyote_sdk.backtest import BacktestConfig, run_backtest
from coyote_sdk.bot import Bot
from coyote_sdk.config import Endpoints
from coyote_sdk.kafka import account_partition
from coyote_sdk.marketdata import MarketDataReader
from coyote_sdk.protocol import Bar, ExecType, ExecutionReport, OrderIntent, Timeframe


@dataclasses.dataclass(frozen=True)
class LiveSession:
    """What one bot did live over a span of bars."""

    bars: list[Bar]
    intents: list[OrderIntent]
    reports: list[ExecutionReport]


@dataclasses.dataclass(frozen=True)
class Divergence:
    """One place where live and backtest differ."""

    bar_ts_ms: int | None
    kind: Literal[
        "only_live", "only_backtest", "fill_missing_live", "fill_missing_backtest", "fill_price"
    ]
    order: str
    """The order, described: ``buy 10 GOOG limit 101.5``."""
    detail: str


@dataclasses.dataclass(frozen=True)
class DivergenceReport:
    live_orders: int
    backtest_orders: int
    matched: int
    divergences: list[Divergence]

    @property
    def identical(self) -> bool:
        return not self.divergences


async def record_session(
    endpoints: Endpoints,
    *,
    bot_id: str,
    account_id: str,
    venue: str,
    symbols: Sequence[str],
    timeframe: Timeframe,
    start_ms: int,
    end_ms: int,
) -> LiveSession:
    """Gathers a live session: bars whose open time is in ``[start_ms, end_ms]``, and the bot's
    intents placed on those bars with the reports that answered them."""
    client = redis.Redis.from_url(endpoints.redis_url)
    try:
        by_symbol = MarketDataReader(client, venue=venue).bars(
            symbols, timeframe, start_ms=start_ms, end_ms=end_ms
        )
    finally:
        client.close()
    bars = sorted((b for series in by_symbol.values() for b in series), key=lambda b: b.ts_ms)
    intents = [
        intent
        for intent in await _read_partition(
            endpoints, protocol.INTENTS_TOPIC.name, account_id, protocol.OrderIntent
        )
        if intent.bot_id == bot_id
        and intent.bar_ts_ms is not None
        and start_ms <= intent.bar_ts_ms <= end_ms
    ]
    ids = {i.intent_id for i in intents}
    reports = [
        report
        for report in await _read_partition(
            endpoints, protocol.EXECUTION_REPORTS_TOPIC.name, account_id, ExecutionReport
        )
        if report.bot_id == bot_id and (report.order_id in ids or report.intent_id in ids)
    ]
    return LiveSession(bars=bars, intents=intents, reports=reports)


async def _read_partition(endpoints: Endpoints, topic: str, account_id: str, type_: object) -> list:
    producer = AIOKafkaProducer(bootstrap_servers=endpoints.kafka_bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=endpoints.kafka_bootstrap, group_id=None)
    await producer.start()
    await consumer.start()
    try:
        partition = await account_partition(producer, topic, account_id)
        consumer.assign([partition])
        await consumer.seek_to_beginning(partition)
        end = (await consumer.end_offsets([partition]))[partition]
        messages: list[Any] = []
        while await consumer.position(partition) < end:
            for record in (await consumer.getmany(partition, timeout_ms=1000)).get(partition, []):
                try:
                    messages.append(protocol.decode(record.value, type_))  # type: ignore[arg-type]
                except protocol.ProtocolError:
                    continue  # not ours to judge here: the executor dead-letters bad intents
        return messages
    finally:
        await consumer.stop()
        await producer.stop()


def _key(intent: OrderIntent) -> tuple[object, ...]:
    return (
        intent.bar_ts_ms,
        type(intent).__name__,
        getattr(intent, "symbol", None),
        getattr(intent, "side", None),
        getattr(intent, "quantity", None),
        getattr(intent, "order_type", None),
        getattr(intent, "limit_price", None),
        getattr(intent, "stop_price", None),
    )


def _describe(intent: OrderIntent) -> str:
    if isinstance(intent, protocol.NewOrder):
        price = f" {intent.order_type.value} {intent.limit_price or intent.stop_price or ''}"
        return f"{intent.side.value} {intent.quantity} {intent.symbol}{price}".rstrip()
    return type(intent).__name__


def _average_fill(reports: Sequence[ExecutionReport]) -> Decimal | None:
    trades = [r for r in reports if r.exec_type is ExecType.TRADE]
    quantity = sum((r.last_quantity or Decimal(0) for r in trades), Decimal(0))
    if not quantity:
        return None
    notional = sum(((r.last_quantity or 0) * (r.last_price or 0) for r in trades), Decimal(0))
    return notional / quantity


def compare(
    bot: Bot, session: LiveSession, *, config: BacktestConfig | None = None
) -> DivergenceReport:
    """Backtests ``bot`` on the session's bars and reports every difference from the live run."""
    result = run_backtest(bot, session.bars, config=config)
    live_fills: dict[object, list[ExecutionReport]] = defaultdict(list)
    for report in session.reports:
        live_fills[report.order_id].append(report)
    test_fills: dict[object, list[ExecutionReport]] = defaultdict(list)
    for report in result.reports:
        test_fills[report.order_id].append(report)

    pending: dict[tuple[object, ...], list[OrderIntent]] = defaultdict(list)
    for intent in result.intents:
        pending[_key(intent)].append(intent)
    divergences: list[Divergence] = []
    matched = 0
    for live in session.intents:
        twins = pending.get(_key(live))
        if not twins:
            divergences.append(
                Divergence(
                    live.bar_ts_ms,
                    "only_live",
                    _describe(live),
                    "sent live; the backtest placed no such order",
                )
            )
            continue
        twin = twins.pop(0)
        matched += 1
        if not isinstance(live, protocol.NewOrder):
            continue
        live_price = _average_fill(live_fills[live.intent_id])
        test_price = _average_fill(test_fills[twin.intent_id])
        if live_price is None and test_price is not None:
            divergences.append(
                Divergence(
                    live.bar_ts_ms,
                    "fill_missing_live",
                    _describe(live),
                    f"the backtest filled it at {test_price}",
                )
            )
        elif test_price is None and live_price is not None:
            divergences.append(
                Divergence(
                    live.bar_ts_ms,
                    "fill_missing_backtest",
                    _describe(live),
                    f"live filled it at {live_price}",
                )
            )
        elif live_price is not None and test_price is not None and live_price != test_price:
            divergences.append(
                Divergence(
                    live.bar_ts_ms,
                    "fill_price",
                    _describe(live),
                    f"live {live_price}, backtest {test_price} "
                    f"(difference {live_price - test_price})",
                )
            )
    for twins in pending.values():
        for intent in twins:
            divergences.append(
                Divergence(
                    intent.bar_ts_ms,
                    "only_backtest",
                    _describe(intent),
                    "the backtest placed it; nothing was sent live",
                )
            )
    divergences.sort(key=lambda d: (d.bar_ts_ms or 0, d.kind))
    return DivergenceReport(
        live_orders=len(session.intents),
        backtest_orders=len(result.intents),
        matched=matched,
        divergences=divergences,
    )
