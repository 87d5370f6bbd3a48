"""Asynchronous IO with io_uring: the kernel waits *and* copies.

How a read happens: the program queues a request ("receive into this buffer")
in the submission ring and goes on. The kernel waits for the data (phase 1)
and copies it into the program's buffer (phase 2) by itself, then posts a
completion ("done, n bytes") in the completion ring. The program is blocked
in neither phase: it only collects completions, many per system call, and
every request it queued meanwhile is submitted by that same call
(``Ring.wait`` submits, then waits).

``uring``: every connection always has a ``recv`` armed. When it completes
the echo is queued at once as a ``send`` of a copy of the bytes (one send in
flight per connection keeps the order; bytes arriving meanwhile wait in a
per-connection buffer), and the ``recv`` is re-armed into the connection's
buffer, so receiving never waits for sending. Sends carry ``MSG_WAITALL``,
with which the kernel finishes a partial send of a stream socket by itself;
a short result is still resent from where it stopped. The listener has one
``accept`` armed, re-armed after each connection.

``uring-multishot``: one multishot ``accept`` for the listener and one
multishot ``recv`` per connection, which keeps producing completions until
the connection ends; the kernel picks a buffer from a provided-buffer ring
(``BufRing``) for each arrival, fastio hands its bytes over and gives the
buffer back, and those bytes are sent as they are. One request queued per
echo: the ``send``.

Both: ``user_data`` is the connection object itself (or its ``tx`` twin for
sends), so a completion needs no lookup. ``wait()`` asks for one completion
more than the sends it just submitted (those usually complete during the
submit), so one system call both submits the echoes and sleeps until new
data arrives; when a send's completion has work behind it (bytes waiting, a
close) it asks for one. A peer that does not read its echo makes the server
stop reading from it (``pending_limit`` bytes waiting) until it catches up.
"""

from __future__ import annotations

import errno
import os
import socket
import threading
from typing import Any, Dict, Optional

from fastio._consts import POLLIN
from fastio.models._base import PENDING_LIMIT, EchoServer

__all__ = ["UringServer", "UringMultishotServer"]

_WAITALL = socket.MSG_WAITALL
_ENOBUFS = -errno.ENOBUFS
_ECANCELED = -errno.ECANCELED

# Markers (user_data) of the listener's accept and the wake-up poll.
_ACCEPT = "accept"
_WAKE = "wake"

# Per (backend, multishot): "" = works, otherwise why not; per (uring
# module, "poll_first"): whether the kernel takes the flag.
_probed: Dict[Any, Any] = {}
_probe_lock = threading.Lock()


def _make_ring(uring: Any, entries: int, setup: str = "coop") -> Any:
    """A ring for one serving thread. ``"coop"`` (the default):
    SINGLE_ISSUER (6.0) and COOP_TASKRUN (5.19: deferred work runs when the
    thread enters the kernel, no interrupt) where the kernel has them, else
    a plain ring. ``"defer"``: SINGLE_ISSUER + DEFER_TASKRUN (6.1), which the
    loops then wait on one completion at a time (see _min_complete_ok);
    measured here, neither wins at every connection count. ``"plain"``: no
    flags."""
    from fastio import uring as api   # the constants

    flags = {
        "coop": api.SETUP_SINGLE_ISSUER | api.SETUP_COOP_TASKRUN | api.SETUP_TASKRUN_FLAG | api.SETUP_SUBMIT_ALL,
        "defer": api.SETUP_SINGLE_ISSUER | api.SETUP_DEFER_TASKRUN | api.SETUP_SUBMIT_ALL,
        "plain": 0,
    }[setup]
    try:
        return uring.Ring(entries, flags=flags, cq_entries=entries * 4)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
    return uring.Ring(entries, cq_entries=entries * 4)


def _min_complete_ok(ring: Any) -> bool:
    """Whether wait(n > 1) is safe: not on a DEFER_TASKRUN ring (the pure
    backend sets it by itself on CPUs without total store order). With it
    the kernel wakes a waiter only once as many completions are pending as
    it asked for, and the deferred work that finishes a send which had to
    wait for room counts as one: that send would sit unfinished while
    ``wait(sends + 1)`` sleeps for data the peer sends only after receiving
    that very echo."""
    from fastio import uring as api

    return not ring.setup_flags & api.SETUP_DEFER_TASKRUN


