"""Asynchronous file IO for asyncio, side by side: fastio.asyncio.open against
aiofiles, aiofile (caio), anyio's open_file and a plain synchronous loop.

The workloads and libraries are those of the ``afiles`` part of ``python -m
fastio bench`` (``fastio._bench.afiles``: rand4k, direct4k, files, seq1m, append; the
libraries in ``afiles.LIBS``), here with more rows (1, 8 and 64 tasks;
10,000 small files) and one process per library and round. A library that is
not installed is left out with a note (``pip install aiofiles aiofile
anyio``). Each round runs every
library in a fresh process pinned to CPU 0, in a rotated order, each for
``--seconds``; reported: the median over rounds, min-max, and the median of
the per-round ratios to aiofile.

    PYTHONPATH=src python bench/files_bench.py                    # 5 rounds
    PYTHONPATH=src python bench/files_bench.py --quick
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile

from fastio._bench import afiles


def child(args: argparse.Namespace) -> None:
    os.sched_setaffinity(0, {0})
    got = afiles.measure(args.child, args.rows, args.big, args.small, args.seconds)
    print(json.dumps({f"{row}/{tasks}": v for (row, tasks), v in got.items()}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=0.5)
    ap.add_argument("--quick", action="store_true", help="2 rounds of 0.2 s")
    ap.add_argument("--libs", default=",".join(afiles.LIBS))
    ap.add_argument("--size-mib", type=int, default=256, help="the random-read file's size")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--big", help=argparse.SUPPRESS)
    ap.add_argument("--small", help=argparse.SUPPRESS)
    ap.add_argument("--rows-json", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        args.rows = [tuple(r) for r in json.loads(args.rows_json)]
        child(args)
        return
    if args.quick:
        args.rounds, args.seconds = 2, 0.2
    rows = [("rand4k", 1), ("rand4k", 8), ("rand4k", 64), ("direct4k", 1), ("direct4k", 8), ("direct4k", 64),
            ("files", 1), ("files", 64), ("seq1m", 1), ("append", 1)]
    libs = []
    for lib in args.libs.split(","):
        why = afiles.why_not(lib)
        if why:
            print(f"note: {lib} left out: {why}")
        else:
            libs.append(lib)
    with tempfile.TemporaryDirectory(prefix="fastio-files-bench-", dir="/var/tmp") as tmp:
        big, small = afiles.make_data(tmp, args.size_mib << 20, 10_000)
        results: dict[str, dict[str, list[float]]] = {lib: {} for lib in libs}
        for r in range(args.rounds):
            order = libs[r % len(libs):] + libs[:r % len(libs)]
            for lib in order:
                cmd = [sys.executable, os.path.abspath(__file__), "--child", lib, "--big", big, "--small", small,
                       "--seconds", str(args.seconds), "--rows-json", json.dumps(rows)]
                proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
                if proc.returncode != 0:
                    print(f"{lib}: failed: {proc.stderr.strip().splitlines()[-1:]}")
                    continue
                for key, val in json.loads(proc.stdout.strip().splitlines()[-1]).items():
                    results[lib].setdefault(key, []).append(val)
    print(f"# Python {platform.python_version()}, {platform.system()} {platform.release()}, "
          f"{os.cpu_count()} CPUs, {args.rounds} rounds of {args.seconds} s, file {args.size_mib} MiB")
    keys = [f"{row}/{t}" for row, t in rows]
    print(f"{'library':20}" + "".join(f"{k:>18}" for k in keys))
    for lib in libs:
        cells = []
        for k in keys:
            vals = results[lib].get(k, [])
            if not vals:
                cells.append(f"{'-':>18}")
                continue
            med = statistics.median(vals)
            ref = results.get("aiofile", {}).get(k)
            ratio = ""
            if ref and len(ref) == len(vals):
                ratio = f" {statistics.median(v / w for v, w in zip(vals, ref)):.2f}x"
            cells.append(f"{med / 1000:>8.2f}k{ratio:>7}".rjust(18))
        print(f"{lib:20}" + "".join(cells))
    print("(ops/s: median over rounds; the ratio is the median per-round ratio to aiofile)")


if __name__ == "__main__":
    main()
