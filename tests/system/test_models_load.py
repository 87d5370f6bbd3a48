"""Every IO model's echo server under the C load generator (fastio.loadgen),
which checks every echoed byte: at one connection and at many, with
pipelining and with messages large enough to force partial sends, over TCP
and a Unix socket, on both backends; then stop() leaves no fd or thread."""

from __future__ import annotations

import os
import threading

import pytest

from fastio import loadgen, models

NAMES = list(models.MODELS)


def _fds() -> set[int]:
    return {int(x) for x in os.listdir("/proc/self/fd")}


def _check(result: loadgen.LoadResult, requests: int) -> None:
    assert result.ok, result.errors
    assert result.requests == requests
    assert set(result.errors.values()) == {0}


@pytest.mark.parametrize("name", NAMES)
def test_model_serves_the_load_generator(name, backend):
    cls = models.get(name)
    why = cls.why_unavailable(backend.name)
    if why:
        pytest.skip(f"{name} on the {backend.name} backend: {why}")
    # A first server warms up what a process keeps once made (uvloop's
    # process-wide signal pipe, imports): the leak check counts the second.
    with cls(backend=backend.name) as warm:
        _check(loadgen.run(warm.address, connections=1, requests=10), 10)
    fds = _fds()
    threads = set(threading.enumerate())
    server = cls(backend=backend.name)
    server.start()
    try:
        _check(loadgen.run(server.address, connections=1, requests=300, timeout=10), 300)
        _check(loadgen.run(server.address, connections=40, depth=4, size=64, requests=4000, timeout=10), 4000)
        # 100 kB messages, two in flight per connection: partial sends
        _check(loadgen.run(server.address, connections=4, depth=2, size=100_000, requests=60, timeout=10), 60)
        assert server.cpu_time() > 0
    finally:
        server.stop()
    assert _fds() == fds, "stop() left an fd open"
    assert set(threading.enumerate()) <= threads, "stop() left a thread running"


@pytest.mark.parametrize("name", ["blocking", "epoll", "sigio", "uring-multishot", "aio", "asyncio-fastio",
                                  "asyncio-fastio-uring", "asyncio-fastio-epoll"])
def test_model_serves_the_load_generator_on_a_unix_socket(name, backend, tmp_path):
    cls = models.get(name)
    why = cls.why_unavailable(backend.name)
    if why:
        pytest.skip(f"{name} on the {backend.name} backend: {why}")
    path = str(tmp_path / "s")
    if len(path) > 100:
        path = f"/tmp/fio-{os.getpid()}-{name}.sock"
    with cls(path, backend=backend.name) as server:
        assert server.address == path
        _check(loadgen.run(path, connections=16, depth=2, requests=2000, timeout=10), 2000)
    assert not os.path.exists(path)
