"""Pure-Python references of the compiled checks.

Each class here behaves exactly like its Cython counterpart. Tests run both on the same inputs,
and the benchmarks use these as the baseline the compiled code is measured against.
"""

from __future__ import annotations

import math

from coyote_risk.config import REASON_CODES, STATES, InstrumentSpec, Limits, RiskConfig


class TokenBucket:
    """Reference of :class:`coyote_risk.TokenBucket`."""

    def __init__(self, capacity: float, refill_per_second: float, now_ns: int = 0) -> None:
        if not capacity > 0:
            raise ValueError(f"capacity must be positive, got {capacity!r}")
        if not refill_per_second > 0:
            raise ValueError(f"refill_per_second must be positive, got {refill_per_second!r}")
        self.capacity = float(capacity)
        self.refill_per_second = float(refill_per_second)
        self._tokens = self.capacity
        self._last_ns = now_ns

    def _refill(self, now_ns: int) -> None:
        if now_ns <= self._last_ns:
            return
        self._tokens = min(
            self.capacity,
            self._tokens + (now_ns - self._last_ns) * 1e-9 * self.refill_per_second,
        )
        self._last_ns = now_ns

    def try_acquire(self, now_ns: int, tokens: float = 1.0) -> bool:
        self._refill(now_ns)
        if self._tokens >= tokens:
            self._tokens -= tokens
            return True
        return False

    def available(self, now_ns: int) -> float:
        self._refill(now_ns)
        return self._tokens

    def resized(self, capacity: float, refill_per_second: float, now_ns: int) -> TokenBucket:
        self._refill(now_ns)
        bucket = TokenBucket(capacity, refill_per_second, self._last_ns)
        bucket._tokens = min(self._tokens, float(capacity))
        return bucket


# -- RISK ENGINE -----------------------------------------------------------------------------

_R = REASON_CODES
_ACTIVE, _REDUCING, _HALTED = 0, 1, 2
_RECENT = 8
_MS = 1_000_000  # the token bucket counts nanoseconds


def _limit(value: object) -> float:
    return math.inf if value is None else float(value)  # type: ignore[arg-type]


def _off_grid(value: float, increment: float) -> bool:
    steps = value / increment
    return abs(steps - round(steps)) > 1e-9 * (1.0 if steps < 1.0 else steps)


class ScopeState:
    """Reference of ``coyote_risk._engine.ScopeState``."""

    def __init__(self, limits: Limits, now_ms: int = 0) -> None:
        self.state = _ACTIVE
        self.daily_pnl = 0.0
        self.slots: list[Slot] = []
        self.bucket: TokenBucket | None = None
        self.configure(limits, now_ms)

    def configure(self, limits: Limits, now_ms: int) -> None:
        self.max_daily_loss = _limit(limits.max_daily_loss)
        self.capital = _limit(limits.capital_allocation)
        self.max_gross = _limit(limits.max_gross_exposure)
        self.max_net = _limit(limits.max_net_exposure)
        if limits.orders_per_second is None:
            self.bucket = None
            return
        burst = float(limits.order_burst or max(1, int(limits.orders_per_second)))
        rate = float(limits.orders_per_second)
        if self.bucket is None:
            self.bucket = TokenBucket(burst, rate, now_ms * _MS)
        elif self.bucket.capacity != burst or self.bucket.refill_per_second != rate:
            self.bucket = self.bucket.resized(burst, rate, now_ms * _MS)


class SymbolState:
    """Reference of ``coyote_risk._engine.SymbolState``."""

    def __init__(self, spec: InstrumentSpec, restricted: bool) -> None:
        self.configure(spec, restricted)
        self.last_price = 0.0
        self.last_ts = 0
        self.position = 0.0
        self.open_buy = 0.0
        self.open_sell = 0.0

    def configure(self, spec: InstrumentSpec, restricted: bool) -> None:
        self.tick = float(spec.tick_size)
        self.lot = float(spec.lot_size)
        self.tradable = spec.tradable
        self.restricted = restricted


