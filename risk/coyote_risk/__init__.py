"""Coyote's pre-trade risk engine.

The checks are compiled with Cython and do no I/O: the executor and the backtester call the very
same code. Pure-Python references of each check live in :mod:`coyote_risk.reference`.
"""

from coyote_risk._throttle import TokenBucket

__all__ = [
    # Throttles
    "TokenBucket",
]
