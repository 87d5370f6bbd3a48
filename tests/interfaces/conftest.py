"""The fixtures test files here share: a 64-entry ``ring`` on each backend
and a 1 MiB ``datafile`` (test_uring.py, test_uring_safety.py), and
``pairs``, a socketpair factory (the selectors tests). A module that needs
another ring or file defines its own, which takes precedence."""

from __future__ import annotations

import os
import random
import socket

import pytest


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
