"""Order-rate throttle: a token bucket on caller-supplied time.

Time comes in as integer nanoseconds from the caller (a monotonic clock live, the bar clock in a
backtest), so the check does no I/O and replays identically.
"""

from libc.stdint cimport int64_t


# -- TOKEN BUCKET --------------------------------------------------------------------------

cdef class TokenBucket:
    """Allows bursts of ``capacity`` and a sustained ``refill_per_second``.

    Args:
        capacity: The burst size; must be positive.
        refill_per_second: The sustained rate; must be positive.
        now_ns: The time at which the bucket starts full.
    """

    def __init__(self, double capacity, double refill_per_second, int64_t now_ns=0):
        if not capacity > 0:
            raise ValueError(f"capacity must be positive, got {capacity!r}")
        if not refill_per_second > 0:
            raise ValueError(f"refill_per_second must be positive, got {refill_per_second!r}")
        self.capacity = capacity
        self.refill_per_second = refill_per_second
        self._tokens = capacity
        self._last_ns = now_ns

    cdef inline void _refill(self, int64_t now_ns):
        # A clock that steps backwards (a replay restarting) must not mint tokens.
        if now_ns <= self._last_ns:
            return
        self._tokens += (now_ns - self._last_ns) * 1e-9 * self.refill_per_second
        if self._tokens > self.capacity:
            self._tokens = self.capacity
        self._last_ns = now_ns

    cpdef bint try_acquire(self, int64_t now_ns, double tokens=1.0):
        """Takes ``tokens`` if the bucket holds them at ``now_ns``; returns whether it did."""
        self._refill(now_ns)
        if self._tokens >= tokens:
            self._tokens -= tokens
            return True
        return False

    cpdef double available(self, int64_t now_ns):
        """The tokens the bucket holds at ``now_ns``."""
        self._refill(now_ns)
        return self._tokens

    cpdef TokenBucket resized(self, double capacity, double refill_per_second, int64_t now_ns):
        """A bucket of another size and rate that holds the tokens this one holds at
        ``now_ns`` (at most its new ``capacity``): changing a limit grants no fresh burst."""
        self._refill(now_ns)
        cdef TokenBucket bucket = TokenBucket(capacity, refill_per_second, self._last_ns)
        bucket._tokens = min(self._tokens, capacity)
        return bucket

    def __repr__(self):
        return (
            f"TokenBucket(capacity={self.capacity!r}, "
            f"refill_per_second={self.refill_per_second!r})"
        )
