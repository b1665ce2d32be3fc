from libc.stdint cimport int64_t


# -- TOKEN BUCKET --------------------------------------------------------------------------

cdef class TokenBucket:
    cdef readonly double capacity
    """The most tokens the bucket holds: the burst that may pass at once."""
    cdef readonly double refill_per_second
    """Tokens added per second of elapsed time: the sustained rate."""
    cdef double _tokens
    cdef int64_t _last_ns

    cdef inline void _refill(self, int64_t now_ns)
    cpdef bint try_acquire(self, int64_t now_ns, double tokens=*)
    cpdef double available(self, int64_t now_ns)
    cpdef TokenBucket resized(self, double capacity, double refill_per_second, int64_t now_ns)
