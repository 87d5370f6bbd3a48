"""4 KiB random reads of one big file: io_uring through fastio (c, pure, the
batch path) against an os.pread loop, a thread pool, and fio's io_uring
engine when fio is installed, all in one run, page cache warm and O_DIRECT,
at several queue depths. Prints a table of median IOPS (and --json).

    python bench/uring_bench.py [--size-mib 1024] [--depths 1,8,32,128]
                                [--seconds 1.0] [--repeat 3] [--dir /var/tmp]

Method: one file of --size-mib MiB (random bytes, written once), warmed by
reading it through; for each mode (warm, direct) and queue depth every
method reads random 4 KiB-aligned blocks for --seconds, --repeat times,
interleaved method by method; the median IOPS is reported. Depth means
requests in flight: a fastio ring keeps that many queued (refilling as
completions arrive), read_batch is called with depth=, the thread pool has
that many threads, fio gets --iodepth. The os.pread loop is depth 1 by
nature (shown on every row); the thread pool's tasks are loops of 16
preads each (fastio._bench.files.thread_pool). fio runs as fastio._bench.fio
sets it up: one job, its defaults for the engine otherwise.
A benchmark, not a test: nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time

from fastio._bench import fio
from fastio._bench.files import (  # the measuring functions, shared with `python -m fastio bench`
    BS,
    make_file,
    offsets,
    pread_loop,
    ring_batch,
    ring_per_op,
    thread_pool,
    timed,
    warm,
)
from fastio._c import uring as c_uring
from fastio._pure import uring as pure_uring

# ---- methods: each returns (fn(i) -> reads done in one chunk, close) --------

METHODS = {
    "os.pread loop": lambda fd, offs, depth, direct: pread_loop(fd, offs, depth, direct),
    "thread pool": lambda fd, offs, depth, direct: thread_pool(fd, offs, depth, direct),
    "fastio c": lambda fd, offs, depth, direct: ring_per_op(c_uring, fd, offs, depth, direct),
    "fastio pure": lambda fd, offs, depth, direct: ring_per_op(pure_uring, fd, offs, depth, direct),
    "fastio c read_batch": lambda fd, offs, depth, direct: ring_batch(c_uring, fd, offs, depth, direct),
    "fastio pure read_batch": lambda fd, offs, depth, direct: ring_batch(pure_uring, fd, offs, depth, direct),
}


def run_fio(path: str, depth: int, direct: bool, seconds: float) -> float | None:
    if not fio.available():
        return None
    try:
        return fio.sample(path, "io_uring", depth, direct, seconds).iops
    except OSError as exc:
        print(exc, file=sys.stderr)
        return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--depths", default="1,8,32,128")
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", default="/var/tmp")
    ap.add_argument("--modes", default="warm,direct")
    ap.add_argument("--methods", default=",".join(METHODS) + ",fio")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    depths = [int(d) for d in args.depths.split(",")]
    methods = [m.strip() for m in args.methods.split(",")]
    tmpdir = tempfile.mkdtemp(dir=args.dir, prefix="fastio-bench-")
    path = os.path.join(tmpdir, "data")
    size = args.size_mib << 20
    results = []
    try:
        t0 = time.perf_counter()
        make_file(path, size)
        warm(path)
        print(f"# {size >> 20} MiB file in {args.dir} written+warmed in {time.perf_counter() - t0:.1f}s; "
              f"Linux {platform.release()} {platform.machine()}, {os.cpu_count()} CPUs, "
              f"Python {platform.python_version()}, fio: {fio.version()}",
              flush=True)
        offs = offsets(1 << 20, size // BS, 7)
        for mode in args.modes.split(","):
            direct = mode == "direct"
            fd = os.open(path, os.O_RDONLY | (os.O_DIRECT if direct else 0))
            try:
                for depth in depths:
                    row = {"mode": mode, "depth": depth}
                    samples: dict[str, list[float]] = {m: [] for m in methods}
                    for _ in range(args.repeat):
                        for name in methods:
                            if name == "fio":
                                iops = run_fio(path, depth, direct, args.seconds)
                                if iops is not None:
                                    samples[name].append(iops)
                                continue
                            run, close = METHODS[name](fd, offs, depth, direct)
                            try:
                                samples[name].append(timed(run, args.seconds))
                            finally:
                                close()
                    for name, vals in samples.items():
                        row[name] = round(statistics.median(vals)) if vals else None
                    results.append(row)
                    print(json.dumps(row), flush=True)
            finally:
                os.close(fd)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    names = [m for m in methods]
    print()
    print("| mode | depth | " + " | ".join(names) + " |")
    print("|---|---:|" + "---:|" * len(names))
    for row in results:
        cells = [f"{row[n] / 1000:.0f}k" if row.get(n) else "-" for n in names]
        print(f"| {row['mode']} | {row['depth']} | " + " | ".join(cells) + " |")
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
