"""What every echo server shares: the address (TCP or Unix), the listening
socket, the wake-up pipe that ends a wait, the serving thread, ``stop()``,
``cpu_time()`` and the context manager. A model module only writes
``_serve()``: its loop, run until ``stop()``, closing every connection it
opened before it returns.

The life of a server: ``start()`` binds and listens in the caller (so
``address`` is known when it returns), then runs ``_serve()`` in a thread and
waits until the loop has made its kernel objects (it calls ``_serving()``) or
failed to (the error is raised by ``start()``); ``serve_forever()`` runs
``_serve()`` in the calling thread instead. ``stop()`` sets
``_stopping``, interrupts the wait (one byte down the wake-up pipe, or what
the model overrides ``_interrupt()`` with), waits until ``_serve()`` has
returned, then closes the listener and the pipe. Nothing is left behind: no
fd, no thread.
"""

from __future__ import annotations

import errno
import os
import resource
import socket
import stat
import threading
from typing import Any, ClassVar, Optional, Tuple, Union

from fastio import _backend
from fastio._errors import UnsupportedError

__all__ = ["Address", "EchoServer", "BUFFER_SIZE", "PENDING_LIMIT"]

Address = Union[Tuple[str, int], str]

#: Bytes asked for by one read of a connection (one buffer per connection or
#: per loop, reused for every read).
BUFFER_SIZE = 65536

#: A connection whose peer does not read its echo has at most this many
#: bytes waiting in the server; beyond it the server stops reading from that
#: connection until the peer catches up (TCP then pushes back on the peer).
PENDING_LIMIT = 1 << 20


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _unlink_stale(path: str) -> bool:
    """Remove ``path`` if it is a Unix socket nobody listens on; True if it did."""
    try:
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            return False
    except OSError:
        return False
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except ConnectionRefusedError:
        os.unlink(path)
        return True
    except OSError:
        return False
    finally:
        probe.close()
    return False


def make_listener(address: Address, backlog: int) -> socket.socket:
    """A listening socket on ``address``: ``(host, port)`` for TCP (IPv4 or
    IPv6, port 0 picks a free one; ``SO_REUSEADDR``, and ``TCP_NODELAY``,
    which accepted sockets inherit on Linux) or a ``str`` path for a Unix
    socket (a stale socket file nobody listens on is replaced)."""
    if isinstance(address, str):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            try:
                sock.bind(address)
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE or not _unlink_stale(address):
                    raise
                sock.bind(address)
            sock.listen(backlog)
        except BaseException:
            sock.close()
            raise
        return sock
    if not (isinstance(address, tuple) and len(address) == 2):
        raise TypeError(f"address must be (host, port) or a Unix socket path (str), not {address!r}")
    host, port = address
    infos = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM, 0, socket.AI_PASSIVE)
    family, kind, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(sockaddr)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return sock


