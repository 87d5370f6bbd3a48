"""The ``afiles`` part of ``python -m fastio bench``: file IO for asyncio,
``fastio.asyncio.open`` against ``loop.run_in_executor`` (what aiofiles and
anyio do underneath), aiofiles, aiofile (caio), anyio's ``open_file`` and a
plain synchronous loop.

Workloads (each ``async (lib, ...) -> operations per second``; also what
``bench/files_bench.py`` runs, one process per library and round):

``rand4k``  random 4 KiB reads of one file from T tasks at once, each at
            offsets of its own (``pread`` where the library has it, else seek
            + read on a file object per task)
``direct4k`` the same with the file opened ``O_DIRECT`` (no page cache: the
            device's own rate), for what can read into aligned memory
``seq1m``   a sequential read of the file in 1 MiB chunks, one task (MiB/s)
``files``   4 KiB files opened, read whole and closed, T at a time
``append``  4 KiB appends, each followed by fsync, one task

Libraries (``LIBS``): ``fastio-uring`` on the stdlib loop,
``fastio-uring/floop`` on fastio's compiled loop (the requests on the loop's
own ring), ``fastio-aio`` (Linux AIO: the ``O_DIRECT`` row only, the one
where it is asynchronous), ``fastio-thread``, ``executor``, ``aiofiles``, ``aiofile``,
``anyio``, ``sync`` (``os.pread`` / built-in ``open``, no asyncio). One that
is not installed is a skipped row saying how to get it (``pip install
'fastio[bench]'`` brings them).
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import statistics
import tempfile
import time
from typing import Callable, Optional

from fastio._bench._types import Options, Part, Row

LIBS = ("fastio-uring", "fastio-uring/floop", "fastio-aio", "fastio-thread", "executor", "aiofiles", "aiofile", "anyio",
        "sync")
BASELINE = "executor"
BLOCK = 4096
CHUNK = 1 << 20

#: (workload, tasks) -> the part's group name and unit
ROWS = {
    ("rand4k", 1): ("random 4 KiB reads, 1 task", "ops/s"),
    ("rand4k", 64): ("random 4 KiB reads, 64 tasks", "ops/s"),
    ("direct4k", 64): ("random 4 KiB O_DIRECT reads, 64 tasks", "ops/s"),
    ("seq1m", 1): ("sequential 1 MiB reads", "MiB/s"),
    ("files", 64): ("4 KiB files opened, read, closed, 64 at a time", "ops/s"),
    ("append", 1): ("4 KiB appends + fsync", "ops/s"),
}


def why_not(lib: str) -> Optional[str]:
    """None if ``lib`` can run here, else why not."""
    mod = {"aiofiles": "aiofiles", "aiofile": "aiofile", "anyio": "anyio"}.get(lib)
    if mod is not None:
        try:
            __import__(mod)
        except ImportError:
            return f"{mod} is not installed (pip install {mod}, or the bench extra)"
    if lib == "fastio-aio":
        from fastio import aio

        if not aio.available():
            return f"Linux AIO unusable: {aio.why_unavailable()}"
    if lib.startswith("fastio-uring"):
        from fastio import uring

        if not uring.available():
            return f"io_uring unusable: {uring.why_unavailable()}"
    if lib.endswith("/floop"):
        from fastio import _backend

        if _backend.name() != "c":
            return "fastio's compiled loop needs the c backend"
    return None


#: why a library has no number for a workload (its row says so)
_NOT_DIRECT = {
    "fastio-thread": "the thread engine reads with os.pread into an unaligned buffer, which O_DIRECT refuses",
    "aiofiles": "reads into an unaligned buffer of its own, which O_DIRECT refuses (EINVAL)",
    "anyio": "reads into an unaligned buffer of its own, which O_DIRECT refuses (EINVAL)",
    "aiofile": "opens the file itself, with no way to ask for O_DIRECT",
}


def why_not_row(lib: str, row: str) -> Optional[str]:
    """None if ``lib`` has a number for workload ``row``, else why not."""
    if row == "direct4k":
        return _NOT_DIRECT.get(lib)
    if lib == "fastio-aio":
        return "Linux AIO is asynchronous only for O_DIRECT files: measured in the O_DIRECT row"
    return None


def direct_refused(path: str) -> Optional[str]:
    """None if ``path``'s file system opens it ``O_DIRECT``, else why not."""
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_DIRECT | os.O_CLOEXEC))
    except OSError as exc:
        return f"this file system refuses O_DIRECT ({exc.strerror})"
    return None


