"""Coyote's pre-trade risk engine.

The checks are compiled with Cython and do no I/O: the executor and the backtester call the very
same code. Pure-Python references of each check live in :mod:`coyote_risk.reference`.
"""

from coyote_risk._engine import RiskEngine, Slot
from coyote_risk._throttle import TokenBucket
from coyote_risk.config import (
    ACTIVE,
    HALTED,
    REASON_CODES,
    REASONS,
    REDUCING,
    InstrumentSpec,
    Limits,
    RiskConfig,
    risk_config_from_mapping,
)
from coyote_risk.reject_rate import RejectRateBreaker, Trip

__all__ = [
    # The engine
    "RiskEngine",
    "Slot",
    # Configuration
    "InstrumentSpec",
    "Limits",
    "RiskConfig",
    "risk_config_from_mapping",
    # Outcomes and states
    "ACTIVE",
    "HALTED",
    "REASONS",
    "REASON_CODES",
    "REDUCING",
    # Throttles and breakers
    "TokenBucket",
    "RejectRateBreaker",
    "Trip",
]
