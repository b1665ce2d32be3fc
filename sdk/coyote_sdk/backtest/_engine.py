"""The backtest engine: the unchanged bot, historical bars and a simulated broker."""

from __future__ import annotations

import asyncio
import dataclasses
import heapq
import logging
from collections import deque
from collections.abc import Callable, Iterable, Mapping, MutableMapping, Sequence
from decimal import Decimal
from typing import Any

from coyote_sdk.backtest._broker import FillModel, SimulatedBroker
from coyote_sdk.backtest._risk import RiskGate
from coyote_sdk.backtest._stats import RoundTrip, Statistics, TradeTracker, statistics
from coyote_sdk.bot import Bot
from coyote_sdk.portfolio import Fill, Portfolio
from coyote_sdk.protocol import Bar, ExecType, ExecutionReport, NewOrder, OrderIntent, Timeframe
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

    def last_price(self, symbol: str) -> Decimal | None:
        return self.last.get(symbol)


class Backtest:
    """Runs a bot over historical bars.

    Args:
        bot: The bot, constructed with its parameters.
        bars: Bars of the bot's symbols, each symbol's in time order.
        config: Cash and fill model.
    """

    def __init__(
        self, bot: Bot, bars: Iterable[Bar], *, config: BacktestConfig | None = None
    ) -> None:
        self.bot = bot
        self.config = config or BacktestConfig()
        by_symbol: dict[str, list[Bar]] = {}
        for bar in bars:
            by_symbol.setdefault(bar.symbol, []).append(bar)
        missing = [s for s in type(bot).symbols if s not in by_symbol]
        if missing:
            raise ValueError(f"no bars for {bot.name}'s symbols {missing}")
        unknown = sorted(set(by_symbol) - set(type(bot).symbols))
        if unknown:
            raise ValueError(f"bars of {unknown}, which are not among {bot.name}'s symbols")
        self._bars = by_symbol

    def run(self, *, progress: Callable[[int, int], None] | None = None) -> BacktestResult:
        """Runs the bot from the first bar to the last; ``progress(done, total)`` is called
        now and then on long runs."""
        bot, config = self.bot, self.config
        portfolio = Portfolio(config.cash)
        ctx = _Context(bot.name, config.account_id, portfolio)
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
        timeframe_ms = {s: bars[0].timeframe.milliseconds for s, bars in self._bars.items()}

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

        bot._bind(ctx)
        try:
            call("on_start")
            stream = heapq.merge(
                *self._bars.values(), key=lambda b: (b.ts_ms + timeframe_ms[b.symbol], b.symbol)
            )
            total = sum(len(b) for b in self._bars.values())
            step = max(1, total // 100)
            count = 0
            last_bar: dict[str, Bar] = {}
            history_of = ctx.history_of
            for bar in stream:
                symbol = bar.symbol
                close_ms = bar.ts_ms + timeframe_ms[symbol]
                ctx.clock_ms = bar.ts_ms
                if broker.working_orders:
                    dispatch(broker.on_bar(bar))
                key = (symbol, bar.timeframe)
                window = history_of.get(key)
                if window is None:
                    window = history_of[key] = deque(maxlen=HISTORY_LIMIT)
                window.append(bar)
                ctx.last[symbol] = bar.close
                last_bar[symbol] = bar
                ctx.clock_ms = close_ms
                ctx.bar_ts_ms = bar.ts_ms
                call("on_bar", bar)
                ctx.bar_ts_ms = None
                if ctx.outbox:
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
                equity.append((close_ms, portfolio.equity(ctx.last)))
                if gate is not None:
                    gate.on_bar(bar, close_ms, float(equity[-1][1]), ctx.bot_id)
                if any(positions.values()):
                    exposed_bars += 1
                count += 1
                if progress is not None and count % step == 0:
                    progress(count, total)
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
            bars=count,
        )


def _caller(bot: Bot, loop: asyncio.AbstractEventLoop | None) -> Callable[..., None]:
    """Calls a handler by name, running it to completion if it is ``async``."""
    handlers = {
        name: getattr(bot, name)
        for name in ("on_start", "on_bar", "on_order_update", "on_fill", "on_stop")
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
    """Runs ``bot`` over ``bars`` (a sequence, or sequences by symbol) and returns the result."""
    flat: Iterable[Bar] = (
        [b for series in bars.values() for b in series] if isinstance(bars, Mapping) else bars
    )
    return Backtest(bot, flat, config=config).run()
