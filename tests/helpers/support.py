"""Helpers several test modules share (tests/ is on sys.path under pytest)."""

from __future__ import annotations

import contextlib
import functools
import gc
import itertools
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


def run_by_collector(frame) -> bool:
    """Whether frame runs inside code the garbage collector ran inside a
    call (a ``__del__``, or a ``gc.callbacks`` function such as
    hypothesis's): an exception raised there is unraisable, it never
    reaches the call (and pytest fails the test for it)."""
    callbacks = {getattr(cb, "__code__", None) for cb in gc.callbacks}
    while frame is not None:
        if frame.f_code.co_name == "__del__" or frame.f_code in callbacks:
            return True
        frame = frame.f_back
    return False


class StormRaised(Exception):
    """What a Storm's signal handler raises."""


class Storm:
    """A storm of raising signals, for the tests that every request comes
    back exactly once whatever a signal handler raises. The handler
    (install it with ``interval_timer(storm.handler, ...)``) raises
    StormRaised only inside ``call``, at most once per call and not inside a
    finalizer, so the test's own bookkeeping is never cut; ``raised`` counts the raises and clearing
    ``armed`` stops them."""

    def __init__(self) -> None:
        self.armed = True
        self.inside = False
        self.raised = 0

    def handler(self, signum, frame) -> None:
        if self.inside and self.armed and not run_by_collector(frame):
            self.inside = False
            self.raised += 1
            raise StormRaised

    def call(self, fn, *args, **kwargs):
        """fn(*args, **kwargs), or None when the storm cut it. The result is
        stored from C (list.extend over itertools.starmap): a handler raising
        right after a call returns would drop the value in a Python caller,
        and the test would take a request that was queued for one that was
        not."""
        out: list = []
        try:
            self.inside = True
            out.extend(itertools.starmap(functools.partial(fn, **kwargs), (args,)))
            self.inside = False
        except StormRaised:
            pass
        except BaseException:
            self.inside = False
            raise
        return out[0] if out else None


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
