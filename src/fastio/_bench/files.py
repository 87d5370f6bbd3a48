"""The ``files`` part of ``python -m fastio bench``: random 4 KiB reads of
one file, an ``os.pread`` loop against a thread pool, Linux AIO and io_uring,
page cache warm and ``O_DIRECT``.

The measuring functions here are also what ``bench/uring_bench.py`` and
``bench/aio_bench.py`` run (they add more depths, per-request loops and fio).
Each method is a factory ``(fd, offsets, depth, direct, ...) -> (run, close)``:
``run(i)`` does the i-th chunk of reads and returns how many it did,
``close()`` releases what the factory made. Factories that take ``latency``
append one sample per read (or per batch) to it, in nanoseconds.
"""

from __future__ import annotations

import array
import concurrent.futures
import errno
import importlib
import os
import random
import resource
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional

from fastio._bench import fio
from fastio._bench._types import Options, Part, Row
from fastio._errors import UnsupportedError
from fastio._abi.aio import aligned_buffer, dio_alignment

BS = 4096
DEPTH = 32
THREADS = 32
SEED = 7

perf_counter_ns = time.perf_counter_ns

# ----------------------------------------------------------------------------- the file


def make_file(path: str, size: int) -> None:
    """Write ``size`` bytes (a multiple of 1 MiB) of random data to ``path`` and fsync."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        fill_fd(fd, size)
    finally:
        os.close(fd)


def fill_fd(fd: int, size: int) -> None:
    """Fill fd with ``size`` bytes: 8 MiB (or less) of random data, then
    copied in the kernel with sendfile(2) until the size is reached (plain
    writes where that is refused), through the page cache; then fsync, so
    nothing is dirty. Not copy_file_range(2): on XFS or btrfs it shares the
    extents (reflink), and O_DIRECT reads of the copies would hit the same
    few device blocks."""
    seed = min(size, 8 << 20)
    data = os.urandom(seed)
    done = 0
    while done < seed:
        done += os.pwrite(fd, data[done:], done)
    use_sendfile = True
    while done < size:
        n = min(done, size - done)
        if use_sendfile:
            try:
                os.lseek(fd, done, os.SEEK_SET)
                got = 0
                while got < n:
                    c = os.sendfile(fd, fd, got, n - got)
                    if c <= 0:
                        raise OSError(errno.EIO, "sendfile copied nothing")
                    got += c
                done += n
                continue
            except OSError as exc:
                if exc.errno not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EIO):
                    raise
                use_sendfile = False
        k = 0
        while k < n:
            k += os.pwrite(fd, data[: min(len(data), n - k)], done + k)
        done += n
    os.fsync(fd)


def warm(path_or_fd) -> None:
    """Read the whole file (a path, or an fd not opened O_DIRECT) once through the page cache."""
    opened = isinstance(path_or_fd, (str, bytes, os.PathLike))
    fd = os.open(path_or_fd, os.O_RDONLY | os.O_CLOEXEC) if opened else path_or_fd
    try:
        buf = bytearray(1 << 20)
        off = 0
        while True:
            n = os.preadv(fd, [buf], off)
            if n <= 0:
                break
            off += n
    finally:
        if opened:
            os.close(fd)


def offsets(n: int, nblocks: int, seed: int = SEED) -> array.array:
    """n random BS-aligned offsets below nblocks * BS, the same for a given seed."""
    rng = random.Random(seed)
    return array.array("q", (rng.randrange(nblocks) * BS for _ in range(n)))


def timed(fn: Callable[[int], int], seconds: float) -> float:
    """Call fn(chunk_index) until ``seconds`` passed; fn returns reads done. IOPS."""
    done, elapsed = timed_reads(fn, seconds)
    return done / elapsed


def timed_reads(fn: Callable[[int], int], seconds: float) -> tuple[int, float]:
    """Call fn(chunk_index) until ``seconds`` passed: (reads done, seconds taken)."""
    done = 0
    t0 = time.perf_counter()
    i = 0
    while True:
        done += fn(i)
        i += 1
        elapsed = time.perf_counter() - t0
        if elapsed >= seconds:
            return done, elapsed


def _base(i: int, chunk: int, n: int) -> int:
    return (i * chunk) % (n - chunk)


# ----------------------------------------------------------------------------- methods


def pread_loop(fd: int, offs: array.array, depth: int = 1, direct: bool = False, *,
               latency: Optional[list] = None, chunk: int = 256):
    """An ``os.pread`` loop, one read at a time (depth 1 whatever ``depth``).
    ``direct``: ``os.preadv`` into one aligned buffer (O_DIRECT needs it).
    ``latency``: the time of each read (clock to clock, loop included; the
    clock and the list cost about 20% of a warm read: time IOPS without it)."""
    n = len(offs)
    bufs = [aligned_buffer(BS)]
    preadv = os.preadv
    pread = os.pread

    if latency is None:
        if direct:
            def run(i):
                base = _base(i, chunk, n)
                for k in range(base, base + chunk):
                    preadv(fd, bufs, offs[k])
                return chunk
        else:
            def run(i):
                base = _base(i, chunk, n)
                for k in range(base, base + chunk):
                    pread(fd, BS, offs[k])
                return chunk
    else:
        append = latency.append
        if direct:
            def run(i):
                base = _base(i, chunk, n)
                t_prev = perf_counter_ns()
                for k in range(base, base + chunk):
                    preadv(fd, bufs, offs[k])
                    t = perf_counter_ns()
                    append(t - t_prev)
                    t_prev = t
                return chunk
        else:
            def run(i):
                base = _base(i, chunk, n)
                t_prev = perf_counter_ns()
                for k in range(base, base + chunk):
                    pread(fd, BS, offs[k])
                    t = perf_counter_ns()
                    append(t - t_prev)
                    t_prev = t
                return chunk

    return run, lambda: None


def thread_pool(fd: int, offs: array.array, depth: int = THREADS, direct: bool = False, *,
                latency: Optional[list] = None, per_thread: int = 16):
    """A ``concurrent.futures.ThreadPoolExecutor`` of ``depth`` threads; a
    chunk is ``depth`` tasks, each a loop of ``per_thread`` ``os.preadv``
    calls into its own aligned buffer, so up to ``depth`` reads are in flight.
    The threads are started before ``run`` is first called.
    ``latency``: each thread's time per read (waiting for the GIL included)."""
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=depth, thread_name_prefix="fastio-bench")
    bufs = [[aligned_buffer(BS)] for _ in range(depth)]
    chunk = depth * per_thread
    n = len(offs)
    preadv = os.preadv

    def task(lo, slot):
        b = bufs[slot]
        if latency is None:
            for k in range(lo, lo + per_thread):
                preadv(fd, b, offs[k])
            return
        local = []
        append = local.append
        t_prev = perf_counter_ns()
        for k in range(lo, lo + per_thread):
            preadv(fd, b, offs[k])
            t = perf_counter_ns()
            append(t - t_prev)
            t_prev = t
        latency.extend(local)

    # Start every worker now (the pool starts threads lazily, one per submit
    # that finds no idle worker), so that no timed chunk pays for it.
    barrier = threading.Barrier(depth + 1)
    futures = [pool.submit(barrier.wait, 10) for _ in range(depth)]
    barrier.wait(10)
    concurrent.futures.wait(futures)

    def run(i):
        base = _base(i, chunk, n)
        fs = [pool.submit(task, base + j * per_thread, j) for j in range(depth)]
        for f in fs:
            f.result()
        return chunk

    return run, lambda: pool.shutdown(wait=True)


