"""The bot API: what a bot author writes against.

A bot is a class. It declares its ``symbols`` and ``timeframe``, its typed parameters as
annotated class attributes (validated, overridable at deploy time), and handlers that the engine
calls — in a backtest, in paper trading and live alike::

    class SmaCross(Bot):
        symbols = ["GOOG"]
        timeframe = "1d"
        fast: int = Param(10, ge=1)
        slow: int = Param(30, ge=2)

        def on_bar(self, bar):
            closes = [b.close for b in self.history(bar.symbol, self.slow)]
            ...
            self.buy(bar.symbol, 10)

Handlers may be plain or ``async``. A plain function works too, through :func:`bot`.
"""

from __future__ import annotations

import inspect
import logging
import re
import typing
import uuid
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from decimal import Decimal
from typing import Any, ClassVar, Protocol

import pydantic

from coyote_sdk.portfolio import OpenOrder, Portfolio, Position
from coyote_sdk.protocol import (
    Bar,
    CancelAll,
    CancelOrder,
    ExecutionReport,
    NewOrder,
    OrderIntent,
    OrderType,
    ReplaceOrder,
    Side,
    Timeframe,
    TimeInForce,
    Trade,
    new_intent_id,
)

_SYMBOL = re.compile(r"^[A-Z0-9][A-Z0-9./_-]{0,31}$")
_HANDLERS = ("on_start", "on_bar", "on_tick", "on_order_update", "on_fill", "on_stop")

Number = Decimal | int | str | float


def Param(
    default: Any,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    description: str | None = None,
) -> Any:
    """Declares a bot parameter with a default and optional bounds.

    Example: ``fast: int = Param(10, ge=1, description="fast moving average length")``
    """
    return pydantic.Field(default, ge=ge, gt=gt, le=le, lt=lt, description=description)


class ParameterError(ValueError):
    """A parameter value that does not fit the bot's declaration."""


class BotContext(Protocol):
    """What an engine (backtest or live runtime) provides to a bot. Not for bot authors."""

    account_id: str
    bot_id: str
    bar_ts_ms: int | None
    """Open time of the bar being handled (None outside ``on_bar``)."""
    portfolio: Portfolio
    state: MutableMapping[str, Any]
    log: logging.LoggerAdapter[logging.Logger]

    def now_ms(self) -> int: ...
    def submit(self, intent: OrderIntent) -> None: ...
    def history(self, symbol: str, count: int, timeframe: Timeframe) -> list[Bar]: ...
    def ticks(self, symbol: str, count: int) -> list[Trade]: ...
    def last_price(self, symbol: str) -> Decimal | None: ...


class OrderHandle:
    """What ``buy``, ``sell``, ``cancel`` and ``replace`` return: the intent sent."""

    __slots__ = ("intent",)

    def __init__(self, intent: OrderIntent) -> None:
        self.intent = intent

    @property
    def intent_id(self) -> uuid.UUID:
        return self.intent.intent_id

    def __repr__(self) -> str:
        return f"OrderHandle({self.intent!r})"


