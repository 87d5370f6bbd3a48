# cython: language_level=3, embedsignature=True
"""The interface between the compiled loop's scheduler and its kernel engines.

The scheduler (``_loop_core``) keeps one ``FdEntry`` per watched fd, with its
reader and writer callbacks. An engine is told what to watch (``watch``:
``EPOLLIN``/``EPOLLOUT`` bits, 0 to stop) and, once per turn, waits
(``wait``): it lists in ``fired`` every entry with events, once, its
``revents`` set (``fire``); the scheduler clears them after reading them. Engines: ``_loop_epoll.EpollEngine`` and ``_loop_uring.UringEngine``.
"""


cdef class FdEntry:
    """The callbacks and the watched events of one fd of the loop."""


cdef class Engine:
    """A kernel engine under the compiled loop (abstract)."""

    cdef int wait(self, int64_t timeout_ns, list fired) except -1:
        raise NotImplementedError

    cdef int watch(self, FdEntry entry, uint32_t events) except -1:
        raise NotImplementedError

    cdef int rewatch(self, FdEntry entry) except -1:
        raise NotImplementedError

    cdef object recv_reader(self, FdEntry entry, object transport, object loop, bint debug):
        raise NotImplementedError

    cdef int detach_recv(self, FdEntry entry) except -1:
        return 0    # an engine without recv mode has nothing to stop

    cdef int close_engine(self) except -1:
        raise NotImplementedError
