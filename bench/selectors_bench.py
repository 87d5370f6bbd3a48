#!/usr/bin/env python3
"""Side-by-side benchmark of the stdlib ``selectors`` classes against fastio's
compiled (``fastio._c``) and pure-Python (``fastio._pure``) backends.

One process, one run: every candidate of a case is timed in interleaved
batches (A B C, B C A, C A B, ...), and the median per-call time of the batches
is reported, with the ratio stdlib / fastio-c.

Measured:

* ``select(0)`` of ``EpollSelector``, ``PollSelector`` and ``SelectSelector``
  with N socket pairs registered (one end each, ``EVENT_READ``) and 1 fd, 10%
  and 100% of them readable (one byte written into the peer once; the
  registrations are level-triggered, so they stay ready). The raw
  ``select.epoll().poll(0, N)`` and ``fastio._c.epoll.Epoll().poll(0, N)`` are
  timed next to the epoll selectors as lower references.
* ``register(sock, EVENT_READ)`` + ``unregister(sock)`` of one socket while
  ``--others`` other fds are registered, per selector class.

Stdlib only; Linux only. Run ``python3 bench/selectors_bench.py --help``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import resource
import select
import selectors as std_selectors
import socket
import statistics
import sys
import time
from typing import Callable

import fastio
import fastio._c.epoll as c_epoll
import fastio._c.selectors as c_selectors
import fastio._pure.selectors as pure_selectors

EVENT_READ = std_selectors.EVENT_READ
FD_SETSIZE = 1024
perf_counter_ns = time.perf_counter_ns

CLASSES = ("EpollSelector", "PollSelector", "SelectSelector")
IMPLS = (("stdlib", std_selectors), ("fastio-c", c_selectors), ("fastio-pure", pure_selectors))


# --------------------------------------------------------------------------- machine


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def stale_build_warning() -> str | None:
    """A warning if fastio._c.selectors' .so is older than its .pyx (not rebuilt)."""
    so = c_selectors.__file__
    pyx = os.path.join(os.path.dirname(so), "selectors.pyx")
    try:
        if os.path.getmtime(pyx) > os.path.getmtime(so):
            return f"WARNING: {pyx} is newer than {os.path.basename(so)}: the extension may be stale"
    except OSError:
        pass
    return None


def machine_info() -> dict:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "python": sys.version.replace("\n", " "),
        "implementation": platform.python_implementation(),
        "kernel": platform.release(),
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "cpus_usable": usable,
        "fastio": fastio.__version__,
        "fastio_c_selectors": c_selectors.__file__,
        "loadavg": [f"{x:.2f}" for x in os.getloadavg()],
    }


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


