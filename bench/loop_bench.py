"""Scheduler micro-benchmarks of each asyncio event loop, side by side.

What it times (per operation, lower is better):

``call_soon``      a chain: each callback ``call_soon``s the next, N of them
``call_later``     N ``call_later`` timers (delays spread over 0-10 ms), every second one cancelled,
                   until the other half have run; per timer scheduled
``gather``         ``gather`` of 1000 ``create_task``s of a trivial coroutine, repeated; per task
``sleep0``         two tasks taking turns with ``await asyncio.sleep(0)``; per switch (both tasks)
``threadsafe``     another thread (on the other CPU) ``call_soon_threadsafe``s N callbacks;
                   from its first call to the N-th callback run; per callback

Loops as in bench/asyncio_bench.py: fastio-uring, fastio-epoll, selector (fastio.asyncio.SelectorLoop),
stdlib (asyncio.SelectorEventLoop), uvloop (when importable). Each round runs every loop in a fresh
process of its own (this script with ``--child``), pinned to CPU 0, loop order rotated per round;
each child runs every test once small (warm-up) and once timed. Reported: median over rounds,
min-max, and the median of the per-round ratios to uvloop's time (above 1: slower than uvloop).

    PYTHONPATH=src python bench/loop_bench.py                 # 7 rounds
    PYTHONPATH=src python bench/loop_bench.py --quick --loops fastio-uring,stdlib
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from typing import Callable

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from asyncio_bench import LOOPS, new_loop  # noqa: E402

LOOP_CPU = 0
THREAD_CPU = 1
TESTS = ("call_soon", "call_later", "gather", "sleep0", "threadsafe")
SIZES = {"call_soon": 300_000, "call_later": 100_000, "gather": 100, "sleep0": 100_000, "threadsafe": 100_000}
GATHER_WIDTH = 1000


def t_call_soon(loop: asyncio.AbstractEventLoop, n: int) -> tuple[float, int]:
    done = loop.create_future()
    left = [n]

    def step() -> None:
        left[0] -= 1
        if left[0]:
            loop.call_soon(step)
        else:
            done.set_result(None)

    t0 = time.perf_counter()
    loop.call_soon(step)
    loop.run_until_complete(done)
    return time.perf_counter() - t0, n


def t_call_later(loop: asyncio.AbstractEventLoop, n: int) -> tuple[float, int]:
    done = loop.create_future()
    left = [n - n // 2]

    def fire() -> None:
        left[0] -= 1
        if not left[0]:
            done.set_result(None)

    async def main() -> None:
        handles = [loop.call_later((i % 1000) * 1e-5, fire) for i in range(n)]
        for h in handles[1::2]:
            h.cancel()
        await done

    t0 = time.perf_counter()
    loop.run_until_complete(main())
    return time.perf_counter() - t0, n


async def _nothing() -> None:
    return None


def t_gather(loop: asyncio.AbstractEventLoop, n: int) -> tuple[float, int]:
    async def main() -> None:
        for _ in range(n):
            await asyncio.gather(*[loop.create_task(_nothing()) for _ in range(GATHER_WIDTH)])

    t0 = time.perf_counter()
    loop.run_until_complete(main())
    return time.perf_counter() - t0, n * GATHER_WIDTH


def t_sleep0(loop: asyncio.AbstractEventLoop, n: int) -> tuple[float, int]:
    async def player() -> None:
        for _ in range(n):
            await asyncio.sleep(0)

    async def main() -> None:
        await asyncio.gather(player(), player())

    t0 = time.perf_counter()
    loop.run_until_complete(main())
    return time.perf_counter() - t0, 2 * n


def t_threadsafe(loop: asyncio.AbstractEventLoop, n: int) -> tuple[float, int]:
    done = loop.create_future()
    left = [n]
    start = [0.0]

    def cb() -> None:
        left[0] -= 1
        if not left[0]:
            done.set_result(None)

    def producer() -> None:
        try:
            os.sched_setaffinity(0, {THREAD_CPU})
        except OSError:
            pass
        start[0] = time.perf_counter()
        call = loop.call_soon_threadsafe
        for _ in range(n):
            call(cb)

    thread = threading.Thread(target=producer)
    thread.start()
    loop.run_until_complete(done)
    end = time.perf_counter()
    thread.join()
    return end - start[0], n


RUNNERS: dict[str, Callable[[asyncio.AbstractEventLoop, int], tuple[float, int]]] = {
    "call_soon": t_call_soon, "call_later": t_call_later, "gather": t_gather, "sleep0": t_sleep0,
    "threadsafe": t_threadsafe,
}


def child(name: str, tests: list[str], scale: float) -> int:
    os.sched_setaffinity(0, {LOOP_CPU})
    try:
        loop = new_loop(name)
    except ImportError as exc:
        print(json.dumps({"skip": str(exc)}))
        return 0
    out = {}
    try:
        asyncio.set_event_loop(loop)
        for test in tests:
            n = max(1, int(SIZES[test] * scale))
            RUNNERS[test](loop, max(1, n // 10))           # warm-up
            seconds, ops = RUNNERS[test](loop, n)
            out[test] = seconds / ops
    finally:
        asyncio.set_event_loop(None)
        loop.close()
    print(json.dumps(out))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--loops", default=",".join(LOOPS))
    ap.add_argument("--tests", default=",".join(TESTS))
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every test's N")
    ap.add_argument("--quick", action="store_true", help="3 rounds at a tenth of the sizes")
    ap.add_argument("--json", metavar="PATH")
    args = ap.parse_args()
    tests = args.tests.split(",")
    bad = [t for t in tests if t not in TESTS]
    if bad:
        ap.error(f"unknown test {', '.join(bad)} (choose from {', '.join(TESTS)})")
    if args.child:
        return child(args.child, tests, args.scale)
    if args.quick:
        args.rounds, args.scale = 3, args.scale / 10
    loops = args.loops.split(",")
    bad = [x for x in loops if x not in LOOPS]
    if bad:
        ap.error(f"unknown loop {', '.join(bad)} (choose from {', '.join(LOOPS)})")
    try:
        import uvloop
        uv = f"uvloop {uvloop.__version__}"
    except ImportError:
        uv = "uvloop: skipped: pip install uvloop"
    print(f"# {platform.python_implementation()} {platform.python_version()}, Linux {platform.release()}, "
          f"{os.cpu_count()} CPUs, {uv}; loop on CPU {LOOP_CPU} (threadsafe's producer on CPU {THREAD_CPU}); "
          f"{args.rounds} rounds, scale {args.scale:g}", flush=True)
    results: list[dict] = []
    skipped: dict[str, str] = {}
    problems: list[str] = []
    for r in range(args.rounds):
        k = r % len(loops)
        for name in loops[k:] + loops[:k]:
            if name in skipped:
                continue
            proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", name, "--tests",
                                   ",".join(tests), "--scale", repr(args.scale)],
                                  capture_output=True, text=True, timeout=600)
            try:
                got = json.loads(proc.stdout.strip().splitlines()[-1])
            except (ValueError, IndexError):
                problems.append(f"round {r + 1} {name}: exit {proc.returncode}: {proc.stderr.strip()[-500:]}")
                continue
            if "skip" in got:
                skipped[name] = got["skip"]
                continue
            results.append({"round": r, "loop": name, **got})
            print(f"  round {r + 1} {name}", file=sys.stderr, flush=True)
    for name, why in skipped.items():
        print(f"{name}: skipped: {why}" + (" (pip install uvloop)" if name == "uvloop" else ""))
    print(f"{'test':<11} {'loop':<13} {'ns/op':>8} {'min-max':>13} {'x uvloop':>8} {'n':>2}")
    for test in tests:
        for name in loops:
            rows = [x for x in results if x["loop"] == name and test in x]
            if not rows:
                if name not in skipped:
                    print(f"{test:<11} {name:<13} {'failed':>8}")
                continue
            ns = [1e9 * x[test] for x in rows]
            ratios = [x[test] / uv[test] for x in rows for uv in results
                      if uv["loop"] == "uvloop" and uv["round"] == x["round"] and test in uv]
            ratio = f"{statistics.median(ratios):8.2f}" if ratios else f"{'-':>8}"
            print(f"{test:<11} {name:<13} {statistics.median(ns):>8.0f} {f'{min(ns):.0f}-{max(ns):.0f}':>13} "
                  f"{ratio} {len(rows):>2}")
    if problems:
        print("problems:", *problems, sep="\n  ")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"python": platform.python_version(), "kernel": platform.release(), "uvloop": uv,
                       "results": results, "skipped": skipped, "problems": problems}, f, indent=1)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
