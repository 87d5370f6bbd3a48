# cython: language_level=3, embedsignature=True
"""The compiled loop's readiness engine: one epoll set, level-triggered.

Kernel facts it relies on:

* A file that is closed while registered leaves the epoll set on its own (if
  no other fd refers to it), so ``EPOLL_CTL_MOD`` on its reused number fails
  with ``ENOENT``: the fd is then added afresh. ``EPOLL_CTL_DEL`` errors
  (``EBADF``, ``ENOENT``) are ignored, as the stdlib selector does.
* Events carry the fd number, never a pointer: a registration that outlives
  its entry (an fd closed under the loop while a ``dup`` keeps the file open)
  can then only wake whatever entry has that number now, which the loop's
  callbacks tolerate as a spurious wake-up.
* After ``fork()`` the child shares the epoll set with the parent: waiting
  there raises ``RuntimeError``; removing a registration does not touch the
  shared set, closing closes the child's fd only.
"""

from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from libc.errno cimport ENOENT
from libc.stdint cimport int64_t, uint32_t

from fastio._c._loop_engine cimport Engine, FdEntry, fire
from fastio._c._sys cimport (
    EPOLL_CTL_ADD, EPOLL_CTL_DEL, EPOLL_CTL_MOD, epoll_event, fio_fork_generation, fio_fork_init,
)
from fastio._c.epoll cimport Epoll

# Each module has its own fork counter (csrc/fio_fork.h): this one's handler.
if fio_fork_init() != 0:
    raise ImportError("pthread_atfork failed: fastio cannot detect fork()")

cdef enum:
    MAX_EVENTS = 256    # taken per wait; level-triggered, so the rest come next turn


cdef class EpollEngine(Engine):
    """EpollEngine()

    The readiness engine of ``fastio.asyncio.Loop``: ``loop.engine`` says
    ``"epoll"``."""

    cdef Epoll ep
    cdef list entries           # fd -> the FdEntry watched under that number, or None
    cdef unsigned long fork_gen

    def __cinit__(self):
        self.name = "epoll"
        self.entries = []
        self.ep = Epoll()
        self.fork_gen = fio_fork_generation()

    cdef int watch(self, FdEntry entry, uint32_t events) except -1:
        cdef int fd = entry.fd
        if events == entry.events:
            return 0
        if not events:
            entry.events = 0
            self.entries[fd] = None
            if self.fork_gen == fio_fork_generation():
                try:
                    self.ep.ctl(EPOLL_CTL_DEL, fd, 0, 0)
                except OSError:
                    pass   # closed under us: the kernel already dropped it
            return 0
        if fd >= PyList_GET_SIZE(self.entries):
            self.entries.extend([None] * (fd + 1 - PyList_GET_SIZE(self.entries)))
        if not entry.events:
            self.ep.ctl(EPOLL_CTL_ADD, fd, events, <unsigned>fd)
        else:
            try:
                self.ep.ctl(EPOLL_CTL_MOD, fd, events, <unsigned>fd)
            except OSError as exc:
                if exc.errno != ENOENT:
                    raise
                # The file was closed and the number reused: watch the new one.
                self.ep.ctl(EPOLL_CTL_ADD, fd, events, <unsigned>fd)
        entry.events = events
        self.entries[fd] = entry
        return 0

    cdef int rewatch(self, FdEntry entry) except -1:
        cdef uint32_t events = entry.events
        entry.events = 0
        self.entries[entry.fd] = None
        try:
            self.ep.ctl(EPOLL_CTL_MOD, entry.fd, events, <unsigned>entry.fd)
        except OSError as exc:
            if exc.errno != ENOENT:
                raise
            self.ep.ctl(EPOLL_CTL_ADD, entry.fd, events, <unsigned>entry.fd)
        entry.events = events
        self.entries[entry.fd] = entry
        return 0

    cdef object recv_reader(self, FdEntry entry, object transport, object loop, bint debug):
        raise RuntimeError("the epoll engine reads through readiness (the loop never asks it this)")

    cdef int wait(self, int64_t timeout_ns, list fired) except -1:
        cdef epoll_event events[MAX_EVENTS]
        cdef int n, i, fd
        cdef FdEntry entry
        n = self.ep.wait(events, MAX_EVENTS, timeout_ns)
        for i in range(n):
            fd = <int>events[i].data.u64
            if fd >= PyList_GET_SIZE(self.entries):
                continue
            obj = <object>PyList_GET_ITEM(self.entries, fd)
            if obj is None:
                continue
            entry = <FdEntry>obj
            fire(fired, entry, events[i].events)
        return 0

    cdef int close_engine(self) except -1:
        self.entries = []
        self.ep.close()
        return 0
