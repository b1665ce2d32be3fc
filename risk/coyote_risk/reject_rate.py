"""The reject-rate circuit breaker: a scope whose new orders keep being rejected is halted.

A bot that sends order after order the risk engine or the broker refuses is broken (a loop
resending a refused order, a sizing bug, prices on the wrong scale): each refusal is cheap, but
the flood hides real traffic and the bug may soon send something that passes. The breaker keeps,
per scope (a bot on an account, or the account), the outcome of its last ``reject_rate_window``
new orders; when the share rejected reaches ``max_reject_rate``, the scope trips to HALTED for
``reject_halt_s`` seconds, then starts again with an empty window.

What counts is a new order the scope itself got refused. Refusals that say nothing about its
behaviour do not count: those of a halt (``risk.halted``, or the breaker would keep itself
tripped), of an intent that waited too long in the queue (``intent.expired``), and of an
account this executor does not serve. No I/O: the executor feeds it decisions and asks what
tripped and what is due to be lifted; a backtest can do the same.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Hashable
from decimal import Decimal
from typing import Generic, TypeVar

from coyote_risk.config import Limits

DEFAULT_WINDOW = 50
"""New orders a scope's rate is taken over when its limits name no ``reject_rate_window``."""
DEFAULT_HALT_S = 300.0
"""How long a tripped scope stays halted when its limits name no ``reject_halt_s``."""
NOT_COUNTED = frozenset({"risk.halted", "intent.expired", "account.unknown", "account.not_owned"})
"""Rejection codes that say nothing about the scope's own orders."""


Scope = TypeVar("Scope", bound=Hashable)


@dataclasses.dataclass(frozen=True)
class Trip(Generic[Scope]):
    """A scope that has just tripped."""

    scope: Scope
    rejected: int
    window: int
    max_rate: Decimal
    until: float
    """When the halt ends, on the clock the breaker was given."""

    def describe(self) -> str:
        return (
            f"{self.rejected} of its last {self.window} new orders rejected "
            f"(limit {self.max_rate:.0%})"
        )


@dataclasses.dataclass
class _Window:
    outcomes: collections.deque[bool]
    rejected: int = 0


class RejectRateBreaker(Generic[Scope]):
    """Tracks the reject rate of any number of scopes (any hashable key names one)."""

    def __init__(self) -> None:
        self._windows: dict[Scope, _Window] = {}
        self._halted: dict[Scope, float] = {}

    def note(
        self, scope: Scope, limits: Limits, *, rejected: bool, now: float
    ) -> Trip[Scope] | None:
        """Adds the outcome of one new order of ``scope`` (under its own ``limits``); answers
        the :class:`Trip` if the scope trips now. A halted scope's orders are not counted."""
        max_rate = limits.max_reject_rate
        if max_rate is None or scope in self._halted:
            return None
        size = limits.reject_rate_window or DEFAULT_WINDOW
        window = self._windows.get(scope)
        if window is None or window.outcomes.maxlen != size:
            window = self._windows[scope] = _Window(collections.deque(maxlen=size))
        if len(window.outcomes) == size:
            window.rejected -= window.outcomes[0]
        window.outcomes.append(rejected)
        window.rejected += rejected
        # Only a full window decides: three rejections of a bot's first four orders are a
        # start-up hiccup more often than a broken bot.
        if len(window.outcomes) < size or window.rejected < max_rate * size:
            return None
        until = now + (limits.reject_halt_s or DEFAULT_HALT_S)
        self._halted[scope] = until
        del self._windows[scope]
        return Trip(scope, window.rejected, size, max_rate, until)

    def scopes(self) -> list[Scope]:
        """The scopes halted now."""
        return list(self._halted)

    def halted(self, scope: Scope) -> bool:
        return scope in self._halted

    def halted_until(self, scope: Scope) -> float | None:
        return self._halted.get(scope)

    def lift_due(self, now: float) -> list[Scope]:
        """Lifts and answers the scopes whose halt has run out by ``now``."""
        due = [scope for scope, until in self._halted.items() if until <= now]
        for scope in due:
            del self._halted[scope]
        return due
