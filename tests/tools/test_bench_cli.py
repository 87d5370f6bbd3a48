"""python -m fastio bench: the command line, the JSON it writes, the table,
--plot with and without matplotlib, the syscall counter, and the files part
leaving nothing behind. Nothing here asserts a speed: only that every row has
a number or the reason it was skipped."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import threading
import types

import pytest

import fastio
from fastio import _bench
from fastio._bench import afiles, echo, fio, files, report, syscount
from fastio._bench._types import Options, Part, Row

ROW_KEYS = {"name", "kind", "value", "unit", "p99_us", "cpu_s", "syscalls_per_op", "ratio", "skipped", "extra",
            "samples", "spread", "noisy"}
PART_KEYS = {"name", "title", "baseline", "rows", "method", "extra"}
FILES_ROWS = {"os.pread", "thread pool", "uring buffered (c)", "uring buffered (pure)", "aio O_DIRECT (c)",
              "aio O_DIRECT (pure)", "uring O_DIRECT (c)", "uring O_DIRECT (pure)", "fio io_uring", "fio libaio"}
PROGRESS = re.compile(r"^\[\d+(/\d+)?\] (echo|files|afiles|selectors): (.+ \.\.\.|.*skipped.*)$")


def bench(*args: str, timeout: float = 60, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fastio", "bench", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def check_row(row: dict, part: str) -> None:
    assert set(row) == ROW_KEYS, row
    assert isinstance(row["name"], str) and row["name"] and isinstance(row["kind"], str)
    if row["skipped"] is not None:
        assert isinstance(row["skipped"], str) and row["skipped"], row
        assert row["value"] is None, row
        return
    assert _number(row["value"]) and row["value"] > 0, row
    if part == "afiles":
        assert row["unit"] == afiles.ROWS[next(k for k, v in afiles.ROWS.items() if v[0] == row["extra"]["group"])][1]
    else:
        assert row["unit"] == {"echo": "req/s", "files": "IOPS", "selectors": "us"}[part], row
    assert _number(row["ratio"]) and row["ratio"] > 0, row  # every measured row has its baseline measured
    for key in ("p99_us", "cpu_s", "syscalls_per_op"):
        assert row[key] is None or (_number(row[key]) and row[key] >= 0), (key, row)
    # the value is the median of the rounds' samples, with their spread
    if row["samples"]:
        assert all(_number(x) and x > 0 for x in row["samples"]), row
        assert row["value"] == pytest.approx(statistics.median(row["samples"])), row
        if len(row["samples"]) >= 2:
            assert _number(row["spread"]) and row["spread"] >= 0, row
            assert row["noisy"] is (row["spread"] > report.NOISY_SPREAD), row
        else:
            assert row["spread"] is None and row["noisy"] is False, row


# --------------------------------------------------------------------------- the whole command


def test_quick_json_is_complete(tmp_path):
    """The whole default suite, quick: ``python -m fastio bench --quick --json``."""
    data = tmp_path / "data"
    data.mkdir()
    out = tmp_path / "out.json"
    proc = bench("--quick", "--json", str(out), "--dir", str(data), timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert os.listdir(data) == []  # the data file is gone
    doc = json.loads(out.read_text())

    assert {"schema", "date", "machine", "options", "parts", "failures", "elapsed_s", "argv"} <= set(doc)
    assert doc["failures"] == {}
    m = doc["machine"]
    assert isinstance(m["cpu_model"], str) and m["cpu_model"]
    assert isinstance(m["cpus"], int) and m["cpus"] >= 1
    assert m["kernel"] == platform.release()
    assert m["python"]["version"] == platform.python_version()
    assert m["python"]["implementation"] == platform.python_implementation()
    assert m["fastio"]["version"] == fastio.__version__ and m["fastio"]["backend"] in ("c", "pure")
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", doc["date"])
    assert doc["options"] == {"quick": True, "duration": None, "rounds": None, "connections": None,
                              "models": None, "cpus": None, "parts": ["echo", "files", "afiles", "selectors"],
                              "directory": str(data), "backend": None}

    parts = {p["name"]: p for p in doc["parts"]}
    assert list(parts) == ["echo", "files", "afiles", "selectors"]
    for name, part in parts.items():
        assert PART_KEYS <= set(part), part.keys()
        assert part["method"] and part["title"]
        assert part["extra"]["problems"] == []
        assert part["extra"]["noise"] is None or part["extra"]["noise"].startswith("TOO NOISY TO TRUST: ")
        others = part["extra"]["others_cpu"]
        assert others is None or 0 <= others["others_share"] <= 1, others
        assert part["rows"]
        for row in part["rows"]:
            check_row(row, name)
        measured = [r for r in part["rows"] if r["skipped"] is None]
        assert any(r["name"] == part["baseline"] for r in measured)
        for r in measured:
            if r["name"] == part["baseline"]:
                assert r["ratio"] == pytest.approx(1.0)

    e = parts["echo"]
    assert e["baseline"] == "asyncio"
    assert {r["extra"]["group"] for r in e["rows"]} == {"1 connection", "64 connections"}
    assert {r["name"] for r in e["rows"]} == set(echo.QUICK_MODELS)
    assert e["extra"]["rounds"] == 1 and e["extra"]["cpus"] == "shared"  # --quick: one round
    for r in e["rows"]:
        if r["skipped"] is None:  # a byte-verified run: requests, latency and server CPU measured
            assert r["extra"]["requests"] > 0 and r["p99_us"] > 0 and r["cpu_s"] > 0, r
            assert r["extra"]["connections"] == int(r["extra"]["group"].split()[0])
            assert len(r["samples"]) == 1 and r["spread"] is None, r
    assert {r["name"] for r in e["rows"] if r["skipped"] is None} >= {"blocking", "epoll", "asyncio", "c-epoll"}

    f = parts["files"]
    assert {r["name"] for r in f["rows"]} == FILES_ROWS
    assert {r["extra"]["group"] for r in f["rows"]} == {files.PAGE_CACHE, files.DIRECT}
    assert f["extra"]["directory"] == str(data) and f["extra"]["size"] == 64 << 20
    pread = [r for r in f["rows"] if r["name"] == "os.pread" and r["skipped"] is None]
    assert pread and all(r["p99_us"] > 0 and r["extra"]["latency"]["per"] == "read" for r in pread)
    if not f["extra"]["o_direct"]:
        reason = f["extra"]["o_direct_skip_reason"]
        assert all(r["skipped"] == reason for r in f["rows"] if r["extra"]["group"] == files.DIRECT)
    else:
        # fio's figure beside fastio's: measured by fio when it is installed and
        # the kernel interface works (fastio's row of it ran), else skipped saying so
        by_name = {r["name"]: r for r in f["rows"]}
        for engine, ours in (("io_uring", "uring O_DIRECT (c)"), ("libaio", "aio O_DIRECT (c)")):
            r = by_name[f"fio {engine}"]
            if not fio.available():
                assert r["skipped"] == fio.MISSING, r
            elif by_name[ours]["skipped"] is None:
                assert r["skipped"] is None and r["value"] > 0 and r["cpu_s"] > 0, r
            else:
                assert r["skipped"], r
        ring = by_name["uring O_DIRECT (c)"]
        if by_name["fio io_uring"]["skipped"] is None and ring["skipped"] is None:
            assert ring["extra"]["vs_fio_io_uring"] > 0

    a = parts["afiles"]
    probe = tmp_path / "probe"     # (on the file system of data: what O_DIRECT gets there)
    probe.write_bytes(b"x")
    assert a["baseline"] == afiles.BASELINE
    assert {r["extra"]["group"] for r in a["rows"]} == {g for g, _ in afiles.ROWS.values()}
    for group, _unit in afiles.ROWS.values():
        rows = {r["name"]: r for r in a["rows"] if r["extra"]["group"] == group}
        assert set(rows) == set(afiles.LIBS)
        # what needs nothing but the stdlib and fastio is measured; the others say why not
        row_key = next(k for k, v in afiles.ROWS.items() if v[0] == group)[0]
        direct_refused = row_key == "direct4k" and afiles.direct_refused(str(probe)) is not None
        for name in ("executor", "sync", "fastio-thread"):
            if direct_refused or afiles.why_not_row(name, row_key):
                assert rows[name]["skipped"], rows[name]
            else:
                assert rows[name]["skipped"] is None, rows[name]
        for name in ("fastio-uring", "fastio-uring/floop", "fastio-aio", "aiofiles", "aiofile", "anyio"):
            can = afiles.why_not(name) is None and afiles.why_not_row(name, row_key) is None and not direct_refused
            assert (rows[name]["skipped"] is None) == can, rows[name]

    s = parts["selectors"]
    groups = {r["extra"]["group"] for r in s["rows"]}
    assert any(g.startswith("EpollSelector.select(0)") for g in groups)
    assert any("register + unregister" in g for g in groups)
    assert {"stdlib", "fastio-c", "fastio-pure"} <= {r["name"] for r in s["rows"]}

    # progress on stderr, the tables on stdout
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("[")]
    assert lines and all(PROGRESS.match(ln) for ln in lines), lines
    assert lines[-1].startswith(f"[{len(lines)}/{len(lines)}]")
    assert all(f"== {name}:" in proc.stdout for name in ("echo", "files", "afiles", "selectors"))


def test_interrupt_leaves_no_file(tmp_path):
    """Ctrl-C in the middle of the files part: status 130, the directory empty."""
    proc = subprocess.Popen([sys.executable, "-m", "fastio", "bench", "--quick", "--parts", "files",
                             "--dir", str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stderr:
            if "files: os.pread" in line:
                break
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert os.listdir(tmp_path) == []


def test_file_removed_when_writing_is_interrupted(tmp_path, monkeypatch):
    real = files.fill_fd

    def fill_then_interrupt(fd, size):
        real(fd, 1 << 20)
        assert len(os.listdir(tmp_path)) == 1  # the file exists while it is written
        raise KeyboardInterrupt

    monkeypatch.setattr(files, "fill_fd", fill_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        files.run(Options(quick=True, parts=["files"], directory=str(tmp_path)), lambda text: None)
    assert os.listdir(tmp_path) == []


def test_no_direct_io_skips_with_reason(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "direct_io_problem", lambda d: f"{d} is on tmpfs (test)")
    monkeypatch.setattr(files, "config", lambda o: files.Config(size=8 << 20, rounds=1, seconds=0.02))
    part = files.run(Options(quick=True, parts=["files"], directory=str(tmp_path), backend="c"),
                     lambda text: None)
    direct = [r for r in part.rows if r.group == files.DIRECT]
    assert direct and all(r.skipped == f"{tmp_path} is on tmpfs (test)" for r in direct)
    assert all(r.value for r in part.rows if r.group == files.PAGE_CACHE and r.skipped is None)
    assert os.listdir(tmp_path) == []


def test_afiles_part_leaves_nothing_behind_and_reports_a_library_that_fails(tmp_path, monkeypatch):
    real = afiles.measure

    def measure(lib, *args, **kwargs):
        if lib == "executor":
            raise OSError(5, "boom")
        return real(lib, *args, **kwargs)

    monkeypatch.setattr(afiles, "measure", measure)
    monkeypatch.setattr(afiles, "LIBS", ("executor", "sync", "fastio-thread"))
    part = afiles.run(Options(quick=True, parts=["afiles"], directory=str(tmp_path)), lambda text: None)
    assert os.listdir(tmp_path) == []
    probe = tmp_path / "probe"
    probe.write_bytes(b"x")
    no_direct = afiles.direct_refused(str(probe))
    assert part.extra["problems"] == ["executor: OSError: [Errno 5] boom"]
    assert len(part.rows) == 3 * len(afiles.ROWS)
    for row in part.rows:
        workload = next(k for k, v in afiles.ROWS.items() if v[0] == row.group)[0]
        if row.name == "executor":
            assert row.skipped == "failed: OSError: [Errno 5] boom" and row.value is None
        elif afiles.why_not_row(row.name, workload) or workload == "direct4k" and no_direct:
            assert row.skipped and row.value is None, row
        else:
            assert row.skipped is None and row.value > 0, row


@pytest.mark.parametrize("name", ["c", "pure"])
def test_backend_option_keeps_one_backend(name, tmp_path):
    out = tmp_path / "out.json"
    proc = bench("--quick", "--parts", "selectors", "--backend", name, "--duration", "0.02", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(out.read_text())["parts"][0]["rows"]
    names = {r["name"] for r in rows}
    assert f"fastio-{name}" in names and f"fastio-{'pure' if name == 'c' else 'c'}" not in names


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize("args, message", [
    (["--parts", "nope"], "unknown part 'nope'"),
    (["--parts", "files,"], "comma-separated"),
    (["--connections", "0"], "must be positive"),
    (["--connections", "1,x"], "not an integer"),
    (["--duration", "-1"], "between 0 and 3600"),
    (["--duration", "soon"], "not a number"),
    (["--rounds", "0"], "between 1 and 1000"),
    (["--rounds", "two"], "not an integer"),
    (["--cpus", "both"], "invalid choice"),
    (["--backend", "rust"], "invalid choice"),
    (["--dir", "/nonexistent/fastio"], "not a directory"),
    (["--json", "/nonexistent/fastio/out.json"], "does not exist"),
    (["--frobnicate"], "unrecognized arguments"),
])
def test_bad_options_are_argparse_errors(args, message, capsys):
    with pytest.raises(SystemExit) as info:
        _bench.main(args)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: python -m fastio bench") and message in err, err


def test_bad_option_through_python_m():
    proc = bench("--parts", "nope")
    assert proc.returncode == 2 and "unknown part" in proc.stderr and proc.stdout == ""


def test_help_lists_parts():
    proc = bench("--help")
    assert proc.returncode == 0 and "--quick" in proc.stdout and "echo, files, afiles, selectors" in proc.stdout
    top = subprocess.run([sys.executable, "-m", "fastio", "--help"], capture_output=True, text=True, timeout=60)
    assert "bench" in top.stdout


# --------------------------------------------------------------------------- the registry


def _fake_part(monkeypatch, run):
    mod = types.ModuleType("fastio_test_fake_part")
    mod.run = run
    mod.steps = lambda options: 2
    monkeypatch.setitem(sys.modules, mod.__name__, mod)
    monkeypatch.setitem(_bench.PARTS, "fake", mod.__name__)
    return mod


def test_registered_part_runs_by_default(monkeypatch, tmp_path, capsys):
    seen = {}

    def run(options, progress):
        seen["options"] = options
        progress("one")
        progress("two")
        return Part("fake", "a fake part", "base", [
            Row("base", "blocking", 100.0, "req/s"),
            Row("fast", "asynchronous", 250.0, "req/s", p99_us=12.5, cpu_s=0.5, syscalls_per_op=0.25),
            Row.skip("never", "asynchronous", "not on this machine", "req/s"),
        ], "how it was measured")

    _fake_part(monkeypatch, run)
    monkeypatch.setattr(_bench, "PARTS", {"fake": _bench.PARTS["fake"]})
    out = tmp_path / "fake.json"
    assert _bench.main(["--json", str(out), "--connections", "1,64", "--models", "a,b"]) == 0
    captured = capsys.readouterr()
    assert seen["options"].parts == ["fake"]
    assert seen["options"].connections == [1, 64] and seen["options"].models == ["a", "b"]
    assert "[1/2] fake: one ..." in captured.err and "[2/2] fake: two ..." in captured.err
    assert "skipped: not on this machine" in captured.out
    doc = json.loads(out.read_text())
    rows = doc["parts"][0]["rows"]
    assert [r["ratio"] for r in rows] == [1.0, 2.5, None]  # filled by report.fill_ratios


@pytest.mark.parametrize("kind", ["raises", "problem"])
def test_failures_give_status_1(kind, monkeypatch, tmp_path, capsys):
    def run(options, progress):
        if kind == "raises":
            raise RuntimeError("broken part")
        return Part("fake", "t", "a", [Row("a", "k", 1.0, "us")], "m", extra={"problems": ["wrong result"]})

    _fake_part(monkeypatch, run)
    out = tmp_path / "x.json"
    assert _bench.main(["--parts", "fake", "--json", str(out)]) == 1
    captured = capsys.readouterr()
    doc = json.loads(out.read_text())
    if kind == "raises":
        assert "FAILED: RuntimeError: broken part" in captured.out
        assert doc["failures"] == {"fake": "RuntimeError: broken part"}
    else:
        assert "PROBLEM: wrong result" in captured.out


# --------------------------------------------------------------------------- the table


def test_table_is_aligned_and_grouped():
    part = Part("demo", "a demo", "stdlib", [
        Row("stdlib", "k", 12.3456, "us", extra={"group": "case A"}),
        Row("fastio-c", "k", 4.1, "us", syscalls_per_op=1.0, extra={"group": "case A"}),
        Row.skip("fastio-pure", "k", "the pure backend does not import", "us", group="case A"),
        Row("stdlib", "k", 2000.0, "us", extra={"group": "case B"}),
        Row("fastio-c", "k", 1000.0, "us", p99_us=1500.0, cpu_s=1.25, extra={"group": "case B"}),
        Row("reference", "k", 123456.0, "IOPS", extra={"group": "case B"}),
    ], "m")
    report.fill_ratios(part)
    assert [r.ratio for r in part.rows] == [1.0, pytest.approx(12.3456 / 4.1), None, 1.0, 2.0, None]
    lines = report.format_part(part).splitlines()
    assert lines[0] == "== demo: a demo"
    assert lines[3] == "case A" and lines[7] == "case B"
    table = [ln for ln in lines[1:] if ln.startswith("  ")]
    head = table[0]
    assert head.split() == ["name", "value", "spread", "p99", "CPU", "s", "syscalls/op", "ratio", "note"]
    for col in ("value", "spread", "p99", "CPU s", "syscalls/op", "ratio"):  # right-aligned columns end together
        end = head.index(col) + len(col)
        for ln in table[2:]:
            assert ln[end - 1] != " " and (len(ln) == end or ln[end] == " "), (col, ln)
    body = "\n".join(table)
    assert "12.3 us" in body and "4.10 us" in body and "3.01x" in body and "1500 us" in body
    assert "123k IOPS" in body and "1.25" in body and "skipped: the pure backend does not import" in body
    assert body.count("baseline") == 2


@pytest.mark.parametrize("value, text", [
    (None, "-"), (0.0123, "0.0123"), (1.5, "1.50"), (12.25, "12.2"), (999.4, "999"), (9999.0, "9999"),
    (12345.0, "12.3k"), (312000.0, "312k"), (2.5e6, "2.50M"),
])
def test_number_format(value, text):
    assert report.fmt_num(value) == text


def test_ratios_by_unit_and_group():
    part = Part("p", "t", "base", [
        Row("base", "k", 200.0, "req/s", extra={"group": "1"}),
        Row("x", "k", 300.0, "req/s", extra={"group": "1"}),
        Row("x", "k", 300.0, "req/s", extra={"group": "no baseline here"}),
        Row("base", "k", 10.0, "us"),
        Row("y", "k", 5.0, "us"),
        Row("z", "k", 7.0, "us", ratio=9.0),  # a part's own ratio is kept
    ], "m")
    report.fill_ratios(part)
    assert [r.ratio for r in part.rows] == [1.0, 1.5, None, 1.0, 2.0, 9.0]


# --------------------------------------------------------------------------- --plot


def _bench_without_matplotlib(*args: str) -> subprocess.CompletedProcess:
    """`python -m fastio bench ...` in a process where `import matplotlib` fails."""
    code = ("import runpy, sys; sys.modules['matplotlib'] = None; "
            f"sys.argv = ['fastio', 'bench', *{list(args)!r}]; runpy.run_module('fastio', run_name='__main__')")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_plot_without_matplotlib(tmp_path):
    png = tmp_path / "chart.png"
    proc = _bench_without_matplotlib("--quick", "--parts", "files", "--dir", str(tmp_path), "--plot", str(png))
    assert proc.returncode == 2, proc.stderr
    assert "--plot needs matplotlib: pip install 'fastio[plot]'" in proc.stderr
    assert "[1/" not in proc.stderr and proc.stdout == ""  # nothing ran
    assert os.listdir(tmp_path) == []


def test_plot_writes_png(tmp_path):
    if importlib.util.find_spec("matplotlib") is None:
        pytest.skip("matplotlib is not installed (pip install 'fastio[plot]')")
    png = tmp_path / "chart.png"
    env = dict(os.environ)
    if "ASAN_OPTIONS" in env:
        # tools/sanitize: matplotlib leaves unreachable blocks at exit by
        # itself (a bare `import matplotlib.pyplot` and a savefig do), which
        # LeakSanitizer would report; memory errors are still checked.
        env["ASAN_OPTIONS"] += ":detect_leaks=0"
    proc = bench("--quick", "--parts", "selectors", "--backend", "c", "--duration", "0.02", "--plot", str(png),
                 env=env)
    assert proc.returncode == 0, proc.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------- syscount


def test_syscount_reports_why_or_works():
    why = syscount.why_unavailable()
    assert syscount.available() is (why is None)
    assert why is None or (isinstance(why, str) and why)


@pytest.fixture
def counting():
    why = syscount.why_unavailable()
    if why is not None:
        pytest.skip(f"cannot count system calls here: {why}")


def test_syscount_counts_getppid(counting):
    for n in (0, 1000):
        with syscount.SyscallCounter() as sc:
            for _ in range(n):
                os.getppid()
        assert n <= sc.count <= n + 20, (n, sc.count)


def test_syscount_counts_threads_started_inside(counting):
    """Three threads started inside the window, 500 getppid() each: the
    count is their 1500 calls over what starting three idle threads costs
    (which varies: more under AddressSanitizer, which maps a fake stack per
    thread)."""
    def counted(n):
        def work():
            for _ in range(n):
                os.getppid()

        with syscount.SyscallCounter() as sc:
            threads = [threading.Thread(target=work) for _ in range(3)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        return sc.count

    idle = min(counted(0) for _ in range(3))
    busy = counted(500)
    assert busy >= 1500 and 1500 - 150 <= busy - idle <= 1500 + 300, (busy, idle)


def test_syscount_counts_another_process(counting):
    # "ready" first: the counter must start after the child's own start-up
    # (imports: about a thousand system calls), or it counts them too.
    code = ("import os, sys, threading\nprint('ready', flush=True)\nsys.stdin.readline()\n"
            "t = threading.Thread(target=lambda: [os.getppid() for _ in range(3000)])\n"
            "t.start(); t.join()\n[os.getppid() for _ in range(2000)]\nprint('done', flush=True)\n"
            "sys.stdin.readline()\n")
    with subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          text=True) as proc:
        try:
            assert proc.stdout.readline() == "ready\n"
            with syscount.SyscallCounter(proc.pid) as sc:
                proc.stdin.write("go\n")
                proc.stdin.flush()
                assert proc.stdout.readline() == "done\n"
                mid = sc.read()
            assert 5000 <= mid <= sc.count <= 5000 + 500, (mid, sc.count)
        finally:
            proc.stdin.close()
            proc.wait(timeout=30)


def test_syscount_gone_pid():
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          timeout=60)
    pid = int(proc.stdout)
    counter = syscount.SyscallCounter(pid)
    with pytest.raises(OSError):  # ProcessLookupError, or why counting is unavailable here
        counter.start()
    assert counter.count is None


# --------------------------------------------------------------------------- rounds, medians, spread


@pytest.mark.parametrize("samples, expected", [
    ([], None),
    ([100.0], None),                              # one round: no spread
    ([100.0, 100.0, 100.0], 0.0),
    ([90.0, 100.0, 110.0], 0.10),                 # 3 rounds: inclusive quartiles 95 and 105
    ([80.0, 100.0, 120.0], 0.20),
    ([50.0, 99.0, 100.0, 100.0, 101.0], 0.01),    # 5 rounds: one stray round does not count
    ([60.0, 70.0, 100.0, 130.0, 140.0], 0.60),    # two of five off: it does
    ([100.0, 120.0], 0.10 / 1.10),                # 2 rounds: half the range over the median
    ([0.0, 0.0, 0.0], None),                      # a zero median has no relative spread
])
def test_spread_of_samples(samples, expected):
    got = report.spread(samples)
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected)


@pytest.mark.parametrize("spread, noisy", [
    (None, False), (0.0, False), (0.05, False), (report.NOISY_SPREAD, False), (0.1001, True), (0.6, True),
])
def test_noisy_flag_threshold(spread, noisy):
    assert report.NOISY_SPREAD == 0.10
    assert report.is_noisy(spread) is noisy


def _rounds_part() -> Part:
    return Part("demo", "a demo", "base", [
        Row("base", "k", 100.0, "req/s", samples=[99.0, 100.0, 101.0], extra={"group": "1 connection"}),
        Row("wobbly", "k", 200.0, "req/s", samples=[120.0, 200.0, 290.0], extra={"group": "1 connection"}),
        Row("steady", "k", 300.0, "req/s", samples=[297.0, 300.0, 303.0], extra={"group": "1 connection"}),
        Row("single", "k", 50.0, "req/s", samples=[50.0], extra={"group": "1 connection"}),
        Row.skip("never", "k", "not here", "req/s", group="1 connection"),
    ], "m")


def test_fill_spread_flags_the_noisy_row_and_says_so_in_one_line():
    part = _rounds_part()
    report.fill_ratios(part)
    report.fill_spread(part)
    by = {r.name: r for r in part.rows}
    assert by["base"].spread == pytest.approx(0.01) and not by["base"].noisy
    assert by["wobbly"].spread == pytest.approx(0.425) and by["wobbly"].noisy
    assert by["steady"].spread == pytest.approx(0.01) and not by["steady"].noisy
    assert by["single"].spread is None and not by["single"].noisy
    assert by["never"].spread is None and not by["never"].noisy
    others = report.others_cpu((10.0, 100.0, 5.0, 2), (20.0, 115.0, 11.0, 2))  # 15 CPU-s used, 6 ours
    assert others["others_s"] == pytest.approx(9.0) and others["others_share"] == pytest.approx(0.45)
    line = report.noise_line(part, others)
    assert "\n" not in line and line.startswith("TOO NOISY TO TRUST: 1 of 3 rows spread more than 10%")
    assert "wobbly (1 connection) 42%" in line and "steady" not in line and "base" not in line
    assert "other processes used 45% of the 2 CPUs" in line
    part.extra["noise"] = line
    text = report.format_part(part)
    assert text.splitlines()[-1] == line
    wobbly = next(ln for ln in text.splitlines() if ln.strip().startswith("wobbly"))
    assert "42.5%" in wobbly and wobbly.rstrip().endswith("noisy")
    assert "1.0%" in next(ln for ln in text.splitlines() if ln.strip().startswith("steady"))
    # without a noisy row: no line
    part.rows = [r for r in part.rows if r.name != "wobbly"]
    assert report.noise_line(part, others) is None


def test_others_cpu_unknown():
    assert report.others_cpu(None, (1.0, 1.0, 1.0, 2)) is None
    assert report.others_cpu((1.0, 1.0, 1.0, 2), (1.0, 1.0, 1.0, 2)) is None  # no time passed
    low = report.others_cpu((0.0, 0.0, 0.0, 2), (10.0, 5.0, 5.5, 2))  # ours counted finer than /proc/stat
    assert low["others_s"] == 0.0 and low["others_share"] == 0.0


def _fake_echo_round(values: dict[tuple[str, int], list[float]], calls: list, fail: set = frozenset()):
    """An echo._measure that returns the given req/s per (model, connections)
    and round instead of running servers, recording each call's order."""
    def measure(names, counts, duration, warmup, backend, server_cpu, progress, client_cpu=None, label="",
                split=False):
        r = len(calls)
        calls.append((list(names), split))
        rows = []
        for name in names:
            progress(f"{name}{label}")
            for n in counts:
                if name in fail:
                    rows.append(Row.skip(name, "k", "failed: boom", "req/s", group=echo._group(n)))
                    continue
                v = values[(name, n)][r]
                rows.append(Row(name, "k", v, "req/s", p99_us=10.0 * (r + 1), cpu_s=0.1, syscalls_per_op=2.0,
                                samples=[v], extra={
                                    "group": echo._group(n), "connections": n, "size": 64, "requests": int(v),
                                    "elapsed_s": 1.0, "throughput_Bps": 64 * v, "mean_us": 5.0, "p50_us": 4.0,
                                    "p90_us": 6.0, "p99.9_us": 20.0, "max_us": 30.0, "cpu_us_per_request": 1.0,
                                    "syscalls": 2 * v, "summary": "s", "shared_cpu": not split}))
        return rows, ([f"{name}: boom" for name in names if name in fail] if fail else [])
    return measure


