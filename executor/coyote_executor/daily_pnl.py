"""The day's profit and loss of an account and of each of its bots, marked to market, for the
risk engine's daily loss limits (``max_daily_loss``).

A bot's PnL today is the change of its equity since the start of the UTC day: what its fills
today paid and received (fees included), plus what its positions are worth now, minus what the
positions it held when the day began were worth then::

    pnl = cash_today + sum(position * mark_now) - sum(position_at_day_start * mark_at_day_start)

so a position carried overnight counts from the day's first price, not from what it cost. The
account's PnL is the sum of its bots'. Marks are the venue's last prices (last trade, or the
close of the latest bar), as the risk engine's other checks use them.

The executor keeps a :class:`DayBook` per account it owns: loaded from the records when it takes
the account on (so a restart forgets no loss), fed every fill, and marked about once a second;
at the UTC day change it starts a new day from the positions and marks of that moment.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

DAY_MS = 86_400_000


def day_of(ts_ms: int) -> int:
    """The UTC day number of ``ts_ms``."""
    return ts_ms // DAY_MS


@dataclasses.dataclass(slots=True)
class _Holding:
    """One bot's position in one symbol, today."""

    position: float = 0.0
    start_position: float = 0.0
    start_mark: float | None = None
    """The price when the day began; None until known (the holding then counts from its first
    mark of the day)."""
    cash: float = 0.0
    """Today's fills: received for sales, paid for purchases, fees paid."""
    last_price: float | None = None
    """The last price seen, a mark of last resort while the venue has none."""


class DayBook:
    """The PnL of one account's bots today.

    Args:
        day: The UTC day it is about (:func:`day_of`).
    """

    def __init__(self, day: int) -> None:
        self.day = day
        self._holdings: dict[tuple[str, str], _Holding] = {}

    def hold(self, bot_id: str, symbol: str, position: float, start_mark: float | None) -> None:
        """Takes a position held when the day began, worth ``start_mark`` then."""
        holding = self._holding(bot_id, symbol)
        holding.position += position
        holding.start_position += position
        holding.start_mark = holding.last_price = start_mark

    def on_fill(
        self, bot_id: str, symbol: str, signed_quantity: float, price: float, fee: float
    ) -> None:
        """Books a fill of today: ``signed_quantity`` is positive for a purchase."""
        holding = self._holding(bot_id, symbol)
        holding.position += signed_quantity
        holding.cash -= signed_quantity * price + fee
        holding.last_price = price

    def symbols(self) -> set[str]:
        """Symbols whose marks the PnL needs."""
        return {s for (_, s), h in self._holdings.items() if h.position or h.start_position}

    def pnl(self, marks: Mapping[str, float]) -> tuple[float, dict[str, float]]:
        """The account's PnL and each bot's at ``marks`` (symbol → price)."""
        bots: dict[str, float] = {}
        for (bot_id, symbol), holding in self._holdings.items():
            mark = marks.get(symbol)
            if mark is not None:
                holding.last_price = mark
                if holding.start_mark is None:
                    holding.start_mark = mark  # first priced today: it counts from here
            mark = holding.last_price
            value = holding.cash
            if mark is not None:
                value += holding.position * mark
                value -= holding.start_position * (holding.start_mark or mark)
            bots[bot_id] = bots.get(bot_id, 0.0) + value
        return sum(bots.values()), bots

    def roll(self, day: int, marks: Mapping[str, float]) -> None:
        """Starts ``day``: the positions now are its opening ones, worth ``marks``."""
        self.day = day
        for (_, symbol), holding in self._holdings.items():
            holding.start_position = holding.position
            holding.start_mark = marks.get(symbol, holding.last_price)
            holding.cash = 0.0

    def _holding(self, bot_id: str, symbol: str) -> _Holding:
        key = (bot_id, symbol)
        holding = self._holdings.get(key)
        if holding is None:
            holding = self._holdings[key] = _Holding()
        return holding


def load(
    day: int,
    positions: Iterable[tuple[str, str, float]],
    fills_today: Iterable[tuple[str, str, float, float, float]],
    day_start_marks: Mapping[str, float],
) -> DayBook:
    """A :class:`DayBook` from the records: ``positions`` now as (bot, symbol, quantity), the
    fills of ``day`` as (bot, symbol, signed quantity, price, fee), and the prices when the day
    began."""
    book = DayBook(day)
    fills = list(fills_today)
    bought: dict[tuple[str, str], float] = {}
    for bot_id, symbol, signed, _, _ in fills:
        bought[(bot_id, symbol)] = bought.get((bot_id, symbol), 0.0) + signed
    for bot_id, symbol, quantity in positions:
        opening = quantity - bought.get((bot_id, symbol), 0.0)
        if opening:
            book.hold(bot_id, symbol, opening, day_start_marks.get(symbol))
    for bot_id, symbol, signed, price, fee in fills:
        book.on_fill(bot_id, symbol, signed, price, fee)
    return book