def _direct_opener(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_DIRECT)


def new_loop(lib: str) -> asyncio.AbstractEventLoop:
    """The loop ``lib`` runs on: fastio's for ``*/floop``, else the stdlib's."""
    if lib.endswith("/floop"):
        import fastio.asyncio as fa

        return fa.Loop()
    return asyncio.new_event_loop()


def offsets(n: int, size: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    blocks = size // BLOCK
    return [rng.randrange(blocks) * BLOCK for _ in range(n)]


def _engine(lib: str) -> str:
    return {"fastio-thread": "thread", "fastio-aio": "aio"}.get(lib, "uring")


def _read_whole(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _append_durably(fd: int, block: bytes) -> None:
    os.write(fd, block)
    os.fsync(fd)


async def rand4k(lib: str, path: str, size: int, tasks: int, seconds: float, direct: bool = False) -> float:
    """Random 4 KiB reads per second from ``tasks`` tasks (the clock starts
    once the file is open); ``direct``: the file opened ``O_DIRECT``, each
    read into page-aligned memory."""
    end = 0.0
    count = 0
    loop = asyncio.get_running_loop()

    # (made before the clock starts: 64 tasks' offsets take longer than a quick run's sample)
    all_offs = [offsets(4096, size, seed) for seed in range(tasks)]

    async def each(read: Callable, seed: int, per: int = 64 if tasks == 1 else 4) -> None:
        nonlocal count, end
        offs = all_offs[seed]
        i = 0
        if not end:
            end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            for _ in range(per):
                await read(offs[i & 4095])
                i += 1
            count += per

    if lib.startswith("fastio"):
        import fastio.asyncio as fa

        if direct:
            f = await fa.open(path, "rb", buffering=0, opener=_direct_opener, engine=_engine(lib))
        else:
            f = await fa.open(path, "rb", engine=_engine(lib))
        try:
            await asyncio.gather(*(each(lambda off: f.pread(BLOCK, off), s) for s in range(tasks)))
        finally:
            await f.close()
    elif lib == "executor":
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | (os.O_DIRECT if direct else 0))
        try:
            if direct:
                from fastio.aio import aligned_buffer

                async def task(seed: int) -> None:
                    buf = aligned_buffer(BLOCK)
                    await each(lambda off: loop.run_in_executor(None, os.preadv, fd, [buf], off), seed)
                await asyncio.gather(*(task(s) for s in range(tasks)))
            else:
                await asyncio.gather(*(each(lambda off: loop.run_in_executor(None, os.pread, fd, BLOCK, off), s)
                                       for s in range(tasks)))
        finally:
            os.close(fd)
    elif lib == "aiofile":
        import aiofile

        async with aiofile.async_open(path, "rb") as af:
            await asyncio.gather(*(each(lambda off: af.file.read(BLOCK, off), s) for s in range(tasks)))
    elif lib in ("aiofiles", "anyio"):
        async def seek_read(seed: int) -> None:
            if lib == "aiofiles":
                import aiofiles

                f = await aiofiles.open(path, "rb")
            else:
                import anyio

                f = await anyio.open_file(path, "rb")

            async def read(off: int) -> None:
                await f.seek(off)
                await f.read(BLOCK)
            try:
                await each(read, seed, 16)
            finally:
                await (f.close() if lib == "aiofiles" else f.aclose())
        await asyncio.gather(*(seek_read(s) for s in range(tasks)))
    else:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | (os.O_DIRECT if direct else 0))
        try:
            offs = offsets(4096, size, 0)
            i = 0
            end = time.perf_counter() + seconds
            if direct:
                from fastio.aio import aligned_buffer

                bufs = [aligned_buffer(BLOCK)]
                while time.perf_counter() < end:
                    for _ in range(256):
                        os.preadv(fd, bufs, offs[i & 4095])
                        i += 1
                    count += 256
            while not direct and time.perf_counter() < end:
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
    loop = asyncio.get_running_loop()
    one: Callable
    if lib.startswith("fastio"):
        import fastio.asyncio as fa

        engine = _engine(lib)

        async def one(p: str) -> None:
            async with fa.open(p, "rb", engine=engine) as f:
                await f.read()
    elif lib == "executor":
        def one(p: str) -> asyncio.Future:
            return loop.run_in_executor(None, _read_whole, p)
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
                _read_whole(paths[i % n])
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
    loop = asyncio.get_running_loop()
    while time.perf_counter() < end:
        if lib.startswith("fastio"):
            import fastio.asyncio as fa

            async with fa.open(path, "rb", engine=_engine(lib)) as f:
                while time.perf_counter() < end and await f.read(CHUNK):
                    count += 1
        elif lib == "executor":
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                while time.perf_counter() < end and await loop.run_in_executor(None, os.read, fd, CHUNK):
                    count += 1
            finally:
                os.close(fd)
        elif lib == "aiofile":
            import aiofile

            async with aiofile.async_open(path, "rb") as af:
                while time.perf_counter() < end and await af.read(CHUNK):
                    count += 1
        elif lib == "aiofiles":
            import aiofiles

            async with aiofiles.open(path, "rb") as f:
                while time.perf_counter() < end and await f.read(CHUNK):
                    count += 1
        elif lib == "anyio":
            import anyio

            f = await anyio.open_file(path, "rb")
            try:
                while time.perf_counter() < end and await f.read(CHUNK):
                    count += 1
            finally:
                await f.aclose()
        else:
            with open(path, "rb") as sf:
                while time.perf_counter() < end and sf.read(CHUNK):
                    count += 1
    return count / seconds


