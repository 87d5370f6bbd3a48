"""The ``echo`` part of ``python -m fastio bench``: every IO model's echo
server (``fastio.models``, plus the plain C epoll server of
``fastio.loadgen`` as the reference) under the C load generator.

Method. The rows run in rounds (``--rounds``, default 5; one with
``--quick``): each round starts every model's server in turn, in an order
that rotates from round to round, so a slow phase of a shared machine hits
every model alike; a row's value is the median of its rounds and its spread
how far they disagree. Each server runs in its own process
(``multiprocessing``, fork), pinned to one CPU; the load generator runs in
the bench's own process (``fastio.loadgen.run``, which holds no GIL while it
runs). By default (``--cpus shared``) it runs on the server's CPU: every
request then costs the two processes' work and two context switches, and
no idle CPU has to wake up. On separate CPUs (``--cpus split``) a request
can wait for an idle CPU to wake (on a VM an idle vCPU halts and its
wake-up goes through the hypervisor: tens of microseconds, at times
milliseconds), which hides the servers' differences and moves with
whatever else the host runs. Measured on a 2-vCPU VM (3 rounds of 0.5 s,
one server at a time): at one connection every server that waits, the C
one included, came out at 10-13k req/s on separate CPUs, in no stable
order, with a p99 of 1-2 ms, against 45k (asyncio) to 54k (C epoll) with a
p99 of 30-37 us and rounds within 1% on one CPU; at 64 connections the
servers used 35-45% of their CPU on separate CPUs (rounds up to 50%
apart), on one CPU the rounds agreed within 1.5%. ``split`` gives the
server its CPU to itself, which is what a quiet machine measures best.

For each connection count the load generator opens that many TCP
connections on 127.0.0.1, warms up briefly, then runs a closed loop of
64-byte requests, one outstanding per connection, for the measuring time,
checking every echoed byte: a corrupt or lost byte makes the run a failure,
not a number. The server process reports its CPU time (``getrusage``, user +
system) and, when the kernel lets it (``perf_event_open`` on the
``raw_syscalls:sys_enter`` tracepoint, counting every thread of the
server), its system calls over the same window; syscalls per request divide
that count by the requests the load generator completed. Ratios are to the
stdlib's asyncio (default event loop) at the same connection count, paired
round by round (the median of this row / asyncio's row of the same round).
After each round's run of a model the server is stopped and must have closed
every fd and joined every thread it started.
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import threading
from typing import Any, Callable

from fastio._bench._types import Options, Part, Row
from fastio._serve import registry as _registry

BASELINE = "asyncio"
#: The plain C servers: the best of them is the ceiling a Python server is held to.
CEILINGS = ("c-epoll", "c-uring", "c-threads")
SIZE = 64
DEFAULT_CONNECTIONS = [1, 64]
DEFAULT_ROUNDS = 5
#: Where the load generator runs (--cpus): on the server's CPU, or on another.
PLACEMENTS = ("shared", "split")
# --quick: one model per way of doing IO, the baseline and the reference.
QUICK_MODELS = ("blocking", "nonblocking", "epoll", "sigio", "uring-multishot", "aio", "asyncio", "c-epoll",
                "c-uring")
#: Models that never wait (busy polling): they answer one connection without
#: a wake-up, so they may rank above the C ceiling there, paying a whole CPU.
BUSY_POLLING = ("nonblocking",)
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


def _rounds(options: Options) -> int:
    if options.rounds is not None:
        return options.rounds
    return 1 if options.quick else DEFAULT_ROUNDS


def _timing(options: Options) -> tuple[float, float]:
    """(measuring seconds, warmup seconds) per row and round; --duration is
    the measuring time of a row over all its rounds."""
    if options.duration is not None:
        per = options.duration / _rounds(options)
        return per, min(0.1, per / 4)
    return (0.2, 0.05) if options.quick else (0.5, 0.1)


def _available(names: list[str], backend: str | None) -> dict[str, str | None]:
    registry = _registry()
    return {name: registry[name].why_unavailable(backend) for name in names}


def steps(options: Options) -> int:
    """One progress line per model and round (a model this machine cannot
    run: one line, in the first round)."""
    names = _model_names(options)
    runnable = sum(1 for why in _available(names, options.backend).values() if not why)
    return len(names) + (_rounds(options) - 1) * runnable


def _cpus() -> tuple[int | None, int | None]:
    """(server CPU, load generator CPU), or Nones on a one-CPU machine."""
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        return None, None
    return allowed[0], allowed[1]


def _split(options: Options) -> bool:
    return (options.cpus or "shared") == "split"


def _placement(split: bool, server_cpu: int | None, client_cpu: int | None) -> str:
    if server_cpu is None:
        return "one CPU: server and load generator share it"
    if not split or client_cpu is None:
        return (f"server and load generator both on CPU {server_cpu} (--cpus shared: no idle CPU to wake up "
                "per request)")
    return f"server on CPU {server_cpu}, load generator on CPU {client_cpu} (--cpus split)"


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
        # One server started and stopped first: what a process keeps once made
        # (uvloop's process-wide signal pipe) is not counted as a leak below.
        warm = cls(("127.0.0.1", 0), backend=backend)
        warm.start()
        warm.stop()
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
    """One round's measurement of one model at one connection count."""
    lat = result.latency_us
    per = calls / result.requests if calls is not None and result.requests else None
    return Row(
        name, kind, result.rps, "req/s", p99_us=lat["p99"], cpu_s=cpu_s, syscalls_per_op=per,
        samples=[result.rps],
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
             server_cpu: int | None, progress: Callable[[str], None], client_cpu: int | None = None,
             label: str = "", split: bool = False) -> tuple[list[Row], list[str]]:
    """One round: every model at every connection count, in the order given:
    (rows, problems). The load generator runs in the calling thread: on
    ``server_cpu``, or with ``split`` on ``client_cpu`` (None: where the
    thread was allowed to run on entry). ``label`` is appended to each
    progress line (e.g. " (round 2/5)")."""
    from fastio import loadgen

    registry = _registry()
    rows: list[Row] = []
    problems: list[str] = []
    entry = os.sched_getaffinity(0)
    shared = server_cpu is not None and not split
    if server_cpu is not None and not split:
        os.sched_setaffinity(0, {server_cpu})
    elif client_cpu is not None:
        os.sched_setaffinity(0, {client_cpu})
    try:
        for name in names:
            cls = registry[name]
            kind = cls.model
            why = cls.why_unavailable(backend)
            if why:
                progress(f"{name}{label}: skipped")
                for n in counts:
                    rows.append(Row.skip(name, kind, why, "req/s", group=_group(n), summary=cls.summary))
                continue
            progress(f"{name}{label}")
            server = _Server(name, backend, server_cpu)
            try:
                reply = server.call(None, _START_TIMEOUT)
                if reply[0] == "unavailable":
                    for n in counts:
                        rows.append(Row.skip(name, kind, reply[1], "req/s", group=_group(n), summary=cls.summary))
                    continue
                address = reply[1]
                for n in counts:
                    server.call("mark", _START_TIMEOUT)
                    result = loadgen.run(address, connections=n, size=SIZE, depth=1, duration=duration,
                                         warmup=warmup)
                    cpu_s, calls = server.call("read", _START_TIMEOUT)
                    if not result.ok:
                        bad = {k: v for k, v in result.errors.items() if v}
                        problems.append(f"{name} at {_group(n)}: the load generator saw errors {bad}")
                    row = _row(name, kind, _group(n), result, cpu_s, calls)
                    row.extra["summary"] = cls.summary
                    row.extra["shared_cpu"] = shared
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
    finally:
        os.sched_setaffinity(0, entry)
    return rows, problems