class EchoServer:
    """An echo server: every byte received on a connection is sent back on
    it, in order; the peer closing ends the connection; a reset connection is
    closed without disturbing the others.

    ``address`` is ``(host, port)`` for TCP (port 0: any free port) or a
    ``str`` path for a Unix socket. ``backend`` picks fastio's implementation
    (``"c"`` or ``"pure"``; None: the one ``fastio.backend`` names) for the
    models built on fastio; the others ignore it.
    """

    name: ClassVar[str] = ""
    model: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    #: fastio modules the model is built on (for why_unavailable()).
    requires: ClassVar[Tuple[str, ...]] = ()
    #: the backends that have this server (the compiled loop's exist only on "c")
    backends: ClassVar[Tuple[str, ...]] = ("c", "pure")
    #: Whether the loop waits on the wake-up pipe (``_wake_r``).
    uses_wake_pipe: ClassVar[bool] = True

    def __init__(self, address: Address = ("127.0.0.1", 0), *, backend: Optional[str] = None,
                 backlog: int = 1024) -> None:
        if backend not in (None,) + _backend.BACKENDS:
            raise ValueError(f"backend must be None, 'c' or 'pure', not {backend!r}")
        self.requested_address = address
        self.backend = backend
        self.backlog = backlog
        self._lock = threading.Lock()
        self._state = "new"           # new -> open -> stopping -> stopped
        self._stopping = False        # read by the loops
        self._listener: Optional[socket.socket] = None
        self._address: Optional[Address] = None
        self._unix_path: Optional[str] = None
        self._wake_r = -1
        self._wake_w = -1
        self._thread: Optional[threading.Thread] = None
        self._serving_ident: Optional[int] = None
        self._done = threading.Event()
        self._ready = threading.Event()   # the loop's resources exist (or it failed)
        self._set_up = False              # _serving() was called
        self._error: Optional[BaseException] = None
        self._cpu_start: Optional[float] = None
        self._cpu_stop: Optional[float] = None

    def __repr__(self) -> str:
        where = self._address if self._address is not None else self.requested_address
        return f"<{type(self).__name__} {self.name!r} {where!r} {self._state}>"

    # ---- availability -----------------------------------------------------

    @classmethod
    def why_unavailable(cls, backend: Optional[str] = None) -> Optional[str]:
        """None when this model can run here (on ``backend``); otherwise why
        not (io_uring disabled, uvloop not installed ...)."""
        for module in cls.requires:
            try:
                _backend.load(module, backend)
            except ImportError as exc:
                return f"fastio.{module} cannot be imported on the {backend or 'default'} backend: {exc}"
        return None

    def _load(self, module: str) -> Any:
        """``fastio._<backend>.<module>`` for this server's backend."""
        return _backend.load(module, self.backend)

    def _check_available(self) -> None:
        reason = type(self).why_unavailable(self.backend)
        if reason is not None:
            raise UnsupportedError(f"the {self.name!r} echo server cannot run here: {reason}")

    # ---- the public life cycle --------------------------------------------

    @property
    def address(self) -> Address:
        """The bound address, port resolved: ``(host, port)`` or the Unix path."""
        if self._address is None:
            raise RuntimeError(f"the {self.name!r} server is not bound yet: call start() first")
        return self._address

    @property
    def running(self) -> bool:
        """True from start() (or serve_forever()) until stop() is done."""
        return self._state in ("open", "stopping") and not self._done.is_set()

    def start(self) -> None:
        """Bind and listen (``address`` is known on return), then serve in a
        background thread until :meth:`stop`. Returns once the loop has made
        its kernel objects (ring, context, signalfd ...); raises what making
        them raised (``fastio.UnsupportedError`` if the model cannot run
        here), with everything closed again."""
        with self._lock:
            if self._state != "new":
                raise RuntimeError(f"the {self.name!r} server was already started")
            self._check_available()
            self._open()
        thread = threading.Thread(target=self._run_in_thread, name=f"fastio-{self.name}", daemon=True)
        self._thread = thread
        try:
            thread.start()
        except BaseException:
            self._thread = None
            self._close_resources()
            raise
        self._ready.wait()
        if not self._set_up:                # the loop failed before serving
            thread.join()
            self._close_resources()
            error, self._error = self._error, None
            raise error if error is not None else RuntimeError(
                f"the {self.name!r} server's loop ended before serving")

    def serve_forever(self) -> None:
        """Bind and listen if not done yet, then serve in the calling thread
        until :meth:`stop` (called from another thread or a signal handler)."""
        with self._lock:
            if self._state == "new":
                self._check_available()
                self._open()
            elif self._state != "open" or self._thread is not None or self._serving_ident is not None:
                raise RuntimeError(f"the {self.name!r} server is already serving or stopped")
            self._serving_ident = threading.get_ident()
        try:
            self._serve()
        finally:
            self._done.set()
            self._close_resources()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving: wake the loop, close every connection and the
        listener, join every thread. Idempotent. Raises ``RuntimeError`` if
        the loop did not end within ``timeout`` seconds (nothing is closed
        under it then: call again), or if the loop had died of an exception
        (after cleaning up)."""
        with self._lock:
            if self._state == "new":
                self._state = "stopped"
                return
            if self._state == "stopped":
                return
            self._state = "stopping"
            self._stopping = True
        if self._thread is None and self._serving_ident is None:
            # open but not serving: serve_forever() never called
            self._done.set()
        else:
            self._interrupt()
            if threading.get_ident() in (self._serving_ident, getattr(self._thread, "ident", None)):
                return   # called from inside the loop (a signal handler): it ends on its own
            if self._thread is not None:
                self._thread.join(timeout)
                if self._thread.is_alive():
                    raise RuntimeError(f"the {self.name!r} server did not stop within {timeout} s")
            elif not self._done.wait(timeout):
                raise RuntimeError(f"the {self.name!r} server did not stop within {timeout} s")
        self._close_resources()
        error, self._error = self._error, None
        if error is not None:
            raise RuntimeError(f"the {self.name!r} server's loop failed: {error!r}") from error

    def cpu_time(self) -> float:
        """CPU seconds (user + system, ``getrusage(RUSAGE_SELF)``: the whole
        process) since :meth:`start`, up to :meth:`stop` once stopped."""
        if self._cpu_start is None:
            return 0.0
        end = self._cpu_stop if self._cpu_stop is not None else _cpu_seconds()
        return max(end - self._cpu_start, 0.0)

    def __enter__(self) -> "EchoServer":
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ---- for the models ---------------------------------------------------

    def _open(self) -> None:
        """Listener and wake-up pipe; state "open". Called with the lock held."""
        listener = make_listener(self.requested_address, self.backlog)
        try:
            if listener.family == socket.AF_UNIX:
                path = listener.getsockname()
                self._address = path
                self._unix_path = path if path and not path.startswith("\0") else None
            else:
                self._address = tuple(listener.getsockname()[:2])  # type: ignore[assignment]
            if self.uses_wake_pipe:
                self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        except BaseException:
            listener.close()
            raise
        self._listener = listener
        self._cpu_start = _cpu_seconds()
        self._state = "open"

    def _run_in_thread(self) -> None:
        try:
            self._serve()
        except BaseException as exc:  # raised by start() or stop()
            self._error = exc
        finally:
            self._done.set()
            self._ready.set()

    def _serving(self) -> None:
        """Called by the loop once its kernel objects exist: start() returns."""
        self._set_up = True
        self._ready.set()

    def _serve(self) -> None:
        """The model's loop: serve until ``_stopping`` / the wake-up pipe,
        then close every connection it opened and join its own threads."""
        raise NotImplementedError

    def _interrupt(self) -> None:
        """Make the loop notice ``_stopping`` now: one byte down the pipe."""
        if self._wake_w >= 0:
            try:
                os.write(self._wake_w, b"\0")
            except (BlockingIOError, OSError):
                pass   # full (already woken) or closed

    def _close_resources(self) -> None:
        """Close the listener, remove the Unix socket file, close the pipe."""
        with self._lock:
            self._state = "stopped"
            self._stopping = True
            if self._cpu_start is not None and self._cpu_stop is None:
                self._cpu_stop = _cpu_seconds()
            listener, self._listener = self._listener, None
            wake = (self._wake_r, self._wake_w)
            self._wake_r = self._wake_w = -1
            path, self._unix_path = self._unix_path, None
        if listener is not None:
            listener.close()
        for fd in wake:
            if fd >= 0:
                os.close(fd)
        if path is not None:
            try:
                os.unlink(path)
            except OSError:
                pass