def _check_results(results: array.array, count: int) -> None:
    if results.count(BS) != count:
        bad = next(r for r in results[:count] if r != BS)
        raise OSError(-bad if bad < 0 else errno.EIO, f"a {BS}-byte read returned {bad}")


def ring_batch(mod, fd: int, offs: array.array, depth: int = DEPTH, direct: bool = False, *,
               chunk: Optional[int] = None, latency: Optional[list] = None):
    """io_uring's batch path: ``Ring.read_batch`` of ``chunk`` offsets per
    call, ``depth`` in flight. ``latency``: per call, time * depth / chunk
    (Little's law: the mean time a read spent in flight in that call)."""
    return _batch(mod.Ring(max(depth, 8)), fd, offs, depth, chunk, latency)


def aio_batch(mod, fd: int, offs: array.array, depth: int = DEPTH, direct: bool = True, *,
              chunk: Optional[int] = None, latency: Optional[list] = None):
    """Linux AIO's batch path: ``Context.read_batch``, as ``ring_batch``."""
    return _batch(mod.Context(max(depth, 8)), fd, offs, depth, chunk, latency)


def _batch(obj, fd, offs, depth, chunk, latency):
    try:
        chunk = chunk or max(depth * 64, 1024)
        n = len(offs)
        buf = aligned_buffer(chunk * BS)
        results = array.array("i", bytes(4 * chunk))
        mv = memoryview(offs)
        read_batch = obj.read_batch
    except BaseException:
        obj.close()
        raise

    if latency is None:
        def run(i):
            base = _base(i, chunk, n)
            read_batch(fd, buf, mv[base:base + chunk], BS, results, depth=depth)
            _check_results(results, chunk)
            return chunk
    else:
        scale = depth / chunk

        def run(i):
            base = _base(i, chunk, n)
            t0 = perf_counter_ns()
            read_batch(fd, buf, mv[base:base + chunk], BS, results, depth=depth)
            latency.append(round((perf_counter_ns() - t0) * scale))
            _check_results(results, chunk)
            return chunk

    return run, obj.close


