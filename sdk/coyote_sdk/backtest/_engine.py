"""The backtest engine: the unchanged bot, historical bars and a simulated broker."""

from __future__ import annotations

import asyncio
import dataclasses
import heapq
import logging
import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping, Sequence
from decimal import Decimal
from typing import Any

from coyote_sdk.backtest._broker import FillModel, SimulatedBroker
from coyote_sdk.backtest._risk import RiskGate
from coyote_sdk.backtest._stats import RoundTrip, Statistics, TradeTracker, statistics
from coyote_sdk.bot import Bot
from coyote_sdk.portfolio import Fill, Portfolio
from coyote_sdk.protocol import (
    Bar,
    ExecType,
    ExecutionReport,
    NewOrder,
    OrderIntent,
    Timeframe,
    Trade,
)
from coyote_sdk.state import MemoryState

logger = logging.getLogger("coyote.bot")

HISTORY_LIMIT = 5000
"""Bars kept per symbol for ``history()``; enough for any indicator, bounded in memory."""


@dataclasses.dataclass(frozen=True)
class BacktestConfig:
    """A backtest's account and fill model.

    Attributes:
        cash: Starting cash.
        fill: When and at what cost orders fill.
        account_id: The account the bot's intents name.
    """

    cash: Decimal = Decimal(10_000)
    fill: FillModel = dataclasses.field(default_factory=FillModel)
    account_id: str = "backtest"
    risk: Any = None
    """A ``coyote_risk.RiskConfig``: new orders then pass the live risk checks first."""


@dataclasses.dataclass
class BacktestResult:
    """Everything a backtest produced."""

    bot: str
    params: dict[str, Any]
    config: BacktestConfig
    equity: list[tuple[int, Decimal]]
    """(bar close time in ms, equity) after each bar."""
    fills: list[Fill]
    trades: list[RoundTrip]
    reports: list[ExecutionReport]
    intents: list[OrderIntent]
    stats: Statistics
    bars: int
    ticks: int = 0
    """Trades the bot saw (a backtest on ticks)."""


class _Context:
    """The engine's side of :class:`coyote_sdk.bot.BotContext`."""

    def __init__(self, bot_id: str, account_id: str, portfolio: Portfolio) -> None:
        self.bot_id = bot_id
        self.account_id = account_id
        self.portfolio = portfolio
        self.state: MutableMapping[str, Any] = MemoryState()
        self.log = logging.LoggerAdapter(logger, {"bot_id": bot_id})
        self.clock_ms = 0
        self.bar_ts_ms: int | None = None
        self.outbox: list[OrderIntent] = []
        self.history_of: dict[tuple[str, Timeframe], deque[Bar]] = {}
        self.recent_trades: dict[str, deque[Trade]] = {}
        self.last: dict[str, Decimal] = {}

    def now_ms(self) -> int:
        return self.clock_ms

    def submit(self, intent: OrderIntent) -> None:
        self.outbox.append(intent)

    def history(self, symbol: str, count: int, timeframe: Timeframe) -> list[Bar]:
        bars = self.history_of.get((symbol, timeframe))
        if not bars:
            return []
        if count >= len(bars):
            return list(bars)
        return [bars[i] for i in range(len(bars) - count, len(bars))]

    def ticks(self, symbol: str, count: int) -> list[Trade]:
        trades = self.recent_trades.get(symbol)
        if not trades:
            return []
        return list(trades)[max(0, len(trades) - count) :]

    def last_price(self, symbol: str) -> Decimal | None:
        return self.last.get(symbol)