def _median(xs: list[float | None]) -> float | None:
    got = [x for x in xs if x is not None]
    return statistics.median(got) if got else None


def _value(row: Row) -> float:
    """A measured row's value (the rows measured here all have one)."""
    assert row.value is not None
    return row.value


def _paired(mine: dict[int, float], base: dict[int, float]) -> float | None:
    """The median over the rounds both ran of mine / base."""
    ratios = [mine[r] / base[r] for r in mine if base.get(r)]
    return statistics.median(ratios) if ratios else None


def _combine(per_round: dict[int, Row]) -> Row:
    """A model's rows at one connection count, one per round, as one row:
    the medians over the rounds, every round's value in ``samples``."""
    rounds = sorted(per_round)
    rs = [per_round[r] for r in rounds]
    first = rs[0]
    ex = first.extra
    extra: dict[str, Any] = {
        "group": ex["group"], "connections": ex["connections"], "size": ex["size"], "summary": ex.get("summary"),
        "shared_cpu": ex["shared_cpu"], "rounds": rounds,
        "requests": sum(r.extra["requests"] for r in rs),
        "elapsed_s": sum(r.extra["elapsed_s"] for r in rs),
        "p99_us_samples": [r.p99_us for r in rs],
        "cpu_s_samples": [r.cpu_s for r in rs],
    }
    for key in ("throughput_Bps", "mean_us", "p50_us", "p90_us", "p99.9_us", "max_us", "cpu_us_per_request"):
        extra[key] = _median([r.extra[key] for r in rs])
    calls = [r.extra["syscalls"] for r in rs if r.extra["syscalls"] is not None]
    extra["syscalls"] = sum(calls) if len(calls) == len(rs) else None
    values = [_value(r) for r in rs]
    return Row(first.name, first.kind, statistics.median(values), "req/s", p99_us=_median([r.p99_us for r in rs]),
               cpu_s=_median([r.cpu_s for r in rs]), syscalls_per_op=_median([r.syscalls_per_op for r in rs]),
               samples=values, extra=extra)


