# cython: language_level=3, embedsignature=True
"""epoll(7) for Python: a drop-in for ``select.epoll``.

The kernel facts this module relies on (open file descriptions, not fd
numbers; millisecond and nanosecond waits; ``EPOLLEXCLUSIVE``; fork) are
written down in ``docs/epoll.md``.
"""

from cpython.long cimport PyLong_AsUnsignedLongMask
from libc.errno cimport EINTR, ENOSYS, EPERM, errno
from libc.stdint cimport int64_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc
from posix.unistd cimport close as c_close

from fastio._c._common cimport (
    as_c_int, as_fd, check_fork, deadline_for, raise_errno, remaining_after_eintr, timeout_to_ns,
)
from fastio._c._sys cimport (
    EPOLL_CLOEXEC, EPOLL_CTL_ADD, EPOLL_CTL_DEL, EPOLL_CTL_MOD, epoll_create1, epoll_ctl,
    epoll_event, fio_fork_generation, fio_fork_init, fio_ns_to_ms_ceil, fio_ns_to_timespec,
    fio_sys_epoll_pwait2, fio_sys_epoll_wait, timespec,
)

from operator import index as _index

cdef extern from "<sys/epoll.h>":
    int EPOLLIN, EPOLLPRI, EPOLLOUT

cdef enum:
    # FD_SETSIZE - 1, the default maxevents of select.epoll.
    DEFAULT_MAXEVENTS = 1023
    # Events returned by one poll() without a heap allocation.
    STACK_EVENTS = 256

# 1 while epoll_pwait2 works here; 0 once it answered ENOSYS or EPERM.
cdef int have_pwait2 = 1

if fio_fork_init() != 0:
    raise ImportError("pthread_atfork failed: fastio cannot detect fork()")


def epoll_pwait2_available():
    """Whether sub-millisecond timeouts are honoured (``epoll_pwait2(2)`` works).

    Probes the kernel once with a zero wait on a fresh epoll instance.
    """
    global have_pwait2
    cdef int epfd, ret
    cdef timespec ts = fio_ns_to_timespec(0)
    cdef epoll_event ev
    if have_pwait2:
        epfd = epoll_create1(EPOLL_CLOEXEC)
        if epfd < 0:
            return False
        ret = fio_sys_epoll_pwait2(epfd, &ev, 1, &ts)
        c_close(epfd)
        if ret == -ENOSYS or ret == -EPERM:
            have_pwait2 = 0
    return bool(have_pwait2)


