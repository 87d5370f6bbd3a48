"""The ``selectors`` part of ``python -m fastio bench``: the stdlib
``selectors`` classes against fastio's compiled (``fastio._c``) and
pure-Python (``fastio._pure``) ones, ``select(0)`` with N fds registered and
K of them ready, and ``register`` + ``unregister`` of one socket among many.

The measuring core here is also what ``bench/selectors_bench.py`` runs (with
more sizes, every ready level, more rounds and its own tables and targets).

Method: every candidate of a case shares the same sockets and runs in
interleaved rounds (A B C, B C A, C A B, ...); each round times one batch of
calls per candidate, calibrated beforehand to take about the target batch
time, with ``time.perf_counter_ns()`` around a plain ``for`` loop (the loop's
few tens of ns included for everyone); the reported time is the median over
the rounds of batch time / calls. Ratios are paired: the median over the
rounds of baseline batch / candidate batch in the same round. GC is off while
timing; every candidate's result is checked before it is timed.
"""

from __future__ import annotations

import gc
import importlib
import os
import resource
import select
import selectors as std_selectors
import socket
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from fastio._bench._types import Options, Part, Row

EVENT_READ = std_selectors.EVENT_READ
FD_SETSIZE = 1024
perf_counter_ns = time.perf_counter_ns

CLASSES = ("EpollSelector", "PollSelector", "SelectSelector")


def implementations(backend: Optional[str] = None) -> tuple[list[tuple[str, Any]], dict[str, str]]:
    """([(name, selectors module)], {name: why it is missing}): the stdlib's,
    then fastio's for ``backend`` (both when None)."""
    impls: list[tuple[str, Any]] = [("stdlib", std_selectors)]
    missing: dict[str, str] = {}
    for name in ([backend] if backend else ["c", "pure"]):
        try:
            impls.append((f"fastio-{name}", importlib.import_module(f"fastio._{name}.selectors")))
        except ImportError as exc:
            missing[f"fastio-{name}"] = f"the {name} backend does not import: {exc}"
    return impls, missing


def raw_epoll_module(backend: Optional[str] = None):
    """fastio's compiled epoll module for the raw ``Epoll.poll`` reference, or None."""
    if backend == "pure":
        return None
    try:
        return importlib.import_module("fastio._c.epoll")
    except ImportError:
        return None


@dataclass
class Config:
    target_ns: int                # one timed batch takes about this long
    repeats: int                  # interleaved rounds per candidate
    impls: Optional[list] = None  # [(name, module)]; None: stdlib, fastio-c, fastio-pure
    raw_epoll: Any = "auto"       # module with Epoll for the "fastio Epoll.poll" reference; None: none
    levels: Optional[Callable[[int], list]] = None  # n -> [(label, k ready)]; None: ready_levels
    count_syscalls: bool = False  # also count system calls per call (syscount), in a pass of its own
    progress: Optional[Callable[[str], None]] = None  # told each case before it is measured
    missing: dict = field(default_factory=dict)  # impl name -> why it is not there

    def __post_init__(self) -> None:
        if self.impls is None:
            self.impls, self.missing = implementations()
        if self.raw_epoll == "auto":
            self.raw_epoll = raw_epoll_module()
        if self.levels is None:
            self.levels = ready_levels


# --------------------------------------------------------------------------- limits


