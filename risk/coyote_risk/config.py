"""Risk configuration: instruments, limits per account, bot and symbol, and reason codes.

Plain frozen objects, parsed and validated in Python; the compiled engine takes them once and
works on numbers from then on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

# -- REASONS ---------------------------------------------------------------------------------

REASONS: tuple[str, ...] = (
    "ok",
    "risk.halted",
    "risk.reducing_only",
    "risk.instrument_unknown",
    "risk.instrument_not_tradable",
    "risk.restricted_symbol",
    "risk.invalid_quantity",
    "risk.invalid_price",
    "risk.off_tick",
    "risk.off_lot",
    "risk.max_order_quantity",
    "risk.max_order_notional",
    "risk.price_collar",
    "risk.stale_price",
    "risk.max_position",
    "risk.max_gross_exposure",
    "risk.max_net_exposure",
    "risk.rate_limit_bot",
    "risk.rate_limit_account",
    "risk.duplicate_order",
    "risk.max_daily_loss",
    "risk.capital_allocation",
)
"""Machine-readable rejection reasons; a check returns the index of one (0 passes)."""

REASON_CODES: dict[str, int] = {name: code for code, name in enumerate(REASONS)}

# Trading states, as the engine stores them (see coyote_sdk.protocol.TradingState).
ACTIVE, REDUCING, HALTED = 0, 1, 2
STATES = {"active": ACTIVE, "reducing": REDUCING, "halted": HALTED}


@dataclasses.dataclass(frozen=True)
class InstrumentSpec:
    """What may be traded and in what increments."""

    symbol: str
    tick_size: Decimal
    lot_size: Decimal = Decimal(1)
    tradable: bool = True

    def __post_init__(self) -> None:
        if self.tick_size <= 0 or self.lot_size <= 0:
            raise ValueError(f"{self.symbol}: tick_size and lot_size must be positive")


@dataclasses.dataclass(frozen=True)
class Limits:
    """Limits of one scope; None means no limit at that scope.

    Quantities are in instrument units (shares, coins, currency units); money is in the
    account's currency. Per-order limits (order quantity and notional, price collar and age,
    position, duplicate window) merge across scopes, strictest wins. The others belong to their
    scope: throttles, daily loss and the reject rate to the bot's and the account's own
    limits, capital allocation to the bot's, gross and net exposure to the account's.
    """

    max_order_quantity: Decimal | None = None
    max_order_notional: Decimal | None = None
    price_collar_bps: Decimal | None = None
    """A limit price further than this from the last price is refused."""
    max_price_age_ms: int | None = None
    """A market order is refused when the last price is older than this (or missing)."""
    max_position: Decimal | None = None
    """Largest absolute position per symbol, projected with open orders."""
    max_gross_exposure: Decimal | None = None
    max_net_exposure: Decimal | None = None
    max_daily_loss: Decimal | None = None
    """Realised plus unrealised loss of the day at which the scope goes REDUCING."""
    orders_per_second: float | None = None
    order_burst: int | None = None
    duplicate_window_ms: int | None = None
    """Same side, symbol, quantity and price again within this window is a duplicate."""
    capital_allocation: Decimal | None = None
    """A bot's capital on a shared account: the notional it may commit."""
    max_reject_rate: Decimal | None = None
    """Share of the scope's last ``reject_rate_window`` new orders rejected (0 to 1) at which
    it is halted for ``reject_halt_s`` (see :mod:`coyote_risk.reject_rate`)."""
    reject_rate_window: int | None = None
    """New orders the reject rate is taken over (50 when not set)."""
    reject_halt_s: float | None = None
    """How long a scope tripped by its reject rate stays halted (300 s when not set)."""

    def __post_init__(self) -> None:
        if self.max_reject_rate is not None and not 0 < self.max_reject_rate <= 1:
            raise ValueError(f"max_reject_rate must be in (0, 1], got {self.max_reject_rate}")
        if self.reject_rate_window is not None and self.reject_rate_window < 1:
            raise ValueError(f"reject_rate_window must be positive, got {self.reject_rate_window}")
        if self.reject_halt_s is not None and self.reject_halt_s <= 0:
            raise ValueError(f"reject_halt_s must be positive, got {self.reject_halt_s}")

    def merged(self, tighter: Limits | None) -> Limits:
        """These limits with ``tighter``'s applied on top: the stricter of each pair wins."""
        if tighter is None:
            return self
        values = {}
        for field in dataclasses.fields(self):
            mine, theirs = getattr(self, field.name), getattr(tighter, field.name)
            values[field.name] = (
                mine if theirs is None else theirs if mine is None else min(mine, theirs)
            )
        return Limits(**values)


