"""A bounded memory of recently seen intent ids.

Kafka delivers at least once: after a rebalance or a restart the same intent can arrive again.
This set answers "seen it?" for the most recent ids without a database round trip; the durable
order record remains the authority for anything older than the window.
"""


# -- RECENT IDS ----------------------------------------------------------------------------

cdef class RecentIds:
    """Remembers the last ``capacity`` distinct ids, forgetting the oldest first.

    Args:
        capacity: How many ids to remember; must be positive.
    """

    def __init__(self, Py_ssize_t capacity):
        if capacity <= 0:
            raise ValueError(f"capacity must be positive, got {capacity!r}")
        self.capacity = capacity
        self._members = set()
        self._ring = [None] * capacity
        self._next = 0

    cpdef bint add(self, object key):
        """Records ``key``; returns True if it was new, False if it was already remembered."""
        if key in self._members:
            return False
        cdef object evicted = self._ring[self._next]
        if evicted is not None:
            self._members.discard(evicted)
        self._ring[self._next] = key
        self._members.add(key)
        self._next += 1
        if self._next == self.capacity:
            self._next = 0
        return True

    def __contains__(self, key):
        return key in self._members

    def __len__(self):
        return len(self._members)
