"""IO multiplexing: one thread waits for many sockets at once, then copies.

How a read happens: the thread blocks in one call (``select``, ``poll`` or
``epoll_wait``) that watches every connection and returns the ones that have
data (phase 1, waiting, done for all sockets together); then, for each ready
socket, a non-blocking ``recv`` copies the bytes into the thread's buffer
(phase 2, copying; it cannot block, the data is there). One thread serves
every connection, and the cost of the wait differs by interface: ``select``
and ``poll`` hand the kernel the whole interest list on every call and scan
it back (O(connections)); ``epoll`` keeps the list in the kernel and returns
only the ready fds (O(ready)).

Each server reads once per readiness report (level-triggered: if more is left,
the next wait reports it again) and sends the echo at once from the same
buffer, with ``os.readv``/``os.write`` on the fd (read(2)/write(2): cheaper
from Python than the socket methods, which parse their arguments the slow
way). A partial send keeps the unsent tail and swaps the interest from
"readable" to "writable" for that connection: nothing more is read from it
until the tail is gone, so the order is kept and a peer that does not read
cannot make the server buffer without bound.

Servers: ``select`` (``fastio.selectors.SelectSelector``), ``poll``
(``fastio.poll.Poll``), ``epoll`` (``fastio.epoll.Epoll``) and, as the
baseline, ``selectors-stdlib`` (the standard library's
``selectors.DefaultSelector``, epoll here).
"""

from __future__ import annotations

import os
import selectors as _stdlib_selectors
import socket
from typing import Any, Callable, Dict, Optional, Tuple

from fastio._consts import EPOLLIN, EPOLLOUT, EVENT_READ, EVENT_WRITE, POLLIN, POLLOUT
from fastio.models._base import BUFFER_SIZE, EchoServer

__all__ = ["SelectServer", "PollServer", "EpollServer", "StdlibSelectorsServer"]

# The fd-based servers use one set of bits for epoll and poll: they agree.
assert EPOLLIN == POLLIN and EPOLLOUT == POLLOUT
_IN = POLLIN
_OUT = POLLOUT


class _Conn:
    __slots__ = ("sock", "fd", "pending")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.pending: Optional[memoryview] = None   # unsent tail, waiting for "writable"


def _accept(listener: socket.socket) -> Optional[socket.socket]:
    """One pending connection, non-blocking, or None."""
    while True:
        try:
            sock, _ = listener.accept()
        except BlockingIOError:
            return None
        except (ConnectionAbortedError, InterruptedError):
            continue
        except OSError:
            return None          # EMFILE, ENFILE ...: try again at the next wait
        sock.setblocking(False)
        return sock


class _FdServer(EchoServer):
    """The loop over an fd-based interface with register/modify/unregister
    and ``poll(None) -> [(fd, events)]`` (``Epoll`` and ``Poll`` alike)."""

    def _make_poller(self) -> Tuple[Any, Callable[[], None]]:
        raise NotImplementedError

    def _serve(self) -> None:
        listener = self._listener
        assert listener is not None
        listener.setblocking(False)
        poller, close_poller = self._make_poller()
        lfd = listener.fileno()
        wfd = self._wake_r
        listening = object()
        wake = object()
        # fd -> connection (or one of the two markers): one lookup per event
        conns: Dict[int, Any] = {lfd: listening, wfd: wake}
        buf = bytearray(BUFFER_SIZE)
        view = memoryview(buf)
        bufs = [buf]
        readv = os.readv         # read(2)/write(2) on the fd: cheaper than socket methods
        write = os.write
        try:
            poller.register(lfd, _IN)
            poller.register(wfd, _IN)
            self._serving()
            wait = poller.poll
            modify = poller.modify
            Conn = _Conn
            while True:
                for fd, events in wait(None):
                    conn = conns[fd]
                    if conn.__class__ is not Conn:
                        if conn is listening:
                            while True:             # every queued connection
                                sock = _accept(listener)
                                if sock is None:
                                    break
                                conn = Conn(sock)
                                conns[conn.fd] = conn
                                poller.register(conn.fd, _IN)
                        elif conn is wake:
                            return
                        continue
                    pending = conn.pending
                    try:
                        if pending is None:
                            n = readv(fd, bufs)         # ready: copies, never blocks
                            if n:
                                try:
                                    sent = write(fd, view[:n])
                                except BlockingIOError:
                                    sent = 0
                                if sent == n:
                                    continue
                                conn.pending = memoryview(bytes(view[sent:n]))
                                modify(fd, _OUT)        # wait for room, read nothing meanwhile
                                continue
                        else:
                            sent = write(fd, pending)
                            if sent < len(pending):
                                conn.pending = pending[sent:]
                            else:
                                conn.pending = None
                                modify(fd, _IN)
                            continue
                    except BlockingIOError:
                        continue                        # a stale report
                    except OSError:
                        pass                            # reset: close it
                    poller.unregister(fd)
                    del conns[fd]
                    conn.sock.close()
        finally:
            for conn in conns.values():
                if conn.__class__ is _Conn:
                    conn.sock.close()
            close_poller()
            view.release()


