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
import subprocess
import sys
import threading
import types

import pytest

import fastio
from fastio import _bench
from fastio._bench import afiles, echo, fio, files, report, syscount
from fastio._bench._types import Options, Part, Row

ROW_KEYS = {"name", "kind", "value", "unit", "p99_us", "cpu_s", "syscalls_per_op", "ratio", "skipped", "extra"}
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
    assert doc["options"] == {"quick": True, "duration": None, "connections": None, "models": None,
                              "parts": ["echo", "files", "afiles", "selectors"], "directory": str(data),
                              "backend": None}

    parts = {p["name"]: p for p in doc["parts"]}
    assert list(parts) == ["echo", "files", "afiles", "selectors"]
    for name, part in parts.items():
        assert PART_KEYS <= set(part), part.keys()
        assert part["method"] and part["title"]
        assert part["extra"]["problems"] == []
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
    for r in e["rows"]:
        if r["skipped"] is None:  # a byte-verified run: requests, latency and server CPU measured
            assert r["extra"]["requests"] > 0 and r["p99_us"] > 0 and r["cpu_s"] > 0, r
            assert r["extra"]["connections"] == int(r["extra"]["group"].split()[0])
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
    assert a["baseline"] == afiles.BASELINE
    assert {r["extra"]["group"] for r in a["rows"]} == {g for g, _ in afiles.ROWS.values()}
    for group, _unit in afiles.ROWS.values():
        rows = {r["name"]: r for r in a["rows"] if r["extra"]["group"] == group}
        assert set(rows) == set(afiles.LIBS)
        # what needs nothing but the stdlib and fastio is measured; the others say why not
        for name in ("executor", "sync", "fastio-thread"):
            assert rows[name]["skipped"] is None, rows[name]
        for name in ("fastio-uring", "fastio-uring/floop", "aiofiles", "aiofile", "anyio"):
            assert (rows[name]["skipped"] is None) == (afiles.why_not(name) is None), rows[name]

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
    assert part.extra["problems"] == ["executor: OSError: [Errno 5] boom"]
    assert len(part.rows) == 3 * len(afiles.ROWS)
    for row in part.rows:
        if row.name == "executor":
            assert row.skipped == "failed: OSError: [Errno 5] boom" and row.value is None
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
    assert head.split() == ["name", "value", "p99", "CPU", "s", "syscalls/op", "ratio", "note"]
    for col in ("value", "p99", "CPU s", "syscalls/op", "ratio"):  # right-aligned columns end together
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
