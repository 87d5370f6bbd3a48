"""Helpers the SignalIO tests share (tests/interfaces/test_sigio.py and
test_sigio_safety.py): the fcntl constants Python's fcntl module lacks, an
fd's armed state as SignalIO must restore it, the thread's signal mask and
an autouse fixture that checks every test leaves it as it found it (a module
turns it on by importing it), a bounded wait for readiness, TCP pairs."""

from __future__ import annotations

import fcntl
import signal
import socket
import struct
import time

import pytest

F_SETSIG = 10
F_GETSIG = 11
F_SETOWN_EX = 15
F_GETOWN_EX = 16
F_OWNER_TID = 0
F_OWNER_PID = 1
OWNER = struct.Struct("ii")


def get_owner(fd: int) -> tuple[int, int]:
    return OWNER.unpack(fcntl.fcntl(fd, F_GETOWN_EX, bytes(8)))


def fd_state(fd: int) -> tuple[int, tuple[int, int], int]:
    """What SignalIO must restore: (flags, (owner type, owner id), signal)."""
    return fcntl.fcntl(fd, fcntl.F_GETFL), get_owner(fd), fcntl.fcntl(fd, F_GETSIG)


def thread_mask() -> set:
    return set(signal.pthread_sigmask(signal.SIG_BLOCK, []))


@pytest.fixture(autouse=True)
def mask_is_restored():
    """Every test leaves the thread's signal mask as it found it."""
    before = thread_mask()
    yield
    after = thread_mask()
    signal.pthread_sigmask(signal.SIG_SETMASK, before)
    assert after == before


def wait_until(sio, want, timeout=5.0, **kw) -> dict:
    """Call wait() until every fd of `want` was reported with its bits;
    returns the union of bands. Bounded in time."""
    got: dict[int, int] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for fd, band in sio.wait(0.5, **kw):
            got[fd] = got.get(fd, 0) | band
        if all(got.get(fd, 0) & bits == bits for fd, bits in want.items()):
            return got
    raise AssertionError(f"wanted {want}, got {got}")


def tcp_pairs(n):
    """n connected TCP pairs on 127.0.0.1 (client, server side)."""
    pairs = []
    with socket.create_server(("127.0.0.1", 0), backlog=n) as server:
        for _ in range(n):
            c = socket.create_connection(server.getsockname())
            s, _ = server.accept()
            pairs.append((c, s))
    return pairs
