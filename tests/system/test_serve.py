"""``python -m fastio serve``: every model answers an outside, nc-style client
(a plain blocking socket in this process), over TCP and a Unix socket, and
stops cleanly on SIGINT and SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys

import pytest

from fastio import _serve

ALL = list(_serve.registry())


def _start(backend_name: str, *args: str) -> tuple[subprocess.Popen, str]:
    env = dict(os.environ, FASTIO_BACKEND=backend_name)
    proc = subprocess.Popen([sys.executable, "-m", "fastio", "serve", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    line = proc.stdout.readline()
    m = re.search(r"echoing on (\S+);", line)
    if not m:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"serve did not start; status {proc.returncode}, output:\n{line}{out}{err}")
    return proc, m.group(1)


def _stop(proc: subprocess.Popen, signum: int) -> str:
    proc.send_signal(signum)
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"serve did not stop within 30 s of signal {signum}:\n{out}{err}")
    assert proc.returncode == 0, err
    assert err == ""
    return out


def _talk(sock: socket.socket) -> None:
    """What ``nc`` does: send lines, read the echo, half-close, read to EOF."""
    sock.settimeout(10)
    for line in (b"hello\n", b"x" * 100_000 + b"\n"):
        sock.sendall(line)
        got = b""
        while len(got) < len(line):
            chunk = sock.recv(65536)
            assert chunk, "server closed early"
            got += chunk
        assert got == line
    sock.shutdown(socket.SHUT_WR)
    assert sock.recv(16) == b""


@pytest.mark.parametrize("model", ALL)
def test_serve_answers_a_client_over_tcp(backend, model):
    why = _serve.registry()[model].why_unavailable(backend.name)
    if why:
        pytest.skip(f"{model}: {why}")
    proc, where = _start(backend.name, model)
    try:
        host, port = where.rsplit(":", 1)
        assert host == "127.0.0.1"
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            _talk(sock)
    finally:
        out = _stop(proc, signal.SIGINT)
    assert re.search(r"stopped after [0-9.]+ s of CPU", out), out


def test_serve_on_a_unix_socket_stops_on_sigterm(backend, tmp_path):
    path = str(tmp_path / "echo.sock")
    proc, where = _start(backend.name, "epoll", "--unix", path)
    try:
        assert where == path
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(path)
            _talk(sock)
    finally:
        _stop(proc, signal.SIGTERM)


def test_serve_lists_models_and_refuses_unknown_ones():
    out = subprocess.run([sys.executable, "-m", "fastio", "serve"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    listed = [line.split()[0] for line in out.stdout.splitlines()]
    assert listed == ALL
    bad = subprocess.run([sys.executable, "-m", "fastio", "serve", "nosuch"], capture_output=True, text=True,
                         timeout=30)
    assert bad.returncode == 2
    assert "unknown model 'nosuch'" in bad.stderr
    bad = subprocess.run([sys.executable, "-m", "fastio", "serve", "epoll", "--port", "70000"],
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2
    assert "not a TCP port" in bad.stderr
