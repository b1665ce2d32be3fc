"""Coyote's wire protocol, version 1: the one definition every service imports.

Market data (bars, trades, quotes), order intents, execution reports, bot control flags, kill
switches and account documents are defined here once, with the Kafka topics and Redis key names
that carry them. The module depends on nothing but its codec, msgspec, so any process can use it.

On the wire every message is a JSON object with a ``v`` (protocol version) field. Decimal
quantities and prices travel as strings (``"0.015"``) so that no client ever rounds through a
binary float; timestamps are integer milliseconds since the Unix epoch (UTC). Unknown fields are
errors, so a typo is caught at the producer instead of silently dropped. The JSON form, with
examples for non-Python clients, is documented in ``docs/protocol.md``; its JSON Schema is
``docs/schemas/protocol-v1.json`` (``coyote-sdk protocol schema`` prints it).
"""

from __future__ import annotations

import enum
import re
import time
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Annotated, Any, Final, Literal, TypeVar

import msgspec
from uuid_utils.compat import uuid7

PROTOCOL_VERSION: Final = 1
"""The version every message of this module carries in its ``v`` field."""

# -- IDENTIFIERS ---------------------------------------------------------------------------

_IDENTIFIER_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_SYMBOL_PATTERN: Final = r"^[A-Z0-9][A-Z0-9./_-]{0,31}$"

Identifier = Annotated[
    str,
    msgspec.Meta(
        pattern=_IDENTIFIER_PATTERN,
        description="An account, bot or venue id: 1-64 of A-Z a-z 0-9 . _ -, "
        "starting with a letter or digit.",
    ),
]
Symbol = Annotated[
    str,
    msgspec.Meta(
        pattern=_SYMBOL_PATTERN,
        description="An instrument symbol in canonical upper case, e.g. GOOG, EURUSD, BTC-USD.",
        examples=["GOOG", "EURUSD", "BTC-USD"],
    ),
]

# The intents' ids and symbols. Their JSON Schema is Identifier's and Symbol's, taken from them
# (so it stays the same, key order included), but msgspec does not enforce the pattern, which
# ``extra_json_schema`` only documents: the intents' ``__post_init__`` does, through the caches
# below. The executor decodes every intent; msgspec's regex costs ~0.3 us a field on every
# decode, while an executor sees the same few hundred accounts, bots and symbols all day. Like
# the intents' other checks, this one now also refuses an intent built in Python with a bad id,
# which msgspec's pattern (checked only when decoding) let through to be refused downstream.
_IntentIdentifier = Annotated[str, msgspec.Meta(extra_json_schema=msgspec.json.schema(Identifier))]
_IntentSymbol = Annotated[str, msgspec.Meta(extra_json_schema=msgspec.json.schema(Symbol))]


class _MatchCache:
    """The strings already found to match one pattern, so that one seen before costs a set
    lookup instead of a regex search.

    Only strings that matched are kept, so being in :attr:`matched` proves a match (threads
    sharing it can at worst miss and search again). It holds at most ``capacity`` strings and is
    emptied when full: a flood of distinct ids, hostile or not, costs regex searches but never
    unbounded memory, and the ids in use come back with their next intents.
    """

    __slots__ = ("_capacity", "_pattern", "matched")

    def __init__(self, pattern: str, *, capacity: int) -> None:
        self._pattern = re.compile(pattern)
        self._capacity = capacity
        self.matched: set[str] = set()
        """Hot paths test ``value in cache.matched`` themselves and call :meth:`require_match`
        only on a miss, to save a call per field."""

    def require_match(self, value: str, field: str) -> None:
        """Remembers ``value`` if it matches; raises ValueError if not, with the message
        msgspec gives for a pattern mismatch at the top level of a message.

        The test is msgspec's own, ``re.search`` of the same pattern, so this accepts exactly
        what ``msgspec.Meta(pattern=...)`` accepts.
        """
        if value in self.matched:
            return
        if not self._pattern.search(value):
            raise ValueError(
                f"Expected `str` matching regex {self._pattern.pattern!r} - at `$.{field}`"
            )
        if type(value) is str:  # not a subclass, whose __eq__ or __hash__ could lie
            if len(self.matched) >= self._capacity:
                self.matched.clear()
            self.matched.add(value)


_MATCH_CACHE_CAPACITY: Final = 4096
"""Far more accounts, bots or symbols than one executor trades; at most ~0.6 MB a cache."""
_identifiers = _MatchCache(_IDENTIFIER_PATTERN, capacity=_MATCH_CACHE_CAPACITY)
_symbols = _MatchCache(_SYMBOL_PATTERN, capacity=_MATCH_CACHE_CAPACITY)


