"""The latency of one cached 4 KiB read from one task: ``await f.pread()``
of ``fastio.asyncio.open`` (the uring engine; on the stdlib loop, uvloop when
installed, and fastio's loop) beside a synchronous ``os.pread``, the target
of issue 14 being within 1.3x of it.

One task awaits ``--reads`` reads in a row at random 4 KiB offsets of a
cached file, pinned to one CPU; each repeat times every candidate once, in
turn, and the median over ``--repeats`` is printed with its ratio to
``os.pread`` (the median of the per-repeat ratios).

    PYTHONPATH=src python bench/file_latency.py
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import statistics
import sys
import tempfile
import time

import fastio.asyncio as fa


def loops() -> dict:
    out = {"stdlib": asyncio.new_event_loop, "fastio": fa.Loop}
    try:
        import uvloop
    except ImportError:
        print("(uvloop not installed: pip install uvloop)")
    else:
        out["uvloop"] = uvloop.new_event_loop
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reads", type=int, default=20000)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--size-mib", type=int, default=64)
    ap.add_argument("--cpu", type=int, default=1)
    args = ap.parse_args()
    os.sched_setaffinity(0, {args.cpu})
    size = args.size_mib << 20
    rng = random.Random(1)
    offs = [rng.randrange(size // 4096) * 4096 for _ in range(args.reads)]
    with tempfile.TemporaryDirectory(dir="/var/tmp") as d:
        path = os.path.join(d, "data")
        with open(path, "wb") as f:
            f.write(os.urandom(size))
        fd = os.open(path, os.O_RDONLY)
        for o in offs:
            os.pread(fd, 4096, o)       # (the pages cached)
        times: dict[str, list[float]] = {"os.pread": []}
        files = {}
        for name, factory in loops().items():
            loop = factory()
            files[name] = (loop, loop.run_until_complete(fa.open(path, "rb")))
            times[f"await f.pread ({name})"] = []

        async def awaited(f):
            t = time.perf_counter()
            for o in offs:
                await f.pread(4096, o)
            return time.perf_counter() - t

        for _ in range(args.repeats):
            t = time.perf_counter()
            for o in offs:
                os.pread(fd, 4096, o)
            times["os.pread"].append(time.perf_counter() - t)
            for name, (loop, f) in files.items():
                times[f"await f.pread ({name})"].append(loop.run_until_complete(awaited(f)))
        for loop, f in files.values():
            loop.run_until_complete(f.close())
            loop.close()
        os.close(fd)
    print(f"Python {platform.python_version()}, Linux {platform.release()}, {args.reads} reads x "
          f"{args.repeats} repeats, CPU {args.cpu}")
    base = times["os.pread"]
    for name, ts in times.items():
        ratio = statistics.median(t / b for t, b in zip(ts, base))
        print(f"  {name:28s} {statistics.median(ts) / args.reads * 1e6:6.3f} us  {ratio:.2f}x "
              f"(min-max {min(ts) / args.reads * 1e6:.3f}-{max(ts) / args.reads * 1e6:.3f})")


if __name__ == "__main__":
    sys.exit(main())
