# cython: language_level=3
from libc.stdint cimport int64_t, uint32_t, uint64_t

from fastio._c._sys cimport epoll_event


cdef class Epoll:
    cdef int epfd
    cdef unsigned long fork_gen

    cdef int check(self) except -1
    cdef int ctl(self, int op, int fd, uint32_t events, uint64_t data) except -1
    cdef int wait(self, epoll_event *events, int maxevents, int64_t timeout_ns) except -1
