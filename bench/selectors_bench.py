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
import json
import os
import platform
import sys
import time

import fastio
import fastio._c.selectors as c_selectors
from fastio._bench.report import cpu_model
from fastio._bench.selectors import (  # the measuring core, shared with `python -m fastio bench`
    CLASSES,
    Config,
    bench_regunreg,
    bench_select,
    open_fd_count,
    paired_ratio,
    raise_nofile,
)


# --------------------------------------------------------------------------- machine


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
    cfg = Config(target_ns=int(batch_ms * 1e6), repeats=repeats)

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
    for name, why in cfg.missing.items():
        notes.append(f"{name} not measured: {why}")
    all_rows = rows
    rows = [r for r in rows if "skipped" not in r]  # the skipped cases are in `notes`
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
                       "rows": all_rows, "targets": [{"target": d, "met": m, "detail": x} for d, m, x in tg],
                       "notes": notes, "problems": problems, "elapsed_s": elapsed}, f, indent=1)
        print(f"wrote {args.json}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