def _probe_multishot(uring: Any) -> str:
    """Whether multishot recv on a provided-buffer ring works (Linux 6.0)
    and multishot accept (5.19): a real recv on a socketpair."""
    a, b = socket.socketpair()
    try:
        with uring.Ring(8) as ring:
            try:
                ring.register_buf_ring(0, 2, 64)
            except OSError as exc:
                return f"provided-buffer rings (IORING_REGISTER_PBUF_RING, Linux 5.19) are refused: {exc}"
            ring.prep_recv_multishot(a, 0, user_data="recv")
            b.send(b"x")
            got = ring.wait(1, timeout=2.0)
            if not got:
                return "a multishot recv on a socketpair produced no completion within 2 s"
            c = got[0]
            if c.res < 0:
                return (f"multishot recv (Linux 6.0) is refused: {os.strerror(-c.res)} "
                        f"(errno {-c.res})")
            if c.res != 1 or c.buffer != b"x" or not c.more:
                return f"a multishot recv completed unexpectedly: {c!r}"
            with socket.socket() as lst:
                lst.bind(("127.0.0.1", 0))
                lst.listen(1)
                ring.prep_accept(lst, multishot=True, user_data="accept")
                with socket.create_connection(lst.getsockname()):
                    got = [c for c in ring.wait(1, timeout=2.0) if c.user_data == "accept"]
                    if not got or got[0].res < 0:
                        detail = os.strerror(-got[0].res) if got else "no completion within 2 s"
                        return f"multishot accept (Linux 5.19) is refused: {detail}"
                    os.close(got[0].res)
    except OSError as exc:
        return f"io_uring probe failed: {exc}"
    finally:
        a.close()
        b.close()
    return ""


def _probe_poll_first(uring: Any) -> bool:
    """Whether a recv may carry IORING_RECVSEND_POLL_FIRST: Linux 5.19 takes
    it; older kernels ignore sqe.ioprio on a recv or, where the check that
    it is 0 was backported, fail the recv with EINVAL. A recv with
    MSG_DONTWAIT and the flag finds -EAGAIN where it is honoured (the first
    try is skipped), the byte where it is ignored, EINVAL where refused."""
    a, b = socket.socketpair()
    try:
        with uring.Ring(4) as ring:
            b.send(b"x")
            ring.prep_recv(a, bytearray(1), msg_flags=socket.MSG_DONTWAIT, poll_first=True)
            got = ring.wait(1, timeout=2.0)
            return bool(got) and got[0].res != -errno.EINVAL
    except OSError:
        return False
    finally:
        a.close()
        b.close()


def _poll_first_works(uring: Any) -> bool:
    key = (uring.__name__, "poll_first")
    with _probe_lock:
        if key not in _probed:
            _probed[key] = _probe_poll_first(uring)
        return bool(_probed[key])


class _Conn:
    """One connection. ``user_data`` of its recv is the connection itself,
    of its send the ``tx`` twin."""

    __slots__ = ("fd", "tx", "rbuf", "rview", "sending", "out", "pending", "receiving", "paused", "eof",
                 "recv_id")

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.tx = _Tx(self)
        if size:
            self.rbuf: Optional[bytearray] = bytearray(size)    # where the armed recv lands
            self.rview: Optional[memoryview] = memoryview(self.rbuf)
        else:                                   # multishot: the kernel picks the buffers
            self.rbuf = None
            self.rview = None
        self.sending: Any = None        # what the send in flight sends, or None
        self.out = bytearray()          # spare accumulator (swapped with pending)
        self.pending = bytearray()      # bytes received while a send was in flight
        self.receiving = False          # a recv is armed
        self.paused = False             # recv held back: too much pending
        self.eof = False                # the peer closed (or failed): close when sent
        self.recv_id: Optional[int] = None

    def release(self) -> None:
        if self.rview is not None:
            self.rview.release()


