"""Random 4 KiB O_DIRECT reads at one queue depth: fastio's plain API (one
prep/submit per read, wait for completions) and read_batch, on io_uring and
Linux AIO, against fio's io_uring and libaio engines, alternated in one run.
Prints median IOPS and, per method, the median over the rounds of its IOPS
over each fio engine's in the same round. Needs fio for the ratios
(`apt-get install fio`); without it the fio rows say so and are skipped.

    python bench/direct_bench.py [--size-mib 512] [--depth 32] [--seconds 2]
                                 [--rounds 7] [--dir /var/tmp] [--backends c,pure]

Method: one file of --size-mib MiB (8 MiB of random data repeated, fsynced)
in a temporary directory under --dir (which must take O_DIRECT: not tmpfs),
opened O_RDONLY | O_DIRECT; 1 Mi random 4 KiB-aligned offsets (seed 7). A
round runs every method once for --seconds, in an order that rotates from
round to round; the device's speed drifts within minutes on a shared VM, so
only ratios within a round mean much. per-op: fastio._bench.files'
ring_per_op / aio_per_op (fio's own loop: a read submitted as soon as it is
prepared, depth kept across chunks). read_batch: Ring.read_batch /
Context.read_batch of --chunk reads per call, depth= --depth. fio: one job,
its defaults but the depth (fastio._bench.fio). This issue 12's benchmark:
bench/RESULTS.md has what it showed. Not a test: nothing here asserts a speed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile

from fastio._bench import fio
from fastio._bench.files import BS, aio_batch, aio_per_op, make_file, offsets, ring_batch, ring_per_op, timed


def methods(backends, depth, chunk):
    """name -> (fd, offs, seconds) -> IOPS."""
    out = {}
    for engine in ("io_uring", "libaio"):
        out[f"fio {engine}"] = (lambda fd, offs, secs, path, engine=engine:
                                fio.sample(path, engine, depth, True, secs).iops)
    for b in backends:
        u = importlib.import_module(f"fastio._{b}.uring")
        a = importlib.import_module(f"fastio._{b}.aio")
        for name, make in (
            (f"uring per-op ({b})", lambda fd, offs, u=u: ring_per_op(u, fd, offs, depth, True)),
            (f"uring read_batch ({b})", lambda fd, offs, u=u: ring_batch(u, fd, offs, depth, True, chunk=chunk)),
            (f"aio per-op ({b})", lambda fd, offs, a=a: aio_per_op(a, fd, offs, depth, True)),
            (f"aio read_batch ({b})", lambda fd, offs, a=a: aio_batch(a, fd, offs, depth, True, chunk=chunk)),
        ):
            def measure(fd, offs, secs, path, make=make):
                run, close = make(fd, offs)
                try:
                    return timed(run, secs)
                finally:
                    close()
            out[name] = measure
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mib", type=int, default=512)
    ap.add_argument("--depth", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--chunk", type=int, default=0, help="reads per read_batch call (default 64 x depth)")
    ap.add_argument("--dir", default="/var/tmp")
    ap.add_argument("--backends", default="c")
    ap.add_argument("--json", metavar="PATH")
    args = ap.parse_args(argv)
    chunk = args.chunk or 64 * args.depth
    table = methods(args.backends.split(","), args.depth, chunk)
    if not fio.available():
        print(f"# fio rows skipped: {fio.MISSING}", flush=True)
        table = {k: v for k, v in table.items() if not k.startswith("fio")}
    tmpdir = tempfile.mkdtemp(dir=args.dir, prefix="fastio-direct-bench-")
    path = os.path.join(tmpdir, "data")
    size = args.size_mib << 20
    samples: dict[str, list[float]] = {k: [] for k in table}
    try:
        make_file(path, size)
        fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
        try:
            print(f"# {args.size_mib} MiB file in {args.dir}, depth {args.depth}, {args.seconds:g} s x "
                  f"{args.rounds} rounds, read_batch {chunk} reads per call; Linux {platform.release()}, "
                  f"{os.cpu_count()} CPUs, Python {platform.python_version()}, fio: {fio.version()}", flush=True)
            offs = offsets(1 << 20, size // BS, 7)
            names = list(table)
            for r in range(args.rounds):
                shift = r % len(names)
                for name in names[shift:] + names[:shift]:
                    if name not in samples:
                        continue
                    try:
                        samples[name].append(table[name](fd, offs, args.seconds, path))
                    except OSError as exc:
                        if not name.startswith("fio"):
                            raise
                        print(f"# {name} dropped: {exc}", flush=True)   # (its rounds would not pair)
                        del samples[name]
                print(json.dumps({k: round(v[-1]) for k, v in samples.items()}), flush=True)
        finally:
            os.close(fd)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    refs = [k for k in ("fio io_uring", "fio libaio") if k in samples]
    print()
    print("| method | median IOPS | min-max | " + " | ".join(f"/ {r} (median of rounds)" for r in refs) + " |")
    print("|---|---:|---:|" + "---:|" * len(refs))
    summary = {}
    for name, vals in samples.items():
        ratios = {r: statistics.median(a / b for a, b in zip(vals, samples[r])) for r in refs}
        summary[name] = {"median": statistics.median(vals), "samples": vals, "ratios": ratios}
        cells = " | ".join(f"{ratios[r]:.2f}" for r in refs)
        print(f"| {name} | {statistics.median(vals) / 1000:.1f}k | {min(vals) / 1000:.0f}-{max(vals) / 1000:.0f}k"
              f" | {cells} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": summary}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