def ring_per_op(mod, fd: int, offs: array.array, depth: int, direct: bool = False):
    """One ``prep_read`` and ``submit`` per read, ``wait(1)`` for completions,
    each refilling its slot: ``depth`` in flight (see ``_per_op``)."""
    ring = mod.Ring(max(depth, 8))
    buf = aligned_buffer(depth * BS)
    views = [buf[j * BS:(j + 1) * BS] for j in range(depth)]
    return _per_op(ring, ring.prep_read, ring.wait, views, fd, offs, depth)


def aio_per_op(mod, fd: int, offs: array.array, depth: int, direct: bool = True):
    """As ``ring_per_op`` with ``Context.prep_pread``, ``submit`` and
    ``getevents(1)``."""
    ctx = mod.Context(max(depth, 8))
    buf = aligned_buffer(depth * BS)
    views = [buf[j * BS:(j + 1) * BS] for j in range(depth)]
    return _per_op(ctx, ctx.prep_pread, ctx.getevents, views, fd, offs, depth)


def _per_op(obj, prep, wait, views, fd, offs, depth):
    """fio's loop (its default ``iodepth_batch_submit=1``): each read is
    submitted as soon as it is prepared, so after a burst of completions the
    device gets the first new read at once instead of after the whole
    refill (bench/RESULTS.md, issue 12). ``depth`` reads stay in flight
    from the first call to ``close()``, which reaps them: a chunk boundary
    does not drain the queue."""
    n = len(offs)
    chunk = max(depth * 16, 256)
    submit = obj.submit
    state = {"k": 0, "filled": False}

    def run(i):
        k = state["k"]
        if not state["filled"]:
            state["filled"] = True
            for j in range(depth):
                prep(fd, views[j], offs[k % n], user_data=j)
                submit()
                k += 1
        done = 0
        while done < chunk:
            for c in wait(1):
                done += 1
                if c.res != BS:
                    raise OSError(-c.res if c.res < 0 else errno.EIO, f"read returned {c.res}")
                prep(fd, views[c.user_data], offs[k % n], user_data=c.user_data)
                submit()
                k += 1
        state["k"] = k
        return done

    def close():
        obj.close()     # cancels and reaps what is still in flight
        del views[:]

    return run, close