class _Tx:
    __slots__ = ("conn",)

    def __init__(self, conn: _Conn) -> None:
        self.conn = conn


class UringServer(EchoServer):
    name = "uring"
    model = "asynchronous"
    summary = "fastio.uring: a recv always armed per connection, echo by send, many completions per wait"
    requires = ("uring",)
    multishot = False
    ring_entries = 1024
    #: ring set-up: "coop" (see _make_ring), "defer" (DEFER_TASKRUN, then
    #: wait() for one completion at a time), "plain" (no flags)
    setup = "coop"
    #: bytes per recv (one buffer of it per connection; 16 KiB halves the
    #: throughput of 100 KB messages)
    buffer_size = 65536
    #: bytes held for a peer that does not read before its recv is stopped
    pending_limit = PENDING_LIMIT
    #: the recv re-armed after an echo waits for readiness before its first
    #: try (poll_first): the peer has not had the reply yet, so a try would
    #: fail. Used where the kernel takes it (5.19; see _probe_poll_first).
    poll_first = True

    @classmethod
    def why_unavailable(cls, backend: Optional[str] = None) -> Optional[str]:
        reason = super().why_unavailable(backend)
        if reason is not None:
            return reason
        from fastio import _backend

        uring = _backend.load("uring", backend)
        reason = uring.why_unavailable()
        if reason is not None or not cls.multishot:
            return reason
        key = (backend or _backend.name(), "multishot")
        with _probe_lock:
            if key not in _probed:
                _probed[key] = _probe_multishot(uring)
            return _probed[key] or None

    def _serve(self) -> None:
        listener = self._listener
        assert listener is not None
        uring = self._load("uring")
        self._poll_first = self.poll_first and _poll_first_works(uring)
        # Made in the serving thread: SINGLE_ISSUER binds the ring to it.
        ring = _make_ring(uring, self.ring_entries, self.setup)
        conns: Dict[int, _Conn] = {}
        try:
            self._loop(ring, listener.fileno(), conns)
        finally:
            try:
                ring.close()    # cancels and reaps whatever is in flight
            finally:
                for conn in conns.values():
                    os.close(conn.fd)
                    conn.release()

    def _loop(self, ring: Any, lfd: int, conns: Dict[int, _Conn]) -> None:
        prep_recv = ring.prep_recv
        prep_send = ring.prep_send
        prep_accept = ring.prep_accept
        size = self.buffer_size
        wait = ring.wait
        Conn = _Conn
        Tx = _Tx
        waitall = _WAITALL
        limit = self.pending_limit
        first = self._poll_first
        ring.prep_poll_add(self._wake_r, POLLIN, user_data=_WAKE)
        prep_accept(lfd, user_data=_ACCEPT)
        self._serving()
        sends = 0
        urgent = False
        lazy = not _min_complete_ok(ring)
        while True:
            # One more completion than the sends just queued (they usually
            # complete during the submit): submit and sleep in one call.
            # Unless a completion of this round's sends has work behind it
            # (bytes pending, a close), which must not wait for new data.
            completions = wait(1 if urgent or lazy else sends + 1)
            sends = 0
            urgent = False
            for c in completions:
                conn = c.user_data
                res = c.res
                kind = conn.__class__
                if kind is Conn:
                    # -- a recv completed: echo it, re-arm --
                    if res > 0 and not conn.eof:
                        if conn.sending is None:
                            # a copy goes out, so the recv can land in the buffer again
                            data = conn.rbuf[:res]
                            prep_send(conn.fd, data, user_data=conn.tx, msg_flags=waitall)
                            sends += 1
                            conn.sending = data
                        else:
                            conn.pending += conn.rview[:res]
                            urgent = True
                            if len(conn.pending) >= limit:
                                conn.receiving = False      # re-armed once sent
                                conn.paused = True
                                continue
                        prep_recv(conn.fd, conn.rbuf, user_data=conn, poll_first=first)
                    else:
                        # 0: the peer closed; < 0: reset, error, or cancelled by _fail()
                        conn.receiving = False
                        conn.eof = True
                        urgent = True
                        if res < 0:
                            del conn.pending[:]
                        if conn.sending is None:
                            self._close(conns, conn)
                elif kind is Tx:
                    # -- a send completed --
                    conn = conn.conn
                    data = conn.sending
                    if res < 0:
                        conn.sending = None
                        del conn.pending[:]
                        urgent = True
                        self._fail(ring, conns, conn)
                    elif res < len(data):
                        # a short send: the rest, from where it stopped
                        data = bytes(memoryview(data)[res:])
                        urgent = True
                        prep_send(conn.fd, data, user_data=conn.tx, msg_flags=waitall)
                        sends += 1
                        conn.sending = data
                    elif conn.pending:
                        # what arrived meanwhile goes next; the two
                        # accumulators swap (the sent one is free again)
                        out = conn.pending
                        spare = conn.out
                        if spare:
                            del spare[:]
                        conn.pending = spare
                        conn.out = out
                        prep_send(conn.fd, out, user_data=conn.tx, msg_flags=waitall)
                        sends += 1
                        conn.sending = out
                        if conn.eof:
                            urgent = True       # to close it once sent
                        if conn.paused:
                            conn.paused = False
                            conn.receiving = True
                            prep_recv(conn.fd, conn.rbuf, user_data=conn)
                    else:
                        conn.sending = None
                        if conn.out:
                            del conn.out[:]
                        if conn.eof:
                            if not conn.receiving:
                                self._close(conns, conn)
                        elif conn.paused:
                            conn.paused = False
                            conn.receiving = True
                            prep_recv(conn.fd, conn.rbuf, user_data=conn)
                elif conn is _ACCEPT:
                    if res >= 0:
                        conn = Conn(res, size)
                        conns[res] = conn
                        conn.receiving = True
                        prep_recv(res, conn.rbuf, user_data=conn)
                    prep_accept(lfd, user_data=_ACCEPT)
                elif conn is _WAKE:
                    return

    def _fail(self, ring: Any, conns: Dict[int, _Conn], conn: _Conn) -> None:
        """A send failed (reset, EPIPE): stop the recv, close when it is back."""
        conn.eof = True
        if conn.receiving:
            ring.prep_async_cancel(fd=conn.fd, user_data=None)
        else:
            self._close(conns, conn)

    @staticmethod
    def _close(conns: Dict[int, _Conn], conn: _Conn) -> None:
        """Nothing in flight on it any more: close."""
        if conns.pop(conn.fd, None) is not None:
            os.close(conn.fd)
            conn.release()


