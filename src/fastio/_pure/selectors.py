"""The stdlib ``selectors`` classes on the pure backend's ``Epoll`` and ``Poll``,
with the same two extensions as ``fastio._c.selectors`` (exact timeouts, epoll
``flags``); see that module's docstring for the behaviour."""

import math
import selectors as _std

from fastio._consts import EPOLLET, EPOLLEXCLUSIVE, EPOLLIN, EPOLLONESHOT, EPOLLOUT, EPOLLWAKEUP, EVENT_READ, EVENT_WRITE
from fastio._pure.epoll import Epoll
from fastio._pure.poll import Poll

_EPOLL_FLAGS = EPOLLET | EPOLLONESHOT | EPOLLEXCLUSIVE | EPOLLWAKEUP


def _check_epoll_flags(flags) -> int:
    if not isinstance(flags, int) or flags < 0 or flags & ~_EPOLL_FLAGS:
        raise ValueError(
            f"invalid epoll flags: {flags!r} (allowed: EPOLLET, EPOLLONESHOT, EPOLLEXCLUSIVE, EPOLLWAKEUP)"
        )
    return flags


def _exact_timeout_ns(timeout):
    """selectors' timeout (seconds; None: forever; <= 0: poll) in seconds, unrounded."""
    if timeout is None:
        return None
    return 0 if timeout <= 0 else timeout


class EpollSelector(_std.EpollSelector):
    """``selectors.EpollSelector`` on fastio's ``Epoll``, with epoll ``flags``."""

    _selector_cls = Epoll

    def __init__(self):
        super().__init__()
        self._flags = {}

    def _kernel_mask(self, events, flags):
        return (events & EVENT_READ and EPOLLIN) | (events & EVENT_WRITE and EPOLLOUT) | flags

    def register(self, fileobj, events, data=None, *, flags=0):
        """Register a file object; ``flags`` adds EPOLLET, EPOLLONESHOT,
        EPOLLEXCLUSIVE or EPOLLWAKEUP to the kernel registration."""
        flags = _check_epoll_flags(flags)
        key = _std._BaseSelectorImpl.register(self, fileobj, events, data)
        try:
            self._selector.register(key.fd, self._kernel_mask(events, flags))
        except BaseException:
            _std._BaseSelectorImpl.unregister(self, fileobj)
            raise
        if flags:
            self._flags[key.fd] = flags
        return key

    def unregister(self, fileobj):
        key = super().unregister(fileobj)
        self._flags.pop(key.fd, None)
        return key

    def modify(self, fileobj, events, data=None, *, flags=None):
        """Change events and data; ``flags`` (None: keep) changes the epoll flags.
        With ``EPOLLONESHOT`` every call re-arms the registration."""
        if flags is not None:
            _check_epoll_flags(flags)
        try:
            key = self._fd_to_key[self._fileobj_lookup(fileobj)]
        except KeyError:
            raise KeyError(f"{fileobj!r} is not registered") from None
        old_flags = self._flags.get(key.fd, 0)
        new_flags = old_flags if flags is None else flags
        if events != key.events or new_flags != old_flags or old_flags & EPOLLONESHOT:
            # Computed before anything changes: a bad type leaves the key as it was.
            mask = self._kernel_mask(events, new_flags)
            try:
                if (new_flags | old_flags) & EPOLLEXCLUSIVE:
                    # The kernel refuses EPOLL_CTL_MOD on an exclusive registration.
                    self._flags.pop(key.fd, None)
                    self._selector.unregister(key.fd)
                    self._selector.register(key.fd, mask)
                else:
                    self._selector.modify(key.fd, mask)
            except BaseException:
                # Not through self.unregister: the stdlib calls the base
                # class's here (super().unregister), never an override.
                EpollSelector.unregister(self, fileobj)
                raise
            if new_flags:
                self._flags[key.fd] = new_flags
            else:
                self._flags.pop(key.fd, None)
        elif data == key.data:
            return key
        key = key._replace(events=events, data=data)
        self._fd_to_key[key.fd] = key
        return key

    def select(self, timeout=None):
        """Wait up to ``timeout`` seconds (None: forever), exactly; a list of ``(key, events)``."""
        # the stdlib's order of errors (see the C twin): its arithmetic on
        # the timeout, then a closed epoll, then a timeout too large
        if timeout is not None and not timeout <= 0 and isinstance(timeout, float) and not math.isfinite(timeout):
            math.ceil(timeout)
        if self._selector.closed:
            raise ValueError("I/O operation on closed epoll object")
        fd_event_list = self._selector.poll(_exact_timeout_ns(timeout), len(self._fd_to_key) or 1)
        ready = []
        fd_to_key = self._fd_to_key
        for fd, event in fd_event_list:
            key = fd_to_key.get(fd)
            if key:
                events = (event & ~EPOLLIN and EVENT_WRITE) | (event & ~EPOLLOUT and EVENT_READ)
                ready.append((key, events & key.events))
        return ready

    def close(self):
        super().close()
        self._flags.clear()


class PollSelector(_std.PollSelector):
    """``selectors.PollSelector`` on fastio's ``Poll``."""

    _selector_cls = Poll

    def select(self, timeout=None):
        """Wait up to ``timeout`` seconds (None: forever), exactly; a list of ``(key, events)``."""
        timeout = _exact_timeout_ns(timeout)
        fd_event_list = self._selector.poll(None if timeout is None else timeout * 1e3)
        ready = []
        fd_to_key = self._fd_to_key
        for fd, event in fd_event_list:
            key = fd_to_key.get(fd)
            if key:
                events = (event & ~_std.select.POLLIN and EVENT_WRITE) | (event & ~_std.select.POLLOUT and EVENT_READ)
                ready.append((key, events & key.events))
        return ready

    def close(self):
        super().close()
        self._selector = Poll()


class SelectSelector(_std.SelectSelector):
    """``selectors.SelectSelector`` (``select.select`` takes microseconds, rounded up)."""

    def close(self):
        super().close()
        self._readers.clear()
        self._writers.clear()