@dataclasses.dataclass(frozen=True)
class RiskConfig:
    """Everything the engine enforces for one account.

    The effective limits of an order of ``bot`` in ``symbol`` are the strictest of
    ``account``, ``bots[bot]``, ``symbols[symbol]`` and ``bot_symbols[(bot, symbol)]``.
    """

    account_id: str
    instruments: Mapping[str, InstrumentSpec]
    account: Limits = Limits()
    bots: Mapping[str, Limits] = dataclasses.field(default_factory=dict)
    symbols: Mapping[str, Limits] = dataclasses.field(default_factory=dict)
    bot_symbols: Mapping[tuple[str, str], Limits] = dataclasses.field(default_factory=dict)
    restricted: frozenset[str] = frozenset()

    def limits_for(self, bot_id: str, symbol: str) -> Limits:
        return (
            self.account.merged(self.bots.get(bot_id))
            .merged(self.symbols.get(symbol))
            .merged(self.bot_symbols.get((bot_id, symbol)))
        )


# -- LOADING ---------------------------------------------------------------------------------


def risk_config_from_mapping(data: Mapping[str, Any], *, account_id: str) -> RiskConfig:
    """Builds a :class:`RiskConfig` from plain data (a TOML or JSON document)::

        restricted = ["XYZ"]
        [instruments.GOOG]
        tick_size = "0.01"
        [account]
        max_order_notional = "50000"
        [bots.sma]
        capital_allocation = "20000"
        [symbols.GOOG]
        max_position = "500"

    Raises:
        ValueError: naming the section and field that is unknown or not a valid value.
    """
    known = {"instruments", "account", "bots", "symbols", "restricted"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown section {unknown[0]!r}; expected one of {sorted(known)}")
    instruments = {
        symbol: _convert(InstrumentSpec, {"symbol": symbol, **spec}, f"instruments.{symbol}")
        for symbol, spec in _table(data, "instruments").items()
    }
    return RiskConfig(
        account_id=account_id,
        instruments=instruments,
        account=_convert(Limits, _table(data, "account"), "account"),
        bots={k: _convert(Limits, v, f"bots.{k}") for k, v in _table(data, "bots").items()},
        symbols={
            k: _convert(Limits, v, f"symbols.{k}") for k, v in _table(data, "symbols").items()
        },
        restricted=frozenset(data.get("restricted", ())),
    )


def _table(data: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, Mapping):
        raise ValueError(f"{name} must be a table, got {value!r}")
    return value


def _convert(kind: type[Any], values: Mapping[str, Any], where: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(kind)}
    converted: dict[str, Any] = {}
    for name, value in values.items():
        field = fields.get(name)
        if field is None:
            raise ValueError(f"{where}.{name} is not a setting; expected one of {sorted(fields)}")
        try:
            if "Decimal" in str(field.type):
                converted[name] = Decimal(str(value))
                if not converted[name].is_finite() or converted[name] < 0:
                    raise ValueError("must be a finite, non-negative number")
            elif "float" in str(field.type):
                converted[name] = float(value)
            elif "int" in str(field.type):
                converted[name] = int(value)
            else:
                converted[name] = value
        except (ArithmeticError, ValueError, TypeError) as exc:
            raise ValueError(f"{where}.{name}: {value!r} is not valid ({exc})") from exc
    try:
        return kind(**converted)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: {exc}") from exc
