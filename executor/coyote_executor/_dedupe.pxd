# -- RECENT IDS ----------------------------------------------------------------------------

cdef class RecentIds:
    cdef readonly Py_ssize_t capacity
    """How many of the most recent ids are remembered."""
    cdef set _members
    cdef list _ring
    cdef Py_ssize_t _next

    cpdef bint add(self, object key)
