"""The pre-trade risk engine: every check an order must pass, on plain numbers, with no I/O.

The executor (and the backtester) resolve an order's bot and symbol to a :class:`Slot` once and
then call :meth:`Slot.check` per order; prices and positions reach the engine through
:meth:`RiskEngine.update_price`, :meth:`Slot.on_fill` and :meth:`RiskEngine.update_pnl`, so a
check never waits on anything. Quantities and prices are doubles here: exact decimals stay on
the wire and at the broker; a limit check needs no more than a double's 15 digits, and tick and
lot increments are checked with a relative tolerance of 1e-9.
"""

cimport cython
from libc.math cimport fabs, isfinite, llround, INFINITY
from libc.stdint cimport int64_t

from coyote_risk._throttle cimport TokenBucket

from coyote_risk.config import REASON_CODES, STATES, Limits

# Reason codes, in the order of coyote_risk.config.REASONS; trading states; the duplicate ring.
cdef enum:
    OK = 0
    HALTED_ = 1
    REDUCING_ONLY = 2
    NOT_TRADABLE = 4
    RESTRICTED = 5
    INVALID_QUANTITY = 6
    INVALID_PRICE = 7
    OFF_TICK = 8
    OFF_LOT = 9
    MAX_ORDER_QUANTITY = 10
    MAX_ORDER_NOTIONAL = 11
    PRICE_COLLAR = 12
    STALE_PRICE = 13
    MAX_POSITION = 14
    MAX_GROSS = 15
    MAX_NET = 16
    RATE_BOT = 17
    RATE_ACCOUNT = 18
    DUPLICATE = 19
    MAX_DAILY_LOSS = 20
    CAPITAL = 21
    S_ACTIVE = 0
    S_REDUCING = 1
    S_HALTED = 2
    RECENT = 8
    MS = 1_000_000  # the token bucket counts nanoseconds



cdef inline double _limit(object value):
    return INFINITY if value is None else float(value)


cdef inline bint _off_grid(double value, double increment):
    cdef double steps = value / increment
    return fabs(steps - <double>llround(steps)) > 1e-9 * (1.0 if steps < 1.0 else steps)


# -- SCOPES ----------------------------------------------------------------------------------

cdef class ScopeState:
    """The state and scope-level limits of the account or of one bot."""

    def __init__(self, limits, int64_t now_ms=0):
        self.state = S_ACTIVE
        self.daily_pnl = 0.0
        self.slots = []
        self.bucket = None
        self.configure(limits, now_ms)

    cdef void configure(self, object limits, int64_t now_ms):
        """Takes the scope's limits; its state, PnL and throttle tokens stay. A changed rate
        gets a bucket of the new size holding the tokens left, not a full one."""
        self.max_daily_loss = _limit(limits.max_daily_loss)
        self.capital = _limit(limits.capital_allocation)
        self.max_gross = _limit(limits.max_gross_exposure)
        self.max_net = _limit(limits.max_net_exposure)
        if limits.orders_per_second is None:
            self.bucket = None
            return
        cdef double burst = float(limits.order_burst or max(1, int(limits.orders_per_second)))
        cdef double rate = float(limits.orders_per_second)
        if self.bucket is None:
            self.bucket = TokenBucket(burst, rate, now_ms * MS)
        elif self.bucket.capacity != burst or self.bucket.refill_per_second != rate:
            self.bucket = self.bucket.resized(burst, rate, now_ms * MS)

    @property
    def loss_tripped(self):
        """Whether the day's loss has reached the limit."""
        return self.daily_pnl <= -self.max_daily_loss


cdef class SymbolState:
    """One instrument of the account: its increments, last price and account-wide position."""

    def __init__(self, spec, bint restricted):
        self.configure(spec, restricted)
        self.last_price = 0.0
        self.last_ts = 0
        self.position = 0.0
        self.open_buy = 0.0
        self.open_sell = 0.0

    cdef void configure(self, object spec, bint restricted):
        """Takes the instrument's increments and status; prices and positions stay."""
        self.tick = float(spec.tick_size)
        self.lot = float(spec.lot_size)
        self.tradable = spec.tradable
        self.restricted = restricted


