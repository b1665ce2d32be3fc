"""Pure-Python references of the executor's compiled pieces, for tests and benchmark baselines."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable


class RecentIds:
    """Reference of :class:`coyote_executor.RecentIds`."""

    def __init__(self, capacity: int) -> None:
        if capacity <= 0:
            raise ValueError(f"capacity must be positive, got {capacity!r}")
        self.capacity = capacity
        self._members: OrderedDict[Hashable, None] = OrderedDict()

    def add(self, key: Hashable) -> bool:
        if key in self._members:
            return False
        self._members[key] = None
        if len(self._members) > self.capacity:
            self._members.popitem(last=False)
        return True

    def __contains__(self, key: Hashable) -> bool:
        return key in self._members

    def __len__(self) -> int:
        return len(self._members)