class Bot:
    """Base class of every bot. See the module docstring for an example."""

    symbols: ClassVar[Sequence[str]] = ()
    """The instruments whose bars (and ticks) the bot receives and may trade."""
    timeframe: ClassVar[Timeframe | str] = Timeframe.M1
    """The bar timeframe of ``on_bar``."""

    Params: ClassVar[type[pydantic.BaseModel]]
    """The parameters model, built from the annotated class attributes."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.timeframe = Timeframe(cls.timeframe)
        cls.symbols = tuple(cls.symbols)
        for symbol in cls.symbols:
            if not _SYMBOL.match(symbol):
                raise TypeError(
                    f"{cls.__name__}.symbols: {symbol!r} is not a canonical symbol "
                    "(upper case letters, digits and . / _ -)"
                )
        cls.Params = _params_model(cls)
        cls._async_handlers = frozenset(
            name for name in _HANDLERS if inspect.iscoroutinefunction(getattr(cls, name))
        )

    _async_handlers: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, **params: Any) -> None:
        try:
            self.params = type(self).Params(**params)
        except pydantic.ValidationError as exc:
            raise ParameterError(_describe_validation(type(self).__name__, exc)) from exc
        for name, value in self.params:
            object.__setattr__(self, name, value)
        self._context: BotContext | None = None

    @classmethod
    def params_schema(cls) -> dict[str, Any]:
        """The JSON Schema of the bot's parameters (what a deploy is validated against)."""
        return cls.Params.model_json_schema()

    @property
    def name(self) -> str:
        return type(self).__name__

    # -- handlers (override what you need) ------------------------------------------------

    def on_start(self) -> None:
        """Called once, before the first bar."""

    def on_bar(self, bar: Bar) -> None:
        """Called when a bar of one of ``symbols`` in ``timeframe`` is finished."""

    def on_tick(self, trade: Trade) -> None:
        """Called for each trade of ``symbols``, where the engine has ticks."""

    def on_order_update(self, report: ExecutionReport) -> None:
        """Called for every execution report of the bot's orders (fills included)."""

    def on_fill(self, report: ExecutionReport) -> None:
        """Called for each fill, after the portfolio has been updated."""

    def on_stop(self) -> None:
        """Called once when the bot stops."""

    # -- orders ---------------------------------------------------------------------------

    def buy(
        self,
        symbol: str,
        quantity: Number,
        *,
        limit: Number | None = None,
        stop: Number | None = None,
        time_in_force: TimeInForce | str = TimeInForce.GTC,
        reduce_only: bool = False,
        tag: str | None = None,
    ) -> OrderHandle:
        """Places a buy order: market by default, limit with ``limit``, stop with ``stop``,
        stop-limit with both. Quantities and prices keep every digit (use str or Decimal;
        a float is taken at its shortest decimal form, ``0.1`` as ``"0.1"``)."""
        return self._order(Side.BUY, symbol, quantity, limit, stop, time_in_force, reduce_only, tag)

    def sell(
        self,
        symbol: str,
        quantity: Number,
        *,
        limit: Number | None = None,
        stop: Number | None = None,
        time_in_force: TimeInForce | str = TimeInForce.GTC,
        reduce_only: bool = False,
        tag: str | None = None,
    ) -> OrderHandle:
        """Places a sell order; see :meth:`buy`."""
        return self._order(
            Side.SELL, symbol, quantity, limit, stop, time_in_force, reduce_only, tag
        )

    def cancel(self, order: OrderHandle | uuid.UUID) -> OrderHandle:
        """Cancels an open order."""
        ctx = self._ctx
        return self._send(
            CancelOrder(
                intent_id=new_intent_id(),
                ts_ms=ctx.now_ms(),
                account_id=ctx.account_id,
                bot_id=ctx.bot_id,
                bar_ts_ms=ctx.bar_ts_ms,
                order_id=_order_id(order),
            )
        )

    def cancel_all(self, symbol: str | None = None) -> OrderHandle:
        """Cancels all of the bot's open orders, or those in ``symbol``."""
        ctx = self._ctx
        if symbol is not None:
            self._check_symbol(symbol)
        return self._send(
            CancelAll(
                intent_id=new_intent_id(),
                ts_ms=ctx.now_ms(),
                account_id=ctx.account_id,
                bot_id=ctx.bot_id,
                bar_ts_ms=ctx.bar_ts_ms,
                symbol=symbol,
            )
        )

    def replace(
        self,
        order: OrderHandle | uuid.UUID,
        *,
        quantity: Number | None = None,
        limit: Number | None = None,
        stop: Number | None = None,
    ) -> OrderHandle:
        """Changes the quantity or prices of an open order."""
        ctx = self._ctx
        return self._send(
            ReplaceOrder(
                intent_id=new_intent_id(),
                ts_ms=ctx.now_ms(),
                account_id=ctx.account_id,
                bot_id=ctx.bot_id,
                bar_ts_ms=ctx.bar_ts_ms,
                order_id=_order_id(order),
                quantity=_decimal(quantity, "quantity"),
                limit_price=_decimal(limit, "limit"),
                stop_price=_decimal(stop, "stop"),
            )
        )

    def _order(
        self,
        side: Side,
        symbol: str,
        quantity: Number,
        limit: Number | None,
        stop: Number | None,
        time_in_force: TimeInForce | str,
        reduce_only: bool,
        tag: str | None,
    ) -> OrderHandle:
        ctx = self._ctx
        self._check_symbol(symbol)
        if limit is not None:
            order_type = OrderType.STOP_LIMIT if stop is not None else OrderType.LIMIT
        else:
            order_type = OrderType.STOP if stop is not None else OrderType.MARKET
        intent = NewOrder(
            intent_id=new_intent_id(),
            ts_ms=ctx.now_ms(),
            account_id=ctx.account_id,
            bot_id=ctx.bot_id,
            bar_ts_ms=ctx.bar_ts_ms,
            symbol=symbol,
            side=side,
            quantity=_decimal(quantity, "quantity"),  # type: ignore[arg-type]
            order_type=order_type,
            limit_price=_decimal(limit, "limit"),
            stop_price=_decimal(stop, "stop"),
            time_in_force=TimeInForce(time_in_force),
            reduce_only=reduce_only,
            tag=tag,
        )
        ctx.portfolio.track(intent)
        return self._send(intent)

    def _send(self, intent: OrderIntent) -> OrderHandle:
        self._ctx.submit(intent)
        return OrderHandle(intent)

    def _check_symbol(self, symbol: str) -> None:
        if symbol not in type(self).symbols:
            raise ValueError(
                f"{symbol!r} is not one of {self.name}'s symbols {list(type(self).symbols)}"
            )

    # -- reading --------------------------------------------------------------------------

    def history(
        self, symbol: str, count: int, timeframe: Timeframe | str | None = None
    ) -> list[Bar]:
        """The last ``count`` finished bars of ``symbol``, oldest first (fewer at the start)."""
        self._check_symbol(symbol)
        tf = type(self).timeframe if timeframe is None else Timeframe(timeframe)
        return self._ctx.history(symbol, count, tf)  # type: ignore[arg-type]

    def ticks(self, symbol: str, count: int) -> list[Trade]:
        """The last ``count`` trades of ``symbol``, oldest first (fewer at the start; none on a
        venue with bars only)."""
        self._check_symbol(symbol)
        return self._ctx.ticks(symbol, count)

    def last_price(self, symbol: str) -> Decimal | None:
        """The last traded (or closing) price of ``symbol``, or None before any."""
        return self._ctx.last_price(symbol)

    def position(self, symbol: str) -> Position:
        """The bot's position in ``symbol``."""
        return self._ctx.portfolio.position(symbol)

    @property
    def open_orders(self) -> list[OpenOrder]:
        return list(self._ctx.portfolio.open_orders.values())

    @property
    def cash(self) -> Decimal:
        return self._ctx.portfolio.cash

    @property
    def portfolio(self) -> Portfolio:
        return self._ctx.portfolio

    def pnl(self) -> Decimal:
        """Realised plus unrealised PnL at last prices, net of fees."""
        portfolio = self._ctx.portfolio
        marks = {}
        for symbol in portfolio.positions:
            price = self._ctx.last_price(symbol)
            if price is not None:
                marks[symbol] = price
        return portfolio.pnl(marks)

    @property
    def state(self) -> MutableMapping[str, Any]:
        """A small key-value store (JSON values) that survives restarts of the bot."""
        return self._ctx.state

    @property
    def log(self) -> logging.LoggerAdapter[logging.Logger]:
        """The runtime's structured logger, tagged with the bot id."""
        return self._ctx.log

    @property
    def _ctx(self) -> BotContext:
        if self._context is None:
            raise RuntimeError(
                f"{self.name} is not running: orders and data are available inside handlers, "
                "once an engine (backtest or runtime) has started the bot"
            )
        return self._context

    def _bind(self, context: BotContext | None) -> None:
        """Attaches the bot to an engine. Called by engines, not bot authors."""
        self._context = context