# -- ORDERS ------------------------------------------------------------------------------------

cdef class Slot:
    """One bot trading one symbol on the account: where orders are checked."""

    def __init__(self, RiskEngine engine, ScopeState bot, ScopeState account,
                 SymbolState symbol, limits):
        self.engine = engine
        self.bot = bot
        self.account = account
        self.symbol = symbol
        self.position = 0.0
        self.open_buy = 0.0
        self.open_sell = 0.0
        self.configure(limits)
        self.recent_next = 0
        for i in range(RECENT):
            self.recent_ts[i] = -1

    cdef void configure(self, object limits):
        """Takes the order limits merged for this bot and symbol; the position, the open
        orders and the duplicate window's recent orders stay."""
        self.max_quantity = _limit(limits.max_order_quantity)
        self.max_notional = _limit(limits.max_order_notional)
        self.collar_bps = _limit(limits.price_collar_bps)
        self.max_age_ms = -1 if limits.max_price_age_ms is None else limits.max_price_age_ms
        self.max_position = _limit(limits.max_position)
        self.duplicate_window_ms = (
            -1 if limits.duplicate_window_ms is None else limits.duplicate_window_ms
        )

    cdef bint _reduces(self, int side, double quantity):
        if side > 0:
            return self.position < 0 and quantity + self.open_buy <= -self.position
        return self.position > 0 and quantity + self.open_sell <= self.position

    cdef bint _duplicate(self, int side, double quantity, double price, int64_t now_ms):
        cdef int i
        for i in range(RECENT):
            if (self.recent_ts[i] >= 0 and now_ms - self.recent_ts[i] <= self.duplicate_window_ms
                    and self.recent_side[i] == side and self.recent_qty[i] == quantity
                    and self.recent_price[i] == price):
                return True
        return False

    @cython.boundscheck(False)  # indexes below range(len(...)) only; measured in bench/risk.py
    @cython.wraparound(False)
    cpdef int check(self, int side, double quantity, double price, bint market,
                    bint reduce_only, int64_t now_ms):
        """Checks one order (``side`` +1 buy, -1 sell; ``price`` ignored for market orders);
        returns 0 if it may go, else a reason code (``coyote_risk.REASONS``). A passing order
        is reserved: its quantity counts as open until :meth:`on_fill` or :meth:`release`."""
        cdef SymbolState sym = self.symbol
        cdef ScopeState bot = self.bot
        cdef ScopeState account = self.account
        cdef bint reduces
        cdef double reference, notional, projected, gross, net, exposure, held
        cdef Slot other
        cdef SymbolState each
        cdef list every = self.engine.symbol_list
        cdef Py_ssize_t i, count

        # Circuit breakers: system, account, bot.
        if self.engine.system_state == S_HALTED or account.state == S_HALTED or bot.state == S_HALTED:
            return HALTED_
        if not (quantity > 0.0 and isfinite(quantity)):
            return INVALID_QUANTITY
        reduces = self._reduces(side, quantity)
        if not reduces:
            if (self.engine.system_state == S_REDUCING or account.state == S_REDUCING
                    or bot.state == S_REDUCING or reduce_only):
                return REDUCING_ONLY
            if bot.daily_pnl <= -bot.max_daily_loss or account.daily_pnl <= -account.max_daily_loss:
                return MAX_DAILY_LOSS
        if not sym.tradable:
            return NOT_TRADABLE
        if sym.restricted:
            return RESTRICTED
        if not market and not (price > 0.0 and isfinite(price)):
            return INVALID_PRICE
        if _off_grid(quantity, sym.lot):
            return OFF_LOT
        if not market and _off_grid(price, sym.tick):
            return OFF_TICK
        if quantity > self.max_quantity:
            return MAX_ORDER_QUANTITY

        if self.max_age_ms >= 0 and (sym.last_ts == 0 or now_ms - sym.last_ts > self.max_age_ms):
            if market:
                return STALE_PRICE
        if market:
            if sym.last_price <= 0.0:
                return STALE_PRICE
            reference = sym.last_price
        else:
            reference = price
            if sym.last_price > 0.0 and fabs(price - sym.last_price) / sym.last_price * 1e4 > self.collar_bps:
                return PRICE_COLLAR
        notional = quantity * reference
        if notional > self.max_notional:
            return MAX_ORDER_NOTIONAL

        if not reduces:
            if side > 0:
                projected = self.position + self.open_buy + quantity
            else:
                projected = self.position - self.open_sell - quantity
            if fabs(projected) > self.max_position:
                return MAX_POSITION
            if account.max_gross < INFINITY or account.max_net < INFINITY:
                gross = 0.0
                net = 0.0
                count = len(every)
                for i in range(count):
                    each = <SymbolState>every[i]
                    held = each.position + each.open_buy - each.open_sell
                    if each is sym:
                        held += side * quantity
                    exposure = held * (each.last_price if each.last_price > 0.0 else reference)
                    gross += fabs(exposure)
                    net += exposure
                if gross > account.max_gross:
                    return MAX_GROSS
                if fabs(net) > account.max_net:
                    return MAX_NET
            if bot.capital < INFINITY:
                exposure = notional
                count = len(bot.slots)
                for i in range(count):
                    other = <Slot>bot.slots[i]
                    held = fabs(other.position) + other.open_buy + other.open_sell
                    exposure += held * (other.symbol.last_price if other.symbol.last_price > 0.0
                                        else reference)
                if exposure > bot.capital:
                    return CAPITAL

        if self.duplicate_window_ms >= 0 and self._duplicate(side, quantity, price, now_ms):
            return DUPLICATE
        # Throttles last, so that a refused order spends no token; both or neither.
        if bot.bucket is not None and bot.bucket.available(now_ms * MS) < 1.0:
            return RATE_BOT
        if account.bucket is not None and account.bucket.available(now_ms * MS) < 1.0:
            return RATE_ACCOUNT
        if bot.bucket is not None:
            bot.bucket.try_acquire(now_ms * MS, 1.0)
        if account.bucket is not None:
            account.bucket.try_acquire(now_ms * MS, 1.0)

        if side > 0:
            self.open_buy += quantity
            sym.open_buy += quantity
        else:
            self.open_sell += quantity
            sym.open_sell += quantity
        self.recent_ts[self.recent_next] = now_ms
        self.recent_side[self.recent_next] = side
        self.recent_qty[self.recent_next] = quantity
        self.recent_price[self.recent_next] = price
        self.recent_next = (self.recent_next + 1) % RECENT
        return OK

    cpdef void on_fill(self, int side, double quantity):
        """Books a fill of an order this slot passed."""
        self.position += side * quantity
        self.symbol.position += side * quantity
        self.release(side, quantity)

    cpdef void reserve(self, int side, double quantity):
        """Counts ``quantity`` as open without a check: an order already accepted, restored
        after a restart or a refused replace."""
        if side > 0:
            self.open_buy += quantity
            self.symbol.open_buy += quantity
        else:
            self.open_sell += quantity
            self.symbol.open_sell += quantity

    cpdef void book(self, double position):
        """Sets the bot's position in the symbol, as recorded (after a restart)."""
        self.symbol.position += position - self.position
        self.position = position

    cpdef void release(self, int side, double quantity):
        """Frees the open quantity of an order that ended (cancelled, rejected, expired)."""
        if side > 0:
            self.open_buy = max(0.0, self.open_buy - quantity)
            self.symbol.open_buy = max(0.0, self.symbol.open_buy - quantity)
        else:
            self.open_sell = max(0.0, self.open_sell - quantity)
            self.symbol.open_sell = max(0.0, self.symbol.open_sell - quantity)


