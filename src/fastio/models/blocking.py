"""Blocking IO: one thread per connection.

How a read happens: the thread calls ``recv`` on a blocking socket and the
kernel puts it to sleep until data arrives (phase 1, waiting), then copies the
bytes into the thread's buffer before ``recv`` returns (phase 2, copying).
The thread is blocked through both phases and can serve nothing else, so
every connection needs its own thread: simple code, one stack per client, and
the scheduler, not the program, decides who runs next. ``sendall`` blocks in
the same way until the kernel has taken every byte, which is how a partial
send is handled: the thread simply waits for room.

``blocking`` starts a thread for each accepted connection. ``blocking-pool``
has a bounded pool (``workers``, default 64): beyond that many open
connections, new ones are accepted by the kernel and by the accept thread but
wait in a queue, unserved, until a worker finishes a connection; their
clients see no reply meanwhile. That is the classic trade of a fixed pool:
bounded memory, unbounded waiting.

Stopping: a thread blocked in ``accept`` or ``recv`` cannot be woken by a
pipe, so ``stop()`` calls ``shutdown()`` on the listener (``accept`` fails
with ``EINVAL``) and on every connection (``recv`` returns 0, a blocked
``sendall`` fails with ``EPIPE``).
"""

from __future__ import annotations

import collections
import os
import socket
import threading
from typing import Deque, List, Optional, Set

from fastio.models._base import BUFFER_SIZE, Address, EchoServer

__all__ = ["BlockingServer", "BlockingPoolServer"]


class BlockingServer(EchoServer):
    name = "blocking"
    model = "blocking"
    summary = "blocking sockets, one thread per connection (read + sendall)"
    uses_wake_pipe = False

    def __init__(self, address: Address = ("127.0.0.1", 0), *, backend: Optional[str] = None,
                 backlog: int = 1024) -> None:
        super().__init__(address, backend=backend, backlog=backlog)
        self._conns: Set[socket.socket] = set()
        self._workers: Set[threading.Thread] = set()
        self._conns_lock = threading.Lock()

    # -- per connection --

    def _echo(self, conn: socket.socket) -> None:
        """Serve one connection until the peer closes it (or stop())."""
        buf = bytearray(BUFFER_SIZE)
        view = memoryview(buf)
        bufs = [buf]
        fd = conn.fileno()
        readv = os.readv
        sendall = conn.sendall
        try:
            while True:
                n = readv(fd, bufs)         # blocks: wait, then copy
                if not n:
                    break
                sendall(view[:n])           # blocks until the kernel took all
        except OSError:
            pass                            # reset by the peer, or shut down by stop()
        finally:
            view.release()
            with self._conns_lock:
                self._conns.discard(conn)
                conn.close()

    def _track(self, conn: socket.socket) -> bool:
        """Remember an accepted connection; False (and closed) if stopping."""
        with self._conns_lock:
            if self._stopping:
                conn.close()
                return False
            self._conns.add(conn)
            return True

    def _handle(self, conn: socket.socket) -> None:
        thread = threading.Thread(target=self._run_connection, args=(conn,),
                                  name=f"fastio-{self.name}-conn", daemon=True)
        with self._conns_lock:
            self._workers.add(thread)
        thread.start()

    def _run_connection(self, conn: socket.socket) -> None:
        try:
            self._echo(conn)
        finally:
            with self._conns_lock:
                self._workers.discard(threading.current_thread())

    # -- the accept loop --

    def _serve(self) -> None:
        listener = self._listener
        assert listener is not None
        listener.setblocking(True)
        self._serving()
        try:
            while not self._stopping:
                try:
                    conn, _ = listener.accept()     # blocks until a client connects
                except OSError:
                    if self._stopping:
                        break                       # shutdown() by stop(): EINVAL
                    continue                        # ECONNABORTED, EMFILE ...: keep serving
                conn.setblocking(True)
                if self._track(conn):
                    self._handle(conn)
        finally:
            self._stopping = True
            self._finish()

    def _finish(self) -> None:
        """Unblock and join every connection thread."""
        self._shutdown_connections()
        while True:
            with self._conns_lock:
                workers = list(self._workers)
            if not workers:
                break
            for thread in workers:
                thread.join()

    def _shutdown_connections(self) -> None:
        with self._conns_lock:
            for conn in self._conns:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _interrupt(self) -> None:
        listener = self._listener
        if listener is not None:
            try:
                listener.shutdown(socket.SHUT_RDWR)     # wakes accept() with EINVAL
            except OSError:
                pass
        self._shutdown_connections()


class BlockingPoolServer(BlockingServer):
    """Blocking IO with a bounded pool of ``workers`` threads, each serving
    one connection at a time; connections beyond ``workers`` wait in a queue,
    unserved, until a worker is free (see the module docstring)."""

    name = "blocking-pool"
    summary = "blocking sockets, bounded pool of 64 threads, one connection per worker; more wait"

    def __init__(self, address: Address = ("127.0.0.1", 0), *, backend: Optional[str] = None,
                 backlog: int = 1024, workers: int = 64) -> None:
        super().__init__(address, backend=backend, backlog=backlog)
        if workers < 1:
            raise ValueError("workers must be >= 1")
        self.workers = workers
        self._queue: Deque[Optional[socket.socket]] = collections.deque()
        self._queue_ready = threading.Condition(self._conns_lock)
        self._idle = 0
        self._pool: List[threading.Thread] = []

    def _handle(self, conn: socket.socket) -> None:
        with self._conns_lock:
            self._queue.append(conn)
            # More queued connections than idle workers (an idle worker already
            # notified still counts as idle until it wakes): start a thread, on
            # demand, up to the bound.
            if len(self._queue) > self._idle and len(self._pool) < self.workers:
                thread = threading.Thread(target=self._worker, name=f"fastio-{self.name}-worker",
                                          daemon=True)
                self._pool.append(thread)
                self._workers.add(thread)
                thread.start()
            else:
                self._queue_ready.notify()

    def _worker(self) -> None:
        try:
            while True:
                with self._conns_lock:
                    while not self._queue:
                        if self._stopping:
                            return
                        self._idle += 1
                        self._queue_ready.wait()
                        self._idle -= 1
                    conn = self._queue.popleft()
                if conn is None:
                    return
                self._echo(conn)
        finally:
            with self._conns_lock:
                self._workers.discard(threading.current_thread())

    def _shutdown_connections(self) -> None:
        super()._shutdown_connections()
        with self._conns_lock:
            self._queue_ready.notify_all()

    def _finish(self) -> None:
        # Connections still queued were never served: close them.
        with self._conns_lock:
            queued = [c for c in self._queue if c is not None]
            self._queue.clear()
            for conn in queued:
                self._conns.discard(conn)
                conn.close()
            self._queue_ready.notify_all()
        super()._finish()
