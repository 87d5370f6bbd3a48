#!/usr/bin/env python3
"""Leak soaks over every fastio interface: a million operations each by
default, checking that RSS, open fds, Python objects and tracemalloc stay
flat. Exits 1 if anything grew beyond its slack (tests/helpers/soak_core.py says
how each is measured and what slack it gets), 2 on a wrong result.

    python tools/soak.py [--ops N] [--backend c|pure|both] [--only NAME[,NAME]]

NAME: selectors, epoll, poll, uring, aio, sigio. The soak code lives in
tests/helpers/soak_core.py, which tests/system/test_soak.py runs briefly on both backends.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "tests", "helpers"))

import soak_core  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", type=int, default=1_000_000, help="operations per soak (default 1,000,000)")
    parser.add_argument("--backend", choices=("c", "pure", "both"), default="both",
                        help="backend to soak (default both)")
    parser.add_argument("--only", default="", help="comma-separated soak names (default: all)")
    parser.add_argument("--warmup", type=int, default=None,
                        help="operations before the first sample (default: ops/10, at least 2000)")
    parser.add_argument("--no-tracemalloc", action="store_true",
                        help="do not trace allocations (faster; the traced column reads 0)")
    args = parser.parse_args(argv)
    names = [n for n in args.only.split(",") if n] or list(soak_core.SOAKS)
    unknown = [n for n in names if n not in soak_core.SOAKS]
    if unknown:
        parser.error(f"unknown soak {', '.join(unknown)}; choose from {', '.join(soak_core.SOAKS)}")
    backends = ("c", "pure") if args.backend == "both" else (args.backend,)
    import platform

    print(f"# fastio soak: {args.ops} ops per soak; Python {platform.python_version()}, "
          f"Linux {platform.release()}, {os.cpu_count()} CPUs; {time.strftime('%Y-%m-%d %H:%M:%S')}",
          flush=True)
    results, status = [], 0
    for backend in backends:
        for name in names:
            why = soak_core.unavailable(name)
            if why:
                print(f"# {name}/{backend}: skipped ({why})", flush=True)
                continue
            try:
                r = soak_core.run(name, backend, args.ops, warmup=args.warmup, trace=not args.no_tracemalloc)
            except Exception:
                print(f"# {name}/{backend}: FAILED", flush=True)
                traceback.print_exc()
                status = 2
                continue
            results.append(r)
            print(soak_core.table([r]).splitlines()[-1], flush=True)
            if r.failures():
                status = max(status, 1)
    print()
    print(soak_core.table(results))
    return status


if __name__ == "__main__":
    sys.exit(main())