def _ceiling_note(rows: list[Row], counts: list[int]) -> str | None:
    """Where the C ceiling (the better C server of each group) ranks: first,
    or below which rows (by median)."""
    parts = []
    for n in counts:
        group = _group(n)
        measured = [r for r in rows if r.group == group and r.skipped is None and r.value]
        tops = [r for r in measured if r.name in CEILINGS]
        if not tops:
            continue
        top = max(tops, key=_value)
        above = [r for r in measured if r.name not in CEILINGS and _value(r) > _value(top)]
        if not above:
            parts.append(f"{top.name} first at {group}")
            continue
        said = []
        for r in sorted(above, key=lambda r: -_value(r)):
            why = []
            if r.name in BUSY_POLLING:
                why.append("busy polling: a whole CPU, no wait")
            gap = _value(r) / _value(top) - 1
            if r.spread is not None and top.spread is not None and gap <= max(r.spread, top.spread):
                why.append("within the spread")
            said.append(f"{r.name} +{100 * gap:.0f}%" + (f" ({', '.join(why)})" if why else ""))
        parts.append(f"{top.name} below {', '.join(said)} at {group}")
    return "the C ceiling: " + "; ".join(parts) if parts else None


def run(options: Options, progress: Callable[[str], None]) -> Part:
    names = _model_names(options)
    counts = _connections(options)
    rounds = _rounds(options)
    duration, warmup = _timing(options)
    server_cpu, client_cpu = _cpus()
    split = _split(options)
    problems: list[str] = []
    skipped: dict[str, str] = {}  # model -> why, once known (not runnable here, or failed)
    runnable = [name for name, why in _available(names, options.backend).items() if not why]
    data: dict[tuple[str, str], dict[int, Row]] = {}
    last: dict[tuple[str, str], Row] = {}  # a skipped row, for a model that never measured
    for r in range(rounds):
        label = f" (round {r + 1}/{rounds})" if rounds > 1 else ""
        if r == 0:
            order = names  # every model once, in order, the ones that cannot run too
        else:
            shift = r % max(len(runnable), 1)
            order = runnable[shift:] + runnable[:shift]
        todo = []
        for name in order:
            if name in skipped:
                progress(f"{name}{label}: skipped: {skipped[name]}")  # keeps the [k/N] counter right
            else:
                todo.append(name)
        rows, got = _measure(todo, counts, duration, warmup, options.backend, server_cpu, progress,
                             client_cpu=client_cpu, label=label, split=split)
        problems.extend(f"{p} (round {r + 1})" if rounds > 1 else p for p in got)
        for row in rows:
            key = (row.name, row.group or "")
            if row.skipped is not None:
                skipped.setdefault(row.name, row.skipped)
                last.setdefault(key, row)
            else:
                data.setdefault(key, {})[r] = row

    out: list[Row] = []
    for n in counts:  # one group per connection count, models in the given order within it
        group = _group(n)
        for name in names:
            per = data.get((name, group))
            if per:
                out.append(_combine(per))
            elif (name, group) in last:
                out.append(last[(name, group)])
        base = data.get((BASELINE, group), {})
        for row in out:
            if row.group != group or row.skipped is not None:
                continue
            mine = {r: _value(x) for r, x in data[(row.name, group)].items()}
            row.ratio = _paired(mine, {r: _value(x) for r, x in base.items()})
            for ceiling in CEILINGS:
                theirs = data.get((ceiling, group), {})
                row.extra["vs_" + ceiling] = _paired(mine, {r: _value(x) for r, x in theirs.items()})

    from fastio._bench import report

    part_rows = Part("echo", "", BASELINE, out, "")
    report.fill_spread(part_rows)
    notes = [n for n in [_ceiling_note(out, counts)] if n]
    method = (
        f"{SIZE}-byte request/response echo over TCP on 127.0.0.1, one request outstanding per "
        f"connection; {rounds} round{'s' if rounds != 1 else ''}, each starting every model's server in "
        f"turn (the order rotating from round to round), {warmup:g} s warmup then {duration:g} s measured "
        f"per row and round; value = the median over the rounds, spread = their interquartile range over "
        f"the median; {_placement(split, server_cpu, client_cpu)}; every echoed byte verified by the C load generator "
        "(fastio.loadgen). p99 is the request latency seen by the client; CPU s is the server process's "
        "user+system time over a round's window (warmup included); syscalls/op counts every system call "
        "of every server thread (perf raw_syscalls tracepoint) per request, when the kernel allows it "
        "(all three: medians over the rounds). Ratio: the median over the rounds of req/s over the "
        "stdlib asyncio default loop's in the same round at the same connection count. 'c-epoll', "
        "'c-uring' and 'c-threads' are plain C servers (epoll; io_uring, sends linked to the next recv, one "
        "io_uring_enter per turn; a thread per connection, blocking recv and send), the best of which "
        "is the ceiling a Python server is held to; 'nonblocking' busy-polls (a whole "
        "CPU even when idle), so at one connection it can answer faster than any server that waits."
    )
    extra: dict[str, Any] = {"size": SIZE, "rounds": rounds, "duration_s": duration, "warmup_s": warmup,
                             "connections": counts, "server_cpu": server_cpu, "client_cpu": client_cpu,
                             "cpus": "split" if split else "shared", "backend": options.backend,
                             "problems": problems, "notes": notes}
    return Part("echo", "Echo servers, one per IO model (requests/s, higher is better)", BASELINE, out,
                method, extra)
