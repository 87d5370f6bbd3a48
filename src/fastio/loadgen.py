"""A closed-loop echo load generator in C, and the reference C echo server.

``run(address, ...)`` opens ``connections`` stream connections (TCP, or a
Unix socket when ``address`` is a path) to an echo server and keeps ``depth``
requests of ``size`` bytes in flight on each: the moment a response is
complete the next request goes out. It runs in C (``csrc/fio_loadgen.h``),
one epoll loop in the calling thread with the GIL released, so that it is not
the bottleneck of what it measures. Every echoed byte is compared with the
byte sent at that offset of the connection's stream; faults are counted in
``LoadResult.errors``, never folded into the numbers:

``corrupt``
    an echoed byte differs from the one sent, or the server sent bytes it
    was never sent (the connection is closed: its stream is out of sync);
``lost``
    requests whose response never completed: still outstanding when the
    final drain timed out, or on a connection that received nothing for
    ``timeout`` seconds while owed a response;
``closed``
    the server closed or reset a connection before the end of the run;
``connect``
    a connection could not be made (refused, no such path, out of fds, not
    done within ``timeout``);
``other``
    any other failed call on a connection.

A failed connection is closed and not replaced, and counted once, under the
first fault seen. Timeline of a run: connect (at most ``timeout``), warm up
for ``warmup`` seconds (not counted), measure for ``duration`` seconds or
until exactly ``requests`` requests issued after the warmup are answered,
then stop issuing and drain what is outstanding (at most ``timeout``). A
server that never answers ends the run after about ``warmup + timeout``.
Latency of a request runs from the send of its first byte to the arrival of
its last byte, kept in a log-linear histogram (ns resolution, buckets at most
1.6% wide).

``run_process`` does the same in a child process (``python -m fastio.loadgen
... --json``), optionally pinned to one CPU, so that the load generator and
the server under test do not share a core or a GIL.

``CEchoServer`` is the reference the Python servers of ``fastio.models`` are
measured against: a plain level-triggered epoll echo server in C
(``csrc/fio_echo.h``), run in a thread with the GIL released, with the same
interface as ``fastio.models`` servers.

Command line::

    python -m fastio.loadgen HOST:PORT | [IPV6]:PORT | unix:PATH
        [--connections N] [--size B] [--depth D] [--duration S | --requests N]
        [--warmup S] [--timeout S] [--cpu K] [--json]

Both need the compiled extension ``fastio._c._loadgen``; there is no
pure-Python load generator (it would be the bottleneck).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import math
import os
import resource
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from types import ModuleType, TracebackType
from typing import Any, ClassVar, Optional, Sequence, Tuple, Union

__all__ = ["LoadResult", "run", "run_process", "CEchoServer", "CUringEchoServer", "CThreadsEchoServer", "main",
           "ERROR_KEYS", "LATENCY_KEYS"]

Address = Union[Tuple[str, int], str]

ERROR_KEYS = ("corrupt", "lost", "closed", "connect", "other")
LATENCY_KEYS = ("p50", "p90", "p99", "p99.9", "max", "mean")

DEFAULT_DURATION = 1.0

# Sanity limits: beyond them a value is a mistake, not a load test.
MAX_CONNECTIONS = 65536
MAX_SIZE = 64 * 1024 * 1024
MAX_DEPTH = 4096
MAX_IN_FLIGHT = 1 << 22  # connections * depth (8 bytes of send time each)
MAX_REQUESTS = 1 << 40
MAX_REQUESTS_BYTES = 1 << 60  # stream offsets stay far from 2**64
MAX_SECONDS = 86400.0


@dataclass(frozen=True)
class LoadResult:
    """The outcome of one load run.

    ``requests`` counts verified request/response pairs in the measured
    window (not the warmup); ``elapsed`` is that window in seconds; ``rps``
    is ``requests / elapsed``; ``throughput`` the verified echoed bytes per
    second received in the window (one direction). ``latency_us`` has the keys
    ``p50``, ``p90``, ``p99``, ``p99.9``, ``max``, ``mean`` in microseconds
    (all 0.0 when no request completed); ``errors`` has every key of
    ``ERROR_KEYS``; ``ok`` is True when all of them are 0.
    """

    connections: int
    size: int
    depth: int
    requests: int
    elapsed: float
    rps: float
    throughput: float
    latency_us: dict[str, float]
    errors: dict[str, int]
    ok: bool

    def to_dict(self) -> dict:
        """A JSON-ready dict of every field (fresh copies of the dicts)."""
        return {
            f.name: dict(getattr(self, f.name)) if isinstance(getattr(self, f.name), dict) else getattr(self, f.name)
            for f in dataclasses.fields(self)
        }

    @classmethod
    def from_dict(cls, data: dict) -> LoadResult:
        """The inverse of ``to_dict`` (keys it does not know are ignored)."""
        try:
            return cls(
                connections=int(data["connections"]),
                size=int(data["size"]),
                depth=int(data["depth"]),
                requests=int(data["requests"]),
                elapsed=float(data["elapsed"]),
                rps=float(data["rps"]),
                throughput=float(data["throughput"]),
                latency_us={k: float(data["latency_us"][k]) for k in LATENCY_KEYS},
                errors={k: int(data["errors"][k]) for k in ERROR_KEYS},
                ok=bool(data["ok"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a LoadResult dict: {exc!r}") from None

    def format(self) -> str:
        """A readable multi-line summary."""
        lat = self.latency_us
        errors = ", ".join(f"{k} {v}" for k, v in self.errors.items() if v) or "none"
        return "\n".join([
            f"{self.connections} connection{'s' if self.connections != 1 else ''}, "
            f"{self.size} B messages, depth {self.depth}",
            f"  requests   {self.requests} in {self.elapsed:.3f} s: {self.rps:,.0f} req/s, "
            f"{_format_rate(self.throughput)}",
            f"  latency    p50 {lat['p50']:.1f} us, p90 {lat['p90']:.1f} us, p99 {lat['p99']:.1f} us, "
            f"p99.9 {lat['p99.9']:.1f} us, max {lat['max']:.1f} us, mean {lat['mean']:.1f} us",
            f"  errors     {errors}",
            f"  {'ok' if self.ok else 'NOT OK: the server under test made errors'}",
        ])


def _format_rate(bytes_per_second: float) -> str:
    for unit, scale in (("GB/s", 1e9), ("MB/s", 1e6), ("kB/s", 1e3)):
        if bytes_per_second >= scale:
            return f"{bytes_per_second / scale:.2f} {unit}"
    return f"{bytes_per_second:.0f} B/s"


# ---------------------------------------------------------------- arguments


def _int_arg(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _seconds_arg(name: str, value: object, *, positive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    seconds = float(value)
    if math.isnan(seconds) or seconds < 0 or (positive and seconds == 0) or seconds > MAX_SECONDS:
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{name} must be {bound} and at most {MAX_SECONDS:g} seconds, got {value!r}")
    return seconds


@dataclass(frozen=True)
class _Options:
    connections: int
    size: int
    depth: int
    duration: float  # 0.0 in request-count mode
    requests: int  # 0 in duration mode
    warmup: float
    timeout: float


def _check(connections: object, size: object, depth: object, duration: object, requests: object,
           warmup: object, timeout: object) -> _Options:
    connections = _int_arg("connections", connections, 1, MAX_CONNECTIONS)
    size = _int_arg("size", size, 1, MAX_SIZE)
    depth = _int_arg("depth", depth, 1, MAX_DEPTH)
    if connections * depth > MAX_IN_FLIGHT:
        raise ValueError(f"connections * depth must be at most {MAX_IN_FLIGHT}, got {connections * depth}")
    if duration is not None and requests is not None:
        raise ValueError("give either duration or requests, not both")
    if requests is not None:
        count = _int_arg("requests", requests, 1, MAX_REQUESTS)
        if count * size > MAX_REQUESTS_BYTES:
            raise ValueError(f"requests * size must be at most {MAX_REQUESTS_BYTES} bytes, got {count * size}")
        seconds = 0.0
    else:
        count = 0
        seconds = _seconds_arg("duration", DEFAULT_DURATION if duration is None else duration, positive=True)
    return _Options(
        connections=connections,
        size=size,
        depth=depth,
        duration=seconds,
        requests=count,
        warmup=_seconds_arg("warmup", warmup, positive=False),
        timeout=_seconds_arg("timeout", timeout, positive=True),
    )


_UNIX_PATH_MAX = 108  # sizeof(sockaddr_un.sun_path)


def _check_address(address: object, *, server: bool = False) -> Address:
    """The address, normalised (a path-like to str); TypeError/ValueError if
    bad. A server may ask for port 0 (any free port)."""
    if isinstance(address, os.PathLike):
        address = os.fspath(address)
    if isinstance(address, str):
        if not address:
            raise ValueError("empty Unix socket path")
        if "\0" in address[1:]:
            raise ValueError("Unix socket path contains a NUL byte")
        raw = os.fsencode(address)
        room = _UNIX_PATH_MAX - (0 if raw[:1] == b"\0" else 1)
        if len(raw) > room:
            raise ValueError(f"Unix socket path is {len(raw)} bytes long; the limit is {room}")
        return address
    if isinstance(address, tuple) and len(address) == 2:
        host, port = address
        if not isinstance(host, str):
            raise TypeError(f"host must be a str, not {type(host).__name__}")
        if isinstance(port, bool) or not isinstance(port, int):
            raise TypeError(f"port must be an int, not {type(port).__name__}")
        low = 0 if server else 1
        if not low <= port < 65536:
            raise ValueError(f"port must be between {low} and 65535, got {port}")
        return (host, port)
    raise TypeError(f"address must be a (host, port) tuple or a Unix socket path (str), not {address!r}")


def _resolve(address: Address) -> tuple[int, Any]:
    """(family, sockaddr) of the address: getaddrinfo's first answer for TCP."""
    if isinstance(address, str):
        return socket.AF_UNIX, address
    host, port = address
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise ValueError(f"cannot resolve {host!r}: {exc.strerror}") from None
    if not infos:
        raise ValueError(f"cannot resolve {host!r}: no address")
    family, _, _, _, sockaddr = infos[0]
    return family, sockaddr


