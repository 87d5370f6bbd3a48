"""Non-blocking IO: one thread busy-polling ``O_NONBLOCK`` sockets.

How a read happens: every socket is non-blocking, so ``recv`` never sleeps.
When no data has arrived the kernel answers at once with ``EAGAIN`` (Python's
``BlockingIOError``) and the program tries again later: phase 1, waiting, is
done by the program itself, asking over and over. When data is there, the
kernel copies it into the buffer before ``recv`` returns: phase 2, copying,
blocks as in blocking IO. This server never waits in the kernel at all: one
thread loops over the listener (``accept``) and every connection (a read,
then a write of what it read: ``os.readv``/``os.write`` on the fd), retrying
on ``EAGAIN``. It answers quickly and
burns a whole CPU even when idle: every ``EAGAIN`` is a wasted system call.

A partial ``send`` (the peer's window is full) keeps the unsent tail; the
loop retries it on its next passes and reads nothing more from that
connection until it is gone, so the order is kept and a peer that does not
read cannot make the server buffer without bound.

Stopping: nothing blocks, so the loop checks a flag on every pass.
"""

from __future__ import annotations

import os
import socket
from typing import List, Optional

from fastio.models._base import BUFFER_SIZE, EchoServer

__all__ = ["NonBlockingServer"]


class _Conn:
    __slots__ = ("sock", "fd", "pending")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.pending: Optional[memoryview] = None   # unsent tail of the last echo


class NonBlockingServer(EchoServer):
    name = "nonblocking"
    model = "non-blocking"
    summary = "one thread busy-polling O_NONBLOCK sockets (accept/recv retried on EAGAIN, no waiting call)"
    uses_wake_pipe = False

    def _serve(self) -> None:
        listener = self._listener
        assert listener is not None
        listener.setblocking(False)
        accept = listener.accept
        buf = bytearray(BUFFER_SIZE)
        view = memoryview(buf)
        bufs = [buf]
        readv = os.readv         # read(2)/write(2) on the fd: cheaper than socket methods
        write = os.write
        conns: List[_Conn] = []
        closed: List[_Conn] = []
        self._serving()
        try:
            while not self._stopping:
                try:
                    sock, _ = accept()
                except BlockingIOError:
                    pass
                except OSError:
                    pass                       # ECONNABORTED, EMFILE ...: keep serving
                else:
                    sock.setblocking(False)
                    conns.append(_Conn(sock))
                for conn in conns:
                    try:
                        if conn.pending is not None:
                            sent = write(conn.fd, conn.pending)
                            if sent < len(conn.pending):
                                conn.pending = conn.pending[sent:]
                                continue
                            conn.pending = None
                        n = readv(conn.fd, bufs)
                        if not n:
                            closed.append(conn)
                            continue
                        try:
                            sent = write(conn.fd, view[:n])
                        except BlockingIOError:
                            sent = 0
                        if sent < n:
                            conn.pending = memoryview(bytes(view[sent:n]))
                    except BlockingIOError:
                        pass                   # nothing to read, or no room to write: try again
                    except OSError:
                        closed.append(conn)    # reset by the peer
                if closed:
                    for conn in closed:
                        conns.remove(conn)
                        conn.sock.close()
                    closed.clear()
        finally:
            for conn in conns:
                conn.sock.close()
            view.release()
