"""What ``python -m fastio bench`` prints and writes: one aligned table per
part, the JSON document (every number, the machine, the options), and the
optional PNG chart (matplotlib, the ``plot`` extra)."""

from __future__ import annotations

import datetime
import math
import os
import platform
import resource
import statistics
import sys
import time
from dataclasses import asdict
from typing import Any, Optional

from fastio._bench._types import TIME_UNITS, Options, Part, Row

SCHEMA = 1
PLOT_MISSING = "--plot needs matplotlib: pip install 'fastio[plot]'"

# --------------------------------------------------------------------------- machine


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo, and the processor count."""
    fields: dict[str, str] = {}
    count = 0
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, sep, value = line.partition(":")
                if not sep:
                    continue
                key = key.strip()
                if key == "processor":
                    count += 1
                if count <= 1:
                    fields.setdefault(key, value.strip())
    except OSError:
        pass
    fields["_count"] = str(count)
    return fields


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo ("model name"; on arm64 the
    implementer/part fields), else platform.processor() or "unknown"."""
    info = _cpuinfo()
    for key in ("model name", "Model", "cpu model", "cpu"):
        if info.get(key):
            return info[key]
    if "CPU implementer" in info:
        return f"implementer {info['CPU implementer']} part {info.get('CPU part', '?')}"
    return platform.processor() or "unknown"


def machine_info() -> dict[str, Any]:
    """The machine, kernel, Python and fastio that a run measured."""
    import fastio

    info = _cpuinfo()
    try:
        usable: Optional[int] = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = None
    uname = os.uname()
    try:
        backend = fastio.backend
    except ImportError as exc:  # FASTIO_BACKEND=c without the extension
        backend = f"unavailable: {exc}"
    try:
        with open("/proc/meminfo") as f:
            mem_kib = int(f.readline().split()[1])
    except (OSError, ValueError, IndexError):
        mem_kib = None
    return {
        "cpu_model": cpu_model(),
        "cpus": int(info["_count"]) or os.cpu_count(),
        "cpus_usable": usable,
        "hypervisor": "hypervisor" in info.get("flags", "").split(),
        "memory_mib": mem_kib // 1024 if mem_kib else None,
        "kernel": uname.release,
        "kernel_version": uname.version,
        "arch": uname.machine,
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "build": sys.version.replace("\n", " "),
            "executable": sys.executable,
        },
        "fastio": {"version": fastio.__version__, "backend": backend, "path": os.path.dirname(fastio.__file__)},
        "loadavg": list(os.getloadavg()),
    }


# --------------------------------------------------------------------------- ratios


def lower_is_better(unit: str) -> bool:
    """Times (us, ms ...) are better lower; anything else (IOPS, req/s ...) higher."""
    return unit in TIME_UNITS


def fill_ratios(part: Part) -> None:
    """Give every measured row whose ratio is None its ratio to the baseline
    row of its group (see fastio._bench._types): > 1 is better."""
    base: dict[Optional[str], Row] = {}
    for row in part.rows:
        if row.name == part.baseline and row.value is not None and row.skipped is None:
            base.setdefault(row.group, row)
    for row in part.rows:
        if row.ratio is not None or row.value is None or row.skipped is not None:
            continue
        b = base.get(row.group)
        if b is None or b.value is None or b.unit != row.unit or not b.value or not row.value:
            continue
        row.ratio = b.value / row.value if lower_is_better(row.unit) else row.value / b.value


# --------------------------------------------------------------------------- rounds

#: A row whose rounds spread more than this (interquartile range over the
#: median) is flagged as too noisy to trust. Why 10%: on an idle 2-vCPU VM
#: the rounds of one row agree within a few percent (echo, files and
#: selectors rows: 1-4%), so a wider spread means other work took the CPUs
#: during some rounds; and neighbouring rows of a table are often less than
#: 10% apart, so such a row's place in the ranking can change from run to run.
NOISY_SPREAD = 0.10


def spread(samples: list[float]) -> Optional[float]:
    """How far a row's rounds disagree: the interquartile range of
    ``samples`` (inclusive quartiles: for 5 rounds the 2nd to the 4th
    value, so one stray round does not count; for 3 rounds half the range)
    over their median. None for fewer than two samples or a zero median."""
    xs = [float(x) for x in samples]
    if len(xs) < 2:
        return None
    med = statistics.median(xs)
    if not med:
        return None
    q1, _, q3 = statistics.quantiles(xs, n=4, method="inclusive")
    return abs(q3 - q1) / abs(med)


def is_noisy(value: Optional[float], threshold: float = NOISY_SPREAD) -> bool:
    """Whether a row with this spread is too noisy to trust (above ``threshold``)."""
    return value is not None and value > threshold


def fill_spread(part: Part) -> None:
    """Set ``spread`` and ``noisy`` of every measured row from its samples."""
    for row in part.rows:
        if row.skipped is not None or row.value is None:
            row.spread, row.noisy = None, False
            continue
        row.spread = spread(row.samples)
        row.noisy = is_noisy(row.spread)