cdef class Epoll:
    """Epoll(sizehint=-1, flags=0)

    An epoll instance, as ``select.epoll``: ``sizehint`` must be -1 or
    positive and is ignored by the kernel; ``flags`` may be 0 or
    ``EPOLL_CLOEXEC`` (the fd is always close-on-exec, as in CPython).

    :raises ValueError: ``sizehint`` is 0 or below -1.
    :raises OSError: ``flags`` is invalid, or ``epoll_create1(2)`` failed
        (``EMFILE``: too many open files).

    See ``epoll(7)``.
    """

    def __cinit__(self):
        self.epfd = -1
        self.fork_gen = fio_fork_generation()

    def __init__(self, sizehint=-1, flags=0):
        sizehint = as_c_int(sizehint)
        flags = as_c_int(flags)
        if sizehint != -1 and sizehint <= 0:
            raise ValueError("negative sizehint")
        if flags and flags != EPOLL_CLOEXEC:
            raise OSError("invalid flags")
        if self.epfd >= 0:
            self.close()
        self.epfd = epoll_create1(EPOLL_CLOEXEC)
        if self.epfd < 0:
            raise_errno(errno)
        self.fork_gen = fio_fork_generation()

    def __dealloc__(self):
        if self.epfd >= 0:
            c_close(self.epfd)
            self.epfd = -1

    cdef int check(self) except -1:
        if self.epfd < 0:
            raise ValueError("I/O operation on closed epoll object")
        check_fork(self.fork_gen, "Epoll")
        return 0

    cdef int ctl(self, int op, int fd, uint32_t events, uint64_t data) except -1:
        """epoll_ctl(2) on an open, same-process instance; OSError on failure."""
        cdef epoll_event ev
        self.check()
        ev.events = events
        ev.data.u64 = data
        # epoll_ctl never sleeps waiting for events, so the GIL stays held:
        # releasing it would cost more than the call.
        if epoll_ctl(self.epfd, op, fd, &ev) < 0:
            raise_errno(errno)
        return 0

    cdef int wait(self, epoll_event *events, int maxevents, int64_t timeout_ns) except -1:
        """Wait up to timeout_ns (-1: forever) for at most maxevents events.

        Releases the GIL while waiting; on EINTR runs the signal handlers and
        retries with the time that is left (PEP 475). Returns the count."""
        global have_pwait2
        cdef int n
        cdef timespec ts
        cdef int64_t deadline = deadline_for(timeout_ns)
        self.check()
        while True:
            if timeout_ns > 0 and have_pwait2:
                ts = fio_ns_to_timespec(timeout_ns)
                with nogil:
                    n = fio_sys_epoll_pwait2(self.epfd, events, maxevents, &ts)
                if n == -ENOSYS or n == -EPERM:
                    have_pwait2 = 0
                    continue
            else:
                if timeout_ns == 0:
                    # Cannot wait: keep the GIL (releasing it costs more).
                    n = fio_sys_epoll_wait(self.epfd, events, maxevents, 0)
                else:
                    with nogil:
                        n = fio_sys_epoll_wait(self.epfd, events, maxevents,
                                               fio_ns_to_ms_ceil(timeout_ns))
            if n >= 0:
                return n
            if n != -EINTR:
                raise_errno(-n)
            timeout_ns = remaining_after_eintr(deadline)
            # The handlers may have closed this object.
            self.check()

    @property
    def closed(self):
        """True once the epoll fd is closed."""
        return self.epfd < 0

    def close(self):
        """Close the epoll fd. Further use raises ValueError; closing twice is
        fine. As in CPython, an error from close(2) (EBADF after another
        object closed the same fd) is not raised."""
        cdef int fd = self.epfd
        if fd < 0:
            return
        self.epfd = -1
        with nogil:
            c_close(fd)

    def fileno(self):
        """Return the epoll control file descriptor."""
        if self.epfd < 0:
            raise ValueError("I/O operation on closed epoll object")
        return self.epfd

    @classmethod
    def fromfd(cls, fd):
        """Create an epoll object from a given control fd (taking ownership)."""
        cdef Epoll self = cls.__new__(cls)
        self.epfd = fd
        return self

    def register(self, fd, eventmask=EPOLLIN | EPOLLPRI | EPOLLOUT):
        """Register ``fd`` (an int or an object with ``fileno()``) for ``eventmask``.

        :raises FileExistsError: ``fd`` is already registered.
        :raises PermissionError: ``fd`` does not support epoll (a regular file).
        :raises OSError: ``EBADF`` for a closed fd, ``EINVAL`` for a bad mask.
        :raises ValueError: negative fd, or this object is closed.

        See ``epoll_ctl(2)`` (``EPOLL_CTL_ADD``).
        """
        cdef int cfd = as_fd(fd)
        cdef uint32_t mask = <uint32_t>PyLong_AsUnsignedLongMask(_index(eventmask))
        self.ctl(EPOLL_CTL_ADD, cfd, mask, <uint64_t><uint32_t>cfd)

    def modify(self, fd, eventmask):
        """Change the event mask of a registered ``fd``.

        :raises FileNotFoundError: ``fd`` is not registered.

        See ``epoll_ctl(2)`` (``EPOLL_CTL_MOD``).
        """
        cdef int cfd = as_fd(fd)
        cdef uint32_t mask = <uint32_t>PyLong_AsUnsignedLongMask(_index(eventmask))
        self.ctl(EPOLL_CTL_MOD, cfd, mask, <uint64_t><uint32_t>cfd)

    def unregister(self, fd):
        """Remove ``fd`` from the set.

        :raises FileNotFoundError: ``fd`` is not registered.
        :raises OSError: ``EBADF`` if ``fd`` was closed.

        See ``epoll_ctl(2)`` (``EPOLL_CTL_DEL``).
        """
        cdef int cfd = as_fd(fd)
        self.ctl(EPOLL_CTL_DEL, cfd, 0, 0)

    def poll(self, timeout=None, maxevents=-1):
        """Wait for events and return them as a list of ``(fd, events)``.

        ``timeout`` is in seconds (float or int); ``None`` or a negative value
        waits forever. Sub-millisecond timeouts are honoured where the kernel
        has ``epoll_pwait2(2)``. ``maxevents`` of -1 means up to 1023.

        The GIL is released while waiting; signals run their handlers and the
        wait resumes with the remaining time (PEP 475).

        See ``epoll_wait(2)``.
        """
        cdef int64_t timeout_ns = timeout_to_ns(timeout, 1000000000)
        cdef epoll_event stack_events[STACK_EVENTS]
        cdef epoll_event *events = stack_events
        cdef int n, i
        cdef int max_events = as_c_int(maxevents)
        cdef list result
        if max_events == -1:
            max_events = DEFAULT_MAXEVENTS
        elif max_events <= 0:
            raise ValueError(f"maxevents must be greater than 0, got {max_events}")
        self.check()
        if max_events > STACK_EVENTS:
            events = <epoll_event *>malloc(max_events * sizeof(epoll_event))
            if events == NULL:
                raise MemoryError()
        try:
            n = self.wait(events, max_events, timeout_ns)
            result = [None] * n
            for i in range(n):
                result[i] = (<int><uint32_t>events[i].data.u64, events[i].events)
            return result
        finally:
            if events != stack_events:
                free(events)

    def __enter__(self):
        if self.epfd < 0:
            raise ValueError("I/O operation on closed epoll object")
        return self

    def __exit__(self, *args):
        self.close()