class Slot:
    """Reference of ``coyote_risk.Slot``: the same checks, in the same order."""

    def __init__(
        self,
        engine: RiskEngine,
        bot: ScopeState,
        account: ScopeState,
        symbol: SymbolState,
        limits: Limits,
    ) -> None:
        self.engine, self.bot, self.account, self.symbol = engine, bot, account, symbol
        self.position = self.open_buy = self.open_sell = 0.0
        self.configure(limits)
        self.recent: list[tuple[int, int, float, float]] = [(-1, 0, 0.0, 0.0)] * _RECENT
        self.recent_next = 0

    def configure(self, limits: Limits) -> None:
        self.max_quantity = _limit(limits.max_order_quantity)
        self.max_notional = _limit(limits.max_order_notional)
        self.collar_bps = _limit(limits.price_collar_bps)
        self.max_age_ms = -1 if limits.max_price_age_ms is None else limits.max_price_age_ms
        self.max_position = _limit(limits.max_position)
        self.duplicate_window_ms = (
            -1 if limits.duplicate_window_ms is None else limits.duplicate_window_ms
        )

    def _reduces(self, side: int, quantity: float) -> bool:
        if side > 0:
            return self.position < 0 and quantity + self.open_buy <= -self.position
        return self.position > 0 and quantity + self.open_sell <= self.position

    def check(
        self, side: int, quantity: float, price: float, market: bool, reduce_only: bool, now_ms: int
    ) -> int:
        sym, bot, account, engine = self.symbol, self.bot, self.account, self.engine
        if _HALTED in (engine.system_state, account.state, bot.state):
            return _R["risk.halted"]
        if not (quantity > 0.0 and math.isfinite(quantity)):
            return _R["risk.invalid_quantity"]
        reduces = self._reduces(side, quantity)
        if not reduces:
            if _REDUCING in (engine.system_state, account.state, bot.state) or reduce_only:
                return _R["risk.reducing_only"]
            if bot.daily_pnl <= -bot.max_daily_loss or account.daily_pnl <= -account.max_daily_loss:
                return _R["risk.max_daily_loss"]
        if not sym.tradable:
            return _R["risk.instrument_not_tradable"]
        if sym.restricted:
            return _R["risk.restricted_symbol"]
        if not market and not (price > 0.0 and math.isfinite(price)):
            return _R["risk.invalid_price"]
        if _off_grid(quantity, sym.lot):
            return _R["risk.off_lot"]
        if not market and _off_grid(price, sym.tick):
            return _R["risk.off_tick"]
        if quantity > self.max_quantity:
            return _R["risk.max_order_quantity"]
        stale = self.max_age_ms >= 0 and (
            sym.last_ts == 0 or now_ms - sym.last_ts > self.max_age_ms
        )
        if market:
            if stale or sym.last_price <= 0.0:
                return _R["risk.stale_price"]
            reference = sym.last_price
        else:
            reference = price
            if (
                sym.last_price > 0.0
                and abs(price - sym.last_price) / sym.last_price * 1e4 > self.collar_bps
            ):
                return _R["risk.price_collar"]
        notional = quantity * reference
        if notional > self.max_notional:
            return _R["risk.max_order_notional"]
        if not reduces:
            if side > 0:
                projected = self.position + self.open_buy + quantity
            else:
                projected = self.position - self.open_sell - quantity
            if abs(projected) > self.max_position:
                return _R["risk.max_position"]
            if account.max_gross < math.inf or account.max_net < math.inf:
                gross = net = 0.0
                for each in engine.symbols.values():
                    held = each.position + each.open_buy - each.open_sell
                    if each is sym:
                        held += side * quantity
                    exposure = held * (each.last_price if each.last_price > 0.0 else reference)
                    gross += abs(exposure)
                    net += exposure
                if gross > account.max_gross:
                    return _R["risk.max_gross_exposure"]
                if abs(net) > account.max_net:
                    return _R["risk.max_net_exposure"]
            if bot.capital < math.inf:
                exposure = notional
                for other in bot.slots:
                    held = abs(other.position) + other.open_buy + other.open_sell
                    mark = other.symbol.last_price
                    exposure += held * (mark if mark > 0.0 else reference)
                if exposure > bot.capital:
                    return _R["risk.capital_allocation"]
        if self.duplicate_window_ms >= 0 and any(
            ts >= 0
            and now_ms - ts <= self.duplicate_window_ms
            and (s, q, p) == (side, quantity, price)
            for ts, s, q, p in self.recent
        ):
            return _R["risk.duplicate_order"]
        if bot.bucket is not None and bot.bucket.available(now_ms * _MS) < 1.0:
            return _R["risk.rate_limit_bot"]
        if account.bucket is not None and account.bucket.available(now_ms * _MS) < 1.0:
            return _R["risk.rate_limit_account"]
        if bot.bucket is not None:
            bot.bucket.try_acquire(now_ms * _MS, 1.0)
        if account.bucket is not None:
            account.bucket.try_acquire(now_ms * _MS, 1.0)
        if side > 0:
            self.open_buy += quantity
            sym.open_buy += quantity
        else:
            self.open_sell += quantity
            sym.open_sell += quantity
        self.recent[self.recent_next] = (now_ms, side, quantity, price)
        self.recent_next = (self.recent_next + 1) % _RECENT
        return _R["ok"]

    def on_fill(self, side: int, quantity: float) -> None:
        self.position += side * quantity
        self.symbol.position += side * quantity
        self.release(side, quantity)

    def reserve(self, side: int, quantity: float) -> None:
        if side > 0:
            self.open_buy += quantity
            self.symbol.open_buy += quantity
        else:
            self.open_sell += quantity
            self.symbol.open_sell += quantity

    def book(self, position: float) -> None:
        self.symbol.position += position - self.position
        self.position = position

    def release(self, side: int, quantity: float) -> None:
        if side > 0:
            self.open_buy = max(0.0, self.open_buy - quantity)
            self.symbol.open_buy = max(0.0, self.symbol.open_buy - quantity)
        else:
            self.open_sell = max(0.0, self.open_sell - quantity)
            self.symbol.open_sell = max(0.0, self.symbol.open_sell - quantity)


