"""poll(2) through ctypes: the pure twin of ``fastio._c.poll``; the kernel
facts are those in ``docs/epoll.md``."""

import ctypes
import errno
import math
import operator

from fastio._consts import POLLIN, POLLOUT, POLLPRI
from fastio._abi import libc as _libc
from fastio._util import EINTR, as_fd, deadline_for, raise_errno, remaining

_INT_MIN, _INT_MAX = -(1 << 31), (1 << 31) - 1
_ULONG_MAX = (1 << 64) - 1


def _as_eventmask(eventmask) -> int:
    """CPython's unsigned-short converter, errors and messages included."""
    if not isinstance(eventmask, int):
        raise TypeError("an integer is required")
    value = int(eventmask)
    if value < 0:
        raise ValueError("value must be positive")
    if value > 0xFFFF:
        if value > _ULONG_MAX:
            raise OverflowError("Python int too large to convert to C unsigned long")
        raise OverflowError("Python int too large for C unsigned short")
    return value


def _poll_timeout_ns(timeout) -> int:
    """``poll(timeout)``'s milliseconds as nanoseconds (-1: forever), checked as
    ``select.poll`` checks them (see the C twin): OverflowError unless the
    timeout rounded away from zero to whole milliseconds fits a C int."""
    if timeout is None:
        return -1
    if isinstance(timeout, float):
        if timeout != timeout:
            raise ValueError("Invalid value NaN (not a number)")
        # rounded away from zero, it fits a C int exactly when it lies within one
        if not _INT_MIN <= timeout <= _INT_MAX:
            raise OverflowError("timeout is too large")
        return -1 if timeout < 0 else math.ceil(timeout * 1e6)
    try:
        value = operator.index(timeout)
    except TypeError:
        raise TypeError("timeout must be an integer or None") from None
    if not _INT_MIN <= value <= _INT_MAX:
        raise OverflowError("timeout is too large")
    return -1 if value < 0 else value * 1_000_000


def _as_short(mask: int) -> int:
    """An unsigned short mask as the signed short field of struct pollfd."""
    return mask - 0x10000 if mask & 0x8000 else mask


class Poll:
    """Poll()

    A set of file descriptors to wait on with ``poll(2)``, as ``select.poll``.
    """

    def __init__(self):
        self._fds = (_libc.PollFd * 16)()
        self._nfds = 0
        self._position = {}
        self._running = False

    def _set_events(self, fd: int, events: int) -> None:
        pos = self._position.get(fd)
        if pos is not None:
            self._fds[pos].events = _as_short(events)
            return
        if self._nfds == len(self._fds):
            grown = (_libc.PollFd * (2 * len(self._fds)))()
            ctypes.memmove(grown, self._fds, ctypes.sizeof(self._fds))
            self._fds = grown
        self._fds[self._nfds] = _libc.PollFd(fd, _as_short(events), 0)
        self._position[fd] = self._nfds
        self._nfds += 1

    def _remove(self, fd: int) -> None:
        pos = self._position.pop(fd)
        last = self._nfds - 1
        if pos != last:
            moved = self._fds[last]
            self._fds[pos] = _libc.PollFd(moved.fd, moved.events, 0)
            self._position[moved.fd] = pos
        self._nfds = last

    def _snapshot(self):
        copy = (_libc.PollFd * (self._nfds or 1))()
        ctypes.memmove(copy, self._fds, self._nfds * ctypes.sizeof(_libc.PollFd))
        return copy, self._nfds

    def _wait(self, fds, nfds: int, timeout_ns: int) -> int:
        """ppoll(2) with the PEP 475 retry; returns the number of ready entries."""
        if self._running:
            raise RuntimeError("concurrent poll() invocation")
        self._running = True
        try:
            deadline = deadline_for(timeout_ns)
            while True:
                ts = None if timeout_ns < 0 else ctypes.byref(_libc.Timespec(*divmod(timeout_ns, 1_000_000_000)))
                n = _libc.ppoll(fds, nfds, ts, None)
                if n >= 0:
                    return n
                err = ctypes.get_errno()
                if err != EINTR:
                    raise_errno(err)
                timeout_ns = remaining(deadline)
        finally:
            self._running = False

    def register(self, fd, eventmask=POLLIN | POLLPRI | POLLOUT):
        """Add ``fd`` with ``eventmask``; registering it again changes its mask."""
        cfd = as_fd(fd)
        self._set_events(cfd, _as_eventmask(eventmask))

    def modify(self, fd, eventmask):
        """Change the mask of a registered ``fd`` (FileNotFoundError if it is not)."""
        cfd = as_fd(fd)
        mask = _as_eventmask(eventmask)
        if cfd not in self._position:
            raise_errno(errno.ENOENT)
        self._set_events(cfd, mask)

    def unregister(self, fd):
        """Remove ``fd`` from the set (KeyError if it is not registered)."""
        self._remove(as_fd(fd))

    def poll(self, timeout=None):
        """Wait; a list of ``(fd, revents)``. ``timeout`` in milliseconds, None or
        negative: forever; OverflowError beyond a C int, as ``select.poll``."""
        timeout_ns = _poll_timeout_ns(timeout)
        fds, nfds = self._snapshot()
        n = self._wait(fds, nfds, timeout_ns)
        if not n:
            return []
        return [(entry.fd, entry.revents & 0xFFFF) for entry in fds[:nfds] if entry.revents]
