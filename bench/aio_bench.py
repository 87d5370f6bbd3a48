"""4 KiB random O_DIRECT reads of one big file: Linux AIO through fastio (c,
pure, the read_batch path) against an os.pread loop and fio's libaio engine
when fio is installed, all in one run, at queue depths 1..128. Prints a table
of median IOPS (and --json).

    python bench/aio_bench.py [--size-mib 512] [--depths 1,2,4,8,16,32,64,128]
                              [--seconds 1.0] [--repeat 3] [--dir /var/tmp]

Method: one file of --size-mib MiB (random bytes, written once and fsynced)
in a temporary directory under --dir (which must support O_DIRECT: not a
tmpfs), opened O_RDONLY | O_DIRECT; for each depth every method reads random
4 KiB-aligned blocks for --seconds, --repeat times, interleaved method by
method, and the median IOPS is reported. Depth means requests in flight: the
per-request fastio loop keeps that many prepared and submitted (refilling
each slot as its completion is reaped with getevents), read_batch is called
with depth=, fio gets --iodepth (fastio._bench.fio: one job, its defaults
otherwise). The os.pread loop (os.preadv into one
aligned buffer) is depth 1 by nature. A benchmark, not a test: nothing here
asserts a speed.
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
    aio_batch,
    aio_per_op,
    make_file,
    offsets,
    pread_loop,
    timed,
)
from fastio._c import aio as c_aio
from fastio._pure import aio as pure_aio
from fastio._abi.aio import dio_alignment

# ---- methods: each returns (fn(i) -> reads done in one chunk, close) ---------

METHODS = {
    "os.pread loop": lambda fd, offs, depth: pread_loop(fd, offs, depth, True),
    "fastio c": lambda fd, offs, depth: aio_per_op(c_aio, fd, offs, depth),
    "fastio pure": lambda fd, offs, depth: aio_per_op(pure_aio, fd, offs, depth),
    "fastio c read_batch": lambda fd, offs, depth: aio_batch(c_aio, fd, offs, depth),
    "fastio pure read_batch": lambda fd, offs, depth: aio_batch(pure_aio, fd, offs, depth),
}


def run_fio(path: str, depth: int, seconds: float) -> float | None:
    if not fio.available():
        return None
    try:
        return fio.sample(path, "libaio", depth, True, seconds).iops
    except OSError as exc:
        print(exc, file=sys.stderr)
        return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mib", type=int, default=512)
    ap.add_argument("--depths", default="1,2,4,8,16,32,64,128")
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", default="/var/tmp")
    ap.add_argument("--methods", default=",".join(METHODS) + ",fio libaio")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    depths = [int(d) for d in args.depths.split(",")]
    methods = [m.strip() for m in args.methods.split(",")]
    tmpdir = tempfile.mkdtemp(dir=args.dir, prefix="fastio-aio-bench-")
    path = os.path.join(tmpdir, "data")
    size = args.size_mib << 20
    results = []
    try:
        t0 = time.perf_counter()
        make_file(path, size)
        fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
        fio_version = fio.version()
        print(f"# {size >> 20} MiB file in {args.dir} (O_DIRECT alignment {dio_alignment(fd)}) written in "
              f"{time.perf_counter() - t0:.1f}s; Linux {platform.release()} {platform.machine()}, "
              f"{os.cpu_count()} CPUs, Python {platform.python_version()}, fio: {fio_version}", flush=True)
        offs = offsets(1 << 20, size // BS, 7)
        try:
            for depth in depths:
                row = {"depth": depth}
                samples: dict[str, list[float]] = {m: [] for m in methods}
                for _ in range(args.repeat):
                    for name in methods:
                        if name == "fio libaio":
                            iops = run_fio(path, depth, args.seconds)
                            if iops is not None:
                                samples[name].append(iops)
                            continue
                        run, close = METHODS[name](fd, offs, depth)
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
    print()
    print("| depth | " + " | ".join(methods) + " |")
    print("|---:|" + "---:|" * len(methods))
    for row in results:
        cells = [f"{row[n] / 1000:.1f}k" if row.get(n) else "-" for n in methods]
        print(f"| {row['depth']} | " + " | ".join(cells) + " |")
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
