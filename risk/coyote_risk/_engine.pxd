from libc.stdint cimport int64_t

from coyote_risk._throttle cimport TokenBucket


# -- SCOPES ----------------------------------------------------------------------------------

cdef class ScopeState:
    cdef public int state
    """ACTIVE, REDUCING or HALTED."""
    cdef public double daily_pnl
    """Realised plus unrealised PnL of the day, as last reported."""
    cdef public double max_daily_loss
    """Loss at which the scope trips to REDUCING (inf: none)."""
    cdef public double capital
    """The notional the scope may hold and commit (inf: none)."""
    cdef public double max_gross
    """Largest gross exposure (inf: none)."""
    cdef public double max_net
    """Largest absolute net exposure (inf: none)."""
    cdef TokenBucket bucket
    cdef list slots

    cdef void configure(self, object limits, int64_t now_ms)


cdef class SymbolState:
    cdef public double tick
    """Price increment."""
    cdef public double lot
    """Quantity increment."""
    cdef public bint tradable
    cdef public bint restricted
    cdef public double last_price
    """Last trade or mid (0: none yet)."""
    cdef public int64_t last_ts
    """When ``last_price`` was seen, ms (0: never)."""
    cdef public double position
    """The account's position, all bots together."""
    cdef public double open_buy
    cdef public double open_sell

    cdef void configure(self, object spec, bint restricted)


# -- ORDERS ------------------------------------------------------------------------------------

cdef class Slot:
    cdef readonly ScopeState bot
    cdef readonly ScopeState account
    cdef readonly SymbolState symbol
    cdef RiskEngine engine
    cdef public double position
    """The bot's position in the symbol."""
    cdef public double open_buy
    cdef public double open_sell
    cdef double max_quantity
    cdef double max_notional
    cdef double collar_bps
    cdef int64_t max_age_ms
    cdef double max_position
    cdef int64_t duplicate_window_ms
    cdef int64_t[8] recent_ts
    cdef double[8] recent_qty
    cdef double[8] recent_price
    cdef int[8] recent_side
    cdef int recent_next

    cdef void configure(self, object limits)
    cdef bint _reduces(self, int side, double quantity)
    cdef bint _duplicate(self, int side, double quantity, double price, int64_t now_ms)
    cpdef int check(self, int side, double quantity, double price, bint market,
                    bint reduce_only, int64_t now_ms)
    cpdef void on_fill(self, int side, double quantity)
    cpdef void reserve(self, int side, double quantity)
    cpdef void book(self, double position)
    cpdef void release(self, int side, double quantity)


cdef class RiskEngine:
    cdef public int system_state
    cdef readonly ScopeState account
    cdef dict bots
    cdef dict symbols
    cdef list symbol_list
    cdef dict slots
    cdef readonly object config
    """The :class:`coyote_risk.RiskConfig` enforced now (see ``reconfigure``)."""