# ----------------------------------------------------------------------------- where


_NO_DIRECT_FS = ("tmpfs", "ramfs", "devtmpfs", "proc", "sysfs", "overlay", "fuse", "9p")


def fs_type(path: str) -> str:
    """The filesystem type of the mount holding path ("?" when unknown)."""
    path = os.path.realpath(path)
    best, kind = "", "?"
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) < 3:
                    continue
                mnt = parts[1].replace("\\040", " ")
                if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best):
                    best, kind = mnt, parts[2]
    except OSError:
        pass
    return kind


def direct_io_problem(directory: str) -> Optional[str]:
    """None when 4 KiB O_DIRECT reads bypass the page cache in directory; else why not."""
    kind = fs_type(directory)
    if kind in ("tmpfs", "ramfs"):
        return (f"{directory} is on {kind}, where O_DIRECT does not bypass the page cache; "
                "use --dir on a disk filesystem")
    fd, path = tempfile.mkstemp(prefix="fastio-bench-probe-", dir=directory)
    try:
        os.unlink(path)
        os.pwrite(fd, bytes(2 * BS), 0)
        os.fsync(fd)
        try:
            dfd = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_DIRECT)
        except OSError as exc:
            return f"{directory} ({kind}) refuses O_DIRECT: {exc.strerror}"
        try:
            align = dio_alignment(dfd)
            if align == (0, 0):
                return f"{directory} ({kind}) does not do direct IO (statx reports no O_DIRECT alignment)"
            if align is not None and (align[0] > BS or align[1] > BS):
                return f"{directory} ({kind}) needs O_DIRECT alignment {align}, above {BS} bytes"
            try:
                os.preadv(dfd, [aligned_buffer(BS)], BS)
            except OSError as exc:
                return f"a {BS}-byte O_DIRECT read in {directory} ({kind}) failed: {exc.strerror}"
        finally:
            os.close(dfd)
    finally:
        os.close(fd)
    return None


def choose_directory(options: Options) -> tuple[str, Optional[str]]:
    """(directory, why O_DIRECT cannot be measured there or None). --dir if
    given; else the temporary directory, or /var/tmp when only that takes O_DIRECT."""
    if options.directory:
        return options.directory, direct_io_problem(options.directory)
    first = tempfile.gettempdir()
    why = direct_io_problem(first)
    if why is None:
        return first, None
    for other in ("/var/tmp",):
        if os.path.realpath(other) != os.path.realpath(first) and os.path.isdir(other) \
                and os.access(other, os.W_OK | os.X_OK):
            if direct_io_problem(other) is None:
                return other, None
    return first, why


# ----------------------------------------------------------------------------- the part


@dataclass
class Config:
    size: int          # file size, bytes
    rounds: int        # interleaved samples per row
    seconds: float     # per sample
    depth: int = DEPTH
    threads: int = THREADS
    latency_seconds: float = 0.05  # per row, in the latency pass
    nofs: int = 1 << 16  # random offsets (reused in turn)
    batch_chunk: int = 32 * DEPTH  # reads per read_batch call (each call ends with its queue drained)


def config(options: Options) -> Config:
    if options.quick:
        cfg = Config(size=64 << 20, rounds=2, seconds=0.08, latency_seconds=0.04)
    else:
        cfg = Config(size=256 << 20, rounds=3, seconds=0.22, latency_seconds=0.1)
    if options.rounds is not None:
        cfg.rounds = options.rounds
    if options.duration is not None:
        cfg.seconds = options.duration / cfg.rounds
    return cfg


def _backends(options: Options) -> list[tuple[str, object, object, Optional[str]]]:
    """(name, uring module, aio module, why not) per backend measured."""
    names = [options.backend] if options.backend else ["c", "pure"]
    out = []
    for name in names:
        try:
            u = importlib.import_module(f"fastio._{name}.uring")
            a = importlib.import_module(f"fastio._{name}.aio")
        except ImportError as exc:
            out.append((name, None, None, f"the {name} backend does not import: {exc}"))
        else:
            out.append((name, u, a, None))
    return out


