"""``python -m fastio bench``: the IO models side by side on this machine.

Parts (``--parts``, default all, in this order) are modules registered in
``PARTS``; each exposes ``run(options, progress) -> Part`` and may expose
``steps(options) -> int``, the number of times it will call ``progress``
(for the ``[k/N]`` counter on stderr). A part that measures in rounds
(alternating its rows within each round) honours ``Options.rounds`` and
gives every row its per-round ``samples``; the report then shows each row's
median, its spread over the rounds, and one line naming the rows too noisy
to trust (``report.NOISY_SPREAD``). See ``fastio._bench._types`` for what
a part returns and ``fastio._bench.report`` for the table, JSON and chart.

Exit status: 0 when every part ran (rows this machine cannot run are skipped
with the reason: not a failure); 1 when a part raised or reported a problem
(a wrong result, a leaked fd ...); 2 for a usage error, or ``--plot``
without matplotlib (said before anything runs); 130 when interrupted.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import signal
import sys
import textwrap
import time
import traceback
from typing import Callable, Optional

from fastio._bench._types import Options, Part, Row

__all__ = ["PARTS", "Options", "Part", "Row", "main"]

# part name -> module, in run and display order; one line per part (a new
# part is one more line here; --parts defaults to all of them).
PARTS: dict[str, str] = {
    "echo": "fastio._bench.echo",
    "files": "fastio._bench.files",
    "afiles": "fastio._bench.afiles",
    "selectors": "fastio._bench.selectors",
}


def _csv(text: str) -> list[str]:
    items = [x.strip() for x in text.split(",")]
    if not items or any(not x for x in items):
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}")
    return items


def _parts(text: str) -> list[str]:
    names = _csv(text)
    unknown = [n for n in names if n not in PARTS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown part {', '.join(map(repr, unknown))} (choose from {', '.join(PARTS)})")
    return list(dict.fromkeys(names))


def _positive_ints(text: str) -> list[int]:
    out = []
    for x in _csv(text):
        try:
            n = int(x)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {x!r}") from None
        if n <= 0:
            raise argparse.ArgumentTypeError(f"must be positive: {n}")
        out.append(n)
    return out


def _rounds(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 1 <= n <= 1000:
        raise argparse.ArgumentTypeError(f"must be between 1 and 1000: {n}")
    return n


def _seconds(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < v < 3600:
        raise argparse.ArgumentTypeError(f"must be between 0 and 3600 seconds: {text}")
    return v


def _directory(text: str) -> str:
    if not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"not a directory: {text!r}")
    if not os.access(text, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"not writable: {text!r}")
    return text


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m fastio bench",
        description="Measure the IO models side by side on this machine, against the stdlib. "
                    "Tables go to stdout, progress to stderr.",
        epilog=f"parts: {', '.join(PARTS)}. Numbers are for comparing rows of one run; "
               "on a shared or small machine absolute values move between runs.",
    )
    ap.add_argument("--quick", action="store_true",
                    help="a short run (the whole suite in under 15 s; the echo rows in one round)")
    ap.add_argument("--parts", type=_parts, metavar="A,B", default=None,
                    help=f"parts to run, in order (default: all: {','.join(PARTS)})")
    ap.add_argument("--models", type=_csv, metavar="A,B", help="echo part: the server models to run")
    ap.add_argument("--cpus", choices=("shared", "split"),
                    help="echo part: run the load generator on the server's CPU (shared, the default: no idle "
                         "CPU has to wake up per request, which on a VM goes through the hypervisor) or on "
                         "another CPU (split: the server has its CPU to itself; for a quiet machine)")
    ap.add_argument("--connections", type=_positive_ints, metavar="N,M",
                    help="echo part: concurrent connections, one run per value (e.g. 1,64)")
    ap.add_argument("--duration", type=_seconds, metavar="S",
                    help="seconds of measuring per row (per candidate), over all its rounds, instead of "
                         "each part's default")
    ap.add_argument("--rounds", type=_rounds, metavar="N",
                    help="rounds per row, the rows alternated within each round; the table shows the "
                         "median and the spread (default: echo 5, files 3, selectors 13; --quick: echo 1, "
                         "files 2, selectors 7; the afiles part keeps its own: 3, --quick 1)")
    ap.add_argument("--json", metavar="PATH", help="write every number, the machine and the options as JSON")
    ap.add_argument("--plot", metavar="PATH", help="write a PNG bar chart per part (needs matplotlib)")
    ap.add_argument("--dir", dest="directory", type=_directory, metavar="DIR",
                    help="files part: where to make the data file (default: the temporary directory, "
                         "or /var/tmp when only that takes O_DIRECT)")
    ap.add_argument("--backend", choices=("c", "pure"),
                    help="measure only this fastio backend (default: files and selectors show both)")
    return ap


def _check_output(ap: argparse.ArgumentParser, option: str, path: Optional[str]) -> None:
    if path is None:
        return
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        ap.error(f"{option}: directory {parent!r} does not exist")
    if os.path.isdir(path):
        ap.error(f"{option}: {path!r} is a directory")


def _progress_printer(total: Optional[int]) -> Callable[[str, str], None]:
    count = 0

    def progress(part: str, text: str) -> None:
        nonlocal count
        count += 1
        where = f"{count}/{total}" if total and count <= total else str(count)
        more = "" if "skipped" in text else " ..."  # a step starting, or one passed over
        print(f"[{where}] {part}: {text}{more}", file=sys.stderr, flush=True)

    return progress


def _wrap(label: str, text: str) -> str:
    return textwrap.fill(text, width=100, initial_indent=f"{label}: ", subsequent_indent="  ")


def main(argv: Optional[list[str]] = None) -> int:
    from fastio._bench import report

    argv = sys.argv[1:] if argv is None else list(argv)
    ap = build_parser()
    args = ap.parse_args(argv)
    _check_output(ap, "--json", args.json)
    _check_output(ap, "--plot", args.plot)
    if args.plot:
        why = report.plot_unavailable()
        if why:
            print(why, file=sys.stderr)
            return 2
    options = Options(
        quick=args.quick, duration=args.duration, rounds=args.rounds, connections=args.connections,
        models=args.models, cpus=args.cpus,
        parts=args.parts or list(PARTS), directory=args.directory, backend=args.backend,
    )

    # SIGTERM ends the run like Ctrl-C, so every part's cleanup runs.
    def _term(signum, frame):
        raise KeyboardInterrupt

    old_term = None
    try:
        old_term = signal.signal(signal.SIGTERM, _term)
    except ValueError:  # not the main thread
        pass
    try:
        return _run(options, args, argv, report)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)


def _run(options: Options, args: argparse.Namespace, argv: list[str], report) -> int:
    started = datetime.datetime.now(datetime.timezone.utc)
    t0 = time.monotonic()
    machine = report.machine_info()
    modules = {}
    failures: dict[str, str] = {}
    for name in options.parts:
        try:
            modules[name] = importlib.import_module(PARTS[name])
        except Exception as exc:  # noqa: BLE001 - the part fails, the others run
            failures[name] = f"cannot import {PARTS[name]}: {type(exc).__name__}: {exc}"
    total: Optional[int] = 0
    for mod in modules.values():
        steps = getattr(mod, "steps", None)
        if steps is None or total is None:
            total = None
            continue
        try:
            total += int(steps(options))
        except Exception:  # noqa: BLE001 - only the counter suffers
            total = None
    progress = _progress_printer(total)
    print(f"fastio bench: {', '.join(options.parts)}{' (quick)' if options.quick else ''} on "
          f"{machine['cpu_model']}, {machine['cpus']} CPUs, Linux {machine['kernel']}, "
          f"{machine['python']['implementation']} {machine['python']['version']}, "
          f"fastio {machine['fastio']['version']} ({machine['fastio']['backend']} backend)",
          file=sys.stderr, flush=True)

    parts: list[Part] = []
    for name, mod in modules.items():
        t = time.monotonic()
        busy0 = report.cpu_use()
        try:
            part = mod.run(options, lambda text, name=name: progress(name, text))
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001
            traceback.print_exc(file=sys.stderr)
            failures[name] = f"{type(exc).__name__}: {exc}"
            continue
        part.extra["elapsed_s"] = time.monotonic() - t
        part.extra["others_cpu"] = others = report.others_cpu(busy0, report.cpu_use())
        report.fill_ratios(part)
        report.fill_spread(part)
        part.extra["noise"] = report.noise_line(part, others)
        parts.append(part)
        print(report.format_part(part))
        print(_wrap("method", part.method))
        print(flush=True)
    elapsed = time.monotonic() - t0
    for name, err in failures.items():
        print(f"== {name}: FAILED: {err}\n")
    problems = [p for part in parts for p in part.extra.get("problems") or []]
    print(f"total {elapsed:.1f} s" + (f"; {len(failures)} part(s) failed" if failures else "")
          + (f"; {len(problems)} problem(s)" if problems else ""), flush=True)

    status = 1 if failures or problems else 0
    if args.json:
        doc = report.to_json(parts, options, machine, elapsed=elapsed, failures=failures,
                             started=started, argv=argv)
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1, allow_nan=False)
            f.write("\n")
        print(f"wrote {args.json}", file=sys.stderr)
    if args.plot:
        try:
            report.write_plot(parts, args.plot)
        except Exception as exc:  # noqa: BLE001
            traceback.print_exc(file=sys.stderr)
            print(f"--plot failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            status = 1
        else:
            print(f"wrote {args.plot}", file=sys.stderr)
    return status