class EpollServer(_FdServer):
    name = "epoll"
    model = "multiplexing"
    summary = "fastio.epoll.Epoll, level-triggered, one thread"
    requires = ("epoll",)

    def _make_poller(self) -> Tuple[Any, Callable[[], None]]:
        ep = self._load("epoll").Epoll()
        return ep, ep.close


class PollServer(_FdServer):
    name = "poll"
    model = "multiplexing"
    summary = "fastio.poll.Poll (pollfd array kept in C), one thread"
    requires = ("poll",)

    def _make_poller(self) -> Tuple[Any, Callable[[], None]]:
        return self._load("poll").Poll(), lambda: None


class _SelectorServer(EchoServer):
    """The loop over a ``selectors.BaseSelector``: the connection is the
    key's ``data``."""

    def _make_selector(self) -> _stdlib_selectors.BaseSelector:
        raise NotImplementedError

    def _serve(self) -> None:
        listener = self._listener
        assert listener is not None
        listener.setblocking(False)
        sel = self._make_selector()
        conns: Dict[int, _Conn] = {}
        buf = bytearray(BUFFER_SIZE)
        view = memoryview(buf)
        bufs = [buf]
        readv = os.readv         # read(2)/write(2) on the fd: cheaper than socket methods
        write = os.write
        listening = object()
        wake = object()
        try:
            sel.register(listener, EVENT_READ, listening)
            sel.register(self._wake_r, EVENT_READ, wake)
            self._serving()
            select = sel.select
            modify = sel.modify
            while True:
                for key, events in select(None):
                    conn = key.data
                    if conn.__class__ is not _Conn:
                        if conn is listening:
                            while True:
                                sock = _accept(listener)
                                if sock is None:
                                    break
                                conn = _Conn(sock)
                                conns[conn.fd] = conn
                                sel.register(conn.fd, EVENT_READ, conn)
                        elif conn is wake:
                            return
                        continue
                    pending = conn.pending
                    try:
                        if pending is None:
                            n = readv(conn.fd, bufs)
                            if n:
                                try:
                                    sent = write(conn.fd, view[:n])
                                except BlockingIOError:
                                    sent = 0
                                if sent == n:
                                    continue
                                conn.pending = memoryview(bytes(view[sent:n]))
                                modify(conn.fd, EVENT_WRITE, conn)
                                continue
                        else:
                            sent = write(conn.fd, pending)
                            if sent < len(pending):
                                conn.pending = pending[sent:]
                            else:
                                conn.pending = None
                                modify(conn.fd, EVENT_READ, conn)
                            continue
                    except BlockingIOError:
                        continue
                    except OSError:
                        pass
                    sel.unregister(conn.fd)
                    del conns[conn.fd]
                    conn.sock.close()
        finally:
            for conn in conns.values():
                conn.sock.close()
            sel.close()
            view.release()


class SelectServer(_SelectorServer):
    name = "select"
    model = "multiplexing"
    summary = "fastio.selectors.SelectSelector (select(2), fds < 1024), one thread"
    requires = ("selectors",)

    def _make_selector(self) -> _stdlib_selectors.BaseSelector:
        return self._load("selectors").SelectSelector()


class StdlibSelectorsServer(_SelectorServer):
    name = "selectors-stdlib"
    model = "multiplexing"
    summary = "the standard library's selectors.DefaultSelector (the baseline), one thread"

    def _make_selector(self) -> _stdlib_selectors.BaseSelector:
        return _stdlib_selectors.DefaultSelector()