PAGE_CACHE = "page cache (file warm)"
DIRECT = "O_DIRECT (no cache)"


@dataclass
class _Spec:
    group: str
    name: str
    kind: str
    make: Optional[Callable]  # (latency) -> (run, close)
    skipped: Optional[str] = None
    backend: Optional[str] = None
    external: Optional[Callable] = None  # (seconds) -> fio.Sample: a row another program measures

    @property
    def runs(self) -> bool:
        return self.make is not None or self.external is not None

    def skip(self, why: str) -> None:
        self.make = self.external = None
        self.skipped = why


def _specs(cfg: Config, options: Options, fd_buf: int, fd_dir: Optional[int], offs,
           why_not_direct: Optional[str]) -> list[_Spec]:
    specs = [
        _Spec(PAGE_CACHE, "os.pread", "blocking",
              lambda lat: pread_loop(fd_buf, offs, 1, False, latency=lat)),
        _Spec(PAGE_CACHE, "thread pool", "blocking",
              lambda lat: thread_pool(fd_buf, offs, cfg.threads, False, latency=lat)),
    ]
    backends = _backends(options)
    for name, u, _a, why in backends:
        label = f"uring buffered ({name})"
        why = why or (u.why_unavailable() if not u.available() else None)
        specs.append(_Spec(PAGE_CACHE, label, "asynchronous",
                           None if why else (lambda lat, u=u: ring_batch(u, fd_buf, offs, cfg.depth, False,
                                                                         chunk=cfg.batch_chunk, latency=lat)),
                           skipped=why, backend=name))
    direct = [
        _Spec(DIRECT, "os.pread", "blocking",
              lambda lat: pread_loop(fd_dir, offs, 1, True, latency=lat)),
        _Spec(DIRECT, "thread pool", "blocking",
              lambda lat: thread_pool(fd_dir, offs, cfg.threads, True, latency=lat)),
    ]
    for name, _u, a, why in backends:
        why = why or (a.why_unavailable() if not a.available() else None)
        direct.append(_Spec(DIRECT, f"aio O_DIRECT ({name})", "asynchronous",
                            None if why else (lambda lat, a=a: aio_batch(a, fd_dir, offs, cfg.depth, True,
                                                                         chunk=cfg.batch_chunk, latency=lat)),
                            skipped=why, backend=name))
    for name, u, _a, why in backends:
        why = why or (u.why_unavailable() if not u.available() else None)
        direct.append(_Spec(DIRECT, f"uring O_DIRECT ({name})", "asynchronous",
                            None if why else (lambda lat, u=u: ring_batch(u, fd_dir, offs, cfg.depth, True,
                                                                          chunk=cfg.batch_chunk, latency=lat)),
                            skipped=why, backend=name))
    path = f"/proc/{os.getpid()}/fd/{fd_dir}"   # the file has no name (see run())
    for engine, index in (("io_uring", 1), ("libaio", 2)):
        # the kernel interface as fastio's own probe finds it (fio would only fail)
        mods = [m[index] for m in backends if m[index] is not None]
        why = (fio.MISSING if not fio.available()
               else "the fastio backends do not import" if not mods
               else None if mods[0].available() else mods[0].why_unavailable())
        direct.append(_Spec(DIRECT, f"fio {engine}", "asynchronous", None, skipped=why,
                            external=None if why else
                            (lambda secs, engine=engine: fio.sample(path, engine, cfg.depth, True, secs))))
    if why_not_direct:
        for s in direct:
            s.skip(why_not_direct)
    return specs + direct


def steps(options: Options) -> int:
    """How many progress lines run() prints (for the [k/N] counter)."""
    from fastio._bench import syscount

    cfg = config(options)
    nback = 1 if options.backend else 2
    rows = 6 + 3 * nback
    return 1 + rows + (cfg.rounds - 1) + 1 + (1 if syscount.available() else 0)