TimestampMs = Annotated[
    int, msgspec.Meta(ge=0, description="Milliseconds since the Unix epoch, UTC.")
]
Version = Annotated[
    Literal[1], msgspec.Meta(description="Protocol version; this schema describes version 1.")
]
Tag = Annotated[str, msgspec.Meta(max_length=64, description="Free text for the bot author.")]


def new_intent_id() -> uuid.UUID:
    """A fresh, time-ordered (UUIDv7) id for an intent or a report."""
    return uuid7()


def now_ms() -> int:
    """The current wall-clock time in the protocol's unit."""
    return time.time_ns() // 1_000_000


# -- ENUMS ---------------------------------------------------------------------------------


class Side(enum.StrEnum):
    BUY = "buy"
    SELL = "sell"


class OrderType(enum.StrEnum):
    MARKET = "market"
    LIMIT = "limit"
    STOP = "stop"
    STOP_LIMIT = "stop_limit"


class TimeInForce(enum.StrEnum):
    GTC = "gtc"
    """Good till cancelled."""
    IOC = "ioc"
    """Immediate or cancel: fill what can be filled now, cancel the rest."""
    FOK = "fok"
    """Fill or kill: fill all of it now or none of it."""
    DAY = "day"
    """Cancelled at the end of the venue's trading day."""


class IntentOrigin(enum.StrEnum):
    """Who sent an intent."""

    BOT = "bot"
    """The bot's own runtime."""
    PLATFORM = "platform"
    """The platform on the bot's behalf: the control plane's supervisor cancels the open orders
    of a bot whose runtime lost its heartbeat."""


class Timeframe(enum.StrEnum):
    M1 = "1m"
    M5 = "5m"
    M15 = "15m"
    H1 = "1h"
    D1 = "1d"

    @property
    def milliseconds(self) -> int:
        return _TIMEFRAME_MS[self]


_TIMEFRAME_MS = {
    Timeframe.M1: 60_000,
    Timeframe.M5: 300_000,
    Timeframe.M15: 900_000,
    Timeframe.H1: 3_600_000,
    Timeframe.D1: 86_400_000,
}


class ExecType(enum.StrEnum):
    """What happened to produce an execution report."""

    ACCEPTED = "accepted"
    """The broker acknowledged a new order."""
    REJECTED = "rejected"
    """Refused: by decoding, by the risk engine or by the broker (see ``reject_code``)."""
    TRADE = "trade"
    """A (partial) fill."""
    CANCELED = "canceled"
    REPLACED = "replaced"
    EXPIRED = "expired"
    RESTATED = "restated"
    """State learnt from the broker out of band, e.g. by reconciliation after a restart."""


class OrderStatus(enum.StrEnum):
    PENDING_NEW = "pending_new"
    NEW = "new"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELED = "canceled"
    REJECTED = "rejected"
    EXPIRED = "expired"

    @property
    def is_terminal(self) -> bool:
        """Whether the order can change no more."""
        return self in _TERMINAL_STATUSES


_TERMINAL_STATUSES = frozenset(
    {OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.REJECTED, OrderStatus.EXPIRED}
)


class BotState(enum.StrEnum):
    """The state the control plane wants a bot runtime in."""

    RUNNING = "running"
    PAUSED = "paused"
    """Keeps receiving data and managing open orders' reports, but emits no new orders."""
    STOPPED = "stopped"
    """Cancels its open orders, runs ``on_stop`` and exits."""


class TradingState(enum.StrEnum):
    """The risk engine's circuit breaker, per bot, per account and system-wide."""

    ACTIVE = "active"
    REDUCING = "reducing"
    """Only orders that reduce a position pass."""
    HALTED = "halted"
    """No order passes; open orders are cancelled."""


# -- MESSAGES ------------------------------------------------------------------------------