def _order_id(order: OrderHandle | uuid.UUID) -> uuid.UUID:
    return order.intent_id if isinstance(order, OrderHandle) else order


def _decimal(value: Number | None, name: str) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError(f"`{name}` must be a number, got {value!r}")
    if isinstance(value, Decimal):
        return value
    if isinstance(value, float):
        return Decimal(repr(value))
    try:
        return Decimal(value)
    except ArithmeticError as exc:
        raise ValueError(f"`{name}` must be a decimal number, got {value!r}") from exc


def _params_model(cls: type[Bot]) -> type[pydantic.BaseModel]:
    """Builds the parameters model from annotated class attributes below :class:`Bot`."""
    try:
        hints = typing.get_type_hints(cls)
    except NameError as exc:
        raise TypeError(f"{cls.__name__}: cannot resolve a parameter annotation: {exc}") from exc
    fields: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        if klass is Bot or not issubclass(klass, Bot):
            continue
        for name in vars(klass).get("__annotations__", {}):
            hint = hints[name]
            if name.startswith("_") or typing.get_origin(hint) is ClassVar or name == "Params":
                continue
            if name in dir(Bot):
                raise TypeError(f"{cls.__name__}: parameter `{name}` shadows Bot.{name}")
            if name not in vars(klass) and name not in fields:
                raise TypeError(f"{cls.__name__}: parameter `{name}` needs a default")
            default = vars(klass).get(name, fields.get(name, (None, None))[1])
            fields[name] = (hint, default)
    return pydantic.create_model(
        f"{cls.__name__}Params",
        __config__=pydantic.ConfigDict(extra="forbid", frozen=True),
        **fields,
    )


