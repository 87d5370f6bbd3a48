"""The ``echo`` part of ``python -m fastio bench``: every IO model's echo
server (``fastio.models``, plus the plain C epoll server of
``fastio.loadgen`` as the reference) under the C load generator.

Method. Each model runs in its own process (``multiprocessing``, fork),
pinned to one CPU; the load generator runs in the bench's own process,
pinned to a different CPU when the machine has two (``fastio.loadgen.run``,
which holds no GIL while it runs). For
each connection count the load generator opens that many TCP connections on
127.0.0.1, warms up briefly, then runs a closed loop of 64-byte requests, one
outstanding per connection, for the measuring time, checking every echoed
byte: a corrupt or lost byte makes the run a failure, not a number. The
server process reports its CPU time (``getrusage``, user + system) and, when
the kernel lets it (``perf_event_open`` on the ``raw_syscalls:sys_enter``
tracepoint, counting every thread of the server), its system calls over the
same window; syscalls per request divide that count by the requests the load
generator completed. Ratios are to the stdlib's asyncio (default event loop)
at the same connection count. After each model the server is stopped and
must have closed every fd and joined every thread it started.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from typing import Any, Callable

from fastio._bench._types import Options, Part, Row
from fastio._serve import registry as _registry

BASELINE = "asyncio"
SIZE = 64
DEFAULT_CONNECTIONS = [1, 64]
# --quick: one model per way of doing IO, the baseline and the reference.
QUICK_MODELS = ("blocking", "nonblocking", "epoll", "sigio", "uring-multishot", "aio", "asyncio", "c-epoll")
_START_TIMEOUT = 30.0
_STOP_TIMEOUT = 15.0


def _model_names(options: Options) -> list[str]:
    names = list(_registry())
    if options.models:
        unknown = [m for m in options.models if m not in names]
        if unknown:
            raise ValueError(f"unknown model {', '.join(map(repr, unknown))} (choose from {', '.join(names)})")
        return list(dict.fromkeys(options.models))
    if options.quick:
        return [m for m in names if m in QUICK_MODELS]
    return names


def _connections(options: Options) -> list[int]:
    return list(options.connections or DEFAULT_CONNECTIONS)


def _timing(options: Options) -> tuple[float, float]:
    """(measuring seconds, warmup seconds) per run."""
    if options.duration is not None:
        return options.duration, min(0.2, options.duration / 4)
    return (0.2, 0.05) if options.quick else (0.8, 0.1)


def steps(options: Options) -> int:
    return len(_model_names(options)) * len(_connections(options))


def _cpus() -> tuple[int | None, int | None]:
    """(server CPU, load generator CPU), or Nones on a one-CPU machine."""
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        return None, None
    return allowed[0], allowed[1]


def _open_fds() -> set[int]:
    return {int(x) for x in os.listdir("/proc/self/fd")}


def _server_main(conn: Any, name: str, backend: str | None, cpu: int | None) -> None:
    """The server process: start the model, then answer the parent's
    commands ("mark", "read", "stop") over ``conn``."""
    try:
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})
        from fastio._bench import syscount

        cls = _registry()[name]
        why = cls.why_unavailable(backend)
        if why:
            conn.send(("unavailable", why))
            return
        # Open the counter before the server starts its threads: they inherit it.
        counter = syscount.SyscallCounter().start() if syscount.available() else None
        fds_before = _open_fds()
        server = cls(("127.0.0.1", 0), backend=backend)
        server.start()
        conn.send(("ready", server.address))
        cpu0 = calls0 = 0.0
        while True:
            command = conn.recv()
            if command == "mark":
                cpu0 = server.cpu_time()
                calls0 = counter.read() if counter else 0
                conn.send(None)
            elif command == "read":
                calls = counter.read() - calls0 if counter else None
                conn.send((server.cpu_time() - cpu0, calls))
            elif command == "stop":
                server.stop()
                threads = [t.name for t in threading.enumerate() if t is not threading.main_thread()]
                leaked = sorted(_open_fds() - fds_before)
                if counter:
                    counter.stop()
                conn.send(("stopped", leaked, threads))
                return
    except BaseException as exc:  # noqa: BLE001 - reported to the parent, which decides
        try:
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
        except OSError:
            pass


class _Server:
    """One model's server process, seen from the parent."""

    def __init__(self, name: str, backend: str | None, cpu: int | None) -> None:
        # fork: a fresh process in milliseconds, with fastio already imported
        # (the bench runs no threads of its own that a fork could break).
        ctx = multiprocessing.get_context("fork")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_server_main, args=(child, name, backend, cpu),
                                name=f"fastio-bench-{name}", daemon=True)
        self.proc.start()
        child.close()

    def call(self, command: str | None, timeout: float) -> Any:
        if command is not None:
            self.conn.send(command)
        if not self.conn.poll(timeout):
            raise TimeoutError(f"the server process did not answer {command or 'start'} in {timeout:.0f} s")
        reply = self.conn.recv()
        if isinstance(reply, tuple) and reply and reply[0] == "error":
            raise RuntimeError(f"server process: {reply[1]}")
        return reply

    def close(self) -> None:
        self.conn.close()
        self.proc.join(_STOP_TIMEOUT)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()


