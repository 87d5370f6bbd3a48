"""The fixtures test files here share: a 64-entry ``ring`` on each backend
and a 1 MiB ``datafile`` as (fd, bytes) (test_uring.py, test_uring_safety.py);
for Linux AIO (test_aio.py, test_aio_safety.py) ``impl`` (the backend's aio
module), a 64-event ``ctx``, a 1 MiB ``aio_datafile`` as (path, bytes) and
``direct_fd``, that file opened O_DIRECT; ``pairs``, a socketpair factory
(the selectors tests); and for the exactly-once tests under raising signals
(test_uring_safety.py) ``storm``, a Storm whose timer
runs for the test, and ``storm_backend``, the backend where such a test can
hold. A module that needs another ring or file defines its
own, which takes precedence."""

from __future__ import annotations

import os
import random
import socket
import sys

import pytest
from support import Storm, interval_timer


@pytest.fixture
def ring(backend):
    r = backend.Ring(64)
    yield r
    r.close()


@pytest.fixture
def datafile(tmp_path):
    """A 1 MiB file of random bytes; yields (fd, bytes)."""
    data = random.Random(1).randbytes(1 << 20)
    path = tmp_path / "data"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    yield fd, data
    os.close(fd)


@pytest.fixture
def impl(backend):
    """fastio._<backend>.aio itself (its Completion/available share names with io_uring's)."""
    return backend.aio


@pytest.fixture
def ctx(backend):
    c = backend.Context(64)
    yield c
    c.close()


@pytest.fixture
def aio_datafile(tmp_path):
    """A 1 MiB file of random bytes on disk; yields (path, bytes)."""
    data = random.Random(4).randbytes(1 << 20)
    path = tmp_path / "data"
    path.write_bytes(data)
    return path, data


@pytest.fixture
def direct_fd(aio_datafile):
    """aio_datafile opened O_RDONLY | O_DIRECT; yields (fd, bytes)."""
    path, data = aio_datafile
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    except OSError as exc:
        pytest.skip(f"the filesystem of {path.parent} refuses O_DIRECT: {exc}")
    yield fd, data
    os.close(fd)


@pytest.fixture
def pairs():
    """A factory of socketpairs, all closed after the test."""
    made = []

    def make():
        pair = socket.socketpair()
        made.extend(pair)
        return pair

    yield make
    for s in made:
        s.close()


@pytest.fixture
def storm_backend(backend):
    """backend, but not the pure one on CPython 3.9: 3.9 runs a signal
    handler between almost any two bytecodes, so no Python code can take a
    completion off a ring and hand it out with nothing between (measured:
    of runs of six attribute stores, 70% were cut)."""
    if backend.name == "pure" and sys.version_info < (3, 10):
        pytest.skip("CPython 3.9 runs signal handlers between almost any two bytecodes: "
                    "pure-Python code cannot deliver exactly once under a raising handler")
    return backend


@pytest.fixture
def storm():
    """A Storm: SIGALRM every 0.7 ms raising inside storm.call, for the test."""
    s = Storm()
    with interval_timer(s.handler, 0.0007):
        yield s
