# cython: language_level=3
from libc.stdint cimport int64_t

from fastio._c._sys cimport pollfd


cdef class Poll:
    cdef pollfd *fds
    cdef Py_ssize_t nfds
    cdef Py_ssize_t capacity
    cdef dict position
    cdef bint running

    cdef int set_events(self, int fd, unsigned short events) except -1
    cdef int remove(self, int fd) except -1
    cdef pollfd *snapshot(self, Py_ssize_t *nfds) except NULL
    cdef int wait(self, pollfd *fds, Py_ssize_t nfds, int64_t timeout_ns) except -1