class RiskEngine:
    """Reference of :class:`coyote_risk.RiskEngine`."""

    def __init__(self, config: RiskConfig, now_ms: int = 0) -> None:
        self.config = config
        self.system_state = _ACTIVE
        self.account = ScopeState(config.account, now_ms)
        self.bots: dict[str, ScopeState] = {}
        self.symbols = {
            symbol: SymbolState(spec, symbol in config.restricted)
            for symbol, spec in config.instruments.items()
        }
        self.slots: dict[tuple[str, str], Slot] = {}

    def slot(self, bot_id: str, symbol: str) -> Slot | None:
        found = self.slots.get((bot_id, symbol))
        if found is not None:
            return found
        if symbol not in self.symbols:
            return None
        bot = self.slot_bot(bot_id)
        created = Slot(
            self, bot, self.account, self.symbols[symbol], self.config.limits_for(bot_id, symbol)
        )
        bot.slots.append(created)
        self.slots[(bot_id, symbol)] = created
        return created

    def check(
        self,
        bot_id: str,
        symbol: str,
        side: int,
        quantity: float,
        price: float,
        market: bool,
        reduce_only: bool,
        now_ms: int,
    ) -> int:
        found = self.slot(bot_id, symbol)
        if found is None:
            return _R["risk.instrument_unknown"]
        return found.check(side, quantity, price, market, reduce_only, now_ms)

    def reconfigure(self, config: RiskConfig, now_ms: int = 0) -> None:
        if config.account_id != self.config.account_id:
            raise ValueError(
                f"reconfigure takes the limits of account {self.config.account_id!r}, "
                f"got those of {config.account_id!r}"
            )
        self.config = config
        self.account.configure(config.account, now_ms)
        for bot_id, bot in self.bots.items():
            bot.configure(config.bots.get(bot_id, Limits()), now_ms)
        for symbol, sym in self.symbols.items():
            spec = config.instruments.get(symbol)
            if spec is None:
                sym.tradable = False
                sym.restricted = symbol in config.restricted
            else:
                sym.configure(spec, symbol in config.restricted)
        for symbol, spec in config.instruments.items():
            if symbol not in self.symbols:
                self.symbols[symbol] = SymbolState(spec, symbol in config.restricted)
        for (bot_id, symbol), slot in self.slots.items():
            slot.configure(config.limits_for(bot_id, symbol))

    def update_price(self, symbol: str, price: float, ts_ms: int) -> None:
        sym = self.symbols.get(symbol)
        if sym is not None:
            sym.last_price, sym.last_ts = price, ts_ms

    def set_state(
        self, state: str | int, bot_id: str | None = None, *, system: bool = False
    ) -> None:
        value = STATES[state] if isinstance(state, str) else int(state)
        if system:
            self.system_state = value
        elif bot_id is None:
            self.account.state = value
        else:
            self.slot_bot(bot_id).state = value

    def slot_bot(self, bot_id: str) -> ScopeState:
        bot = self.bots.get(bot_id)
        if bot is None:
            bot = self.bots[bot_id] = ScopeState(self.config.bots.get(bot_id, Limits()))
        return bot

    def update_pnl(self, daily_pnl: float, bot_id: str | None = None) -> bool:
        scope = self.account if bot_id is None else self.slot_bot(bot_id)
        scope.daily_pnl = daily_pnl
        if scope.state == _ACTIVE and daily_pnl <= -scope.max_daily_loss:
            scope.state = _REDUCING
            return True
        return False