def _extension() -> ModuleType:
    try:
        ext = importlib.import_module("fastio._c._loadgen")
    except ImportError as exc:
        raise ImportError(
            f"fastio.loadgen needs fastio's compiled extension (fastio._c._loadgen), which cannot be "
            f"imported: {exc}. Reinstall fastio with a C compiler and the Python headers "
            f"(python -m pip install .); there is no pure-Python load generator"
        ) from exc
    return ext


def _result(opts: _Options, raw: dict) -> LoadResult:
    elapsed = raw["elapsed_ns"] / 1e9
    requests = int(raw["requests"])
    errors = {k: int(raw[k]) for k in ERROR_KEYS}
    return LoadResult(
        connections=opts.connections,
        size=opts.size,
        depth=opts.depth,
        requests=requests,
        elapsed=elapsed,
        rps=requests / elapsed if elapsed > 0 else 0.0,
        throughput=raw["bytes"] / elapsed if elapsed > 0 else 0.0,
        latency_us={k: raw[f"{k}_ns"] / 1e3 for k in LATENCY_KEYS},
        errors=errors,
        ok=not any(errors.values()),
    )


# ---------------------------------------------------------------- running


def run(
    address: Address,
    *,
    connections: int = 1,
    size: int = 64,
    depth: int = 1,
    duration: float | None = None,
    requests: int | None = None,
    warmup: float = 0.1,
    timeout: float = 5.0,
) -> LoadResult:
    """Load the echo server at ``address`` from this process; GIL released throughout.

    :param address: ``(host, port)`` for TCP (the first address
        ``getaddrinfo`` gives), or a Unix socket path (``str``; a leading
        NUL names the abstract namespace).
    :param connections: connections, all opened before the warmup.
    :param size: bytes per request (and per response).
    :param depth: requests in flight per connection (pipelining).
    :param duration: seconds measured after the warmup; None means
        ``DEFAULT_DURATION`` (1 s) unless ``requests`` is given.
    :param requests: measure exactly this many requests instead (issued after
        the warmup); excludes ``duration``.
    :param warmup: seconds of load before measuring (not counted).
    :param timeout: seconds allowed for connecting, for the final drain and
        for any connection owed a response to receive something.
    :returns: a ``LoadResult``; faults of the server are in ``errors``.
    :raises TypeError, ValueError: a bad argument (out of range, both
        ``duration`` and ``requests``, an unresolvable host).
    :raises ImportError: the compiled extension is missing.
    :raises OSError: the load generator itself failed (epoll, memory).
    """
    opts = _check(connections, size, depth, duration, requests, warmup, timeout)
    family, sockaddr = _resolve(_check_address(address))
    ext = _extension()
    raw = ext.run(family, sockaddr, opts.connections, opts.size, opts.depth, opts.duration, opts.requests,
                  opts.warmup, opts.timeout)
    return _result(opts, raw)


