# cython: language_level=3, embedsignature=True
"""poll(2) for Python: a drop-in for ``select.poll``, its ``pollfd`` array
kept in C between calls. The kernel facts (threads, result order, timeouts,
``POLLNVAL``, fork) are written down in ``docs/epoll.md``.
"""

from cpython.dict cimport PyDict_GetItem
from cpython.long cimport PyLong_AsUnsignedLong
from cpython.number cimport PyNumber_Index
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from libc.errno cimport EINTR, ENOENT
from libc.limits cimport INT_MAX, INT_MIN, ULONG_MAX
from libc.math cimport ceil
from libc.stdint cimport int64_t
from libc.string cimport memcpy

from fastio._c._common cimport (
    as_fd, deadline_for, raise_errno, remaining_after_eintr,
)
from fastio._c._sys cimport fio_ns_to_timespec, fio_sys_ppoll, pollfd, timespec


cdef extern from "<poll.h>":
    int POLLIN, POLLPRI, POLLOUT


cdef unsigned short as_eventmask(object eventmask) except? 0xFFFF:
    """CPython's unsigned-short converter (``_PyLong_UnsignedShort_Converter``):
    TypeError for a non-int, then ValueError for any negative value, then
    OverflowError above 0xFFFF (worded as CPython words it beyond an unsigned long)."""
    if not isinstance(eventmask, int):
        raise TypeError("an integer is required")
    if eventmask < 0:
        raise ValueError("value must be positive")
    if eventmask > 0xFFFF:
        if eventmask > ULONG_MAX:
            raise OverflowError("Python int too large to convert to C unsigned long")
        raise OverflowError("Python int too large for C unsigned short")
    return <unsigned short>PyLong_AsUnsignedLong(eventmask)


cdef int64_t poll_timeout_ns(object timeout) except? -2:
    """``poll(timeout)``'s milliseconds as nanoseconds (-1: forever), checked as
    ``select.poll`` checks them: the timeout rounded away from zero to whole
    milliseconds must fit a C int, however negative (OverflowError "timeout is
    too large"); NaN is a ValueError; a non-number a TypeError. A fraction of a
    millisecond is kept (rounded up to a nanosecond), as ``ppoll(2)`` takes it."""
    cdef double d
    cdef long long whole
    if timeout is None:
        return -1
    if isinstance(timeout, float):
        d = timeout
        if d != d:
            raise ValueError("Invalid value NaN (not a number)")
        # Rounded away from zero, d fits a C int exactly when it lies within one.
        if not (<double>INT_MIN <= d <= <double>INT_MAX):
            raise OverflowError("timeout is too large")
        if d < 0:
            return -1
        return <int64_t>ceil(d * 1e6)
    try:
        value = PyNumber_Index(timeout)
    except TypeError:
        raise TypeError("timeout must be an integer or None") from None
    if not INT_MIN <= value <= INT_MAX:
        raise OverflowError("timeout is too large")
    whole = value
    return -1 if whole < 0 else whole * 1000000


