"""Echo servers written as ordinary asyncio code, on each event loop.

Three servers, the ways people write one:

``protocol``  an ``asyncio.Protocol`` whose ``data_received`` calls ``transport.write``
``streams``   ``asyncio.start_server``; ``reader.read(65536)``, ``writer.write``, ``await writer.drain()``
``sock``      ``loop.sock_accept``, then one task per connection: ``sock_recv(65536)``, ``sock_sendall``
              (TCP_NODELAY set on the accepted socket, as the loops' transports do)

on these loops: ``fastio-uring`` (``fastio.asyncio.Loop(engine="uring")``), ``fastio-epoll``,
``selector`` (``fastio.asyncio.SelectorLoop``: the stdlib loop on fastio's selector), ``stdlib``
(``asyncio.SelectorEventLoop``) and ``uvloop`` (when importable).

Method. Each (loop, server) runs in its own process (this script with ``--serve``) pinned to CPU 0;
the C load generator (``python -m fastio.loadgen ... --cpu 1 --json``) runs in another on CPU 1, a
closed loop of one request outstanding per connection, every echoed byte checked. Both run under
SCHED_RR priority 10 when this process may set it (inherited from this process; said in the header
otherwise). While the load generator runs, this process samples utime+stime of the server (all its
threads: /proc/PID/stat) and of the load generator every few ms; the measured window is taken to end
when the load generator's JSON arrives (it prints right after its final drain, well under a ms) and
to last its reported ``elapsed``; CPU over the window is interpolated between the samples around
its two ends (/proc/PID/stat counts in 10 ms ticks: about 1% of a 2 s window). Rounds rotate the loop
order; reported: the median over rounds and the min-max, and the median of the per-round ratios to
uvloop at the same server, connection count and size. After each run the server must be back to the
fds it had before it (no leak); at the end it must exit cleanly when its stdin closes.

Every server first serves one connection for 0.2 s that then closes (unless ``--cold``), so that
what is measured is a server that has seen a connection end, as any long-running one has. It
matters for the stdlib transports' ``Protocol`` path (protocol and streams on selector and stdlib):
there every read allocates ``max_size`` (256 KiB) bytes, which glibc serves with mmap and shrinks
with mremap, then munmap on free: three system calls and a page fault per read, until a whole
256 KiB block is freed (the empty read at a connection's end), which raises glibc's dynamic mmap
threshold above 256 KiB for the rest of the process. A fresh server is 2-3x slower until then.

    PYTHONPATH=src python bench/asyncio_bench.py                       # everything, 3 rounds of 2 s
    PYTHONPATH=src python bench/asyncio_bench.py --sizes 64 --conns 10,100 --rounds 5
    PYTHONPATH=src python bench/asyncio_bench.py --loops fastio-uring,uvloop --servers protocol --quick
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import select
import socket
import statistics
import subprocess
import sys
import time
from typing import Any, Callable

LOOPS = ("fastio-uring", "fastio-epoll", "selector", "stdlib", "uvloop")
SERVERS = ("protocol", "streams", "sock")
SERVER_CPU = 0
CLIENT_CPU = 1
READ_SIZE = 65536
SAMPLE_S = 0.005
TICK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------- the server process


def new_loop(name: str) -> asyncio.AbstractEventLoop:
    if name in ("fastio-uring", "fastio-epoll"):
        from fastio.asyncio import Loop

        return Loop(engine=name.split("-")[1])
    if name == "selector":
        from fastio.asyncio import SelectorLoop

        return SelectorLoop()
    if name == "stdlib":
        return asyncio.SelectorEventLoop()
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    raise ValueError(f"unknown loop {name!r} (choose from {', '.join(LOOPS)})")


class EchoProtocol(asyncio.Protocol):
    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


async def stream_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            data = await reader.read(READ_SIZE)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def sock_echo(loop: asyncio.AbstractEventLoop, conn: socket.socket) -> None:
    with conn:
        try:
            while True:
                data = await loop.sock_recv(conn, READ_SIZE)
                if not data:
                    break
                await loop.sock_sendall(conn, data)
        except ConnectionError:
            pass


async def sock_server(loop: asyncio.AbstractEventLoop, listener: socket.socket, tasks: set) -> None:
    while True:
        conn, _ = await loop.sock_accept(listener)
        conn.setblocking(False)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        task = loop.create_task(sock_echo(loop, conn))
        tasks.add(task)
        task.add_done_callback(tasks.discard)


async def serve(loop: asyncio.AbstractEventLoop, kind: str) -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    listener.setblocking(False)
    stop = loop.create_future()
    loop.add_reader(sys.stdin.fileno(), lambda: stop.done() or stop.set_result(None))
    tasks: set = set()
    if kind == "protocol":
        server = await loop.create_server(EchoProtocol, sock=listener)
    elif kind == "streams":
        server = await asyncio.start_server(stream_echo, sock=listener)
    elif kind == "sock":
        server = None
        acceptor = loop.create_task(sock_server(loop, listener, tasks))
    else:
        raise ValueError(f"unknown server {kind!r} (choose from {', '.join(SERVERS)})")
    print("PORT", listener.getsockname()[1], flush=True)
    await stop
    loop.remove_reader(sys.stdin.fileno())
    if server is not None:
        server.close()
        await server.wait_closed()
    else:
        acceptor.cancel()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(acceptor, *tasks, return_exceptions=True)
        listener.close()


def serve_main(loop_name: str, kind: str) -> int:
    os.sched_setaffinity(0, {SERVER_CPU})
    try:
        loop = new_loop(loop_name)
    except ImportError as exc:
        print("SKIP", exc, flush=True)
        return 0
    try:
        loop.run_until_complete(serve(loop, kind))
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()
    print("STOPPED", flush=True)
    return 0


# ---------------------------------------------------------------- measuring, in this process


def _ticks(fd: int) -> int:
    """utime + stime (clock ticks) from an open /proc/PID/stat."""
    fields = os.pread(fd, 4096, 0).rsplit(b")", 1)[1].split()
    return int(fields[11]) + int(fields[12])    # fields 14 and 15 of proc(5), counted after "pid (comm)"


def _at(samples: list[tuple[float, int]], t: float) -> float:
    """CPU seconds at time t, linear between the samples around it."""
    for (t0, c0), (t1, c1) in zip(samples, samples[1:]):
        if t0 <= t <= t1:
            return (c0 + (c1 - c0) * ((t - t0) / (t1 - t0) if t1 > t0 else 0.0)) / TICK
    raise ValueError("time outside the samples")


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


class Server:
    """One (loop, server) process."""

    def __init__(self, loop: str, kind: str) -> None:
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve", loop, kind],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self._line(30.0)
        self.skip = line[5:] if line.startswith("SKIP ") else None
        self.port = int(line.split()[1]) if line.startswith("PORT ") else None
        if self.skip is None and self.port is None:
            raise RuntimeError(f"server {loop}/{kind} did not start: {line!r}")
        self.stat = os.open(f"/proc/{self.proc.pid}/stat", os.O_RDONLY)

    def _line(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        if not select.select([self.proc.stdout], [], [], timeout)[0]:
            raise TimeoutError(f"no answer from the server process in {timeout:g} s")
        return self.proc.stdout.readline().strip()

    def settle(self, fds: int, timeout: float = 2.0) -> int:
        """The server's fd count once it is back to ``fds`` (or the count after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while True:
            n = _fds(self.proc.pid)
            if n <= fds or time.monotonic() > deadline:
                return n
            time.sleep(0.01)

    def stop(self) -> str | None:
        """None when it stopped cleanly, else what went wrong."""
        os.close(self.stat)
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            line = "" if self.skip else self._line(10.0)
            code = self.proc.wait(10.0)
        except (TimeoutError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
            return "did not stop within 10 s (killed)"
        if self.skip is None and (line != "STOPPED" or code != 0):
            return f"unclean stop: {line!r}, exit status {code}"
        return None


def prewarm(server: Server) -> None:
    """One connection for 0.2 s, closed (see the module docstring)."""
    argv = [sys.executable, "-m", "fastio.loadgen", f"127.0.0.1:{server.port}", "--duration", "0.2",
            "--warmup", "0", "--cpu", str(CLIENT_CPU), "--json"]
    proc = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(f"warm-up run failed: exit {proc.returncode}, {proc.stderr.strip()!r}")


def measure(server: Server, conns: int, size: int, duration: float, warmup: float) -> dict:
    """One load generator run against ``server``; its result with the CPU over its window."""
    argv = [sys.executable, "-m", "fastio.loadgen", f"127.0.0.1:{server.port}", "--connections", str(conns),
            "--size", str(size), "--duration", repr(duration), "--warmup", repr(warmup),
            "--cpu", str(CLIENT_CPU), "--json"]
    client = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    assert client.stdout is not None
    cstat = os.open(f"/proc/{client.pid}/stat", os.O_RDONLY)
    srv: list[tuple[float, int]] = []
    cli: list[tuple[float, int]] = []
    limit = time.monotonic() + 30.0 + warmup + duration
    try:
        while True:
            ready = select.select([client.stdout], [], [], SAMPLE_S)[0]
            now = time.monotonic()
            srv.append((now, _ticks(server.stat)))
            cli.append((now, _ticks(cstat)))
            if ready:
                end = now
                break
            if now > limit:
                client.kill()
                raise TimeoutError("the load generator did not finish")
    finally:
        os.close(cstat)
    out, err = client.communicate(timeout=30.0)
    try:
        result = json.loads(out)
    except ValueError:
        raise RuntimeError(f"load generator: exit {client.returncode}, stderr {err.decode().strip()!r}") from None
    elapsed = result["elapsed"]
    start = end - elapsed
    result["server_cpu_s"] = _at(srv, end) - _at(srv, start)
    result["client_cpu_s"] = _at(cli, end) - _at(cli, start)
    return result


# ---------------------------------------------------------------- rounds and the table


def set_realtime() -> str:
    try:
        os.sched_setscheduler(0, os.SCHED_RR, os.sched_param(10))
        return "SCHED_RR 10 (server and load generator)"
    except (PermissionError, OSError) as exc:
        return f"normal priority (SCHED_RR not permitted: {exc})"


def run_rounds(args: argparse.Namespace, log: Callable[[str], None]) -> tuple[list[dict], list[str], dict]:
    samples: list[dict] = []
    problems: list[str] = []
    skipped: dict[str, str] = {}
    for r in range(args.rounds):
        k = r % len(args.loops)
        for loop in args.loops[k:] + args.loops[:k]:
            if loop in skipped:
                continue
            for kind in args.servers:
                try:
                    server = Server(loop, kind)
                except (RuntimeError, TimeoutError) as exc:
                    problems.append(f"round {r + 1} {loop}/{kind}: {exc}")
                    continue
                if server.skip is not None:
                    skipped[loop] = server.skip
                    server.stop()
                    break
                try:
                    base = _fds(server.proc.pid)
                    if not args.cold:
                        try:
                            prewarm(server)
                        except (RuntimeError, subprocess.TimeoutExpired) as exc:
                            problems.append(f"round {r + 1} {loop}/{kind}: {exc}")
                            continue
                        left = server.settle(base)
                        if left > base:
                            problems.append(f"round {r + 1} {loop}/{kind}: {left - base} fds open after warm-up")
                    for conns in args.conns:
                        for size in args.sizes:
                            where = f"round {r + 1} {loop}/{kind} {conns} conns {size} B"
                            log(where)
                            try:
                                res = measure(server, conns, size, args.duration, args.warmup)
                            except (RuntimeError, TimeoutError) as exc:
                                problems.append(f"{where}: {exc}")
                                continue
                            left = server.settle(base)
                            if left > base:
                                problems.append(f"{where}: {left - base} fds still open after the run")
                            if not res["ok"]:
                                problems.append(f"{where}: load generator errors "
                                                f"{ {k: v for k, v in res['errors'].items() if v} }")
                                continue
                            samples.append({"round": r, "loop": loop, "server": kind, "conns": conns,
                                            "size": size, **res})
                finally:
                    why = server.stop()
                    if why:
                        problems.append(f"round {r + 1} {loop}/{kind}: {why}")
    return samples, problems, skipped


def _med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def table(args: argparse.Namespace, samples: list[dict], skipped: dict[str, str]) -> list[str]:
    by: dict[tuple, dict] = {}
    for s in samples:
        by[(s["round"], s["loop"], s["server"], s["conns"], s["size"])] = s
    lines = [f"{'server':<9}{'conns':>5}{'size':>7}  {'loop':<13}{'req/s':>8} {'min-max':>15} {'x uv':>5}"
             f" {'req/CPU-s':>9} {'x uv':>5} {'srv CPU':>7} {'cli CPU':>7} {'n':>2}"]
    for kind in args.servers:
        for conns in args.conns:
            for size in args.sizes:
                for loop in args.loops:
                    if loop in skipped:
                        continue
                    rows = [s for s in samples if (s["loop"], s["server"], s["conns"], s["size"]) ==
                            (loop, kind, conns, size)]
                    if not rows:
                        lines.append(f"{kind:<9}{conns:>5}{size:>7}  {loop:<13}{'failed':>8}")
                        continue
                    rps = [s["rps"] for s in rows]
                    eff = [s["requests"] / s["server_cpu_s"] if s["server_cpu_s"] > 0 else float("nan")
                           for s in rows]
                    x_rps, x_eff = [], []
                    for s, e in zip(rows, eff):
                        uv = by.get((s["round"], "uvloop", kind, conns, size))
                        if uv and uv["server_cpu_s"] > 0:
                            x_rps.append(s["rps"] / uv["rps"])
                            x_eff.append(e / (uv["requests"] / uv["server_cpu_s"]))
                    srv = _med([s["server_cpu_s"] / s["elapsed"] for s in rows])
                    cli = _med([s["client_cpu_s"] / s["elapsed"] for s in rows])
                    ratio = (lambda v: f"{_med(v):5.2f}" if v else f"{'-':>5}")
                    lines.append(f"{kind:<9}{conns:>5}{size:>7}  {loop:<13}{_med(rps):>8.0f} "
                                 f"{f'{min(rps):.0f}-{max(rps):.0f}':>15} {ratio(x_rps)} {_med(eff):>9.0f} "
                                 f"{ratio(x_eff)} {srv:>7.0%} {cli:>7.0%} {len(rows):>2}")
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--serve", nargs=2, metavar=("LOOP", "SERVER"), help=argparse.SUPPRESS)
    ap.add_argument("--loops", default=",".join(LOOPS))
    ap.add_argument("--servers", default=",".join(SERVERS))
    ap.add_argument("--conns", default="1,10,100")
    ap.add_argument("--sizes", default="64,16384,102400")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=2.0)
    ap.add_argument("--warmup", type=float, default=0.2)
    ap.add_argument("--quick", action="store_true", help="1 round of 0.5 s at 10 connections, 64 B")
    ap.add_argument("--cold", action="store_true", help="no warm-up connection before measuring")
    ap.add_argument("--no-rt", action="store_true", help="do not ask for SCHED_RR")
    ap.add_argument("--json", metavar="PATH", help="also write every sample here")
    args = ap.parse_args()
    if args.serve:
        return serve_main(*args.serve)
    if args.quick:
        args.rounds, args.duration, args.warmup, args.conns, args.sizes = 1, 0.5, 0.1, "10", "64"
    args.loops = args.loops.split(",")
    args.servers = args.servers.split(",")
    args.conns = [int(x) for x in args.conns.split(",")]
    args.sizes = [int(x) for x in args.sizes.split(",")]
    for name, given, known in (("loop", args.loops, LOOPS), ("server", args.servers, SERVERS)):
        bad = [x for x in given if x not in known]
        if bad:
            ap.error(f"unknown {name} {', '.join(bad)} (choose from {', '.join(known)})")
    if len(os.sched_getaffinity(0)) < 2 or not {SERVER_CPU, CLIENT_CPU} <= os.sched_getaffinity(0):
        ap.error(f"needs CPUs {SERVER_CPU} and {CLIENT_CPU}")
    os.sched_setaffinity(0, {CLIENT_CPU})
    priority = "normal priority (--no-rt)" if args.no_rt else set_realtime()
    try:
        import uvloop
        uv = f"uvloop {uvloop.__version__}"
    except ImportError:
        uv = "uvloop: skipped: pip install uvloop"
    print(f"# {platform.python_implementation()} {platform.python_version()}, Linux {platform.release()}, "
          f"{os.cpu_count()} CPUs, {uv}; {priority}; server CPU {SERVER_CPU}, load generator CPU {CLIENT_CPU}; "
          f"{args.rounds} rounds of {args.warmup:g} s warmup + {args.duration:g} s"
          f"{'; cold servers' if args.cold else ''}", flush=True)
    samples, problems, skipped = run_rounds(args, lambda text: print("  " + text, file=sys.stderr, flush=True))
    for loop, why in skipped.items():
        print(f"{loop}: skipped: {why}" + (" (pip install uvloop)" if loop == "uvloop" else ""))
    print("\n".join(table(args, samples, skipped)))
    if problems:
        print("problems:", *problems, sep="\n  ")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"python": platform.python_version(), "kernel": platform.release(), "uvloop": uv,
                       "priority": priority, "samples": samples, "problems": problems, "skipped": skipped}, f,
                      indent=1)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