def test_echo_rounds_alternate_and_report_medians(monkeypatch):
    """Three rounds: the model order rotates, each row's value is the median
    of its rounds, samples keep the round order, and the ratio is paired
    round by round (not the ratio of the medians)."""
    values = {
        ("asyncio", 1): [100.0, 50.0, 200.0], ("asyncio", 64): [1000.0, 1000.0, 1000.0],
        ("epoll", 1): [150.0, 100.0, 260.0], ("epoll", 64): [1500.0, 1100.0, 1200.0],
        ("c-epoll", 1): [300.0, 140.0, 500.0], ("c-epoll", 64): [2000.0, 2100.0, 1900.0],
    }
    calls: list = []
    monkeypatch.setattr(echo, "_measure", _fake_echo_round(values, calls))
    lines: list[str] = []
    options = Options(models=["asyncio", "epoll", "c-epoll"], rounds=3, parts=["echo"])
    part = echo.run(options, lines.append)
    assert [c[0] for c in calls] == [["asyncio", "epoll", "c-epoll"], ["epoll", "c-epoll", "asyncio"],
                                     ["c-epoll", "asyncio", "epoll"]]
    assert all(split is False for _, split in calls)  # --cpus shared by default
    assert len(lines) == echo.steps(options) == 9 and lines[3] == "epoll (round 2/3)"
    by = {(r.name, r.extra["connections"]): r for r in part.rows}
    assert [(r.name, r.extra["connections"]) for r in part.rows] == [
        ("asyncio", 1), ("epoll", 1), ("c-epoll", 1), ("asyncio", 64), ("epoll", 64), ("c-epoll", 64)]
    e1 = by[("epoll", 1)]
    assert e1.samples == [150.0, 100.0, 260.0] and e1.value == 150.0
    assert e1.ratio == pytest.approx(1.5)  # rounds: 1.5, 2.0, 1.3; the ratio of medians would be 1.5 too
    e64 = by[("epoll", 64)]
    assert e64.value == 1200.0 and e64.ratio == pytest.approx(1.2)  # 1.5, 1.1, 1.2
    assert by[("c-epoll", 1)].ratio == pytest.approx(2.8)  # 3.0, 2.8, 2.5: the ratio of medians would be 3.0
    assert e1.extra["vs_c-epoll"] == pytest.approx(0.52)  # 0.5, 0.714, 0.52
    assert e1.p99_us == 20.0 and e1.extra["p99_us_samples"] == [10.0, 20.0, 30.0]
    assert e1.extra["rounds"] == [0, 1, 2] and e1.extra["requests"] == 510
    assert e1.spread == pytest.approx(report.spread([150.0, 100.0, 260.0])) and e1.noisy
    assert not by[("c-epoll", 64)].noisy
    assert part.extra["rounds"] == 3 and part.extra["cpus"] == "shared"
    assert part.extra["notes"] == ["the C ceiling: c-epoll first at 1 connection; c-epoll first at 64 connections"]


