"""Asynchronous file IO for asyncio, side by side: fastio.asyncio.open against
aiofiles, aiofile (caio), anyio's open_file and a plain synchronous loop.

Rows (operations per second, higher is better):

``rand4k``   random 4 KiB reads of one file (page cache warm) from T tasks at
             once, each reading at offsets of its own (``pread`` where the
             library has it, else seek + read on a file object per task)
``files``    4 KiB files opened, read whole and closed, T at a time
``seq1m``    a sequential read of the file in 1 MiB chunks, one task (chunks/s)
``append``   4 KiB appends, each followed by fsync, one task

Libraries: ``fastio-uring`` (fastio.asyncio.open, uring engine) on the stdlib
loop and on fastio's compiled loop (``fastio-uring/floop``), ``fastio-thread``,
``aiofiles``, ``aiofile``, ``anyio``, and ``sync`` (``os.pread`` / built-in
``open`` in a loop, no asyncio). A library that is not installed is left out
with a note (``pip install aiofiles aiofile anyio``). Each round runs every
library in a fresh process pinned to CPU 0, in a rotated order, each for
``--seconds``; reported: the median over rounds, min-max, and the median of
the per-round ratios to aiofile.

    PYTHONPATH=src python bench/files_bench.py                    # 5 rounds
    PYTHONPATH=src python bench/files_bench.py --quick
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time

LIBS = ("fastio-uring", "fastio-uring/floop", "fastio-thread", "aiofiles", "aiofile", "anyio", "sync")
BLOCK = 4096


def have(lib: str) -> str | None:
    """None if ``lib`` can run here, else why not."""
    mod = {"aiofiles": "aiofiles", "aiofile": "aiofile", "anyio": "anyio"}.get(lib)
    if mod is not None:
        try:
            __import__(mod)
        except ImportError:
            return f"{mod} is not installed (pip install {mod})"
    if lib.startswith("fastio-uring"):
        from fastio import uring

        if not uring.available():
            return f"io_uring unusable: {uring.why_unavailable()}"
    if lib.endswith("/floop"):
        import fastio

        if fastio.backend != "c":
            return "fastio's compiled loop needs the c backend"
    return None


def offsets(n: int, size: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    blocks = size // BLOCK
    return [rng.randrange(blocks) * BLOCK for _ in range(n)]


async def rand4k(lib: str, path: str, size: int, tasks: int, seconds: float) -> float:
    """Random 4 KiB reads per second from ``tasks`` tasks."""
    end = time.perf_counter() + seconds
    count = 0
    if lib.startswith("fastio"):
        import fastio.asyncio as fa

        f = await fa.open(path, "rb", engine="thread" if lib == "fastio-thread" else "uring")

        async def worker(seed: int) -> None:
            nonlocal count
            offs = offsets(4096, size, seed)
            i = 0
            while time.perf_counter() < end:
                for _ in range(64):
                    await f.pread(BLOCK, offs[i & 4095])
                    i += 1
                count += 64
        try:
            await asyncio.gather(*(worker(s) for s in range(tasks)))
        finally:
            await f.close()
    elif lib == "aiofile":
        import aiofile

        async with aiofile.async_open(path, "rb") as af:
            f = af.file

            async def worker(seed: int) -> None:
                nonlocal count
                offs = offsets(4096, size, seed)
                i = 0
                while time.perf_counter() < end:
                    for _ in range(64):
                        await f.read(BLOCK, offs[i & 4095])
                        i += 1
                    count += 64
            await asyncio.gather(*(worker(s) for s in range(tasks)))
    elif lib == "aiofiles":
        import aiofiles

        async def worker(seed: int) -> None:
            nonlocal count
            offs = offsets(4096, size, seed)
            i = 0
            async with aiofiles.open(path, "rb") as f:
                while time.perf_counter() < end:
                    for _ in range(16):
                        await f.seek(offs[i & 4095])
                        await f.read(BLOCK)
                        i += 1
                    count += 16
        await asyncio.gather(*(worker(s) for s in range(tasks)))
    elif lib == "anyio":
        import anyio

        async def worker(seed: int) -> None:
            nonlocal count
            offs = offsets(4096, size, seed)
            i = 0
            f = await anyio.open_file(path, "rb")
            try:
                while time.perf_counter() < end:
                    for _ in range(16):
                        await f.seek(offs[i & 4095])
                        await f.read(BLOCK)
                        i += 1
                    count += 16
            finally:
                await f.aclose()
        await asyncio.gather(*(worker(s) for s in range(tasks)))
    else:
        fd = os.open(path, os.O_RDONLY)
        try:
            offs = offsets(4096, size, 0)
            i = 0
            while time.perf_counter() < end:
                for _ in range(256):
                    os.pread(fd, BLOCK, offs[i & 4095])
                    i += 1
                count += 256
        finally:
            os.close(fd)
    return count / seconds


async def small_files(lib: str, paths: list[str], tasks: int, seconds: float) -> float:
    """4 KiB files opened, read and closed per second, ``tasks`` at a time."""
    end = time.perf_counter() + seconds
    count = 0
    n = len(paths)
    if lib.startswith("fastio"):
        import fastio.asyncio as fa

        engine = "thread" if lib == "fastio-thread" else "uring"

        async def one(p: str) -> None:
            async with fa.open(p, "rb", engine=engine) as f:
                await f.read()
    elif lib == "aiofile":
        import aiofile

        async def one(p: str) -> None:
            async with aiofile.async_open(p, "rb") as f:
                await f.read()
    elif lib == "aiofiles":
        import aiofiles

        async def one(p: str) -> None:
            async with aiofiles.open(p, "rb") as f:
                await f.read()
    elif lib == "anyio":
        import anyio

        async def one(p: str) -> None:
            f = await anyio.open_file(p, "rb")
            try:
                await f.read()
            finally:
                await f.aclose()
    else:
        i = 0
        while time.perf_counter() < end:
            for _ in range(64):
                with open(paths[i % n], "rb") as f:
                    f.read()
                i += 1
            count += 64
        return count / seconds

    async def worker(k: int) -> None:
        nonlocal count
        i = k
        while time.perf_counter() < end:
            await one(paths[i % n])
            i += tasks
            count += 1
    await asyncio.gather(*(worker(k) for k in range(tasks)))
    return count / seconds


async def seq1m(lib: str, path: str, seconds: float) -> float:
    """1 MiB chunks read in order per second (from the start again at EOF)."""
    end = time.perf_counter() + seconds
    count = 0
    chunk = 1 << 20
    while time.perf_counter() < end:
        if lib.startswith("fastio"):
            import fastio.asyncio as fa

            async with fa.open(path, "rb", engine="thread" if lib == "fastio-thread" else "uring") as f:
                while time.perf_counter() < end and await f.read(chunk):
                    count += 1
        elif lib == "aiofile":
            import aiofile

            async with aiofile.async_open(path, "rb") as af:
                while time.perf_counter() < end and await af.read(chunk):
                    count += 1
        elif lib == "aiofiles":
            import aiofiles

            async with aiofiles.open(path, "rb") as f:
                while time.perf_counter() < end and await f.read(chunk):
                    count += 1
        elif lib == "anyio":
            import anyio

            f = await anyio.open_file(path, "rb")
            try:
                while time.perf_counter() < end and await f.read(chunk):
                    count += 1
            finally:
                await f.aclose()
        else:
            with open(path, "rb") as sf:
                while time.perf_counter() < end and sf.read(chunk):
                    count += 1
    return count / seconds


async def appends(lib: str, directory: str, seconds: float) -> float:
    """4 KiB appends, each made durable with fsync, per second."""
    path = os.path.join(directory, f"append-{lib.replace('/', '-')}")
    block = os.urandom(BLOCK)
    end = time.perf_counter() + seconds
    count = 0
    loop = asyncio.get_running_loop()
    if lib.startswith("fastio"):
        import fastio.asyncio as fa

        async with fa.open(path, "ab", engine="thread" if lib == "fastio-thread" else "uring") as f:
            while time.perf_counter() < end:
                await f.write(block)
                await f.fsync()
                count += 1
    elif lib == "aiofile":
        import aiofile

        async with aiofile.AIOFile(path, "ab") as af:
            offset = 0
            while time.perf_counter() < end:
                await af.write(block, offset=offset)
                await af.fsync()
                offset += BLOCK
                count += 1
    elif lib == "aiofiles":
        import aiofiles

        async with aiofiles.open(path, "ab") as f:
            while time.perf_counter() < end:
                await f.write(block)
                await f.flush()
                await loop.run_in_executor(None, os.fsync, f.fileno())
                count += 1
    elif lib == "anyio":
        import anyio

        f = await anyio.open_file(path, "ab")
        try:
            while time.perf_counter() < end:
                await f.write(block)
                await f.flush()
                await anyio.to_thread.run_sync(os.fsync, f.wrapped.fileno())
                count += 1
        finally:
            await f.aclose()
    else:
        with open(path, "ab") as sf:
            while time.perf_counter() < end:
                sf.write(block)
                sf.flush()
                os.fsync(sf.fileno())
                count += 1
    os.unlink(path)
    return count / seconds


def child(args: argparse.Namespace) -> None:
    lib = args.child
    os.sched_setaffinity(0, {0})
    loop: asyncio.AbstractEventLoop
    if lib.endswith("/floop"):
        import fastio.asyncio as fa

        loop = fa.Loop()
    else:
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    out = {}
    try:
        for row, tasks in args.rows:
            if row == "rand4k":
                size = os.path.getsize(args.big)
                loop.run_until_complete(rand4k(lib, args.big, size, tasks, 0.05))    # warm-up
                out[f"{row}/{tasks}"] = loop.run_until_complete(rand4k(lib, args.big, size, tasks, args.seconds))
            elif row == "seq1m":
                loop.run_until_complete(seq1m(lib, args.big, 0.05))
                out[f"{row}/{tasks}"] = loop.run_until_complete(seq1m(lib, args.big, args.seconds))
            elif row == "append":
                loop.run_until_complete(appends(lib, os.path.dirname(args.big), 0.05))
                out[f"{row}/{tasks}"] = loop.run_until_complete(appends(lib, os.path.dirname(args.big), args.seconds))
            else:
                paths = sorted(os.path.join(args.small, p) for p in os.listdir(args.small))
                loop.run_until_complete(small_files(lib, paths, tasks, 0.05))
                out[f"{row}/{tasks}"] = loop.run_until_complete(small_files(lib, paths, tasks, args.seconds))
    finally:
        loop.close()
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=0.5)
    ap.add_argument("--quick", action="store_true", help="2 rounds of 0.2 s")
    ap.add_argument("--libs", default=",".join(LIBS))
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
    rows = [("rand4k", 1), ("rand4k", 8), ("rand4k", 64), ("files", 1), ("files", 64), ("seq1m", 1),
            ("append", 1)]
    libs = []
    for lib in args.libs.split(","):
        why = have(lib)
        if why:
            print(f"note: {lib} left out: {why}")
        else:
            libs.append(lib)
    with tempfile.TemporaryDirectory(prefix="fastio-files-bench-", dir="/var/tmp") as tmp:
        big = os.path.join(tmp, "big")
        with open(big, "wb") as f:
            chunk = os.urandom(1 << 20)
            for _ in range(args.size_mib):
                f.write(chunk)
        small = os.path.join(tmp, "small")
        os.mkdir(small)
        for i in range(10_000):
            with open(os.path.join(small, f"{i:05d}"), "wb") as f:
                f.write(os.urandom(BLOCK))
        with open(big, "rb") as f:      # page cache warm
            while f.read(1 << 22):
                pass
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