class _Message(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    v: Version = PROTOCOL_VERSION


_ZERO: Final = Decimal(0)


def _not_positive(name: str, value: Decimal) -> ValueError:
    return ValueError(f"`{name}` must be a positive finite decimal, got {str(value)!r}")


def _not_non_negative(name: str, value: Decimal) -> ValueError:
    return ValueError(f"`{name}` must be a non-negative finite decimal, got {str(value)!r}")


def _require_positive(name: str, value: Decimal | None) -> None:
    if value is None:
        return
    if not value.is_finite() or value <= 0:
        raise _not_positive(name, value)


def _require_non_negative(name: str, value: Decimal | None) -> None:
    if value is None:
        return
    if not value.is_finite() or value < 0:
        raise _not_non_negative(name, value)


class Bar(_Message, frozen=True, kw_only=True):
    """One OHLCV bar. ``ts_ms`` is the bar's open time."""

    symbol: Symbol
    venue: Identifier
    timeframe: Timeframe
    ts_ms: TimestampMs
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal

    def __post_init__(self) -> None:
        for name in ("open", "high", "low", "close"):
            _require_positive(name, getattr(self, name))
        _require_non_negative("volume", self.volume)
        if not (self.low <= min(self.open, self.close) and self.high >= max(self.open, self.close)):
            raise ValueError(
                f"bar is inconsistent: low {self.low} and high {self.high} must bracket "
                f"open {self.open} and close {self.close}"
            )


class Trade(_Message, frozen=True, kw_only=True):
    """One trade printed by a venue (a tick)."""

    symbol: Symbol
    venue: Identifier
    ts_ms: TimestampMs
    price: Decimal
    size: Decimal
    aggressor: Side | None = None

    def __post_init__(self) -> None:
        _require_positive("price", self.price)
        _require_positive("size", self.size)


class Quote(_Message, frozen=True, kw_only=True):
    """The best bid and offer at a venue."""

    symbol: Symbol
    venue: Identifier
    ts_ms: TimestampMs
    bid: Decimal
    ask: Decimal
    bid_size: Decimal
    ask_size: Decimal

    def __post_init__(self) -> None:
        for name in ("bid", "ask"):
            _require_positive(name, getattr(self, name))
        for name in ("bid_size", "ask_size"):
            _require_non_negative(name, getattr(self, name))
        if self.bid > self.ask:
            raise ValueError(f"quote is crossed: bid {self.bid} above ask {self.ask}")


def _require_intent_ids(account_id: str, bot_id: str) -> None:
    # Each intent's __post_init__ checks its ids first: msgspec, which used to check them while
    # decoding, refused a bad id before any __post_init__ check ran, so an intent with a bad id
    # is still refused for its id. The membership tests are inlined: an id seen before costs no
    # call.
    matched = _identifiers.matched
    if account_id not in matched:
        _identifiers.require_match(account_id, "account_id")
    if bot_id not in matched:
        _identifiers.require_match(bot_id, "bot_id")


class _IntentBase(_Message, frozen=True, kw_only=True, tag_field="action"):
    intent_id: Annotated[
        uuid.UUID, msgspec.Meta(description="Unique, time-ordered (UUIDv7) id of this intent.")
    ]
    ts_ms: TimestampMs
    account_id: _IntentIdentifier
    bot_id: _IntentIdentifier
    bar_ts_ms: (
        Annotated[
            int,
            msgspec.Meta(
                ge=0,
                description="Open time of the bar whose handler placed the intent, if any; "
                "lines live orders up with a backtest of the same bars.",
            ),
        ]
        | None
    ) = None

    def __post_init__(self) -> None:
        _require_intent_ids(self.account_id, self.bot_id)


# Module constants: reading a member off an enum class costs ~50 ns in Python 3.11.
_MARKET: Final = OrderType.MARKET
_NEEDS_LIMIT_PRICE: Final = (OrderType.LIMIT, OrderType.STOP_LIMIT)
_NEEDS_STOP_PRICE: Final = (OrderType.STOP, OrderType.STOP_LIMIT)


class NewOrder(_IntentBase, frozen=True, kw_only=True, tag="new"):
    """Place an order. Its ``intent_id`` becomes the broker's client order id."""

    symbol: _IntentSymbol
    side: Side
    quantity: Decimal
    order_type: OrderType = OrderType.MARKET
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    time_in_force: TimeInForce = TimeInForce.GTC
    reduce_only: bool = False
    tag: Tag | None = None

    def __post_init__(self) -> None:
        # The executor runs this for every order it consumes, so it is written for speed: the id
        # checks of _require_intent_ids and the decimal checks of _require_positive inlined,
        # each field read once. The checks and their order are theirs.
        account_id, bot_id, symbol = self.account_id, self.bot_id, self.symbol
        identifiers = _identifiers.matched
        if account_id not in identifiers:
            _identifiers.require_match(account_id, "account_id")
        if bot_id not in identifiers:
            _identifiers.require_match(bot_id, "bot_id")
        if symbol not in _symbols.matched:
            _symbols.require_match(symbol, "symbol")
        quantity, limit_price, stop_price = self.quantity, self.limit_price, self.stop_price
        if not (quantity.is_finite() and quantity > _ZERO):
            raise _not_positive("quantity", quantity)
        if limit_price is not None and not (limit_price.is_finite() and limit_price > _ZERO):
            raise _not_positive("limit_price", limit_price)
        if stop_price is not None and not (stop_price.is_finite() and stop_price > _ZERO):
            raise _not_positive("stop_price", stop_price)
        order_type = self.order_type
        if order_type is _MARKET:  # most orders: one identity test instead of four comparisons
            needs_limit = needs_stop = False
        else:
            needs_limit = order_type in _NEEDS_LIMIT_PRICE
            needs_stop = order_type in _NEEDS_STOP_PRICE
        if needs_limit != (limit_price is not None):
            raise ValueError(
                f"`limit_price` is {'required' if needs_limit else 'not allowed'} "
                f"for a {order_type.value} order"
            )
        if needs_stop != (stop_price is not None):
            raise ValueError(
                f"`stop_price` is {'required' if needs_stop else 'not allowed'} "
                f"for a {order_type.value} order"
            )


class CancelOrder(_IntentBase, frozen=True, kw_only=True, tag="cancel"):
    """Cancel the order placed by the intent ``order_id``."""

    order_id: uuid.UUID


class CancelAll(_IntentBase, frozen=True, kw_only=True, tag="cancel_all"):
    """Cancel all of the bot's open orders on the account, or only those in ``symbol``."""

    symbol: _IntentSymbol | None = None
    origin: Annotated[
        IntentOrigin,
        msgspec.Meta(
            description="Who sent it: `bot`, or `platform` when the control plane cancels the "
            "orders of a bot whose runtime lost its heartbeat."
        ),
    ] = IntentOrigin.BOT

    def __post_init__(self) -> None:
        _require_intent_ids(self.account_id, self.bot_id)
        if self.symbol is not None:
            _symbols.require_match(self.symbol, "symbol")


class ReplaceOrder(_IntentBase, frozen=True, kw_only=True, tag="replace"):
    """Change the quantity or prices of the open order placed by the intent ``order_id``."""

    order_id: uuid.UUID
    quantity: Decimal | None = None
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None

    def __post_init__(self) -> None:
        _require_intent_ids(self.account_id, self.bot_id)
        if self.quantity is None and self.limit_price is None and self.stop_price is None:
            raise ValueError("a replace must change `quantity`, `limit_price` or `stop_price`")
        _require_positive("quantity", self.quantity)
        _require_positive("limit_price", self.limit_price)
        _require_positive("stop_price", self.stop_price)


OrderIntent = NewOrder | CancelOrder | CancelAll | ReplaceOrder
"""Any intent a bot may emit; the ``action`` field tells which."""


_TRADE: Final = ExecType.TRADE
_REJECTED: Final = ExecType.REJECTED


class ExecutionReport(_Message, frozen=True, kw_only=True):
    """What happened to an order, published by the executor for every state change.

    ``order_id`` is the intent id of the :class:`NewOrder` that placed the order (the client order
    id at the broker); ``intent_id`` is the intent that caused this report (the same id for a new
    order; the cancel or replace intent's id otherwise).
    """

    report_id: uuid.UUID
    intent_id: uuid.UUID
    order_id: uuid.UUID
    ts_ms: TimestampMs
    account_id: Identifier
    bot_id: Identifier
    symbol: Symbol | None
    """None only in a rejection of an intent that names no known order (a malformed intent,
    a cancel of an unknown order)."""
    side: Side | None
    exec_type: ExecType
    order_status: OrderStatus
    quantity: Decimal
    filled_quantity: Decimal = Decimal(0)
    leaves_quantity: Decimal = Decimal(0)
    last_quantity: Decimal | None = None
    last_price: Decimal | None = None
    average_price: Decimal | None = None
    fee: Decimal | None = None
    fee_currency: str | None = None
    fill_id: str | None = None
    """The venue's trade id for a fill: unique per fill, so consumers can drop a replayed one."""
    broker_order_id: str | None = None
    reject_code: str | None = None
    """Machine-readable reason of a rejection, e.g. ``risk.max_notional``, ``decode.malformed``."""
    reject_reason: str | None = None

    def __post_init__(self) -> None:
        # The executor builds one for every change of every order, so this is written for speed:
        # _require_non_negative inlined (None passes, as there), each field read once, module
        # constants for the exec types. The checks and their order are the same.
        quantity, filled, leaves = self.quantity, self.filled_quantity, self.leaves_quantity
        if quantity is not None and not (quantity.is_finite() and quantity >= _ZERO):
            raise _not_non_negative("quantity", quantity)
        if filled is not None and not (filled.is_finite() and filled >= _ZERO):
            raise _not_non_negative("filled_quantity", filled)
        if leaves is not None and not (leaves.is_finite() and leaves >= _ZERO):
            raise _not_non_negative("leaves_quantity", leaves)
        exec_type = self.exec_type
        if exec_type is _TRADE and (self.last_quantity is None or self.last_price is None):
            raise ValueError("a trade report needs `last_quantity` and `last_price`")
        if exec_type is _REJECTED:
            if not self.reject_code:
                raise ValueError("a rejection needs a `reject_code`")
        elif self.symbol is None or self.side is None:
            raise ValueError("only a rejection may leave `symbol` and `side` empty")


def report_for(
    order: NewOrder,
    exec_type: ExecType,
    order_status: OrderStatus,
    *,
    cause: OrderIntent | None = None,
    ts_ms: int | None = None,
    quantity: Decimal | None = None,
    **fields: Any,
) -> ExecutionReport:
    """An execution report about ``order``, caused by ``cause`` (the order itself by default).

    The order's ids, account, bot, symbol and side are copied; ``quantity`` defaults to the
    order's, and ``leaves_quantity`` to what remains open (nothing once the status is terminal).
    Further report fields (fills, reject codes) pass through ``fields``.
    """
    quantity = order.quantity if quantity is None else quantity
    cause = order if cause is None else cause
    fields.setdefault(
        "leaves_quantity",
        Decimal(0) if order_status.is_terminal else quantity - fields.get("filled_quantity", 0),
    )
    return ExecutionReport(
        report_id=new_intent_id(),
        intent_id=cause.intent_id,
        order_id=order.intent_id,
        ts_ms=cause.ts_ms if ts_ms is None else ts_ms,
        account_id=order.account_id,
        bot_id=order.bot_id,
        symbol=order.symbol,
        side=order.side,
        exec_type=exec_type,
        order_status=order_status,
        quantity=quantity,
        **fields,
    )


class ControlFlag(_Message, frozen=True, kw_only=True):
    """The desired state of one bot runtime, kept in Redis by the supervisor.

    ``generation`` grows with every change so a runtime can tell a stale flag from a new one.
    """

    bot_id: Identifier
    desired: BotState
    generation: Annotated[int, msgspec.Meta(ge=0)]
    ts_ms: TimestampMs
    reason: str | None = None
    set_by: str | None = None


class RuntimeState(enum.StrEnum):
    """What a bot runtime is doing, as its heartbeat reports it."""

    STARTING = "starting"
    RUNNING = "running"
    PAUSED = "paused"
    BLOCKED = "blocked"
    """Its control flag is missing or unreadable: it emits nothing until the flag is back."""
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"
    """It stopped itself, e.g. after too many handler errors; ``detail`` says why."""


class BotStatus(_Message, frozen=True, kw_only=True):
    """A bot runtime's heartbeat, kept in Redis with a TTL: when the key expires the runtime
    is dead or stuck."""

    bot_id: Identifier
    account_id: Identifier
    state: RuntimeState
    ts_ms: TimestampMs
    started_ms: TimestampMs
    sdk_version: str
    release: str | None = None
    """The release (bundle digest) the runtime was launched from, if any."""
    pid: int
    host: str
    flag_generation: int | None = None
    last_bar_ms: TimestampMs | None = None
    bars: int = 0
    intents: int = 0
    errors: int = 0
    detail: str | None = None


class Alert(_Message, frozen=True, kw_only=True):
    """Something an operator must look at: a circuit breaker tripped, a broker failing,
    positions drifting from the broker's. Kept in the Redis stream :data:`ALERTS_STREAM`."""

    alert_id: uuid.UUID
    ts_ms: TimestampMs
    severity: Literal["info", "warning", "critical"]
    kind: Annotated[str, msgspec.Meta(max_length=64, examples=["broker.circuit_open"])]
    """Machine-readable, e.g. ``broker.circuit_open``, ``reconciliation.drift``."""
    account_id: Identifier | None = None
    bot_id: Identifier | None = None
    message: str


class Halt(_Message, frozen=True, kw_only=True):
    """A kill switch the control plane tripped: the executor accepts no order of the account
    or bot it names until it is lifted (cancels still go). Kept in the Redis hash
    :data:`HALTS_KEY`, field ``<scope>:<target>``."""

    scope: Literal["account", "bot"]
    target: Identifier
    """The account id or bot id."""
    reason: str
    set_by: str
    ts_ms: TimestampMs


Currency = Annotated[
    str, msgspec.Meta(pattern=r"^[A-Z]{3}$", description="An ISO 4217 code, e.g. USD.")
]
VaultPath = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[A-Za-z0-9_./-]{1,200}$",
        description="A path in Vault's KV v2 engine, e.g. coyote/accounts/live-1.",
    ),
]


