"""``python -m fastio serve MODEL``: one IO model's echo server for outside
clients (``nc``, ``socat``, any load tool), until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any


def registry() -> dict[str, Any]:
    """Every echo server by name: ``fastio.models.MODELS`` and the C references."""
    from fastio import loadgen, models

    out = dict(models.MODELS)
    for server in (loadgen.CEchoServer, loadgen.CUringEchoServer, loadgen.CThreadsEchoServer):
        out[server.name] = server
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", nargs="?", help="the server to run (omit it to list them)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--port", type=int, default=0, help="TCP port (default: any free one, printed)")
    where.add_argument("--unix", metavar="PATH", help="listen on a Unix socket at PATH instead of TCP")
    parser.add_argument("--host", default="127.0.0.1", help="TCP address to bind (default 127.0.0.1)")
    parser.add_argument("--backend", choices=("c", "pure"), help="fastio backend (default: fastio's choice)")


def _format(address: Any) -> str:
    return address if isinstance(address, str) else f"{address[0]}:{address[1]}"


def main(args: argparse.Namespace) -> int:
    servers = registry()
    if args.model is None:
        width = max(map(len, servers))
        for name, cls in servers.items():
            why = cls.why_unavailable(args.backend)
            print(f"{name:<{width}}  {cls.model:<13}  {cls.summary}" + (f"  [unavailable: {why}]" if why else ""))
        return 0
    if args.model not in servers:
        print(f"fastio serve: unknown model {args.model!r}; choose from {', '.join(servers)}", file=sys.stderr)
        return 2
    if not 0 <= args.port <= 65535:
        print(f"fastio serve: --port {args.port} is not a TCP port", file=sys.stderr)
        return 2
    cls = servers[args.model]
    why = cls.why_unavailable(args.backend)
    if why:
        print(f"fastio serve: {args.model} cannot run here: {why}", file=sys.stderr)
        return 1

    # SIGINT and SIGTERM are blocked in every thread (the server's threads
    # inherit the mask) and taken here with sigwait: a handler would run only
    # if the kernel happened to pick the main thread, so a signal aimed at a
    # server thread could leave the main thread asleep.
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    server = cls(args.unix if args.unix else (args.host, args.port), backend=args.backend)
    try:
        server.start()
        print(f"fastio serve: {args.model} ({cls.model}: {cls.summary}) echoing on "
              f"{_format(server.address)}; Ctrl-C to stop", flush=True)
        signal.sigwait(stop_signals)
    finally:
        cpu = server.cpu_time()
        server.stop()
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
    print(f"fastio serve: stopped after {cpu:.2f} s of CPU", flush=True)
    return 0
