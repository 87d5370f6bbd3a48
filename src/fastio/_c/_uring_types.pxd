# cython: language_level=3
from libc.stdint cimport uint16_t, uint32_t


cdef class Completion:
    cdef readonly object user_data
    cdef readonly int res
    cdef readonly unsigned int flags
    cdef readonly object buffer_id
    cdef readonly object buffer



cdef class BufRing:
    cdef readonly int bgid
    cdef readonly unsigned int entries
    cdef readonly unsigned int size
    cdef void *ring_mem
    cdef size_t ring_sz
    cdef char *bufs
    cdef size_t bufs_sz
    cdef uint16_t tail
    cdef uint32_t inflight
    cdef int registered

    cdef void recycle(self, uint16_t bid) noexcept
    cdef inline char *at(self, uint32_t bid) noexcept:
        """Where buffer ``bid``'s bytes are."""
        return self.bufs + <size_t>bid * self.size
    cdef void free_memory(self) noexcept