def _cli_address(address: Address) -> str:
    """The command-line spelling of a checked address."""
    if isinstance(address, str):
        if address.startswith("\0"):
            return "unix:@" + address[1:]
        if address.startswith("@"):
            return "unix:./" + address  # a relative path, not an abstract name
        return "unix:" + address
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _parse_cli_address(text: str) -> Address:
    if text.startswith("unix:"):
        path = text[len("unix:"):]
        if path.startswith("@"):
            path = "\0" + path[1:]
        return _check_address(path)
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"address must be HOST:PORT, [IPV6]:PORT or unix:PATH, not {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"write an IPv6 address in brackets: [{host}]:{port}")
    return _check_address((host, int(port)))


def _package_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_process(
    address: Address,
    *,
    cpu: int | None = None,
    connections: int = 1,
    size: int = 64,
    depth: int = 1,
    duration: float | None = None,
    requests: int | None = None,
    warmup: float = 0.1,
    timeout: float = 5.0,
    process_timeout: float | None = None,
) -> LoadResult:
    """``run`` in a child process (``python -m fastio.loadgen ... --json``).

    :param cpu: pin the child to this CPU (``os.sched_setaffinity``); it must
        be one this process may run on. None: the child inherits this
        process's affinity.
    :param process_timeout: wall-clock limit for the child, in seconds. None:
        long enough for interpreter start-up, connecting, the warmup, the
        duration and the drain (an hour in request-count mode).
    :returns: the child's ``LoadResult``.
    :raises RuntimeError: the child failed (its stderr is in the message) or
        did not finish within ``process_timeout`` (it is then killed).

    The other arguments and exceptions are those of ``run``.
    """
    opts = _check(connections, size, depth, duration, requests, warmup, timeout)
    checked = _check_address(address)
    _resolve(checked)
    if cpu is not None:
        cpu = _int_arg("cpu", cpu, 0, (1 << 20))
        allowed = os.sched_getaffinity(0)
        if cpu not in allowed:
            raise ValueError(f"cpu {cpu} is not one this process may run on: {sorted(allowed)}")
    if process_timeout is None:
        if opts.requests:
            limit = 3600.0
        else:
            limit = 30.0 + opts.warmup + opts.duration + 3 * opts.timeout
    else:
        limit = _seconds_arg("process_timeout", process_timeout, positive=True)

    argv = [
        sys.executable, "-m", "fastio.loadgen", _cli_address(checked),
        "--connections", str(opts.connections),
        "--size", str(opts.size),
        "--depth", str(opts.depth),
        "--warmup", repr(opts.warmup),
        "--timeout", repr(opts.timeout),
        "--json",
    ]
    argv += ["--requests", str(opts.requests)] if opts.requests else ["--duration", repr(opts.duration)]
    if cpu is not None:
        argv += ["--cpu", str(cpu)]
    env = dict(os.environ)
    # The child imports this very fastio, wherever it was imported from.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [_package_root(), env.get("PYTHONPATH")]))
    try:
        proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=limit,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        raise RuntimeError(f"the load generator process did not finish in {limit:g} s (killed); "
                           f"stderr: {stderr.strip() or '(empty)'}") from None
    stderr = proc.stderr.strip() or "(empty)"
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"the load generator process failed (exit status {proc.returncode}): {stderr}")
    try:
        return LoadResult.from_dict(json.loads(proc.stdout))
    except ValueError:
        raise RuntimeError(f"the load generator process printed no result (exit status {proc.returncode}); "
                           f"stdout: {proc.stdout.strip()[:200]!r}; stderr: {stderr}") from None