class UringMultishotServer(UringServer):
    name = "uring-multishot"
    summary = ("fastio.uring: multishot accept + multishot recv on a provided-buffer ring (BufRing), "
               "echo by send")
    multishot = True
    #: provided buffers: how many, and their size (16 MiB in all)
    buffers = 512
    buffer_size = 32768
    #: a multishot recv stays armed: there is no per-echo re-arm (and no probe)
    poll_first = False

    def _loop(self, ring: Any, lfd: int, conns: Dict[int, _Conn]) -> None:
        bgid = 0
        ring.register_buf_ring(bgid, self.buffers, self.buffer_size)
        prep_send = ring.prep_send
        prep_recv_multishot = ring.prep_recv_multishot
        prep_async_cancel = ring.prep_async_cancel
        wait = ring.wait
        Conn = _Conn
        Tx = _Tx
        waitall = _WAITALL
        limit = self.pending_limit
        from fastio import uring as api

        more_flag = api.CQE_F_MORE
        enobufs = _ENOBUFS
        ecanceled = _ECANCELED
        ring.prep_poll_add(self._wake_r, POLLIN, user_data=_WAKE)
        ring.prep_accept(lfd, multishot=True, user_data=_ACCEPT)
        self._serving()
        sends = 0
        urgent = False
        lazy = not _min_complete_ok(ring)
        while True:
            # One more completion than the sends just queued (they usually
            # complete during the submit): submit and sleep in one call.
            # Unless a completion of this round's sends has work behind it
            # (bytes pending, a close), which must not wait for new data.
            completions = wait(1 if urgent or lazy else sends + 1)
            sends = 0
            urgent = False
            for c in completions:
                conn = c.user_data
                res = c.res
                kind = conn.__class__
                if kind is Conn:
                    # -- data from the multishot recv (bytes already copied out) --
                    if res > 0:
                        if not conn.eof:
                            data = c.buffer
                            if conn.sending is None:
                                prep_send(conn.fd, data, user_data=conn.tx, msg_flags=waitall)
                                sends += 1
                                conn.sending = data
                            else:
                                conn.pending += data
                                urgent = True
                                if len(conn.pending) >= limit and not conn.paused:
                                    conn.paused = True          # stop it; re-armed once sent
                                    prep_async_cancel(conn.recv_id, user_data=None)
                        if c.flags & more_flag:
                            continue
                        # the kernel ended it (a full CQ ...): arm it again
                        conn.receiving = False
                        if conn.eof:
                            if conn.sending is None:
                                self._close(conns, conn)
                        elif not conn.paused:
                            conn.receiving = True
                            conn.recv_id = prep_recv_multishot(conn.fd, bgid, user_data=conn)
                        continue
                    if c.flags & more_flag:
                        continue
                    conn.receiving = False
                    if not conn.eof and (res == enobufs or (res == ecanceled and conn.paused)):
                        if conn.paused:         # cancelled by us: resumes once sent
                            self._resume(conn, prep_recv_multishot, bgid, limit)
                        else:                   # every provided buffer was in use; back now
                            conn.receiving = True
                            conn.recv_id = prep_recv_multishot(conn.fd, bgid, user_data=conn)
                        continue
                    # 0: the peer closed; < 0: reset, error, or cancelled by _fail()
                    conn.eof = True
                    urgent = True
                    if res < 0:
                        del conn.pending[:]
                    if conn.sending is None:
                        self._close(conns, conn)
                elif kind is Tx:
                    conn = conn.conn
                    data = conn.sending
                    if res < 0:
                        conn.sending = None
                        del conn.pending[:]
                        urgent = True
                        self._fail(ring, conns, conn)
                    elif res < len(data):
                        data = bytes(memoryview(data)[res:])
                        urgent = True
                        prep_send(conn.fd, data, user_data=conn.tx, msg_flags=waitall)
                        sends += 1
                        conn.sending = data
                    elif conn.pending:
                        out = conn.pending
                        spare = conn.out
                        if spare:
                            del spare[:]
                        conn.pending = spare
                        conn.out = out
                        prep_send(conn.fd, out, user_data=conn.tx, msg_flags=waitall)
                        sends += 1
                        conn.sending = out
                        if conn.eof:
                            urgent = True       # to close it once sent
                        elif conn.paused:
                            self._resume(conn, prep_recv_multishot, bgid, limit)
                    else:
                        conn.sending = None
                        if conn.out:
                            del conn.out[:]
                        if conn.eof:
                            if not conn.receiving:
                                self._close(conns, conn)
                        elif conn.paused:
                            self._resume(conn, prep_recv_multishot, bgid, limit)
                elif conn is _ACCEPT:
                    if res >= 0:
                        conn = Conn(res, 0)
                        conns[res] = conn
                        conn.receiving = True
                        conn.recv_id = prep_recv_multishot(res, bgid, user_data=conn)
                    if not c.flags & more_flag:
                        ring.prep_accept(lfd, multishot=True, user_data=_ACCEPT)
                elif conn is _WAKE:
                    return

    @staticmethod
    def _resume(conn: _Conn, prep_recv_multishot: Any, bgid: int, limit: int) -> None:
        """Re-arm a paused connection's recv once its backlog is small."""
        if conn.paused and not conn.receiving and len(conn.pending) < limit // 2:
            conn.paused = False
            conn.receiving = True
            conn.recv_id = prep_recv_multishot(conn.fd, bgid, user_data=conn)

    def _fail(self, ring: Any, conns: Dict[int, _Conn], conn: _Conn) -> None:
        conn.eof = True
        if conn.receiving:
            ring.prep_async_cancel(conn.recv_id, user_data=None)
        else:
            self._close(conns, conn)