class PaperFillModel(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How the paper broker fills a paper account's orders (see docs/brokers.md)."""

    slippage_bps: Decimal = Decimal(0)
    """Adverse slippage of market and stop fills, in basis points of the price."""
    fee_bps: Decimal = Decimal(0)
    """Fee of each fill, in basis points of its notional."""
    latency_ms: Annotated[int, msgspec.Meta(ge=0, le=60_000)] = 0
    """Time the venue takes to answer a submission."""
    liquidity: Decimal | None = None
    """Largest quantity one execution fills (an order larger fills in parts); None: any."""
    max_price_age_ms: Annotated[int, msgspec.Meta(ge=1)] | None = None
    """A market order is rejected when the venue's last price is older than this."""

    def __post_init__(self) -> None:
        _require_non_negative("slippage_bps", self.slippage_bps)
        _require_non_negative("fee_bps", self.fee_bps)
        _require_positive("liquidity", self.liquidity)


class BrokerOption(msgspec.Struct, frozen=True, kw_only=True):
    """One adapter option of a real broker: a key of an account document's ``broker_options``
    and of the executor accounts file's ``options`` (see :data:`BROKER_OPTIONS`)."""

    description: str
    choices: tuple[str, ...] = ()
    """The values it may take, its default first; empty: any text matching ``pattern``."""
    pattern: str | None = None
    """What a value not from ``choices`` must match (``re.fullmatch``)."""
    example: str
    required: bool = False
    """The adapter cannot trade the account without it: the executor refuses to build its
    broker (the document itself may lack it, so that an account can be set up in steps)."""

    @property
    def default(self) -> str | None:
        """The value an account that does not set the option gets."""
        return self.choices[0] if self.choices else None


BROKER_OPTIONS: Final[Mapping[str, Mapping[str, BrokerOption]]] = {
    "paper": {},
    "alpaca": {
        "environment": BrokerOption(
            description="Alpaca's paper-trading API (the default) or the live one.",
            choices=("paper", "live"),
            example="live",
        ),
    },
    "oanda": {
        "environment": BrokerOption(
            description="OANDA's practice API (the default) or the live one (fxTrade).",
            choices=("practice", "live"),
            example="live",
        ),
        "oanda_account_id": BrokerOption(
            description="The v20 account id the orders go to: <site>-<division>-<user>-<account>.",
            pattern=r"[0-9]{1,12}(-[0-9]{1,12}){3}",
            example="101-004-1435156-001",
            required=True,
        ),
    },
}
"""The adapter options each broker accepts, by broker: the one definition the control plane,
the executor (documents and accounts file alike) and the flow checks use. Credentials are never
options: they stay in Vault (``credentials_path``). The paper broker takes none (its fill model
is :class:`PaperFillModel`)."""


def check_broker_options(broker: str, options: Mapping[str, object]) -> None:
    """Refuses adapter options that ``broker`` does not accept (see :data:`BROKER_OPTIONS`).

    Raises:
        ValueError: its message starts with the key at fault, e.g. ``environment: 'demo' is
            not one of ['paper', 'live']``, so that callers can prefix where the options are.
    """
    known = BROKER_OPTIONS.get(broker)
    if known is None:
        raise ValueError(f"{broker!r} is not a broker; expected one of {list(BROKER_OPTIONS)}")
    for key, value in options.items():
        option = known.get(key)
        if option is None:
            if not known:
                raise ValueError(
                    f"{key}: a {broker} account takes no broker options"
                    + (" (its fill model is fill_model)" if broker == "paper" else "")
                )
            raise ValueError(
                f"{key}: not an option of {broker} accounts; expected one of {sorted(known)}"
            )
        if not isinstance(value, str):
            raise ValueError(f"{key}: {value!r} is not a string")
        if option.choices and value not in option.choices:
            raise ValueError(f"{key}: {value!r} is not one of {list(option.choices)}")
        if option.pattern is not None and not re.fullmatch(option.pattern, value):
            raise ValueError(
                f"{key}: {value!r} does not match {option.pattern!r}; expected e.g. "
                f"{option.example!r}"
            )


class AccountDocument(_Message, frozen=True, kw_only=True):
    """A trading account as the control plane configures it: its broker, the venue of its
    prices, its risk limits and its bots' capital. Kept in the Redis hash
    :data:`ACCOUNTS_KEY`, field the account id; an executor whose accounts come from the
    control plane trades by it. ``revision`` grows with every change, so a reader can tell a
    stale copy from a new one."""

    account_id: Identifier
    revision: Annotated[int, msgspec.Meta(ge=0)]
    ts_ms: TimestampMs
    """When this revision was written."""
    broker: Literal["paper", "alpaca", "oanda"]
    venue: Identifier
    """The market data venue of the account's prices."""
    currency: Currency = "USD"
    credentials_path: VaultPath | None = None
    """Where the broker credentials are in Vault (real brokers); never the secret itself."""
    risk: dict[str, Any] = msgspec.field(default_factory=dict)
    """The account's limits: a risk document as ``coyote_risk.risk_config_from_mapping`` reads
    it (sections ``instruments``, ``account``, ``bots``, ``symbols``, ``restricted``)."""
    deployments: dict[Identifier, Decimal] = msgspec.field(default_factory=dict)
    """Each bot's capital allocation on the account, by bot id; ``0`` is none given."""
    fill_model: PaperFillModel | None = None
    """A paper account's fill model; None: fills at the last price, no fee, no latency."""
    broker_options: Annotated[
        dict[str, str],
        msgspec.Meta(
            description="A real broker's adapter options (paper accounts take none): alpaca: "
            "environment (paper | live); oanda: environment (practice | live), "
            "oanda_account_id. A real broker trades its sandbox unless environment is live. "
            "Never credentials: those stay in Vault.",
            examples=[{"environment": "live", "oanda_account_id": "101-004-1435156-001"}],
        ),
    ] = msgspec.field(default_factory=dict)
    """A real broker's adapter options, as :data:`BROKER_OPTIONS` defines them; empty: the
    adapter's defaults (its sandbox)."""

    def __post_init__(self) -> None:
        if self.fill_model is not None and self.broker != "paper":
            raise ValueError(f"a fill model is for paper accounts, not {self.broker} ones")
        if self.broker_options:
            try:
                check_broker_options(self.broker, self.broker_options)
            except ValueError as exc:
                raise ValueError(f"broker_options.{exc}") from None
        for bot_id, capital in self.deployments.items():
            _require_non_negative(f"deployments.{bot_id}", capital)


# -- TOPICS AND KEYS -----------------------------------------------------------------------


class TopicSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A Kafka topic of the protocol: its name, partition count and what keys its records."""

    name: str
    partitions: int
    key: str
    config: dict[str, str] = msgspec.field(default_factory=dict)


INTENTS_TOPIC: Final = TopicSpec(
    name="coyote.intents.v1",
    partitions=12,
    key="account_id",
    # Intents are replayed after faults; a week is far beyond any recovery.
    config={"retention.ms": str(7 * 86_400_000), "min.insync.replicas": "1"},
)
"""Order intents, keyed by account so one executor sees an account's intents in order."""

EXECUTION_REPORTS_TOPIC: Final = TopicSpec(
    name="coyote.execution-reports.v1",
    partitions=12,
    key="account_id",
    config={"retention.ms": str(30 * 86_400_000)},
)
"""Execution reports, keyed by account like the intents they answer."""

INTENTS_DEAD_LETTER_TOPIC: Final = TopicSpec(
    name="coyote.intents.dead-letter.v1",
    partitions=1,
    key="account_id or none",
    config={"retention.ms": str(30 * 86_400_000)},
)
"""Records the executor could not decode, kept verbatim for inspection."""

TOPICS: Final = (INTENTS_TOPIC, EXECUTION_REPORTS_TOPIC, INTENTS_DEAD_LETTER_TOPIC)

TRACEPARENT_HEADER: Final = "traceparent"
"""Kafka record header of an intent or execution report: its W3C Trace Context ``traceparent``
(``00-<trace id>-<span id>-<flags>``, ASCII), optional. The message itself never carries it."""

TRACESTATE_HEADER: Final = "tracestate"
"""Kafka record header: the W3C Trace Context ``tracestate`` that goes with a ``traceparent``,
optional."""

KEY_PREFIX: Final = "coyote"


def control_flag_key(bot_id: str) -> str:
    """The Redis key holding a bot's :class:`ControlFlag`."""
    return f"{KEY_PREFIX}:bot:{bot_id}:control"


def heartbeat_key(bot_id: str) -> str:
    """The Redis key of a bot runtime's :class:`BotStatus` (it expires without heartbeats)."""
    return f"{KEY_PREFIX}:bot:{bot_id}:heartbeat"


def state_key(bot_id: str) -> str:
    """The Redis hash of a bot's key-value state store (JSON values)."""
    return f"{KEY_PREFIX}:bot:{bot_id}:state"


def portfolio_key(bot_id: str) -> str:
    """The Redis key of a bot runtime's saved portfolio (see the runtime's
    ``SavedPortfolio``)."""
    return f"{KEY_PREFIX}:bot:{bot_id}:portfolio"


ALERTS_STREAM: Final = f"{KEY_PREFIX}:alerts"
"""Redis stream of :class:`Alert` messages (field ``alert``: the JSON), newest last."""

HALTS_KEY: Final = f"{KEY_PREFIX}:risk:halts"
"""Redis hash of the tripped kill switches: field ``<scope>:<target>``, value a :class:`Halt`.
The control plane rewrites it from its database after a Redis restart."""

HALTS_CHANNEL: Final = f"{KEY_PREFIX}:risk:halts"
"""Redis pub/sub channel announcing a change of :data:`HALTS_KEY` (the field changed)."""

ACCOUNTS_KEY: Final = f"{KEY_PREFIX}:accounts"
"""Redis hash of the accounts the control plane configures: field the account id, value an
:class:`AccountDocument`. The control plane rewrites it from its database after a Redis restart."""

ACCOUNTS_CHANNEL: Final = f"{KEY_PREFIX}:accounts"
"""Redis pub/sub channel announcing a change of :data:`ACCOUNTS_KEY` (the field changed)."""


def control_channel(bot_id: str) -> str:
    """The Redis pub/sub channel announcing a change of one bot's :class:`ControlFlag` (payload:
    the bot id). Each runtime subscribes to its own only, so a bot learns nothing of others."""
    return f"{KEY_PREFIX}:control:{bot_id}"


CONTROL_CHANNEL: Final = f"{KEY_PREFIX}:control"
"""Redis pub/sub channel on which every flag change is also announced (payload: the bot id),
for runtimes of SDKs before :func:`control_channel` existed; deprecated, it will go once no such
runtime is left."""


def market_data_key(venue: str, symbol: str, field: str, timeframe: str = "raw") -> str:
    """The RedisTimeSeries key of one field of one instrument's series.

    ``timeframe`` is ``raw`` for ticks and a :class:`Timeframe` value for bars.
    """
    return f"{KEY_PREFIX}:md:{venue}:{symbol}:{timeframe}:{field}"


def trade_channel(venue: str, symbol: str) -> str:
    """The Redis pub/sub channel of each :class:`Trade` written by a live feed (as JSON)."""
    return f"{KEY_PREFIX}:trades:{venue}:{symbol}"


def bar_channel(venue: str, symbol: str, timeframe: str) -> str:
    """The Redis pub/sub channel on which each finished :class:`Bar` is published (as JSON)."""
    return f"{KEY_PREFIX}:bars:{venue}:{symbol}:{timeframe}"


# -- CODEC ---------------------------------------------------------------------------------


class ProtocolError(ValueError):
    """A message that is not valid protocol.

    Attributes:
        code: ``malformed`` (not JSON, or not an object), ``unsupported_version`` (a ``v`` this
            build does not speak) or ``invalid`` (a field missing, of the wrong type or value).
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class _Envelope(msgspec.Struct):
    v: int | None = None


_encoder = msgspec.json.Encoder()
_envelope_decoder = msgspec.json.Decoder(_Envelope)
_M = TypeVar("_M")
_decoders: dict[Any, msgspec.json.Decoder[Any]] = {}


def encode(message: msgspec.Struct) -> bytes:
    """Encodes a protocol message to its JSON bytes."""
    return _encoder.encode(message)


def decode(data: bytes | str, type_: type[_M]) -> _M:
    """Decodes and validates JSON bytes as ``type_`` (a message class or :data:`OrderIntent`).

    Raises:
        ProtocolError: with a code saying whether the input was malformed, of an unsupported
            version or invalid, and a message naming the offending field.
    """
    decoder = _decoders.get(type_)
    if decoder is None:
        decoder = _decoders.setdefault(type_, msgspec.json.Decoder(type_))
    try:
        return decoder.decode(data)
    except msgspec.DecodeError as exc:  # ValidationError included
        raise _protocol_error(data, exc) from exc


_intent_decoder = msgspec.json.Decoder(OrderIntent)
"""decode_intent's own: looking :data:`OrderIntent` up in ``_decoders`` hashes the union's
members on every call, a tenth of a microsecond the executor pays for every intent."""


def decode_intent(data: bytes | str) -> OrderIntent:
    """Decodes any :data:`OrderIntent` (see :func:`decode`)."""
    try:
        return _intent_decoder.decode(data)
    except msgspec.DecodeError as exc:  # ValidationError included
        raise _protocol_error(data, exc) from exc


def _protocol_error(data: bytes | str, exc: msgspec.DecodeError) -> ProtocolError:
    """The ProtocolError for a failed decode of ``data`` (the slow path only)."""
    if not isinstance(exc, msgspec.ValidationError):
        return ProtocolError("malformed", f"not a JSON object: {exc}")
    # Tell a version mismatch apart from a bad field.
    try:
        version = _envelope_decoder.decode(data).v
    except msgspec.DecodeError:
        version = None
    if version is not None and version != PROTOCOL_VERSION:
        return ProtocolError(
            "unsupported_version",
            f"protocol version {version!r} is not supported (this build speaks {PROTOCOL_VERSION})",
        )
    return ProtocolError("invalid", str(exc))


MESSAGE_TYPES: Final = (
    Bar,
    Trade,
    Quote,
    NewOrder,
    CancelOrder,
    CancelAll,
    ReplaceOrder,
    ExecutionReport,
    ControlFlag,
    BotStatus,
    Alert,
    Halt,
    AccountDocument,
)


def json_schema() -> dict[str, Any]:
    """The JSON Schema (2020-12) of every message of this protocol version."""
    refs, components = msgspec.json.schema_components(MESSAGE_TYPES, ref_template="#/$defs/{name}")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://coyote.dev/schemas/protocol-v{PROTOCOL_VERSION}.json",
        "title": f"Coyote wire protocol v{PROTOCOL_VERSION}",
        "description": "Each message is one of the definitions under $defs; intents are "
        "distinguished by their `action` field. Decimals are strings; timestamps are "
        "integer milliseconds since the Unix epoch (UTC).",
        "oneOf": list(refs),
        "$defs": components,
    }