# ---------------------------------------------------------------- the reference server


class CEchoServer:
    """The reference echo server: plain C, epoll, level-triggered, one thread.

    The interface of ``fastio.models`` servers (``name`` "c-epoll", ``model``
    "reference"). ``start()`` binds and listens in the caller, then serves in
    a background thread that runs the C loop (``csrc/fio_echo.h``) with the
    GIL released; ``serve_forever()`` serves in the calling thread instead.
    ``stop()`` wakes the loop through a pipe, which closes every connection;
    then the thread is joined and the listener and the pipe are closed (and a
    Unix socket path this server created is removed). One-shot: a stopped
    server cannot be started again. ``backend`` is accepted for interface
    compatibility and ignored: this server is always the C one.
    """

    name: ClassVar[str] = "c-epoll"
    model: ClassVar[str] = "reference"
    summary: ClassVar[str] = "plain C epoll echo server (csrc/fio_echo.h), level-triggered, one thread, GIL released"
    _entry: ClassVar[str] = "serve"     # the compiled loop it runs

    def __init__(self, address: Address = ("127.0.0.1", 0), *, backend: str | None = None,
                 backlog: int = 1024) -> None:
        self._requested: Address = _check_address(address, server=True)
        if backend not in (None, "c", "pure"):
            raise ValueError(f"backend must be None, 'c' or 'pure', not {backend!r}")
        self._backlog = _int_arg("backlog", backlog, 1, 1 << 20)
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._wake_r = -1
        self._wake_w = -1
        self._unlink: str | None = None
        self._thread: threading.Thread | None = None
        self._serving: int | None = None  # ident of the thread running the loop
        self._done = threading.Event()
        self._stopped = False
        self._cpu_start: float | None = None
        #: The C server's counters (accepted, accept_errors, conn_errors, bytes) once it has stopped.
        self.stats: dict[str, int] | None = None
        #: The exception that ended the background thread's loop, if any.
        self.error: BaseException | None = None

    @classmethod
    def why_unavailable(cls, backend: str | None = None) -> str | None:
        """None when the server can run here, else why not (the compiled extension is missing)."""
        try:
            _extension()
        except ImportError as exc:
            return str(exc)
        return None

    def _bind(self) -> None:
        with self._lock:
            if self._stopped:
                raise RuntimeError("this server was stopped; make a new one")
            if self._sock is not None:
                return
            reason = self.why_unavailable()
            if reason is not None:
                from fastio import UnsupportedError

                raise UnsupportedError(reason)
            requested = self._requested
            if isinstance(requested, str):
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                bind_to: Any = requested
            else:
                host, port = requested
                try:
                    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                               proto=socket.IPPROTO_TCP, flags=socket.AI_PASSIVE)
                except socket.gaierror as exc:
                    raise ValueError(f"cannot resolve {host!r}: {exc.strerror}") from None
                family, _, _, _, bind_to = infos[0]
                sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                if sock.family != socket.AF_UNIX:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(bind_to)
                if isinstance(requested, str) and not requested.startswith("\0"):
                    self._unlink = requested
                sock.listen(self._backlog)
                sock.setblocking(False)
                self._wake_r, self._wake_w = os.pipe()
            except BaseException:
                sock.close()
                if self._unlink is not None:
                    _remove_socket_file(self._unlink)
                    self._unlink = None
                raise
            self._sock = sock
            self._cpu_start = _cpu_seconds()

    def _claim_loop(self) -> None:
        with self._lock:
            if self._stopped:
                raise RuntimeError("this server was stopped; make a new one")
            if self._serving is not None:
                raise RuntimeError("this server is already serving")
            self._serving = -1

    def _serve(self) -> None:
        self._serving = threading.get_ident()
        try:
            assert self._sock is not None
            self.stats = getattr(_extension(), self._entry)(self._sock.fileno(), self._wake_r)
        finally:
            self._done.set()

    def _serve_in_thread(self) -> None:
        try:
            self._serve()
        except BaseException as exc:  # kept for the owner: a thread has nobody to raise to
            self.error = exc

    def start(self) -> None:
        """Bind and listen (``address`` is then known), then serve in a background thread.

        :raises fastio.UnsupportedError: the compiled extension is missing.
        :raises RuntimeError: already serving, or stopped.
        :raises OSError: binding or listening failed.
        """
        self._bind()
        self._claim_loop()
        self._thread = threading.Thread(target=self._serve_in_thread, name=f"fastio-{self.name}", daemon=True)
        self._thread.start()

    def serve_forever(self) -> None:
        """Bind and listen if not yet done, then serve in the calling thread until ``stop()``.

        ``stop()`` may come from another thread or from a signal handler
        (which runs inside this call). An exception from a signal handler
        (``KeyboardInterrupt``) ends the loop, stops the server and propagates.
        """
        self._bind()
        self._claim_loop()
        try:
            self._serve()
        except BaseException:
            self.stop()
            raise
        finally:
            if self._stopped:
                self._close()

    @property
    def address(self) -> Address:
        """The bound address: ``(host, port)`` with the port resolved, or the Unix path."""
        sock = self._sock
        if sock is None:
            raise RuntimeError("the server is not bound yet: call start() or serve_forever()")
        if isinstance(self._requested, str):
            return self._requested
        host, port = sock.getsockname()[:2]
        return (host, port)

    def cpu_time(self) -> float:
        """CPU seconds (user + system) this process used since the server was bound."""
        if self._cpu_start is None:
            return 0.0
        return _cpu_seconds() - self._cpu_start

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving: the loop closes every connection; then join the
        thread, close the listener and the wake pipe. Idempotent.

        Called from a signal handler inside ``serve_forever()``, it only
        wakes the loop; ``serve_forever()`` closes up as it returns.

        :raises RuntimeError: the loop did not end within ``timeout`` (the
            listener is then left open, since the loop may still use it).
        """
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            serving = self._serving
        if self._wake_w >= 0:
            os.write(self._wake_w, b"x")
        if serving is not None:
            if serving == threading.get_ident():
                return
            if not self._done.wait(timeout):
                raise RuntimeError(f"the {self.name} server loop did not stop within {timeout} s")
            if self._thread is not None:
                self._thread.join(timeout)
                if self._thread.is_alive():
                    raise RuntimeError(f"the {self.name} server thread did not end within {timeout} s")
        self._close()

    def _close(self) -> None:
        with self._lock:
            sock, self._sock = self._sock, None
            fds = (self._wake_r, self._wake_w)
            self._wake_r = self._wake_w = -1
            unlink, self._unlink = self._unlink, None
        if sock is not None:
            sock.close()
        for fd in fds:
            if fd >= 0:
                os.close(fd)
        if unlink is not None:
            _remove_socket_file(unlink)

    def __enter__(self) -> CEchoServer:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "stopped" if self._stopped else ("serving" if self._serving is not None else "idle")
        return f"<{type(self).__name__} {self._requested!r} {state}>"


class CUringEchoServer(CEchoServer):
    """The reference echo server on io_uring: plain C, one thread; each
    connection's recv into its buffer is answered by a send linked to the
    next recv (``IOSQE_IO_LINK``), and one ``io_uring_enter`` per turn
    submits and waits for one completion more than its sends
    (``csrc/fio_echo_uring.h``).

    The interface and life cycle of ``CEchoServer`` (``name`` "c-uring");
    its ring is made in the serving thread and every request on it is
    cancelled and reaped before ``stop()`` returns.
    """

    name: ClassVar[str] = "c-uring"
    summary: ClassVar[str] = ("plain C io_uring echo server (csrc/fio_echo_uring.h), each send linked to "
                              "the next recv, one io_uring_enter per turn, GIL released")
    _entry: ClassVar[str] = "serve_uring"

    @classmethod
    def why_unavailable(cls, backend: str | None = None) -> str | None:
        """None when the server can run here, else why not (the compiled
        extension is missing, or io_uring cannot be used)."""
        reason = super().why_unavailable(backend)
        if reason is not None:
            return reason
        from fastio import _backend

        return _backend.load("uring", "c").why_unavailable()


class CThreadsEchoServer(CEchoServer):
    """The reference echo server in the blocking model: plain C, a thread
    per connection, each a blocking ``recv`` answered by a blocking ``send``
    (two system calls per request, the fewest an echo can make), the
    serving thread accepting (``csrc/fio_echo_threads.h``). The ceiling at
    few connections; with many, each request is a thread wake-up.

    The interface and life cycle of ``CEchoServer`` (``name`` "c-threads");
    ``stop()`` shuts every connection down and joins its thread.
    """

    name: ClassVar[str] = "c-threads"
    summary: ClassVar[str] = ("plain C echo server, a thread per connection doing blocking recv and send "
                              "(csrc/fio_echo_threads.h), GIL released")
    _entry: ClassVar[str] = "serve_threads"


def _remove_socket_file(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# ---------------------------------------------------------------- command line


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m fastio.loadgen",
        description="Closed-loop echo load generator (C, one epoll loop): N connections, "
                    "D requests of B bytes in flight on each, every echoed byte verified.",
    )
    parser.add_argument("address", help="HOST:PORT, [IPV6]:PORT or unix:PATH (unix:@NAME: abstract namespace)")
    parser.add_argument("-c", "--connections", type=int, default=1, help="connections (default 1)")
    parser.add_argument("-s", "--size", type=int, default=64, help="bytes per request (default 64)")
    parser.add_argument("-d", "--depth", type=int, default=1, help="requests in flight per connection (default 1)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--duration", type=float, help=f"seconds to measure (default {DEFAULT_DURATION:g})")
    mode.add_argument("--requests", type=int, help="measure exactly this many requests instead")
    parser.add_argument("--warmup", type=float, default=0.1, help="seconds of unmeasured load first (default 0.1)")
    parser.add_argument("--timeout", type=float, default=5.0,
                        help="seconds allowed to connect, to drain, and without progress (default 5)")
    parser.add_argument("--cpu", type=int, help="pin this process to CPU K first")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The command line. Exit status 0: no error; 1: the server made errors
    (counted in the result); 2: bad usage or the load generator failed."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        address = _parse_cli_address(args.address)
        if args.cpu is not None:
            try:
                os.sched_setaffinity(0, {args.cpu})
            except (OSError, OverflowError) as exc:
                raise ValueError(f"cannot pin to CPU {args.cpu}: {exc}") from None
        result = run(
            address,
            connections=args.connections,
            size=args.size,
            depth=args.depth,
            duration=args.duration,
            requests=args.requests,
            warmup=args.warmup,
            timeout=args.timeout,
        )
    except (TypeError, ValueError) as exc:
        parser.error(str(exc))
    except (ImportError, OSError) as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        out = result.to_dict()
        out["address"] = args.address
        out["cpus"] = sorted(os.sched_getaffinity(0))
        print(json.dumps(out))
    else:
        print(f"{parser.prog} {args.address}: " + result.format())
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
