"""Asynchronous readiness with Linux native AIO: ``IOCB_CMD_POLL``, then copy.

How a read happens: Linux AIO is truly asynchronous only for ``O_DIRECT``
files; a socket read submitted through it would run to completion inside
``io_submit`` (blocking the loop). What AIO *can* do asynchronously for a
socket is wait: an ``IOCB_CMD_POLL`` request is submitted per connection and
completes, through the same ``io_getevents`` as file IO, when the socket
becomes readable (phase 1, waiting, done by the kernel in the background).
The program then copies the bytes with a non-blocking ``recv`` (phase 2,
copying, done by the program), echoes them with ``send``, and submits a new
poll (each one fires once). So this is the asynchronous interface used as a
multiplexer: closer to ``epoll`` than to io_uring, which also copies.

One ``getevents`` call reaps every ready poll and first submits every poll
re-armed in the previous round, in one ``io_submit``. A partial send keeps
the unsent tail and polls for ``POLLOUT`` instead of ``POLLIN`` on that
connection until the tail is gone.
"""

from __future__ import annotations

import os
import socket
from typing import Any, Dict, Optional

from fastio._consts import POLLERR, POLLHUP, POLLIN, POLLOUT
from fastio.models._base import BUFFER_SIZE, EchoServer

__all__ = ["AioServer"]

_ACCEPT = "accept"
_WAKE = "wake"


class _Conn:
    __slots__ = ("sock", "fd", "pending")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.pending: Optional[memoryview] = None


class AioServer(EchoServer):
    name = "aio"
    model = "asynchronous"
    summary = "fastio.aio: IOCB_CMD_POLL per connection reaped in batches by io_getevents, then recv/send"
    requires = ("aio",)
    maxevents = 512

    @classmethod
    def why_unavailable(cls, backend: Optional[str] = None) -> Optional[str]:
        reason = super().why_unavailable(backend)
        if reason is not None:
            return reason
        from fastio import _backend

        return _backend.load("aio", backend).why_unavailable()

    def _serve(self) -> None:
        listener = self._listener
        assert listener is not None
        listener.setblocking(False)
        ctx = self._load("aio").Context(self.maxevents)
        conns: Dict[int, _Conn] = {}
        try:
            self._loop(ctx, listener, conns)
        finally:
            try:
                ctx.close()         # cancels the polls in flight, reaps them
            finally:
                for conn in conns.values():
                    conn.sock.close()

    def _loop(self, ctx: Any, listener: socket.socket, conns: Dict[int, _Conn]) -> None:
        buf = bytearray(BUFFER_SIZE)
        view = memoryview(buf)
        bufs = [buf]
        readv = os.readv         # read(2)/write(2) on the fd: cheaper than socket methods
        write = os.write
        prep_poll = ctx.prep_poll
        getevents = ctx.getevents
        Conn = _Conn
        readable = POLLIN
        writable = POLLOUT | POLLERR | POLLHUP
        prep_poll(listener, POLLIN, user_data=_ACCEPT)
        prep_poll(self._wake_r, POLLIN, user_data=_WAKE)
        self._serving()
        try:
            while True:
                for c in getevents(1):          # submits the re-armed polls, then waits
                    conn = c.user_data
                    if conn.__class__ is not Conn:
                        if c.res < 0:           # the kernel refused the poll itself
                            c.result()
                        if conn is _ACCEPT:
                            self._accept_all(listener, conns, prep_poll)
                            prep_poll(listener, POLLIN, user_data=_ACCEPT)
                        elif conn is _WAKE:
                            return
                        continue
                    try:
                        if c.res < 0:
                            c.result()          # a failed poll: close the connection
                        pending = conn.pending
                        if pending is None:
                            n = readv(conn.fd, bufs)     # the poll said readable: copy
                            if n:
                                try:
                                    sent = write(conn.fd, view[:n])
                                except BlockingIOError:
                                    sent = 0
                                if sent == n:
                                    prep_poll(conn.fd, readable, user_data=conn)
                                else:
                                    conn.pending = memoryview(bytes(view[sent:n]))
                                    prep_poll(conn.fd, writable, user_data=conn)
                                continue
                        else:
                            sent = write(conn.fd, pending)
                            if sent < len(pending):
                                conn.pending = pending[sent:]
                                prep_poll(conn.fd, writable, user_data=conn)
                            else:
                                conn.pending = None
                                prep_poll(conn.fd, readable, user_data=conn)
                            continue
                    except BlockingIOError:
                        # a spurious report: poll again for what it waits for
                        prep_poll(conn.fd, readable if conn.pending is None else writable, user_data=conn)
                        continue
                    except OSError:
                        pass
                    del conns[conn.fd]
                    conn.sock.close()
        finally:
            view.release()

    @staticmethod
    def _accept_all(listener: socket.socket, conns: Dict[int, _Conn], prep_poll: Any) -> None:
        while True:
            try:
                sock, _ = listener.accept()
            except BlockingIOError:
                return
            except (ConnectionAbortedError, InterruptedError):
                continue
            except OSError:
                return
            sock.setblocking(False)
            conn = _Conn(sock)
            conns[conn.fd] = conn
            prep_poll(conn.fd, POLLIN, user_data=conn)