class Backtest:
    """Runs a bot over historical bars, or over trades (ticks).

    With ``ticks``, the bot sees what it sees live: ``on_tick`` for every trade, and ``on_bar``
    for the bars of its timeframe that the trades make up, each when its symbol's first trade
    of the next bar arrives (as RedisTimeSeries' compaction closes a bucket), the last ones at
    the end. Orders then fill at trade prices: a market order at the next trade (``next_open``)
    or at the trade it was placed on (``close``), resting orders when a trade reaches them.

    Args:
        bot: The bot, constructed with its parameters.
        bars: Bars of the bot's symbols, each symbol's in time order.
        ticks: Trades of the bot's symbols, each symbol's in time order (instead of bars).
        config: Cash and fill model.
    """

    def __init__(
        self,
        bot: Bot,
        bars: Iterable[Bar] = (),
        *,
        ticks: Iterable[Trade] = (),
        config: BacktestConfig | None = None,
    ) -> None:
        self.bot = bot
        self.config = config or BacktestConfig()
        by_symbol: dict[str, list[Bar]] = {}
        for bar in bars:
            by_symbol.setdefault(bar.symbol, []).append(bar)
        trades: dict[str, list[Trade]] = {}
        for trade in ticks:
            trades.setdefault(trade.symbol, []).append(trade)
        if by_symbol and trades:
            raise ValueError("give a backtest bars or ticks, not both")
        data = "ticks" if trades else "bars"
        given = trades.keys() or by_symbol.keys()
        missing = [s for s in type(bot).symbols if s not in given]
        if missing:
            raise ValueError(f"no {data} for {bot.name}'s symbols {missing}")
        unknown = sorted(set(given) - set(type(bot).symbols))
        if unknown:
            raise ValueError(f"{data} of {unknown}, which are not among {bot.name}'s symbols")
        self._bars = by_symbol
        self._ticks = trades

    def _events(self) -> Iterator[Bar | Trade]:
        """The data in time order: bars by their close, or trades with the bars they make."""
        if not self._ticks:
            timeframe_ms = {s: bars[0].timeframe.milliseconds for s, bars in self._bars.items()}
            yield from heapq.merge(
                *self._bars.values(), key=lambda b: (b.ts_ms + timeframe_ms[b.symbol], b.symbol)
            )
            return
        timeframe = Timeframe(type(self.bot).timeframe)
        forming: dict[str, _FormingBar] = {}
        for trade in heapq.merge(*self._ticks.values(), key=lambda t: t.ts_ms):
            start = trade.ts_ms - trade.ts_ms % timeframe.milliseconds
            bar = forming.get(trade.symbol)
            if bar is not None and bar.start != start:
                yield bar.finished(timeframe)
                bar = None
            if bar is None:
                forming[trade.symbol] = _FormingBar(trade, start)
            else:
                bar.add(trade)
            yield trade
        for bar in sorted(forming.values(), key=lambda b: (b.start, b.symbol)):
            yield bar.finished(timeframe)

    def run(self, *, progress: Callable[[int, int], None] | None = None) -> BacktestResult:
        """Runs the bot from the first bar (or trade) to the last; ``progress(done, total)`` is
        called now and then on long runs."""
        bot, config = self.bot, self.config
        portfolio = Portfolio(config.cash)
        ctx = _Context(_bot_id(bot.name), config.account_id, portfolio)
        positions: dict[str, Decimal] = {}
        broker = SimulatedBroker(config.fill, positions)
        tracker = TradeTracker()
        fills: list[Fill] = []
        reports: list[ExecutionReport] = []
        intents: list[OrderIntent] = []
        equity: list[tuple[int, Decimal]] = []
        exposed_bars = 0
        loop = asyncio.new_event_loop() if type(bot)._async_handlers else None
        call = _caller(bot, loop)
        gate = RiskGate(config.risk) if config.risk is not None else None
        from_ticks = bool(self._ticks)

        def dispatch(batch: list[ExecutionReport]) -> None:
            for report in batch:
                reports.append(report)
                if gate is not None:
                    gate.on_report(report)
                fill = portfolio.apply(report)
                if fill is not None:
                    positions[fill.symbol] = fill.position_after
                    fills.append(fill)
                    tracker.add(fill)
                call("on_order_update", report)
                if report.exec_type is ExecType.TRADE:
                    call("on_fill", report)

        def send_outbox(last_bar: Mapping[str, Bar]) -> None:
            pending, ctx.outbox = ctx.outbox, []
            for intent in pending:
                intents.append(intent)
                refusal = (
                    gate.check(intent)
                    if gate is not None and isinstance(intent, NewOrder)
                    else None
                )
                if refusal is not None:
                    dispatch([refusal])
                    continue
                dispatch(broker.submit(intent, last_bar.get(getattr(intent, "symbol", ""))))

        bot._bind(ctx)
        try:
            call("on_start")
            total = sum(map(len, self._ticks.values())) or sum(map(len, self._bars.values()))
            step = max(1, total // 100)
            count = bar_count = 0
            last_bar: dict[str, Bar] = {}
            history_of = ctx.history_of
            for event in self._events():
                count += 1
                if progress is not None and count % step == 0:
                    progress(count, total)
                symbol = event.symbol
                if isinstance(event, Trade):
                    # A trade is a bar of one price to the simulated broker: resting orders
                    # fill when it reaches them, market orders at the next one.
                    ctx.clock_ms = event.ts_ms
                    point = _point_bar(event)
                    if broker.working_orders:
                        dispatch(broker.on_bar(point))
                    ctx.last[symbol] = event.price
                    last_bar[symbol] = point
                    recent = ctx.recent_trades.get(symbol)
                    if recent is None:
                        recent = ctx.recent_trades[symbol] = deque(maxlen=HISTORY_LIMIT)
                    recent.append(event)
                    call("on_tick", event)
                    if ctx.outbox:
                        send_outbox(last_bar)
                    continue
                bar = event
                close_ms = bar.ts_ms + bar.timeframe.milliseconds
                ctx.clock_ms = bar.ts_ms
                if broker.working_orders and not from_ticks:
                    dispatch(broker.on_bar(bar))
                key = (symbol, bar.timeframe)
                window = history_of.get(key)
                if window is None:
                    window = history_of[key] = deque(maxlen=HISTORY_LIMIT)
                window.append(bar)
                ctx.last[symbol] = bar.close
                if not from_ticks:
                    last_bar[symbol] = bar
                ctx.clock_ms = close_ms
                ctx.bar_ts_ms = bar.ts_ms
                call("on_bar", bar)
                ctx.bar_ts_ms = None
                if ctx.outbox:
                    send_outbox(last_bar)
                equity.append((close_ms, portfolio.equity(ctx.last)))
                if gate is not None:
                    gate.on_bar(bar, close_ms, float(equity[-1][1]), ctx.bot_id)
                if any(positions.values()):
                    exposed_bars += 1
                bar_count += 1
            call("on_stop")
        finally:
            bot._bind(None)
            if loop is not None:
                loop.close()
        tracker.close_open(ctx.last, equity[-1][0] if equity else 0)
        return BacktestResult(
            bot=bot.name,
            params=bot.params.model_dump(),
            config=config,
            equity=equity,
            fills=fills,
            trades=tracker.trades,
            reports=reports,
            intents=intents,
            stats=statistics(config.cash, equity, tracker.trades, exposed_bars, fills),
            bars=bar_count,
            ticks=count - bar_count,
        )


class _FormingBar:
    """A bar being made from trades."""

    __slots__ = ("close", "high", "low", "open", "start", "symbol", "venue", "volume")

    def __init__(self, trade: Trade, start: int) -> None:
        self.symbol, self.venue, self.start = trade.symbol, trade.venue, start
        self.open = self.high = self.low = self.close = trade.price
        self.volume = trade.size

    def add(self, trade: Trade) -> None:
        self.high = max(self.high, trade.price)
        self.low = min(self.low, trade.price)
        self.close = trade.price
        self.volume += trade.size

    def finished(self, timeframe: Timeframe) -> Bar:
        return Bar(
            symbol=self.symbol,
            venue=self.venue,
            timeframe=timeframe,
            ts_ms=self.start,
            open=self.open,
            high=self.high,
            low=self.low,
            close=self.close,
            volume=self.volume,
        )


def _point_bar(trade: Trade) -> Bar:
    """A trade as the simulated broker matches it: a bar of that one price."""
    return Bar(
        symbol=trade.symbol,
        venue=trade.venue,
        timeframe=Timeframe.M1,
        ts_ms=trade.ts_ms,
        open=trade.price,
        high=trade.price,
        low=trade.price,
        close=trade.price,
        volume=trade.size,
    )


def _caller(bot: Bot, loop: asyncio.AbstractEventLoop | None) -> Callable[..., None]:
    """Calls a handler by name, running it to completion if it is ``async``."""
    handlers = {
        name: getattr(bot, name)
        for name in ("on_start", "on_bar", "on_tick", "on_order_update", "on_fill", "on_stop")
    }
    asynchronous = type(bot)._async_handlers

    def call(name: str, *args: Any) -> None:
        if name in asynchronous:
            assert loop is not None
            loop.run_until_complete(handlers[name](*args))
        else:
            handlers[name](*args)

    return call


def run_backtest(
    bot: Bot,
    bars: Sequence[Bar] | Mapping[str, Sequence[Bar]],
    *,
    config: BacktestConfig | None = None,
) -> BacktestResult:
    """Runs ``bot`` over ``bars`` (a sequence, or sequences by symbol) and returns the result;
    :class:`Backtest` also takes ticks."""
    flat: Iterable[Bar] = (
        [b for series in bars.values() for b in series] if isinstance(bars, Mapping) else bars
    )
    return Backtest(bot, flat, config=config).run()


def _bot_id(name: str) -> str:
    """The bot id a backtest's orders carry: the bot's class name, made a valid id if it is not
    one (``_Stratégie`` trades as ``Strat-gie``). A deployed bot's id is its deployment's."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "-", name).lstrip("._-")[:64]
    return cleaned or "bot"
