"""Helpers several test modules share (tests/ is on sys.path under pytest)."""

from __future__ import annotations

import contextlib
import os
import signal
import time

import pytest

# Set when the suite runs under memcheck (tools/valgrind): valgrind puts its
# preload libraries into the client's LD_PRELOAD.
UNDER_VALGRIND = "vgpreload_memcheck" in os.environ.get("LD_PRELOAD", "")

# For the tests whose io_uring wait is ended by another thread or a signal.
skip_if_valgrind_serialises_uring_waits = pytest.mark.skipif(
    UNDER_VALGRIND,
    reason="valgrind (3.19) runs io_uring_enter as a non-blocking syscall: while one thread "
    "waits in it no other thread runs and no signal is delivered, so this wait would never end",
)

# For the tests where one thread stays inside io_submit (a buffered read of
# an empty pipe) while another works.
skip_if_valgrind_serialises_io_submit = pytest.mark.skipif(
    UNDER_VALGRIND,
    reason="valgrind (3.19) runs io_submit as a non-blocking syscall: while one thread is blocked "
    "in it no other thread runs, so the thread this test drives meanwhile never does",
)


def in_child(func) -> str:
    """Run func in a forked child; return ``"ok <repr of result>"`` or
    ``"<ExceptionType>: <message>"``, as the child reported it through a pipe."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(r)
            try:
                msg = f"ok {func()!r}"
            except BaseException as exc:
                msg = f"{type(exc).__name__}: {exc}"
            os.write(w, msg.encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        out = f.read().decode()
    os.waitpid(pid, 0)
    return out


@contextlib.contextmanager
def interval_timer(handler, interval=0.005):
    """SIGALRM every ``interval`` seconds into ``handler`` while in the block."""
    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, interval, interval)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        if UNDER_VALGRIND:
            # valgrind hands a signal to the program late, at its next safe
            # point: one raised before the timer was disarmed must not find
            # SIG_DFL (the process would die of it). Let it arrive here.
            signal.signal(signal.SIGALRM, lambda *args: None)
            time.sleep(0.1)
        signal.signal(signal.SIGALRM, old)


class Interrupted(Exception):
    """Raised by a test's signal handler to end a wait."""


def raise_interrupted(*args):
    raise Interrupted


def wait_all(ring, n, timeout=10.0):
    """Exactly n completions, within timeout (bounded loop)."""
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        out += ring.wait(n - len(out), timeout=max(deadline - time.monotonic(), 0.001))
    assert len(out) == n, out
    return out


def reap(ctx, n, timeout=10.0):
    """Exactly n completions from an aio Context, within timeout (bounded loop)."""
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        out += ctx.getevents(0, n - len(out), timeout=0.05) if ctx.inflight == 0 else \
            ctx.getevents(1, min(n - len(out), ctx.maxevents), timeout=max(deadline - time.monotonic(), 0.001))
    assert len(out) == n, out
    return out
