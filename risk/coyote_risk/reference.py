"""Pure-Python references of the compiled checks.

Each class here behaves exactly like its Cython counterpart. Tests run both on the same inputs,
and the benchmarks use these as the baseline the compiled code is measured against.
"""

from __future__ import annotations


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