def _row(name: str, kind: str, group: str, result: Any, cpu_s: float, calls: float | None) -> Row:
    lat = result.latency_us
    per = calls / result.requests if calls is not None and result.requests else None
    return Row(
        name, kind, result.rps, "req/s", p99_us=lat["p99"], cpu_s=cpu_s, syscalls_per_op=per,
        extra={
            "group": group, "connections": result.connections, "size": result.size,
            "requests": result.requests, "elapsed_s": result.elapsed, "throughput_Bps": result.throughput,
            "mean_us": lat["mean"], "p50_us": lat["p50"], "p90_us": lat["p90"], "p99.9_us": lat["p99.9"],
            "max_us": lat["max"], "cpu_us_per_request": 1e6 * cpu_s / result.requests if result.requests else None,
            "syscalls": calls,
        },
    )


def _group(n: int) -> str:
    return f"{n} connection{'s' if n != 1 else ''}"


def _measure(names: list[str], counts: list[int], duration: float, warmup: float, backend: str | None,
             server_cpu: int | None, progress: Callable[[str], None]) -> tuple[list[Row], list[str]]:
    """Every model at every connection count: (rows, problems)."""
    from fastio import loadgen

    registry = _registry()
    rows: list[Row] = []
    problems: list[str] = []
    for name in names:
        cls = registry[name]
        kind = cls.model
        why = cls.why_unavailable(backend)
        if why:
            for n in counts:
                progress(f"{name} at {_group(n)}: skipped")
                rows.append(Row.skip(name, kind, why, "req/s", group=_group(n), summary=cls.summary))
            continue
        server = _Server(name, backend, server_cpu)
        try:
            reply = server.call(None, _START_TIMEOUT)
            if reply[0] == "unavailable":
                for n in counts:
                    progress(f"{name} at {_group(n)}: skipped")
                    rows.append(Row.skip(name, kind, reply[1], "req/s", group=_group(n), summary=cls.summary))
                continue
            address = reply[1]
            for n in counts:
                progress(f"{name} at {_group(n)}")
                server.call("mark", _START_TIMEOUT)
                result = loadgen.run(address, connections=n, size=SIZE, depth=1, duration=duration,
                                     warmup=warmup)
                cpu_s, calls = server.call("read", _START_TIMEOUT)
                if not result.ok:
                    bad = {k: v for k, v in result.errors.items() if v}
                    problems.append(f"{name} at {_group(n)}: the load generator saw errors {bad}")
                row = _row(name, kind, _group(n), result, cpu_s, calls)
                row.extra["summary"] = cls.summary
                rows.append(row)
            reply = server.call("stop", _STOP_TIMEOUT)
            _, leaked, threads = reply
            if leaked:
                problems.append(f"{name}: fds left open after stop(): {leaked}")
            if threads:
                problems.append(f"{name}: threads still running after stop(): {threads}")
        except (OSError, RuntimeError, TimeoutError, EOFError) as exc:
            problems.append(f"{name}: {type(exc).__name__}: {exc}")
            done = {r.group for r in rows if r.name == name}
            for n in counts:
                if _group(n) not in done:
                    rows.append(Row.skip(name, kind, f"failed: {exc}", "req/s", group=_group(n)))
        finally:
            server.close()

    return rows, problems


def run(options: Options, progress: Callable[[str], None]) -> Part:
    names = _model_names(options)
    counts = _connections(options)
    duration, warmup = _timing(options)
    server_cpu, client_cpu = _cpus()
    affinity = os.sched_getaffinity(0)
    if client_cpu is not None:
        os.sched_setaffinity(0, {client_cpu})  # the load generator runs in this process
    try:
        rows, problems = _measure(names, counts, duration, warmup, options.backend, server_cpu, progress)
    finally:
        os.sched_setaffinity(0, affinity)
    # one group per connection count, models in registry order within it
    order = {_group(n): i for i, n in enumerate(counts)}
    rows.sort(key=lambda r: order.get(r.group or "", len(order)))

    pinned = (f"server on CPU {server_cpu}, load generator on CPU {client_cpu}" if server_cpu is not None
              else "one CPU: server and load generator share it")
    method = (
        f"{SIZE}-byte request/response echo over TCP on 127.0.0.1, one request outstanding per "
        f"connection, {warmup:g} s warmup then {duration:g} s measured per row; {pinned}; every echoed "
        "byte verified by the C load generator (fastio.loadgen). p99 is the request latency seen by the "
        "client; CPU s is the server process's user+system time over the measured window; syscalls/op "
        "counts every system call of every server thread (perf raw_syscalls tracepoint) per request, "
        "when the kernel allows it. Ratio: req/s over the stdlib asyncio default loop's at the same "
        "connection count. 'c-epoll' is a plain C epoll server, the ceiling a Python server is held to."
    )
    extra: dict[str, Any] = {"size": SIZE, "duration_s": duration, "warmup_s": warmup,
                             "connections": counts, "server_cpu": server_cpu, "client_cpu": client_cpu,
                             "backend": options.backend, "problems": problems}
    return Part("echo", "Echo servers, one per IO model (requests/s, higher is better)", BASELINE, rows,
                method, extra)
