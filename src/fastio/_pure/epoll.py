"""epoll(7) through ctypes: the pure twin of ``fastio._c.epoll``.

The kernel facts are those in ``docs/epoll.md``.
"""

import ctypes
import errno
import operator
import os

from fastio._consts import EPOLL_CLOEXEC, EPOLL_CTL_ADD, EPOLL_CTL_DEL, EPOLL_CTL_MOD, EPOLLIN, EPOLLOUT, EPOLLPRI
from fastio._abi import libc as _libc
from fastio._util import (
    EINTR,
    as_c_int,
    as_fd,
    check_fork,
    deadline_for,
    fork_generation,
    raise_errno,
    remaining,
    timeout_to_ns,
)

_DEFAULT_MAXEVENTS = 1023
_NS_PER_MS = 1_000_000

# True while epoll_pwait2 works here; False once it answered ENOSYS or EPERM.
_have_pwait2 = True


def epoll_pwait2_available() -> bool:
    """Whether sub-millisecond timeouts are honoured (``epoll_pwait2(2)`` works)."""
    global _have_pwait2
    if _have_pwait2:
        epfd = _libc.epoll_create1(EPOLL_CLOEXEC)
        if epfd < 0:
            return False
        event = _libc.EpollEvent()
        ret = _libc.epoll_pwait2(epfd, ctypes.byref(event), 1, ctypes.byref(_libc.Timespec(0, 0)))
        err = ctypes.get_errno()
        os.close(epfd)
        if ret < 0 and err in (errno.ENOSYS, errno.EPERM):
            _have_pwait2 = False
    return _have_pwait2


class Epoll:
    """Epoll(sizehint=-1, flags=0)

    An epoll instance, as ``select.epoll``; see ``fastio._c.epoll.Epoll``.
    """

    def __init__(self, sizehint=-1, flags=0):
        self._epfd = -1
        self._fork_gen = fork_generation()
        sizehint = as_c_int(sizehint)
        flags = as_c_int(flags)
        if sizehint != -1 and sizehint <= 0:
            raise ValueError("negative sizehint")
        if flags and flags != EPOLL_CLOEXEC:
            raise OSError("invalid flags")
        epfd = _libc.epoll_create1(EPOLL_CLOEXEC)
        if epfd < 0:
            raise_errno(ctypes.get_errno())
        self._epfd = epfd

    def __del__(self):
        if getattr(self, "_epfd", -1) >= 0:
            self.close()

    def _check(self) -> None:
        if self._epfd < 0:
            raise ValueError("I/O operation on closed epoll object")
        check_fork(self._fork_gen, "Epoll")

    def _ctl(self, op: int, fd: int, events: int, data: int) -> None:
        self._check()
        event = _libc.EpollEvent(events, data)
        if _libc.epoll_ctl(self._epfd, op, fd, ctypes.byref(event)) < 0:
            raise_errno(ctypes.get_errno())

    def _wait(self, events, maxevents: int, timeout_ns: int) -> int:
        """epoll_pwait2/epoll_wait with the PEP 475 retry; returns the count."""
        global _have_pwait2
        deadline = deadline_for(timeout_ns)
        self._check()
        while True:
            if timeout_ns > 0 and _have_pwait2:
                ts = _libc.Timespec(*divmod(timeout_ns, 1_000_000_000))
                n = _libc.epoll_pwait2(self._epfd, events, maxevents, ctypes.byref(ts))
                if n < 0 and ctypes.get_errno() in (errno.ENOSYS, errno.EPERM):
                    _have_pwait2 = False
                    continue
            else:
                ms = -1 if timeout_ns < 0 else min(-(-timeout_ns // _NS_PER_MS), 2**31 - 1)
                n = _libc.epoll_wait(self._epfd, events, maxevents, ms)
            if n >= 0:
                return n
            err = ctypes.get_errno()
            if err != EINTR:
                raise_errno(err)
            timeout_ns = remaining(deadline)
            self._check()

    @property
    def closed(self) -> bool:
        """True once the epoll fd is closed."""
        return self._epfd < 0

    def close(self) -> None:
        """Close the epoll fd. Further use raises ValueError; closing twice is
        fine; an error from close(2) is not raised (as in CPython)."""
        fd, self._epfd = self._epfd, -1
        if fd >= 0:
            try:
                os.close(fd)
            except OSError:
                pass  # as CPython: EBADF when another object closed this fd

    def fileno(self) -> int:
        """Return the epoll control file descriptor."""
        if self._epfd < 0:
            raise ValueError("I/O operation on closed epoll object")
        return self._epfd

    @classmethod
    def fromfd(cls, fd):
        """Create an epoll object from a given control fd (taking ownership)."""
        self = cls.__new__(cls)
        self._fork_gen = fork_generation()
        self._epfd = as_c_int(fd)
        return self

    def register(self, fd, eventmask=EPOLLIN | EPOLLPRI | EPOLLOUT):
        """Register ``fd`` for ``eventmask``; see ``fastio._c.epoll.Epoll.register``."""
        cfd = as_fd(fd)
        self._ctl(EPOLL_CTL_ADD, cfd, operator.index(eventmask) & 0xFFFFFFFF, cfd)

    def modify(self, fd, eventmask):
        """Change the event mask of a registered ``fd``."""
        cfd = as_fd(fd)
        self._ctl(EPOLL_CTL_MOD, cfd, operator.index(eventmask) & 0xFFFFFFFF, cfd)

    def unregister(self, fd):
        """Remove ``fd`` from the set."""
        self._ctl(EPOLL_CTL_DEL, as_fd(fd), 0, 0)

    def poll(self, timeout=None, maxevents=-1):
        """Wait for events; a list of ``(fd, events)``. See ``fastio._c.epoll.Epoll.poll``."""
        timeout_ns = timeout_to_ns(timeout, 1_000_000_000)
        maxevents = as_c_int(maxevents)
        if maxevents == -1:
            maxevents = _DEFAULT_MAXEVENTS
        elif maxevents <= 0:
            raise ValueError(f"maxevents must be greater than 0, got {maxevents}")
        self._check()
        events = (_libc.EpollEvent * maxevents)()
        n = self._wait(events, maxevents, timeout_ns)
        return [(events[i].data & 0xFFFFFFFF, events[i].events) for i in range(n)]

    def __enter__(self):
        if self._epfd < 0:
            raise ValueError("I/O operation on closed epoll object")
        return self

    def __exit__(self, *args):
        self.close()
