# cython: language_level=3
from libc.stdint cimport uint32_t, uint64_t

from fastio._c._aio_core cimport ContextCore


cdef class Context(ContextCore):
    cdef object prep_buf(self, uint32_t op, object fd, object buf, object offset, object user_data,
                         object rw_flags, object reqprio, bint writable)
    cdef object prep_vec(self, uint32_t op, object fd, object buffers, object offset, object user_data,
                         object rw_flags, object reqprio, bint writable)
    cdef object prep_plain(self, uint32_t op, object fd, uint64_t mask, object user_data, object reqprio)
    cdef object batch(self, uint32_t op, object fd, object buf, object offsets, object size, object results,
                      object depth)