def test_echo_model_failing_in_round_one_is_skipped_after(monkeypatch):
    values = {(m, 1): [10.0, 20.0] for m in ("asyncio", "c-epoll")}
    calls: list = []
    monkeypatch.setattr(echo, "_measure", _fake_echo_round(values, calls, fail={"epoll"}))
    lines: list[str] = []
    options = Options(models=["asyncio", "epoll", "c-epoll"], rounds=2, connections=[1], parts=["echo"],
                      cpus="split")
    part = echo.run(options, lines.append)
    assert calls[1] == (["c-epoll", "asyncio"], True)  # epoll is not started again
    assert len(lines) == echo.steps(options) == 6 and "epoll (round 2/2): skipped: failed: boom" in lines
    by = {r.name: r for r in part.rows}
    assert by["epoll"].skipped == "failed: boom" and by["epoll"].value is None
    assert by["asyncio"].samples == [10.0, 20.0] and by["c-epoll"].ratio == pytest.approx(1.0)
    assert part.extra["problems"] == ["epoll: boom (round 1)"] and part.extra["cpus"] == "split"


def test_echo_ceiling_note():
    def row(name, value, spread=None):
        return Row(name, "k", value, "req/s", spread=spread, extra={"group": "1 connection"})

    rows = [row("c-epoll", 100.0, 0.02), row("nonblocking", 120.0, 0.01), row("blocking", 101.0, 0.03),
            row("asyncio", 80.0, 0.01), row("c-uring", 90.0, 0.01)]
    note = echo._ceiling_note(rows, [1, 64])
    assert note == ("the C ceiling: c-epoll below nonblocking +20% (busy polling: a whole CPU, no wait), "
                    "blocking +1% (within the spread) at 1 connection")
    # The better of the two C servers is the ceiling; the other is no row above it.
    rows = [row("c-epoll", 100.0, 0.02), row("c-uring", 110.0, 0.01), row("uring", 105.0, 0.01)]
    assert echo._ceiling_note(rows, [1]) == "the C ceiling: c-uring first at 1 connection"
    assert echo._ceiling_note([row("asyncio", 1.0)], [1]) is None  # no ceiling row measured


