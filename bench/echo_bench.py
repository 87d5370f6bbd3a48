"""Echo servers side by side, repeated: the io_uring targets of issue 6.

Runs the chosen models (default: the io_uring ones, uvloop, asyncio, epoll and
the C reference server) at the chosen connection counts, ``--repeat`` rounds
with the model order rotated each round, each model in its own process pinned
to one CPU and the C load generator in this process on the other (the same
machinery as ``python -m fastio bench``'s echo part, fastio._bench.echo), and
prints the median req/s per model and connection count with the ratio to the
C epoll server and to uvloop of the same round.

    python bench/echo_bench.py                       # 1, 10, 100 connections, 5 rounds of 2 s
    python bench/echo_bench.py --models uring-multishot,c-epoll --connections 100 --repeat 9
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys

from fastio._bench import echo

DEFAULT_MODELS = "uring-multishot,uring,epoll,asyncio,asyncio-fastio,uvloop,c-epoll"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=DEFAULT_MODELS)
    ap.add_argument("--connections", default="1,10,100")
    ap.add_argument("--duration", type=float, default=2.0)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--backend", choices=("c", "pure"))
    args = ap.parse_args()
    names = args.models.split(",")
    counts = [int(x) for x in args.connections.split(",")]
    print(f"# {platform.python_implementation()} {platform.python_version()}, Linux {platform.release()}, "
          f"{os.cpu_count()} CPUs; {args.repeat} rounds of {args.duration:g} s; median req/s", flush=True)
    rps: dict[tuple[str, int], list[float]] = {}
    ratio_c: dict[tuple[str, int], list[float]] = {}
    ratio_uv: dict[tuple[str, int], list[float]] = {}
    server_cpu, client_cpu = echo._cpus()
    if client_cpu is not None:
        os.sched_setaffinity(0, {client_cpu})
    for r in range(args.repeat):
        order = names[r % len(names):] + names[:r % len(names)]
        rows, problems = echo._measure(order, counts, args.duration, 0.2, args.backend, server_cpu,
                                       lambda text, r=r: print(f"  round {r + 1}: {text}", file=sys.stderr))
        if problems:
            print("problems:", *problems, sep="\n  ", file=sys.stderr)
            return 1
        got = {(row.name, row.extra["connections"]): row.value for row in rows if row.value}
        for key, value in got.items():
            rps.setdefault(key, []).append(value)
            ref = got.get(("c-epoll", key[1]))
            if ref:
                ratio_c.setdefault(key, []).append(value / ref)
            uv = got.get(("uvloop", key[1]))
            if uv:
                ratio_uv.setdefault(key, []).append(value / uv)
    print(f"{'model':<16} {'conns':>5} {'req/s':>9} {'min':>9} {'max':>9} {'x c-epoll':>9} {'x uvloop':>9}")
    for n in counts:
        for name in names:
            v = rps.get((name, n))
            if not v:
                print(f"{name:<16} {n:>5} {'skipped':>9}")
                continue
            rc = ratio_c.get((name, n))
            ru = ratio_uv.get((name, n))
            print(f"{name:<16} {n:>5} {statistics.median(v):>9.0f} {min(v):>9.0f} {max(v):>9.0f} "
                  f"{_ratio(rc):>9} {_ratio(ru):>9}")
    return 0


def _ratio(ratios: list[float] | None) -> str:
    """The median of the per-round ratios, or "-" when the reference did not run."""
    return f"{statistics.median(ratios):.2f}" if ratios else "-"


if __name__ == "__main__":
    sys.exit(main())