def _describe_validation(bot_name: str, exc: pydantic.ValidationError) -> str:
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "parameters"
        if error["type"] == "extra_forbidden":
            problems.append(f"`{where}` is not a parameter of {bot_name}")
        else:
            problems.append(f"parameter `{where}`: {error['msg']} (got {error.get('input')!r})")
    return "; ".join(problems)


def bot(
    *,
    symbols: Sequence[str],
    timeframe: Timeframe | str = Timeframe.M1,
    params: Mapping[str, Any] | None = None,
    name: str | None = None,
) -> Callable[[Callable[..., Any]], type[Bot]]:
    """Makes a bot of a plain ``on_bar`` function.

    The function receives the bot (for ``buy``, ``history``, parameters …) and the bar::

        @bot(symbols=["GOOG"], timeframe="1d", params={"size": 10})
        def buy_the_dip(ctx, bar):
            if bar.close < bar.open:
                ctx.buy(bar.symbol, ctx.size)
    """

    def wrap(function: Callable[..., Any]) -> type[Bot]:
        annotations = {k: type(v) for k, v in (params or {}).items()}
        namespace: dict[str, Any] = {
            "__module__": function.__module__,
            "__doc__": function.__doc__,
            "__annotations__": annotations,
            "symbols": tuple(symbols),
            "timeframe": timeframe,
            **(params or {}),
        }

        async def on_bar_async(self: Bot, bar: Bar) -> None:
            await function(self, bar)

        def on_bar(self: Bot, bar: Bar) -> None:
            function(self, bar)

        namespace["on_bar"] = on_bar_async if inspect.iscoroutinefunction(function) else on_bar
        return type(name or function.__name__, (Bot,), namespace)

    return wrap