cdef class RiskEngine:
    """The risk state of one account, built from a :class:`coyote_risk.RiskConfig`."""

    def __init__(self, config, int64_t now_ms=0):
        self.config = config
        self.system_state = S_ACTIVE
        self.account = ScopeState(config.account, now_ms)
        self.bots = {}
        self.symbols = {
            symbol: SymbolState(spec, symbol in config.restricted)
            for symbol, spec in config.instruments.items()
        }
        self.symbol_list = list(self.symbols.values())
        self.slots = {}

    def slot(self, str bot_id, str symbol):
        """The slot of ``bot_id`` trading ``symbol``, or None if the instrument is unknown."""
        key = (bot_id, symbol)
        found = self.slots.get(key)
        if found is not None:
            return found
        if symbol not in self.symbols:
            return None
        cdef SymbolState sym = self.symbols[symbol]
        cdef ScopeState bot = self.slot_bot(bot_id)
        cdef Slot created = Slot(self, bot, self.account, sym, self.config.limits_for(bot_id, symbol))
        bot.slots.append(created)
        self.slots[key] = created
        return created

    def check(self, str bot_id, str symbol, int side, double quantity, double price,
              bint market, bint reduce_only, int64_t now_ms):
        """Looks the slot up and checks; returns a reason code (0 passes)."""
        found = self.slot(bot_id, symbol)
        if found is None:
            return REASON_CODES["risk.instrument_unknown"]
        return (<Slot>found).check(side, quantity, price, market, reduce_only, now_ms)

    def reconfigure(self, config, int64_t now_ms=0):
        """Enforces ``config``'s limits from now on, keeping the running state: positions and
        open-order reservations, last prices, daily PnL, circuit breaker states, the duplicate
        window and the throttles' tokens (a changed rate gets a bucket of the new size holding
        the tokens left, not a full one).

        A new instrument becomes tradable; one no longer in ``config`` stays known, so that
        its positions and open orders still count and its fills are booked, but refuses new
        orders (``risk.instrument_not_tradable``).

        Raises:
            ValueError: if ``config`` is of another account.
        """
        if config.account_id != self.config.account_id:
            raise ValueError(
                f"reconfigure takes the limits of account {self.config.account_id!r}, "
                f"got those of {config.account_id!r}"
            )
        cdef SymbolState sym
        cdef ScopeState bot
        cdef Slot each
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
                sym = SymbolState(spec, symbol in config.restricted)
                self.symbols[symbol] = sym
                self.symbol_list.append(sym)
        for (bot_id, symbol), each in self.slots.items():
            each.configure(config.limits_for(bot_id, symbol))

    def update_price(self, str symbol, double price, int64_t ts_ms):
        """The last trade (or mid) of ``symbol``; unknown symbols are ignored."""
        sym = self.symbols.get(symbol)
        if sym is not None:
            (<SymbolState>sym).last_price = price
            (<SymbolState>sym).last_ts = ts_ms

    def set_state(self, state, bot_id=None, *, system=False):
        """Trips or resets a circuit breaker: the system's, the account's or a bot's."""
        value = STATES[state] if isinstance(state, str) else int(state)
        if system:
            self.system_state = value
        elif bot_id is None:
            self.account.state = value
        else:
            self.slot_bot(bot_id).state = value

    def slot_bot(self, str bot_id):
        """The state of ``bot_id`` on this account (created with its limits on first use)."""
        bot = self.bots.get(bot_id)
        if bot is None:
            limits = self.config.bots.get(bot_id, Limits())
            bot = self.bots[bot_id] = ScopeState(limits)
        return bot

    def update_pnl(self, double daily_pnl, bot_id=None):
        """Reports the day's PnL of the account or a bot; at the loss limit the scope trips to
        REDUCING (returns True when it tripped now)."""
        scope = self.account if bot_id is None else self.slot_bot(bot_id)
        scope.daily_pnl = daily_pnl
        if scope.state == S_ACTIVE and daily_pnl <= -scope.max_daily_loss:
            scope.state = S_REDUCING
            return True
        return False