def raise_nofile() -> tuple[int, int, int]:
    """Raise RLIMIT_NOFILE's soft limit to the hard limit; (old soft, new soft, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    new = soft
    if hard != resource.RLIM_INFINITY and soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            new = hard
        except (ValueError, OSError):
            pass
    return soft, new, hard


def open_fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


# --------------------------------------------------------------------------- timing


def calibrate(batch: Callable[[int], int], target_ns: int) -> int:
    """The number of calls per batch that takes about target_ns."""
    batch(1)  # warm-up
    loops = 1
    while True:
        elapsed = batch(loops)
        if elapsed >= target_ns // 4 or loops >= 1 << 22:
            break
        loops *= 4 if elapsed < target_ns // 64 else 2
    return max(1, round(loops * target_ns / max(elapsed, 1)))


def measure(cands: list[tuple[str, Callable[[int], int]]], target_ns: int, repeats: int,
            count_syscalls: bool = False) -> dict:
    """Interleaved batches; per candidate the per-call samples in microseconds
    (and, with count_syscalls, the system calls per call, counted afterwards)."""
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        loops = {name: calibrate(batch, target_ns) for name, batch in cands}
        samples: dict[str, list[float]] = {name: [] for name, _ in cands}
        n = len(cands)
        for r in range(repeats):
            shift = r % n
            for name, batch in cands[shift:] + cands[:shift]:
                samples[name].append(batch(loops[name]) / loops[name] / 1000.0)
        syscalls = _count(cands, loops) if count_syscalls else {}
    finally:
        if was_enabled:
            gc.enable()
    out = {}
    for name, xs in samples.items():
        q = statistics.quantiles(xs, n=4) if len(xs) >= 2 else [xs[0]] * 3
        med = statistics.median(xs)
        out[name] = {
            "median_us": med,
            "min_us": min(xs),
            "iqr_rel": (q[2] - q[0]) / med if med else 0.0,
            "loops": loops[name],
            "samples_us": xs,
            "syscalls_per_call": syscalls.get(name),
        }
    return out


def _count(cands, loops) -> dict[str, float]:
    from fastio._bench import syscount

    if not syscount.available():
        return {}
    out = {}
    for name, batch in cands:
        k = max(1, min(loops[name] // 4, 200))
        with syscount.SyscallCounter() as sc:
            batch(k)
        out[name] = sc.count / k
    return out


def select_batch(method, *args) -> Callable[[int], int]:
    if len(args) == 1:
        (a,) = args

        def batch(loops: int) -> int:
            rng = range(loops)
            t0 = perf_counter_ns()
            for _ in rng:
                method(a)
            return perf_counter_ns() - t0
    else:
        a, b = args

        def batch(loops: int) -> int:
            rng = range(loops)
            t0 = perf_counter_ns()
            for _ in rng:
                method(a, b)
            return perf_counter_ns() - t0

    return batch


def regunreg_batch(sel, sock) -> Callable[[int], int]:
    reg = sel.register
    unreg = sel.unregister

    def batch(loops: int) -> int:
        rng = range(loops)
        t0 = perf_counter_ns()
        for _ in rng:
            reg(sock, EVENT_READ)
            unreg(sock)
        return perf_counter_ns() - t0

    return batch


def paired_ratio(row: dict, a: str, b: str) -> Optional[float]:
    """Median over the rounds of a's batch time / b's batch time in the same round.

    The candidates run interleaved, so the two batches of one round met about the
    same machine noise; this is steadier than the ratio of the two medians."""
    ra, rb = row["results"].get(a), row["results"].get(b)
    if ra is None or rb is None:
        return None
    return statistics.median(x / y for x, y in zip(ra["samples_us"], rb["samples_us"]) if y)


# --------------------------------------------------------------------------- fixtures


class Pairs:
    """N socket pairs; readers[i] is registered, writers[i] makes it readable."""

    def __init__(self, n: int):
        self.readers: list[socket.socket] = []
        self.writers: list[socket.socket] = []
        self.ready: set[int] = set()  # indices currently readable
        try:
            for _ in range(n):
                a, b = socket.socketpair()
                self.readers.append(a)
                self.writers.append(b)
        except BaseException:
            self.close()
            raise

    def set_ready(self, indices: set[int]) -> None:
        for i in self.ready - indices:
            self.readers[i].recv(16)
        for i in indices - self.ready:
            self.writers[i].send(b"x")
        self.ready = set(indices)

    def ready_fds(self) -> set[int]:
        return {self.readers[i].fileno() for i in self.ready}

    def max_reader_fd(self) -> int:
        return max((s.fileno() for s in self.readers), default=-1)

    def close(self) -> None:
        for s in self.readers + self.writers:
            s.close()
        self.readers.clear()
        self.writers.clear()
        self.ready = set()


def spread(n: int, k: int) -> set[int]:
    """k indices spread evenly over range(n)."""
    if k >= n:
        return set(range(n))
    return {min(n - 1, int((j + 0.5) * n / k)) for j in range(k)}


def ready_levels(n: int) -> list[tuple[str, int]]:
    """1 fd, 10% and 100% of n ready (duplicates dropped)."""
    levels: list[tuple[str, int]] = []
    for label, k in (("1", 1), ("10%", max(1, n // 10)), ("100%", n)):
        if all(k != seen for _, seen in levels):
            levels.append((label, k))
    return levels


def ten_percent(n: int) -> list[tuple[str, int]]:
    """Only 10% of n ready (the bench's case)."""
    return [("10%", max(1, n // 10))]


# --------------------------------------------------------------------------- checks


def check_selector_result(result, ready_fds: set[int]) -> Optional[str]:
    """None if select(0) reported exactly the ready fds as EVENT_READ."""
    try:
        fds = [key.fd for key, ev in result]
        if len(fds) != len(set(fds)):
            return f"duplicate fds in result ({len(fds)} entries, {len(set(fds))} distinct)"
        if set(fds) != ready_fds:
            return f"got {len(fds)} fds, expected {len(ready_fds)} ({sorted(set(fds) ^ ready_fds)[:5]} differ)"
        bad = [(key.fd, ev) for key, ev in result if ev != EVENT_READ]
        if bad:
            return f"events != EVENT_READ: {bad[:3]}"
        if any(not isinstance(key, std_selectors.SelectorKey) for key, _ in result):
            return "a key is not a selectors.SelectorKey"
    except Exception as exc:  # noqa: BLE001 - a report, not a crash
        return f"malformed result: {exc!r}"
    return None


def check_raw_result(result, ready_fds: set[int]) -> Optional[str]:
    fds = [fd for fd, ev in result]
    if set(fds) != ready_fds or len(fds) != len(ready_fds):
        return f"got {len(fds)} fds, expected {len(ready_fds)}"
    if any(not ev & select.EPOLLIN for _, ev in result):
        return "an event lacks EPOLLIN"
    return None


# --------------------------------------------------------------------------- benchmarks
#
# Each returns a list of row dicts: {"bench": "select" | "register+unregister",
# "class": ..., "n" / "others": ..., "results": {candidate: measure()'s entry},
# "wrong": {candidate: what was wrong}}; a case that could not run is a row with
# "skipped": reason (and no "results"), also described in `notes`.


def _progress(cfg: Config, text: str) -> None:
    if cfg.progress is not None:
        cfg.progress(text)


def bench_select(sizes, cfg: Config, report, notes, problems) -> list[dict]:
    rows = []
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    for n in sizes:
        need = open_fd_count() + 2 * n + 16
        if need > soft:
            reason = f"needs about {need} fds (2 per socket pair + open + selectors), RLIMIT_NOFILE is {soft}"
            notes.append(f"N={n} skipped: {reason}")
            for cls in CLASSES:
                for label, k in cfg.levels(n):
                    _progress(cfg, f"{cls}.select(0) N={n} ready={k}: skipped")
                    rows.append({"bench": "select", "class": cls, "n": n, "ready": k, "ready_label": label,
                                 "skipped": reason})
            continue
        pairs = Pairs(n)
        try:
            for cls in CLASSES:
                if cls == "SelectSelector":
                    top = pairs.max_reader_fd()
                    if top >= FD_SETSIZE:
                        reason = f"highest registered fd {top} >= FD_SETSIZE={FD_SETSIZE}"
                        notes.append(f"SelectSelector N={n} skipped: {reason}")
                        for label, k in cfg.levels(n):
                            _progress(cfg, f"{cls}.select(0) N={n} ready={k}: skipped (FD_SETSIZE)")
                            rows.append({"bench": "select", "class": cls, "n": n, "ready": k,
                                         "ready_label": label, "skipped": reason})
                        continue
                rows += bench_select_class(cls, n, pairs, cfg, report, problems)
        finally:
            pairs.close()
    return rows


def bench_select_class(cls, n, pairs, cfg: Config, report, problems) -> list[dict]:
    sels = {}
    raws = {}
    rows = []
    try:
        for impl, mod in cfg.impls:
            sels[impl] = getattr(mod, cls)()
        if cls == "EpollSelector":
            raws["select.epoll.poll"] = select.epoll()
            if cfg.raw_epoll is not None:
                raws["fastio Epoll.poll"] = cfg.raw_epoll.Epoll()
        for impl, sel in list(sels.items()):
            try:
                for s in pairs.readers:
                    sel.register(s, EVENT_READ)
            except Exception as exc:  # noqa: BLE001
                problems.append(f"{cls} {impl} N={n}: register raised {exc!r}")
                sel.close()
                del sels[impl]
        for ep in raws.values():
            for s in pairs.readers:
                ep.register(s.fileno(), select.EPOLLIN)
        for label, k in cfg.levels(n):
            _progress(cfg, f"{cls}.select(0) N={n} ready={k}")
            pairs.set_ready(spread(n, k))
            want = pairs.ready_fds()
            cands = []
            wrong = {}
            for impl, sel in sels.items():
                try:
                    err = check_selector_result(sel.select(0), want)
                except Exception as exc:  # noqa: BLE001
                    err = f"select(0) raised {exc!r}"
                if err:
                    problems.append(f"{cls} {impl} N={n} ready={k}: {err}")
                    wrong[impl] = err
                    if "raised" in err:
                        continue
                cands.append((impl, select_batch(sel.select, 0)))
            for name, ep in raws.items():
                err = check_raw_result(ep.poll(0, max(n, 1)), want)
                if err:
                    problems.append(f"{name} N={n} ready={k}: {err}")
                    wrong[name] = err
                cands.append((name, select_batch(ep.poll, 0, max(n, 1))))
            res = measure(cands, cfg.target_ns, cfg.repeats, cfg.count_syscalls)
            row = {"bench": "select", "class": cls, "n": n, "ready": k, "ready_label": label,
                   "results": res, "wrong": wrong}
            rows.append(row)
            report(row)
    finally:
        for sel in sels.values():
            sel.close()
        for ep in raws.values():
            ep.close()
    return rows


def bench_regunreg(others, cfg: Config, report, notes, problems) -> list[dict]:
    rows = []
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    npairs = (others + 1) // 2
    if open_fd_count() + 2 * npairs + 16 > soft:
        reason = f"{others} other fds do not fit under RLIMIT_NOFILE={soft}"
        notes.append(f"register+unregister skipped: {reason}")
        for cls in CLASSES:
            _progress(cfg, f"{cls} register+unregister: skipped")
            rows.append({"bench": "register+unregister", "class": cls, "others": others, "skipped": reason})
        return rows
    # Both ends of each pair are registered, so `others` fds take others/2 pairs
    # and stay below FD_SETSIZE for SelectSelector when others is about 1000.
    pairs = Pairs(npairs)
    test_a, test_b = socket.socketpair()
    try:
        other_socks = (pairs.readers + pairs.writers)[:others]
        for cls in CLASSES:
            _progress(cfg, f"{cls} register+unregister, {len(other_socks)} others")
            if cls == "SelectSelector":
                top = max([s.fileno() for s in other_socks] + [test_a.fileno()])
                if top >= FD_SETSIZE:
                    notes.append(
                        f"register+unregister SelectSelector: highest fd {top} >= FD_SETSIZE; "
                        "timed anyway (no select() call is made)"
                    )
            sels = {}
            try:
                for impl, mod in cfg.impls:
                    sel = getattr(mod, cls)()
                    sels[impl] = sel
                    for s in other_socks:
                        sel.register(s, EVENT_READ)
                cands = []
                for impl, sel in sels.items():
                    try:
                        key = sel.register(test_a, EVENT_READ)
                        ok = key.fd == test_a.fileno() and sel.get_key(test_a) == key
                        if sel.unregister(test_a) != key or test_a in sel.get_map():
                            ok = False
                        if len(sel.get_map()) != len(other_socks):
                            ok = False
                        if not ok:
                            problems.append(f"register+unregister {cls} {impl}: inconsistent key/map")
                    except Exception as exc:  # noqa: BLE001
                        problems.append(f"register+unregister {cls} {impl}: raised {exc!r}")
                        continue
                    cands.append((impl, regunreg_batch(sel, test_a)))
                if cls == "EpollSelector":
                    # The floor: the two epoll_ctl syscalls alone, through the
                    # stdlib's select.epoll, on a set holding the same fds.
                    raw = select.epoll()
                    sels["epoll_ctl pair"] = raw
                    for s in other_socks:
                        raw.register(s.fileno(), select.EPOLLIN)
                    cands.append(("epoll_ctl pair", regunreg_batch(raw, test_a.fileno())))
                res = measure(cands, cfg.target_ns, cfg.repeats, cfg.count_syscalls)
                for impl, sel in sels.items():
                    if impl != "epoll_ctl pair" and len(sel.get_map()) != len(other_socks):
                        problems.append(f"register+unregister {cls} {impl}: map size changed after timing")
                row = {"bench": "register+unregister", "class": cls, "others": len(other_socks), "results": res}
                rows.append(row)
                report(row)
            finally:
                for sel in sels.values():
                    sel.close()
    finally:
        test_a.close()
        test_b.close()
        pairs.close()
    return rows


# --------------------------------------------------------------------------- the part


@dataclass
class Plan:
    sizes: list[int]
    others: int
    repeats: int
    batch_ms: float


def plan(options: Options) -> Plan:
    if options.quick:
        p = Plan(sizes=[100], others=100, repeats=7, batch_ms=5.0)
    else:
        p = Plan(sizes=[100, 1000], others=1000, repeats=13, batch_ms=10.0)
    if options.rounds is not None:
        p.repeats = options.rounds
    if options.duration is not None:
        p.batch_ms = options.duration * 1000.0 / p.repeats
    return p


def steps(options: Options) -> int:
    """How many progress lines run() prints (for the [k/N] counter)."""
    p = plan(options)
    return len(p.sizes) * len(CLASSES) + len(CLASSES)


def _group(row: dict) -> str:
    if row["bench"] == "select":
        label = row["ready_label"]
        ready = f"{row['ready']} ready" + (f" ({label})" if label != "1" else "")
        return f"{row['class']}.select(0), {row['n']} registered, {ready}"
    return f"{row['class']} register + unregister, {row['others']} others registered"


def _backend_of(name: str) -> Optional[str]:
    if name.startswith("fastio-"):
        return name[len("fastio-"):]
    if name == "fastio Epoll.poll":
        return "c"
    return None


def run(options: Options, progress: Callable[[str], None]) -> Part:
    from fastio._bench import syscount

    p = plan(options)
    impls, missing = implementations(options.backend)
    cfg = Config(target_ns=int(p.batch_ms * 1e6), repeats=p.repeats, impls=impls,
                 raw_epoll=raw_epoll_module(options.backend), levels=ten_percent,
                 count_syscalls=syscount.available(), progress=progress, missing=missing)
    notes: list[str] = []
    problems: list[str] = []
    old_soft, soft, hard = raise_nofile()
    fds_before = open_fd_count()
    t0 = time.monotonic()
    try:
        raw_rows = bench_select(p.sizes, cfg, lambda row: None, notes, problems)
        raw_rows += bench_regunreg(p.others, cfg, lambda row: None, notes, problems)
    finally:
        if soft != old_soft:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (old_soft, hard))
            except (ValueError, OSError):
                pass
    fds_after = open_fd_count()
    if fds_after != fds_before:
        problems.append(f"open fds before {fds_before}, after {fds_after}: something was not closed")

    rows: list[Row] = []
    impl_names = [name for name, _ in impls]
    for r in raw_rows:
        group = _group(r)
        if "skipped" in r:
            for name in impl_names:
                rows.append(Row.skip(name, "multiplexing", r["skipped"], "us", group=group,
                                     backend=_backend_of(name)))
            continue
        for name, res in r["results"].items():
            rows.append(Row(
                name=name, kind="multiplexing", value=res["median_us"], unit="us",
                syscalls_per_op=res["syscalls_per_call"], samples=list(res["samples_us"]),
                ratio=paired_ratio(r, "stdlib", name) if "stdlib" in r["results"] else None,
                extra={"group": group, "backend": _backend_of(name), "bench": r["bench"], "class": r["class"],
                       "n": r.get("n"), "ready": r.get("ready"), "others": r.get("others"),
                       "min_us": res["min_us"], "iqr_rel": res["iqr_rel"], "loops": res["loops"],
                       "samples_us": res["samples_us"], "wrong": r.get("wrong", {}).get(name)},
            ))
        for name, why in missing.items():
            rows.append(Row.skip(name, "multiplexing", why, "us", group=group, backend=_backend_of(name)))

    method = (
        f"select(0) of each selectors class with N socket pairs registered (one end each, EVENT_READ, "
        f"level-triggered) and 10% of them made readable once; register(sock) + unregister(sock) of one "
        f"socket while {p.others} other fds are registered (time per pair of calls). Next to the epoll "
        f"selectors: the raw select.epoll.poll and fastio Epoll.poll (and the epoll_ctl pair for "
        f"register+unregister) as floors. {p.repeats} interleaved rounds of ~{p.batch_ms:g} ms batches per "
        f"candidate, the start rotating; value = median per-call time (us, lower is better); ratio = "
        f"median over the rounds of stdlib batch / this batch (> 1: faster than the stdlib). Results "
        f"are checked before timing. GC off while timing. syscalls/op: system calls per call, counted "
        f"over up to 200 calls in a pass after the timing. SelectSelector is skipped where an fd "
        f"would reach FD_SETSIZE ({FD_SETSIZE})."
    )
    return Part(
        name="selectors",
        title="select(0) and register+unregister, stdlib vs fastio",
        baseline="stdlib",
        rows=rows,
        method=method,
        extra={"sizes": p.sizes, "others": p.others, "repeats": p.repeats, "batch_ms": p.batch_ms,
               "notes": notes, "problems": problems, "elapsed_s": time.monotonic() - t0,
               "rlimit_nofile": {"soft_before": old_soft, "soft": soft, "hard": hard}},
    )
