"""python -m fastio info: backend, Python, kernel and every interface's state."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest


@pytest.mark.parametrize("name", ["c", "pure"])
def test_info_json(name):
    proc = subprocess.run(
        [sys.executable, "-m", "fastio", "info", "--json"],
        env={**os.environ, "FASTIO_BACKEND": name},
        capture_output=True, text=True, timeout=60, check=True,
    )
    report = json.loads(proc.stdout)
    assert report["backend"] == name
    assert report["kernel"] == platform.release()
    assert report["python"].endswith(platform.python_version())
    for iface in ("epoll", "poll", "select", "sigio", "uring", "aio"):
        assert report["interfaces"][iface]["available"] is True, report["interfaces"][iface]
    assert {"NOP", "READ", "WRITE", "RECV", "SEND"} <= set(report["interfaces"]["uring"]["opcodes"])
    assert "NODROP" in report["interfaces"]["uring"]["features"]
    if name == "c":
        assert report["asyncio"] == {"loop": "fastio.asyncio.Loop", "engine": "uring",
                                     "reason": "io_uring works here"}
    else:
        assert report["asyncio"]["loop"] == "fastio.asyncio.SelectorLoop"
        assert report["asyncio"]["engine"] is None


@pytest.mark.parametrize(("env", "engine", "why"), [
    ({"FASTIO_LOOP_ENGINE": "epoll"}, "epoll", "FASTIO_LOOP_ENGINE=epoll"),
    ({"FASTIO_DISABLE": "uring"}, "epoll", "FASTIO_DISABLE=uring"),
])
def test_info_says_which_engine_a_new_loop_gets_and_why(env, engine, why):
    proc = subprocess.run(
        [sys.executable, "-m", "fastio", "info", "--json"],
        env={**os.environ, "FASTIO_BACKEND": "c", **env},
        capture_output=True, text=True, timeout=60, check=True,
    )
    loop = json.loads(proc.stdout)["asyncio"]
    assert loop["engine"] == engine and why in loop["reason"], loop


def test_info_text():
    proc = subprocess.run([sys.executable, "-m", "fastio", "info"], capture_output=True, text=True,
                          timeout=60, check=True)
    assert "backend:" in proc.stdout and platform.release() in proc.stdout
    assert [line.split()[0] for line in proc.stdout.splitlines() if line.startswith("  ") and
            not line.startswith("   ")] == ["epoll", "poll", "select", "sigio", "uring", "aio"]
    assert "opcodes: NOP READV WRITEV" in proc.stdout
    assert "asyncio: new loops are fastio.asyncio." in proc.stdout


def test_no_command_is_an_error():
    proc = subprocess.run([sys.executable, "-m", "fastio"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "usage" in proc.stderr