def measure(cands: list[tuple[str, Callable[[int], int]]], target_ns: int, repeats: int) -> dict:
    """Interleaved batches; per candidate the per-call samples in microseconds."""
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
        }
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
    levels: list[tuple[str, int]] = []
    for label, k in (("1", 1), ("10%", max(1, n // 10)), ("100%", n)):
        if all(k != seen for _, seen in levels):
            levels.append((label, k))
    return levels


# --------------------------------------------------------------------------- checks


def check_selector_result(result, ready_fds: set[int]) -> str | None:
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


def check_raw_result(result, ready_fds: set[int]) -> str | None:
    fds = [fd for fd, ev in result]
    if set(fds) != ready_fds or len(fds) != len(ready_fds):
        return f"got {len(fds)} fds, expected {len(ready_fds)}"
    if any(not ev & select.EPOLLIN for _, ev in result):
        return "an event lacks EPOLLIN"
    return None


# --------------------------------------------------------------------------- benchmarks


def bench_select(sizes, cfg, report, notes, problems) -> list[dict]:
    rows = []
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    for n in sizes:
        need = open_fd_count() + 2 * n + 16
        if need > soft:
            notes.append(
                f"N={n} skipped: needs about {need} fds (2 per socket pair + open + selectors), "
                f"RLIMIT_NOFILE is {soft}"
            )
            continue
        pairs = Pairs(n)
        try:
            for cls in CLASSES:
                if cls == "SelectSelector":
                    top = pairs.max_reader_fd()
                    if top >= FD_SETSIZE:
                        notes.append(
                            f"SelectSelector N={n} skipped: highest registered fd {top} >= FD_SETSIZE={FD_SETSIZE}"
                        )
                        continue
                rows += bench_select_class(cls, n, pairs, cfg, report, problems)
        finally:
            pairs.close()
    return rows


def bench_select_class(cls, n, pairs, cfg, report, problems) -> list[dict]:
    sels = {}
    raws = {}
    rows = []
    try:
        for impl, mod in IMPLS:
            sels[impl] = getattr(mod, cls)()
        if cls == "EpollSelector":
            raws["select.epoll.poll"] = select.epoll()
            raws["fastio Epoll.poll"] = c_epoll.Epoll()
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
        for label, k in ready_levels(n):
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
            res = measure(cands, cfg.target_ns, cfg.repeats)
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


def bench_regunreg(others, cfg, report, notes, problems) -> list[dict]:
    rows = []
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    npairs = (others + 1) // 2
    if open_fd_count() + 2 * npairs + 16 > soft:
        notes.append(f"register+unregister skipped: {others} other fds do not fit under RLIMIT_NOFILE={soft}")
        return rows
    # Both ends of each pair are registered, so `others` fds take others/2 pairs
    # and stay below FD_SETSIZE for SelectSelector when others is about 1000.
    pairs = Pairs(npairs)
    test_a, test_b = socket.socketpair()
    try:
        other_socks = (pairs.readers + pairs.writers)[:others]
        for cls in CLASSES:
            if cls == "SelectSelector":
                top = max([s.fileno() for s in other_socks] + [test_a.fileno()])
                if top >= FD_SETSIZE:
                    notes.append(
                        f"register+unregister SelectSelector: highest fd {top} >= FD_SETSIZE; "
                        "timed anyway (no select() call is made)"
                    )
            sels = {}
            try:
                for impl, mod in IMPLS:
                    sel = getattr(mod, cls)()
                    for s in other_socks:
                        sel.register(s, EVENT_READ)
                    sels[impl] = sel
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
                res = measure(cands, cfg.target_ns, cfg.repeats)
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


# --------------------------------------------------------------------------- output


def fmt_us(v: float | None) -> str:
    if v is None:
        return "-"
    if v < 10:
        return f"{v:.2f}"
    if v < 1000:
        return f"{v:.1f}"
    return f"{v:.0f}"


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def paired_ratio(row, a: str, b: str) -> float | None:
    """Median over the rounds of a's batch time / b's batch time in the same round.

    The candidates run interleaved, so the two batches of one round met about the
    same machine noise; this is steadier than the ratio of the two medians."""
    ra, rb = row["results"].get(a), row["results"].get(b)
    if ra is None or rb is None:
        return None
    return statistics.median(x / y for x, y in zip(ra["samples_us"], rb["samples_us"]) if y)


def fmt_ratio(r: float | None) -> str:
    return "-" if r is None else f"{r:.2f}x"


def med(row, name):
    r = row["results"].get(name)
    return None if r is None else r["median_us"]


def select_table(rows, cls) -> list[str]:
    rows = [r for r in rows if r["bench"] == "select" and r["class"] == cls]
    if not rows:
        return []
    epoll = cls == "EpollSelector"
    head = ["N", "ready", "stdlib", "fastio-c", "fastio-pure"]
    if epoll:
        head += ["select.epoll.poll", "fastio Epoll.poll"]
    head += ["std/c", "std/pure"]
    if epoll:
        head += ["c/Epoll.poll"]
    body = []
    for r in rows:
        line = [str(r["n"]), f'{r["ready"]} ({r["ready_label"]})' if r["ready_label"] != "1" else "1"]
        line += [fmt_us(med(r, x)) for x in ("stdlib", "fastio-c", "fastio-pure")]
        if epoll:
            line += [fmt_us(med(r, x)) for x in ("select.epoll.poll", "fastio Epoll.poll")]
        line += [fmt_ratio(paired_ratio(r, "stdlib", "fastio-c")),
                 fmt_ratio(paired_ratio(r, "stdlib", "fastio-pure"))]
        if epoll:
            line += [fmt_ratio(paired_ratio(r, "fastio-c", "fastio Epoll.poll"))]
        if r.get("wrong"):
            line[-1] += "  WRONG: " + ", ".join(r["wrong"])
        body.append(line)
    return [f"{cls}.select(0), us per call (median)"] + render(head, body)


def regunreg_table(rows) -> list[str]:
    if not rows:
        return []
    head = ["class", "stdlib", "fastio-c", "fastio-pure", "epoll_ctl pair", "std/c", "std/pure", "std/floor"]
    body = []
    for r in rows:
        has_floor = "epoll_ctl pair" in r["results"]
        body.append([r["class"]] + [fmt_us(med(r, x)) for x in ("stdlib", "fastio-c", "fastio-pure")]
                    + [fmt_us(med(r, "epoll_ctl pair")) if has_floor else "-"]
                    + [fmt_ratio(paired_ratio(r, "stdlib", "fastio-c")),
                       fmt_ratio(paired_ratio(r, "stdlib", "fastio-pure")),
                       fmt_ratio(paired_ratio(r, "stdlib", "epoll_ctl pair")) if has_floor else "-"])
    others = rows[0]["others"]
    return [f"register(sock, EVENT_READ) + unregister(sock), {others} other fds registered, us per pair (median)"] \
        + render(head, body)


def render(head, body) -> list[str]:
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    def line(cells):
        return "  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    return [line(head), "  ".join("-" * w for w in widths)] + [line(b) for b in body]


def targets(rows) -> list[tuple[str, bool | None, str]]:
    """The issue's targets: (description, met, detail)."""
    out = []

    def find(cls, n, k):
        for r in rows:
            if r["bench"] == "select" and r["class"] == cls and r["n"] == n and r["ready"] == k:
                return r
        return None

    e = find("EpollSelector", 1000, 100)
    if e:
        rr = paired_ratio(e, "stdlib", "fastio-c")
        out.append(("EpollSelector.select() >= 3x faster than stdlib (1000 registered, 100 ready)",
                    rr is not None and rr >= 3, f"stdlib/c = {fmt_ratio(rr)}"))
        rc = paired_ratio(e, "fastio-c", "fastio Epoll.poll")
        out.append(("EpollSelector.select() within 1.5x of an epoll_wait loop "
                    "(reference here: fastio._c.epoll.Epoll.poll in-process)",
                    rc is not None and rc <= 1.5,
                    f"c/Epoll.poll = {fmt_ratio(rc)}; c = {fmt_us(med(e, 'fastio-c'))} us "
                    f"(issue's C loop: ~16 us -> {fmt_ratio(ratio(med(e, 'fastio-c'), 16.0))})"))
    else:
        out.append(("EpollSelector targets (1000 registered, 100 ready)", None, "case not run"))
    p = find("PollSelector", 1000, 100)
    if p:
        rr = paired_ratio(p, "stdlib", "fastio-c")
        out.append(("PollSelector.select() >= 1.4x faster than stdlib (1000 registered, 100 ready)",
                    rr is not None and rr >= 1.4, f"stdlib/c = {fmt_ratio(rr)}"))
    else:
        out.append(("PollSelector target (1000 registered, 100 ready)", None, "case not run"))
    for r in rows:
        if r["bench"] == "register+unregister":
            rr = paired_ratio(r, "stdlib", "fastio-c")
            detail = f"stdlib/c = {fmt_ratio(rr)}"
            if "epoll_ctl pair" in r["results"]:
                floor = paired_ratio(r, "stdlib", "epoll_ctl pair")
                detail += (f"; the two epoll_ctl syscalls alone give stdlib/floor = {fmt_ratio(floor)}, "
                           "the most any wrapper can reach here")
            out.append((f"{r['class']} register+unregister >= 2x faster than stdlib ({r['others']} others)",
                        rr is not None and rr >= 2, detail))
    return out


# --------------------------------------------------------------------------- main


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a few seconds: N=10,100, 7 short batches")
    ap.add_argument("--json", metavar="PATH", help="also write every sample and the machine info as JSON")
    ap.add_argument("--sizes", metavar="N,N,...", help="registered socket pairs (default 10,100,1000,10000)")
    ap.add_argument("--others", type=int, help="fds registered during register+unregister (default 1000)")
    ap.add_argument("--repeats", type=int, help="interleaved batches per candidate (default 31; 7 with --quick; >= 7)")
    ap.add_argument("--batch-ms", type=float, help="target duration of one batch (default 10; 2 with --quick)")
    args = ap.parse_args(argv)

    if args.quick:
        sizes, others, repeats, batch_ms = [10, 100], 100, 7, 2.0
    else:
        sizes, others, repeats, batch_ms = [10, 100, 1000, 10000], 1000, 31, 10.0
    if args.sizes:
        sizes = [int(x) for x in args.sizes.split(",") if x]
    if args.others is not None:
        others = args.others
    if args.repeats is not None:
        repeats = args.repeats
    if args.batch_ms is not None:
        batch_ms = args.batch_ms
    if repeats < 7:
        ap.error("--repeats must be at least 7")
    cfg = argparse.Namespace(target_ns=int(batch_ms * 1e6), repeats=repeats)

    old_soft, soft, hard = raise_nofile()
    info = machine_info()
    info["rlimit_nofile"] = {"soft_before": old_soft, "soft": soft, "hard": hard}
    cmd = " ".join([os.path.basename(sys.executable)] + sys.argv)
    print(f"fastio selectors benchmark   command: {cmd}")
    print(f"Python   {info['python']}")
    print(f"kernel   {info['kernel']}")
    print(f"CPU      {info['cpu']}  ({info['cpus']} CPUs, {info['cpus_usable']} usable)")
    print(f"fastio   {info['fastio']}  ({info['fastio_c_selectors']})")
    print(f"RLIMIT_NOFILE soft {old_soft} -> {soft} (hard {hard}); load average {info['loadavg']}")
    print(f"method   {repeats} interleaved batches of ~{batch_ms:g} ms per candidate, median per-call time; "
          "gc off while timing")
    warn = stale_build_warning()
    if warn:
        print(warn)
    print(flush=True)

    notes: list[str] = []
    problems: list[str] = []
    t_start = time.monotonic()
    fds_before = open_fd_count()

    def report(row):
        if row["bench"] == "select":
            meds = ", ".join(f"{k} {fmt_us(v['median_us'])}" for k, v in row["results"].items())
            print(f"  {row['class']:<14} N={row['n']:<5} ready={row['ready']:<5} {meds}", flush=True)
        else:
            meds = ", ".join(f"{k} {fmt_us(v['median_us'])}" for k, v in row["results"].items())
            print(f"  register+unregister {row['class']:<14} {meds}", flush=True)

    rows = bench_select(sizes, cfg, report, notes, problems)
    rows += bench_regunreg(others, cfg, report, notes, problems)
    elapsed = time.monotonic() - t_start
    fds_after = open_fd_count()
    if fds_after != fds_before:
        problems.append(f"open fds before {fds_before}, after {fds_after}: something was not closed")

    print()
    for cls in CLASSES:
        t = select_table(rows, cls)
        if t:
            print("\n".join(t))
            print()
    t = regunreg_table([r for r in rows if r["bench"] == "register+unregister"])
    if t:
        print("\n".join(t))
        print()
    print("times: median of the per-call times of the batches; ratios: median over the rounds of "
          "stdlib batch / fastio batch in the same round (> 1: fastio faster); "
          "c/Epoll.poll: fastio-c EpollSelector.select over raw fastio Epoll.poll (< 1.5x wanted)")
    worst = max(((v["iqr_rel"], f"{r['bench']} {r['class']} N={r.get('n', r.get('others'))} "
                  f"ready={r.get('ready', '-')} {k}")
                 for r in rows for k, v in r["results"].items()), default=None)
    if worst:
        print(f"largest interquartile range / median: {worst[0]:.0%} ({worst[1]})")
    print()
    tg = targets(rows)
    print("targets")
    for desc, met, detail in tg:
        mark = "n/a " if met is None else ("MET " if met else "MISS")
        print(f"  [{mark}] {desc}: {detail}")
    for n in notes:
        print("note:", n)
    for p in problems:
        print("PROBLEM:", p)
    print(f"total {elapsed:.1f} s")

    if args.json:
        for r in rows:
            pairs_ = [("stdlib", "fastio-c"), ("stdlib", "fastio-pure"), ("fastio-c", "fastio Epoll.poll")]
            r["ratios"] = {f"{a}/{b}": {"paired": paired_ratio(r, a, b), "of_medians": ratio(med(r, a), med(r, b))}
                           for a, b in pairs_ if a in r["results"] and b in r["results"]}
        with open(args.json, "w") as f:
            json.dump({"machine": info, "command": cmd, "repeats": repeats, "batch_ms": batch_ms,
                       "rows": rows, "targets": [{"target": d, "met": m, "detail": x} for d, m, x in tg],
                       "notes": notes, "problems": problems, "elapsed_s": elapsed}, f, indent=1)
        print(f"wrote {args.json}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
