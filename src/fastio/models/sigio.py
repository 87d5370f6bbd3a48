"""Signal-driven IO: the kernel tells the program, by a signal, which socket
changed.

How a read happens: each socket is put in ``O_ASYNC`` mode, aimed at the
serving thread with a real-time signal (``F_SETOWN_EX`` + ``F_SETSIG``).
Phase 1, waiting, is the kernel's: when data arrives it queues a signal whose
``siginfo`` names the fd and the kind of change (the band: ``POLLIN``,
``POLLOUT``, ``POLLHUP``). The program collects those signals many at a time
(``fastio.sigio.SignalIO.wait``, one ``read`` of a ``signalfd``: no handler
runs), then, phase 2, a non-blocking ``recv`` copies the bytes.

The kernel signals *changes*, not states (like edge-triggered epoll): a
signal means "something arrived", not "there is data now". So each report is
drained: ``recv`` again until it meets ``EAGAIN`` (or the end of the
stream). A read shorter than the buffer is not enough: several signals read
in one batch are merged, and the peer's FIN may sit behind the data with its
signal already consumed. The listener likewise accepts until ``EAGAIN``. A partial
send keeps the unsent tail and stops reading that connection; the kernel
signals ``POLLOUT`` once room frees up (a socket signals "writable" only after
a write met a full buffer), then the tail is sent and reading resumes.

If the real-time signal queue overflows, the kernel sends plain ``SIGIO``
with no fd; ``SignalIO`` then polls every fd it watches and reports the ready
ones, so nothing is lost (a report may be stale: ``EAGAIN`` answers it).
"""

from __future__ import annotations

import os
import socket
import threading
from typing import Dict, Optional

from fastio._consts import POLLERR, POLLHUP, POLLIN, POLLOUT
from fastio.models._base import BUFFER_SIZE, EchoServer

__all__ = ["SigioServer"]

_READ = POLLIN | POLLERR | POLLHUP

# Per backend: None = not probed yet; "" = works; otherwise why not.
_probed: Dict[str, str] = {}
_probe_lock = threading.Lock()


def _probe(backend: Optional[str]) -> str:
    """Whether a socket's arrival reaches a SignalIO here (F_SETSIG,
    signalfd and real-time signals allowed); run in a short-lived thread so
    the caller's signal mask is untouched."""
    from fastio import _backend

    result = [""]

    def check() -> None:
        a, b = socket.socketpair()
        try:
            sio_cls = _backend.load("sigio", backend).SignalIO
            with sio_cls() as sio:
                sio.add(a)
                try:
                    sio.wait(0)
                    b.send(b"x")
                    events = sio.wait(2.0)
                finally:
                    sio.remove(a)
            if not any(fd == a.fileno() and band & POLLIN for fd, band in events):
                result[0] = f"no signal named the ready socket (got {events})"
        except (OSError, RuntimeError, ValueError) as exc:
            result[0] = f"F_SETSIG/signalfd failed: {exc}"
        finally:
            a.close()
            b.close()

    thread = threading.Thread(target=check, name="fastio-sigio-probe")
    thread.start()
    thread.join()
    return result[0]


class _Conn:
    __slots__ = ("sock", "fd", "pending")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.pending: Optional[memoryview] = None


class SigioServer(EchoServer):
    name = "sigio"
    model = "signal-driven"
    summary = "fastio.sigio.SignalIO: O_ASYNC + F_SETSIG real-time signals read in batches via signalfd"
    requires = ("sigio",)

    @classmethod
    def why_unavailable(cls, backend: Optional[str] = None) -> Optional[str]:
        reason = super().why_unavailable(backend)
        if reason is not None:
            return reason
        from fastio import _backend

        key = backend or _backend.name()
        with _probe_lock:
            if key not in _probed:
                _probed[key] = _probe(backend)
            return _probed[key] or None

    def _serve(self) -> None:
        listener = self._listener
        assert listener is not None
        listener.setblocking(False)
        # Created in the serving thread: the signals are aimed at it.
        sio = self._load("sigio").SignalIO()
        lfd = listener.fileno()
        wfd = self._wake_r
        conns: Dict[int, _Conn] = {}
        buf = bytearray(BUFFER_SIZE)
        view = memoryview(buf)
        bufs = [buf]
        readv = os.readv         # read(2)/write(2) on the fd: cheaper than socket methods
        write = os.write
        try:
            sio.add(lfd)
            sio.add(wfd)
            self._serving()
            wait = sio.wait
            get = conns.get
            Conn = _Conn
            while True:
                for fd, band in wait(None):
                    conn = get(fd)
                    if conn.__class__ is not Conn:
                        if fd == lfd:
                            self._accept_all(listener, sio, conns)
                        elif fd == wfd:
                            return
                        continue                    # an fd already removed
                    try:
                        pending = conn.pending
                        if pending is not None:
                            if not band & (POLLOUT | POLLERR | POLLHUP):
                                continue            # still waiting for room
                            sent = write(conn.fd, pending)
                            if sent < len(pending):
                                conn.pending = pending[sent:]
                                continue
                            conn.pending = None     # drained: read what waited meanwhile
                        elif not band & _READ:
                            continue
                        while True:                 # drain: a signal reports a change only
                            n = readv(conn.fd, bufs)
                            if not n:
                                break               # the peer closed
                            try:
                                sent = write(conn.fd, view[:n])
                            except BlockingIOError:
                                sent = 0
                            if sent < n:
                                conn.pending = memoryview(bytes(view[sent:n]))
                                break               # POLLOUT will come
                        if n:
                            continue
                    except BlockingIOError:
                        continue                    # drained, or a stale report
                    except OSError:
                        pass                        # reset
                    self._close(sio, conns, conn)
        finally:
            for conn in list(conns.values()):
                self._close(sio, conns, conn)
            try:
                for fd in (lfd, wfd):
                    try:
                        sio.remove(fd)
                    except (KeyError, OSError, ValueError):
                        pass
            finally:
                sio.close()
                view.release()

    @staticmethod
    def _accept_all(listener: socket.socket, sio, conns: Dict[int, _Conn]) -> None:
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
            try:
                sio.add(conn.fd)    # reports its state at once: data already there is not lost
            except BaseException:
                del conns[conn.fd]
                sock.close()
                raise

    @staticmethod
    def _close(sio, conns: Dict[int, _Conn], conn: _Conn) -> None:
        """Remove before close: restores the fd's flags, owner and signal."""
        conns.pop(conn.fd, None)
        try:
            sio.remove(conn.fd)
        except (KeyError, OSError, ValueError):
            pass
        conn.sock.close()