async def appends(lib: str, directory: str, seconds: float) -> float:
    """4 KiB appends, each made durable with fsync, per second."""
    path = os.path.join(directory, f"append-{lib.replace('/', '-')}")
    block = os.urandom(BLOCK)
    end = time.perf_counter() + seconds
    count = 0
    loop = asyncio.get_running_loop()
    try:
        if lib.startswith("fastio"):
            import fastio.asyncio as fa

            async with fa.open(path, "ab", engine=_engine(lib)) as f:
                while time.perf_counter() < end:
                    await f.write(block)
                    await f.fsync()
                    count += 1
        elif lib == "executor":
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                while time.perf_counter() < end:
                    await loop.run_in_executor(None, _append_durably, fd, block)
                    count += 1
            finally:
                os.close(fd)
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
    finally:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
    return count / seconds


def measure(lib: str, rows: list[tuple[str, int]], big: str, small: str, seconds: float,
            warmup: float = 0.05) -> dict[tuple[str, int], float]:
    """Each of ``rows`` for ``lib`` on a new loop of its kind: operations
    per second (MiB/s for seq1m), after a warm-up of ``warmup`` seconds
    (rows ``lib`` cannot do, ``why_not_row``, are left out)."""
    loop = new_loop(lib)
    out = {}
    size = os.path.getsize(big)
    paths = sorted(os.path.join(small, p) for p in os.listdir(small))
    try:
        for row, tasks in rows:
            if why_not_row(lib, row):
                continue

            def job(secs: float, row: str = row, tasks: int = tasks):
                if row in ("rand4k", "direct4k"):
                    return rand4k(lib, big, size, tasks, secs, direct=row == "direct4k")
                if row == "seq1m":
                    return seq1m(lib, big, secs)
                if row == "append":
                    return appends(lib, os.path.dirname(big), secs)
                return small_files(lib, paths, tasks, secs)
            if warmup:
                loop.run_until_complete(job(warmup))
            out[(row, tasks)] = loop.run_until_complete(job(seconds))
    finally:
        loop.close()
    return out