def cpu_use() -> Optional[tuple[float, float, float, int]]:
    """(monotonic time, CPU seconds every process of the machine has used,
    CPU seconds this process and its reaped children have used, CPUs), from
    /proc/stat and getrusage; None when /proc/stat cannot be read."""
    try:
        with open("/proc/stat") as f:
            lines = f.read().splitlines()
        fields = [int(x) for x in lines[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    # user nice system idle iowait irq softirq steal (guest is inside user); the
    # interrupt times are left out: part of them is this process's own
    # loopback traffic, which getrusage does not count.
    busy = sum(fields[:3]) / os.sysconf("SC_CLK_TCK")
    cpus = sum(1 for ln in lines if ln.startswith("cpu") and ln[3:4].isdigit())
    ours = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        ru = resource.getrusage(who)
        ours += ru.ru_utime + ru.ru_stime
    return time.monotonic(), busy, ours, max(cpus, 1)


def others_cpu(before: Optional[tuple], after: Optional[tuple]) -> Optional[dict[str, float]]:
    """What other processes used of the machine between two ``cpu_use()``:
    CPU seconds, and their share of what the CPUs could give (0 to 1)."""
    if before is None or after is None or after[0] <= before[0]:
        return None
    elapsed = after[0] - before[0]
    others = max(0.0, (after[1] - before[1]) - (after[2] - before[2]))
    return {"elapsed_s": elapsed, "cpus": after[3], "busy_s": after[1] - before[1], "ours_s": after[2] - before[2],
            "others_s": others, "others_share": min(1.0, others / (elapsed * after[3]))}


def _label(row: Row) -> str:
    return f"{row.name} ({row.group})" if row.group else row.name


def noise_line(part: Part, others: Optional[dict] = None) -> Optional[str]:
    """One line saying which rows were too noisy to trust, or None when none
    was; ``others``: what ``others_cpu`` measured over the part."""
    noisy = [r for r in part.rows if r.noisy]
    if not noisy:
        return None
    measured = [r for r in part.rows if r.spread is not None]
    rounds = sorted({len(r.samples) for r in noisy})
    worst = sorted(noisy, key=lambda r: -(r.spread or 0.0))
    shown = ", ".join(f"{_label(r)} {100 * (r.spread or 0):.0f}%" for r in worst[:4])
    more = f" and {len(worst) - 4} more" if len(worst) > 4 else ""
    if others is not None:
        share = others["others_share"]
        why = (f"other processes used {100 * share:.0f}% of the {others['cpus']} CPUs meanwhile"
               + (" (so the host took them: a busy hypervisor)" if share < 0.05 else ""))
    else:
        why = "something else was using the CPUs"
    return (f"TOO NOISY TO TRUST: {len(noisy)} of {len(measured)} rows spread more than "
            f"{100 * NOISY_SPREAD:.0f}% over their {'/'.join(map(str, rounds))} rounds (interquartile "
            f"range / median): {shown}{more}; {why}: their ranking may change from run to run; rerun "
            f"on an idle machine")


# --------------------------------------------------------------------------- table


def fmt_num(v: Optional[float], digits: int = 3) -> str:
    """A number with about `digits` significant digits, k/M suffixes from 10^4 up."""
    if v is None:
        return "-"
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    a = abs(v)
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e4, "k")):
        if a >= div:
            scaled = v / (1e3 if suffix == "k" else div)
            return f"{_sig(scaled, digits)}{suffix}"
    return _sig(v, digits)


def _sig(v: float, digits: int) -> str:
    if v == 0:
        return "0"
    a = abs(v)
    decimals = max(0, digits - 1 - int(math.floor(math.log10(a))))
    return f"{v:.{decimals}f}"


def fmt_ratio(r: Optional[float]) -> str:
    return "-" if r is None else f"{r:.2f}x"


def _render(head: list[str], body: list[list[str]], right: set[int], indent: str = "") -> list[str]:
    widths = [max(len(c) for c in col) for col in zip(head, *body)]

    def line(cells: list[str]) -> str:
        out = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))]
        return (indent + "  ".join(out)).rstrip()

    return [line(head), indent + "  ".join("-" * w for w in widths)] + [line(b) for b in body]


