"""The fixtures the io_uring test files here share (test_uring.py,
test_uring_safety.py): a 64-entry ``ring`` on each backend and a 1 MiB
``datafile``. A module that needs another ring or file defines its own,
which takes precedence."""

from __future__ import annotations

import os
import random

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