cdef class Poll:
    """Poll()

    A set of file descriptors to wait on with ``poll(2)``, as ``select.poll``.
    """

    def __cinit__(self):
        self.fds = NULL
        self.nfds = 0
        self.capacity = 0
        self.position = {}
        self.running = False

    def __dealloc__(self):
        PyMem_Free(self.fds)
        self.fds = NULL

    cdef int set_events(self, int fd, unsigned short events) except -1:
        """Add fd, or change its events if it is already in the set."""
        cdef object pos = self.position.get(fd)
        cdef pollfd *grown
        cdef Py_ssize_t cap
        if pos is not None:
            self.fds[<Py_ssize_t>pos].events = <short>events
            return 0
        if self.nfds == self.capacity:
            cap = self.capacity * 2 if self.capacity else 16
            grown = <pollfd *>PyMem_Realloc(self.fds, cap * sizeof(pollfd))
            if grown == NULL:
                raise MemoryError()
            self.fds = grown
            self.capacity = cap
        self.fds[self.nfds].fd = fd
        self.fds[self.nfds].events = <short>events
        self.fds[self.nfds].revents = 0
        self.position[fd] = self.nfds
        self.nfds += 1
        return 0

    cdef int remove(self, int fd) except -1:
        """Remove fd; KeyError(fd) if it is not in the set."""
        cdef Py_ssize_t pos = self.position.pop(fd)
        cdef Py_ssize_t last = self.nfds - 1
        if pos != last:
            self.fds[pos] = self.fds[last]
            self.position[self.fds[pos].fd] = pos
        self.nfds = last
        return 0

    cdef pollfd *snapshot(self, Py_ssize_t *nfds) except NULL:
        """A PyMem_Malloc'ed copy of the set for one wait; the caller frees it."""
        cdef pollfd *copy = <pollfd *>PyMem_Malloc((self.nfds or 1) * sizeof(pollfd))
        if copy == NULL:
            raise MemoryError()
        if self.nfds:
            memcpy(copy, self.fds, self.nfds * sizeof(pollfd))
        nfds[0] = self.nfds
        return copy

    cdef int wait(self, pollfd *fds, Py_ssize_t nfds, int64_t timeout_ns) except -1:
        """ppoll(2) on fds until timeout_ns (-1: forever), GIL released,
        EINTR retried with the remaining time after the signal handlers ran.
        Returns the number of entries with revents set."""
        cdef int n
        cdef timespec ts
        cdef timespec *tsp
        cdef int64_t deadline = deadline_for(timeout_ns)
        if self.running:
            raise RuntimeError("concurrent poll() invocation")
        self.running = True
        try:
            while True:
                if timeout_ns >= 0:
                    ts = fio_ns_to_timespec(timeout_ns)
                    tsp = &ts
                else:
                    tsp = NULL
                if timeout_ns == 0:
                    # Cannot wait: keep the GIL (releasing it costs more).
                    n = fio_sys_ppoll(fds, <unsigned long>nfds, tsp)
                else:
                    with nogil:
                        n = fio_sys_ppoll(fds, <unsigned long>nfds, tsp)
                if n >= 0:
                    return n
                if n != -EINTR:
                    raise_errno(-n)
                timeout_ns = remaining_after_eintr(deadline)
        finally:
            self.running = False

    def register(self, fd, eventmask=POLLIN | POLLPRI | POLLOUT):
        """Add ``fd`` (an int or an object with ``fileno()``) with ``eventmask``;
        registering it again changes its mask.

        :raises ValueError: negative fd or negative mask.
        :raises OverflowError: a mask above 0xFFFF.
        """
        cdef int cfd = as_fd(fd)
        self.set_events(cfd, as_eventmask(eventmask))

    def modify(self, fd, eventmask):
        """Change the mask of a registered ``fd``.

        :raises FileNotFoundError: ``fd`` was never registered (``ENOENT``).
        """
        cdef int cfd = as_fd(fd)
        cdef unsigned short mask = as_eventmask(eventmask)
        if PyDict_GetItem(self.position, cfd) == NULL:
            raise_errno(ENOENT)
        self.set_events(cfd, mask)

    def unregister(self, fd):
        """Remove ``fd`` from the set.

        :raises KeyError: ``fd`` is not registered.
        """
        self.remove(as_fd(fd))

    def poll(self, timeout=None):
        """Wait for events; return a list of ``(fd, revents)`` for every fd that
        has events or errors to report.

        ``timeout`` is in milliseconds (float or int); ``None`` or a negative
        value waits forever. As ``select.poll``'s, it must fit a C int once
        rounded to whole milliseconds (``OverflowError`` otherwise). The GIL is released while waiting; signals run
        their handlers and the wait resumes with the remaining time (PEP 475).

        See ``poll(2)``.
        """
        cdef int64_t timeout_ns = poll_timeout_ns(timeout)
        cdef Py_ssize_t nfds, i
        cdef int n
        cdef pollfd *fds = self.snapshot(&nfds)
        cdef list result = []
        try:
            n = self.wait(fds, nfds, timeout_ns)
            i = 0
            while n > 0 and i < nfds:
                if fds[i].revents:
                    result.append((fds[i].fd, <unsigned short>fds[i].revents))
                    n -= 1
                i += 1
            return result
        finally:
            PyMem_Free(fds)