def format_part(part: Part) -> str:
    """The part's table: name, value (the median over the rounds), spread
    (see ``spread``), p99, CPU s, syscalls/op, ratio, note; one sub-heading
    per group; then the part's problems, notes and the noisy-rows line."""
    head = ["name", "value", "spread", "p99", "CPU s", "syscalls/op", "ratio", "note"]
    body: list[list[str]] = []
    group_at: dict[int, str] = {}
    groups = [r.group for r in part.rows]
    current: object = object()
    for row in part.rows:
        if row.group != current:
            current = row.group
            if row.group is not None:
                group_at[len(body)] = row.group
        if row.skipped is not None:
            note = f"skipped: {row.skipped}"
        else:
            note = "baseline" if row.name == part.baseline else ""
            wrong = row.extra.get("wrong")
            if wrong:
                note = (note + "; " if note else "") + f"WRONG: {wrong}"
            if row.noisy:
                note = (note + "; " if note else "") + "noisy"
        value = "-" if row.value is None else f"{fmt_num(row.value)} {row.unit}".rstrip()
        spr = "-" if row.spread is None else f"{100 * row.spread:.1f}%"
        p99 = "-" if row.p99_us is None else f"{fmt_num(row.p99_us)} us"
        cpu = "-" if row.cpu_s is None else f"{row.cpu_s:.2f}"
        sc = "-" if row.syscalls_per_op is None else f"{row.syscalls_per_op:.2f}"
        body.append([row.name, value, spr, p99, cpu, sc, fmt_ratio(row.ratio), note])
    indent = "  " if any(g is not None for g in groups) else ""
    table = _render(head, body, right={1, 2, 3, 4, 5, 6}, indent=indent)
    lines = [f"== {part.name}: {part.title}", table[0], table[1]]
    for i, line in enumerate(table[2:]):
        if i in group_at:
            lines.append(group_at[i])
        lines.append(line)
    problems = part.extra.get("problems") or []
    for p in problems:
        lines.append(f"PROBLEM: {p}")
    for n in part.extra.get("notes") or []:
        lines.append(f"note: {n}")
    noise = part.extra.get("noise")
    if noise:
        lines.append(noise)
    return "\n".join(lines)


def format_report(parts: list[Part], failures: dict[str, str]) -> str:
    out = []
    for part in parts:
        out.append(format_part(part))
        out.append("")
    for name, err in failures.items():
        out.append(f"== {name}: FAILED: {err}")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def format_methods(parts: list[Part]) -> str:
    return "\n".join(f"{p.name}: {p.method}" for p in parts)


# --------------------------------------------------------------------------- JSON


def _clean(obj: Any) -> Any:
    """Plain JSON: non-finite floats become None, tuples lists, other objects str."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [_clean(v) for v in obj]
    return str(obj)


def to_json(parts: list[Part], options: Options, machine: dict, *, elapsed: float,
            failures: dict[str, str], started: datetime.datetime, argv: list[str]) -> dict:
    """The whole run as plain data: what --json writes."""
    return _clean({
        "schema": SCHEMA,
        "tool": "python -m fastio bench",
        "argv": argv,
        "date": started.isoformat(timespec="seconds"),
        "elapsed_s": elapsed,
        "machine": machine,
        "options": asdict(options),
        "parts": [dict(asdict(p), elapsed_s=p.extra.get("elapsed_s")) for p in parts],
        "failures": failures,
    })


# --------------------------------------------------------------------------- plot


def plot_unavailable() -> Optional[str]:
    """None when --plot can work; else the message to print."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return PLOT_MISSING
    return None


def write_plot(parts: list[Part], path: str) -> None:
    """One PNG, a horizontal bar chart per part (subplots, one above the
    other): each measured row's ratio to its baseline (> 1 better, the
    baseline at 1), labelled with its value; skipped rows are listed as such."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [p for p in parts if p.rows]
    if not shown:
        shown = parts
    heights = [max(2.0, 0.3 * (len(p.rows) + len({r.group for r in p.rows}) + 2)) for p in shown] or [2.0]
    fig, axes = plt.subplots(len(heights), 1, figsize=(10, sum(heights) + 0.5),
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    for ax, part in zip(axes[:, 0], shown):
        labels, ratios, texts, colors, headers = [], [], [], [], []
        current: object = object()
        for row in part.rows:
            if row.group != current:
                current = row.group
                if row.group is not None:
                    # A heading line: no bar, the group written across the plot.
                    headers.append((len(labels), row.group))
                    labels.append("")
                    ratios.append(0.0)
                    texts.append("")
                    colors.append("none")
            labels.append(row.name if len(row.name) <= 40 else row.name[:37] + "...")
            if row.skipped is not None or row.value is None:
                ratios.append(0.0)
                texts.append("skipped: " + (row.skipped or "")[:80])
                colors.append("#bbbbbb")
            else:
                r = row.ratio if row.ratio is not None else 0.0
                ratios.append(r)
                texts.append(f"{fmt_num(row.value)} {row.unit}" + (f"  ({r:.2f}x)" if row.ratio is not None else ""))
                colors.append("#4c72b0" if row.name != part.baseline else "#888888")
        y = list(range(len(labels)))
        ax.barh(y, ratios, color=colors)
        ax.set_yticks(y)
        ax.set_yticklabels(labels, fontsize=7)
        ax.invert_yaxis()
        ax.axvline(1.0, color="black", linewidth=0.8)
        top = max(ratios + [1.0])
        for yi, (r, t) in enumerate(zip(ratios, texts)):
            if t:
                ax.text(r + top * 0.01, yi, t, va="center", fontsize=6)
        for yi, text in headers:
            ax.text(0.005, yi, text, va="center", fontsize=7, fontweight="bold",
                    transform=ax.get_yaxis_transform())
        ax.set_xlim(0, top * 1.35)
        ax.set_xlabel(f"ratio to {part.baseline} (> 1: better)", fontsize=8)
        ax.set_title(f"{part.name}: {part.title}", fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