def _pct(sorted_ns: list, q: float) -> float:
    return sorted_ns[min(len(sorted_ns) - 1, int(q * len(sorted_ns)))] / 1000.0


def _median(xs: list) -> float:
    s = sorted(xs)
    m = len(s) // 2
    return s[m] if len(s) % 2 else (s[m - 1] + s[m]) / 2


def run(options: Options, progress: Callable[[str], None]) -> Part:
    cfg = config(options)
    directory, why_not_direct = choose_directory(options)
    kind = fs_type(directory)
    problems: list[str] = []
    extra: dict = {"directory": directory, "filesystem": kind, "size": cfg.size, "block": BS,
                   "depth": cfg.depth, "threads": cfg.threads, "rounds": cfg.rounds,
                   "seconds_per_sample": cfg.seconds, "offsets": cfg.nofs, "seed": SEED,
                   "batch_chunk": cfg.batch_chunk, "o_direct": why_not_direct is None,
                   "o_direct_skip_reason": why_not_direct, "problems": problems}
    part = Part(
        name="files",
        title=(f"random {BS // 1024} KiB reads of a {cfg.size >> 20} MiB file in {directory} ({kind}), "
               f"depth {cfg.depth}"),
        baseline="os.pread",
        rows=[],
        method=_method(cfg),
        extra=extra,
    )
    st = os.statvfs(directory)
    free = st.f_bavail * st.f_frsize
    if free < cfg.size + (64 << 20):
        reason = f"{directory} has {free >> 20} MiB free; the file needs {cfg.size >> 20} MiB (+64 MiB spare)"
        progress("skipped: " + reason)
        part.rows = [Row.skip(s.name, s.kind, reason, "IOPS", group=s.group)
                     for s in _specs(cfg, options, -1, -1, None, None)]
        return part

    fd_buf = fd_dir = -1
    path = None
    t0 = time.perf_counter()
    progress(f"writing a {cfg.size >> 20} MiB file in {directory} ({kind})")
    try:
        fd, path = tempfile.mkstemp(prefix="fastio-bench-", suffix=".data", dir=directory)
        try:
            fill_fd(fd, cfg.size)
        finally:
            os.close(fd)
        fd_buf = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        if why_not_direct is None:
            try:
                fd_dir = os.open(path, os.O_RDONLY | os.O_DIRECT | os.O_CLOEXEC)
            except OSError as exc:
                why_not_direct = f"{directory} refuses O_DIRECT: {exc.strerror}"
        # Nameless from here on: nothing is left behind, whatever ends the run.
        os.unlink(path)
        path = None
        warm(fd_buf)
        offs = offsets(cfg.nofs, cfg.size // BS, SEED)
        extra["setup_s"] = time.perf_counter() - t0
        part.rows = _measure(cfg, options, progress, fd_buf, fd_dir, offs, why_not_direct, problems)
    finally:
        for f in (fd_buf, fd_dir):
            if f >= 0:
                os.close(f)
        if path is not None:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
    return part


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _measure(cfg, options, progress, fd_buf, fd_dir, offs, why_not_direct, problems) -> list[Row]:
    specs = _specs(cfg, options, fd_buf, fd_dir, offs, why_not_direct)
    data: dict[int, dict] = {i: {"iops": [], "cpu": [], "reads": [], "elapsed": [], "lat": []}
                             for i in range(len(specs))}
    active = [i for i, s in enumerate(specs) if s.runs]

    def sample(i: int) -> None:
        s = specs[i]
        d = data[i]
        if s.external is not None:
            got = s.external(cfg.seconds)
            d["cpu"].append(got.cpu_s)
            d["iops"].append(got.iops)
            d["reads"].append(got.reads)
            d["elapsed"].append(got.elapsed)
            d.setdefault("p99", []).append(got.p99_us)
            d.setdefault("mean", []).append(got.mean_us)
            return
        run_, close = s.make(None)
        try:
            c0 = _cpu()
            reads, elapsed = timed_reads(run_, cfg.seconds)
            d["cpu"].append(_cpu() - c0)
        finally:
            close()
        d["iops"].append(reads / elapsed)
        d["reads"].append(reads)
        d["elapsed"].append(elapsed)

    def latencies(i: int) -> None:
        lat: list = []
        run_, close = specs[i].make(lat)
        try:
            timed_reads(run_, cfg.latency_seconds)
        finally:
            close()
        data[i]["lat"] = lat

    for r in range(cfg.rounds):
        if r == 0:
            order = list(range(len(specs)))  # every row once, in order, skipped ones too
        else:
            active = [i for i in active if specs[i].runs]
            progress(f"round {r + 1}/{cfg.rounds} ({len(active)} rows)")
            shift = r % max(len(active), 1)
            order = active[shift:] + active[:shift]
        for i in order:
            s = specs[i]
            label = s.name + (" O_DIRECT" if s.group == DIRECT and "O_DIRECT" not in s.name else "")
            if not s.runs:
                if r == 0:
                    progress(f"{label}: skipped: {s.skipped}")
                continue
            if r == 0:
                progress(label)
            try:
                sample(i)
            except UnsupportedError as exc:
                s.skip(str(exc))
            except OSError as exc:
                if s.external is not None:
                    s.skip(f"failed: {exc}")   # another program's failure: the row says so, no fastio problem
                else:
                    problems.append(f"{s.group} / {s.name}: {type(exc).__name__}: {exc}")
                    s.skip(f"failed: {type(exc).__name__}: {exc}")
            except Exception as exc:  # noqa: BLE001 - reported, the other rows go on
                problems.append(f"{s.group} / {s.name}: {type(exc).__name__}: {exc}")
                s.skip(f"failed: {type(exc).__name__}: {exc}")

    # Latency in a pass of its own: reading the clock per read slows a loop down.
    progress("latency")
    for i, s in enumerate(specs):
        if s.make is None:
            continue
        try:
            latencies(i)
        except UnsupportedError as exc:
            s.skip(str(exc))
        except Exception as exc:  # noqa: BLE001
            problems.append(f"{s.group} / {s.name} (latency pass): {type(exc).__name__}: {exc}")
            s.skip(f"failed: {type(exc).__name__}: {exc}")

    counts = _count_syscalls(specs, progress)
    rows = []
    base = {s.group: i for i, s in enumerate(specs) if s.name == "os.pread" and s.make is not None}
    ref = next((i for i, s in enumerate(specs) if s.name == "fio io_uring" and s.runs), None)
    for i, s in enumerate(specs):
        d = data[i]
        if not s.runs or not d["iops"]:
            rows.append(Row.skip(s.name, s.kind, s.skipped or "not run", "IOPS", group=s.group,
                                 backend=s.backend))
            continue
        lat = sorted(d["lat"])
        per = "read" if s.name in ("os.pread", "thread pool") else "batch (Little's law)"
        ratio = None
        b = base.get(s.group)
        if b is not None and len(data[b]["iops"]) == len(d["iops"]):
            ratio = _median([x / y for x, y in zip(d["iops"], data[b]["iops"]) if y])
        vs_fio = None
        if ref is not None and s.group == DIRECT and len(data[ref]["iops"]) == len(d["iops"]):
            vs_fio = _median([x / y for x, y in zip(d["iops"], data[ref]["iops"]) if y])
        sc = counts.get(i)
        p99 = _pct(lat, 0.99) if lat else (_median(d["p99"]) if d.get("p99") else None)
        row = Row(
            name=s.name, kind=s.kind, value=_median(d["iops"]), unit="IOPS",
            p99_us=p99,
            cpu_s=sum(d["cpu"]),
            syscalls_per_op=sc[0] / sc[1] if sc else None,
            ratio=ratio,
            samples=list(d["iops"]),
            extra={
                "group": s.group, "backend": s.backend,
                "iops_samples": d["iops"], "reads_samples": d["reads"], "elapsed_samples": d["elapsed"],
                "cpu_s_samples": d["cpu"],
                "cpu_us_per_read": sum(d["cpu"]) / sum(d["reads"]) * 1e6,
                "vs_fio_io_uring": vs_fio,
                "mean_us": (sum(lat) / len(lat) / 1000.0 if lat
                            else _median(d["mean"]) if d.get("mean") else None),
                "latency": None if not lat else {
                    "per": per, "n": len(lat), "mean_us": sum(lat) / len(lat) / 1000.0,
                    "p50_us": _pct(lat, 0.5), "p90_us": _pct(lat, 0.9), "p99_us": _pct(lat, 0.99),
                    "max_us": lat[-1] / 1000.0,
                },
                "syscalls": None if not sc else {"count": sc[0], "reads": sc[1]},
            },
        )
        rows.append(row)
    return rows


def _count_syscalls(specs, progress) -> dict[int, tuple[int, int]]:
    """Per measured spec: (system calls, reads) over two chunks, counted in a
    pass of their own (a counter slows every system call down)."""
    from fastio._bench import syscount

    if not syscount.available():
        return {}
    progress("counting system calls")
    out = {}
    for i, s in enumerate(specs):
        if s.make is None:
            continue
        try:
            run_, close = s.make(None)
            try:
                run_(0)  # first touch outside the count
                with syscount.SyscallCounter() as sc:
                    reads = run_(1) + run_(2)
            finally:
                close()
        except OSError:
            continue
        out[i] = (sc.count, reads)
    return out


def _method(cfg: Config) -> str:
    return (
        f"One file of {cfg.size >> 20} MiB (8 MiB of random data repeated, written once through the "
        f"page cache and fsynced; unlinked right after opening, so nothing is left behind), {cfg.nofs} random "
        f"{BS}-byte-aligned offsets (seed {SEED}), the same sequence for every row. "
        f"Page cache rows read the file warm (read through once first); O_DIRECT rows open it "
        f"O_DIRECT and bypass the cache (each read goes to the device). "
        f"Rows run for {cfg.seconds:g} s each, {cfg.rounds} rounds interleaved (the order rotates); "
        f"value = median IOPS over the rounds; ratio = median over the rounds of row / os.pread of "
        f"the same group and round. "
        f"Latency comes from a pass of its own ({cfg.latency_seconds:g} s per row, after the rounds): "
        f"reading the clock per read would slow the loops down. "
        f"os.pread: one read at a time (os.pread; os.preadv into an aligned buffer for O_DIRECT); "
        f"latency per read, clock to clock (loop included). "
        f"thread pool: concurrent.futures with {cfg.threads} threads, each task {16} os.preadv "
        f"calls in a row; latency per read as each thread sees it (GIL waits included). "
        f"aio / uring: fastio.aio Context.read_batch / fastio.uring Ring.read_batch, "
        f"{cfg.batch_chunk} reads per call, {cfg.depth} in flight; latency per call by Little's "
        f"law (call time x {cfg.depth} / {cfg.batch_chunk}: the mean time a read spent in flight "
        f"in that call); p99 over calls. "
        f"fio io_uring / fio libaio (when fio is installed): fio reading the same file O_DIRECT, "
        f"one job, depth {cfg.depth}, its defaults otherwise (each request submitted as soon as it "
        f"is queued), for the same time per sample; IOPS, CPU and p99 (completion latency) as fio "
        f"reports them; vs_fio_io_uring in a row's extra: the median over the rounds of row / fio "
        f"io_uring. "
        f"CPU s: user+system time of this process (every thread) over the row's samples. "
        f"syscalls/op: raw_syscalls:sys_enter events of this process per read, counted over two "
        f"chunks in a separate pass (perf_event_open)."
    )