def test_rounds_option_is_honoured(tmp_path):
    """--rounds through the command line: every measured row of echo and
    selectors has that many samples, its value their median and its spread."""
    out = tmp_path / "out.json"
    proc = bench("--parts", "echo,selectors", "--models", "c-epoll,asyncio", "--connections", "1",
                 "--rounds", "3", "--duration", "0.15", "--backend", "c", "--json", str(out), timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(out.read_text())
    assert doc["options"]["rounds"] == 3
    parts = {p["name"]: p for p in doc["parts"]}
    assert parts["echo"]["extra"]["rounds"] == 3 and parts["selectors"]["extra"]["repeats"] == 3
    for name, part in parts.items():
        measured = [r for r in part["rows"] if r["skipped"] is None]
        assert measured
        for r in measured:
            check_row(r, name)
            assert len(r["samples"]) == 3 and r["spread"] is not None, r
    assert {r["name"] for r in parts["echo"]["rows"]} == {"c-epoll", "asyncio"}
    assert all(r["extra"]["rounds"] == [0, 1, 2] for r in parts["echo"]["rows"])
    assert "3 rounds" in parts["echo"]["method"]
    assert " spread " in proc.stdout.splitlines()[1]  # the table's header
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("[")]
    assert "echo: asyncio (round 3/3) ..." in "\n".join(lines) and lines[-1].startswith(f"[{len(lines)}/")
