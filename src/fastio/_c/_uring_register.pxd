# cython: language_level=3
from fastio._c._uring_core cimport RingCore


cdef class RingRegistry(RingCore):
    cdef int register(self, unsigned opcode, const void *arg, unsigned nr) except? -1