def make_data(directory: str, size: int, nsmall: int) -> tuple[str, str]:
    """(a file of ``size`` random bytes, a directory of ``nsmall`` 4 KiB
    files), in a new directory under ``directory``, read once (warm)."""
    top = tempfile.mkdtemp(prefix="fastio-afiles-", dir=directory)
    big = os.path.join(top, "big")
    block = os.urandom(CHUNK)
    with open(big, "wb") as f:
        for _ in range(max(1, size // CHUNK)):
            f.write(block)
    small = os.path.join(top, "small")
    os.mkdir(small)
    for i in range(nsmall):
        with open(os.path.join(small, f"{i:05d}"), "wb") as f:
            f.write(block[i % 256 * BLOCK:][:BLOCK])
    with open(big, "rb") as f:
        while f.read(CHUNK):
            pass
    return big, small


def _config(options: Options) -> tuple[int, int, int, float, float]:
    """(file size, small files, rounds, seconds per sample, warm-up)."""
    if options.quick:
        rounds, seconds, warmup, size, nsmall = 1, 0.025, 0.005, 16 << 20, 256
    else:
        rounds, seconds, warmup, size, nsmall = 3, 0.25, 0.05, 256 << 20, 2000
    if options.duration is not None:
        seconds = options.duration / rounds
    return size, nsmall, rounds, seconds, warmup


def steps(options: Options) -> int:
    return 1 + _config(options)[2] * len(LIBS)


def run(options: Options, progress: Callable[[str], None]) -> Part:
    from fastio._bench.files import choose_directory

    size, nsmall, rounds, seconds, warmup = _config(options)
    directory = choose_directory(options)[0]
    problems: list[str] = []
    part = Part(
        name="afiles",
        title=f"files (asyncio): a {size >> 20} MiB file and {nsmall} small files in {directory}",
        baseline=BASELINE,
        rows=[],
        method=(f"Each library in turn on a new event loop (fastio's for */floop, else the stdlib's), "
                f"{rounds} round(s) alternating the libraries, {seconds:.2f} s per row and round, the median "
                f"reported; ratio to {BASELINE} (loop.run_in_executor of the same system calls, what "
                f"aiofiles and anyio do underneath). rand4k: random 4 KiB reads; O_DIRECT: the same, the "
                f"file opened O_DIRECT, each read into page-aligned memory; files: open, read whole, "
                f"close; append: a 4 KiB write then fsync. The page cache is warm (read once) but the "
                f"kernel may drop pages; libraries not installed are skipped (pip install 'fastio[bench]')."),
        extra={"directory": directory, "size": size, "small_files": nsmall, "rounds": rounds,
               "seconds_per_sample": seconds, "problems": problems},
    )
    skipped = {lib: why_not(lib) for lib in LIBS}
    samples: dict[str, dict[tuple[str, int], list[float]]] = {lib: {k: [] for k in ROWS} for lib in LIBS}
    progress(f"writing a {size >> 20} MiB file and {nsmall} small files in {directory}")
    top = None
    no_direct: Optional[str] = None
    try:
        big, small = make_data(directory, size, nsmall)
        top = os.path.dirname(big)
        no_direct = direct_refused(big)
        rows = [key for key in ROWS if not (no_direct and key[0] == "direct4k")]
        for r in range(rounds):
            order = LIBS[r % len(LIBS):] + LIBS[:r % len(LIBS)]
            for lib in order:
                progress(f"{lib} (round {r + 1}/{rounds})")
                if skipped[lib]:
                    continue
                try:
                    got = measure(lib, rows, big, small, seconds, warmup)
                except Exception as exc:  # noqa: BLE001 - the row fails, the part goes on
                    problems.append(f"{lib}: {type(exc).__name__}: {exc}")
                    skipped[lib] = f"failed: {type(exc).__name__}: {exc}"
                    continue
                for key, value in got.items():
                    samples[lib][key].append(value)
    finally:
        if top is not None:
            shutil.rmtree(top, ignore_errors=True)
    kinds = {"sync": "blocking", "executor": "blocking", "fastio-thread": "blocking",
             "aiofiles": "blocking", "anyio": "blocking"}
    for key, (group, unit) in ROWS.items():
        for lib in LIBS:
            kind = kinds.get(lib, "asynchronous")
            vals = samples[lib][key]
            why = skipped[lib] or why_not_row(lib, key[0]) or (no_direct if key[0] == "direct4k" else None)
            if why or not vals:
                part.rows.append(Row.skip(lib, kind, why or "not measured", unit, group=group))
            else:
                part.rows.append(Row(lib, kind, statistics.median(vals), unit, samples=list(vals),
                                     extra={"group": group, "min": min(vals), "max": max(vals)}))
    return part
