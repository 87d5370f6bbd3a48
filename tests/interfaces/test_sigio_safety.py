"""SignalIO's safety rules on both backends, real sockets and pipes: bad
fds and types, a closed object, calls from another thread and one SignalIO
per thread, use in a forked child, EINTR (other signals, a handler that
raises), the real-time signal queue overflowed for real (RLIMIT_SIGPENDING
in a subprocess) and a lone SIGIO, and the misuse found in review (wait()
re-entered from a handler, close() during a wait, one file armed twice).
The shared helpers are in tests/helpers/sigio_support.py."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest
# mask_is_restored: an autouse fixture; imported, it checks every test here.
from sigio_support import fd_state, mask_is_restored, thread_mask, wait_until
from support import Interrupted, in_child, interval_timer, raise_interrupted

from fastio import sigio as fsigio


# ---------------------------------------------------------------- bad input, closed, threads, fork


def test_bad_fds_and_types(backend, sockpair):
    a, _ = sockpair
    with backend.SignalIO() as sio:
        sio.add(a)
        with pytest.raises(FileExistsError):
            sio.add(a.fileno())
        with pytest.raises(FileNotFoundError):
            sio.remove(12345)
        r, w = os.pipe()
        os.close(r)
        os.close(w)
        with pytest.raises(OSError) as info:
            sio.add(r)
        assert info.value.errno == errno.EBADF
        with pytest.raises(ValueError, match="negative"):
            sio.add(-1)
        with pytest.raises(TypeError):
            sio.add("3")
        with pytest.raises(TypeError):
            sio.add(object())
        with pytest.raises(TypeError):
            sio.add(1.5)
        with pytest.raises(OverflowError):
            sio.add(2**40)


def test_closed_object_raises_value_error(backend, sockpair):
    a, _ = sockpair
    sio = backend.SignalIO()
    sio.close()
    sio.close()
    for call in (lambda: sio.add(a), lambda: sio.remove(a), lambda: sio.wait(0), sio.fileno, sio.__enter__):
        with pytest.raises(ValueError, match="closed SignalIO"):
            call()


def test_wait_from_another_thread_is_an_error(backend, sockpair):
    a, _ = sockpair
    with backend.SignalIO() as sio:
        sio.add(a)
        errors = []

        def other():
            try:
                sio.wait(1)
            except RuntimeError as exc:
                errors.append(str(exc))

        t = threading.Thread(target=other)
        t.start()
        t.join(5)
        assert not t.is_alive()
        assert len(errors) == 1 and "thread other than the one that created" in errors[0]
        assert sio.wait(0)  # the owner still can


def test_signal_reaches_the_owner_not_threads_that_do_not_block_it(backend, sockpair):
    """A thread started before the SignalIO does not block its signal. Aimed
    at the process (F_OWNER_PID), the signal would be delivered there and
    kill the process (the default action); aimed at the owner's thread id it
    is queued for the owner only."""
    a, b = sockpair
    go, done = threading.Event(), threading.Event()
    seen = {}

    def helper():
        go.wait(5)
        seen["mask"] = thread_mask()
        for _ in range(20):
            b.send(b"x")
            time.sleep(0.002)
        done.set()

    t = threading.Thread(target=helper)
    t.start()
    try:
        with backend.SignalIO() as sio:
            sio.add(a)
            sio.wait(0)
            go.set()
            got = wait_until(sio, {a.fileno(): fsigio.POLLIN})
            done.wait(5)
            assert sio.signum not in seen["mask"]
            assert got[a.fileno()] & fsigio.POLLIN
    finally:
        go.set()
        t.join(5)


def test_close_from_another_thread(backend, sockpair):
    """Only the owner can change its mask: closed elsewhere, the fds are
    restored and the signal stays blocked in the owner as a leftover."""
    a, _ = sockpair
    before = fd_state(a.fileno())
    sio = backend.SignalIO()
    signum = sio.signum
    sio.add(a)
    t = threading.Thread(target=sio.close)
    t.start()
    t.join(5)
    try:
        assert sio.closed
        assert fd_state(a.fileno()) == before
        assert signum in thread_mask()
        with backend.SignalIO() as again:  # the leftover is taken first
            assert again.signum == signum
    finally:
        from fastio import _sigclaim

        _sigclaim._threads.pop(threading.get_ident(), None)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [signum, signal.SIGIO])


def test_one_per_thread_works(backend):
    """Each thread its own SignalIO: signals go to the owning thread only."""
    results = {}

    def worker(i):
        a, b = socket.socketpair()
        try:
            with backend.SignalIO() as sio:
                sio.add(a)
                sio.wait(0)
                b.send(b"x")
                results[i] = sio.wait(5) == [(a.fileno(), fsigio.POLLIN | fsigio.POLLRDNORM)]
        finally:
            a.close()
            b.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == {i: True for i in range(4)}


@pytest.mark.parametrize("call", ["add", "remove", "wait"])
def test_use_in_forked_child_is_refused(backend, sockpair, call):
    a, b = sockpair
    with backend.SignalIO() as sio:
        sio.add(a)
        sio.wait(0)
        args = {"add": (b,), "remove": (a,), "wait": (0,)}[call]
        out = in_child(lambda: getattr(sio, call)(*args))
        assert out.startswith("RuntimeError") and "fork" in out
        # close() in the child must not disarm the parent's fds
        assert in_child(lambda: (sio.close(), sio.closed)[1]) == "ok True"
        assert fd_state(a.fileno())[0] & os.O_ASYNC
        b.send(b"x")
        assert sio.wait(5) == [(a.fileno(), fsigio.POLLIN | fsigio.POLLRDNORM)]


# ---------------------------------------------------------------- EINTR


@pytest.mark.parametrize("cls", ["SignalIO", "TextbookSignalIO"])
def test_wait_resumes_after_other_signals(backend, sockpair, cls):
    a, _ = sockpair
    fired = []
    with getattr(backend, cls)() as sio:
        sio.add(a)
        sio.wait(0)
        with interval_timer(lambda *args: fired.append(1)):
            start = time.monotonic()
            result = sio.wait(0.2)
            elapsed = time.monotonic() - start
    assert result == []
    assert len(fired) >= 5
    assert elapsed >= 0.2


@pytest.mark.parametrize("cls", ["SignalIO", "TextbookSignalIO"])
def test_handler_exception_ends_an_infinite_wait(backend, cls):
    with getattr(backend, cls)() as sio:
        with interval_timer(raise_interrupted, 0.05), pytest.raises(Interrupted):
            sio.wait(None)


# ---------------------------------------------------------------- overflow

OVERFLOW_SCRIPT = """
import json, resource, socket, sys
resource.setrlimit(resource.RLIMIT_SIGPENDING, ({limit}, {limit}))
from fastio._{backend}.sigio import SignalIO
n = {n}
pairs = [socket.socketpair() for _ in range(n)]
first = SignalIO()
second = SignalIO()  # another SignalIO of the thread must learn of it too
for a, b in pairs[: n // 2]:
    first.add(a)
for a, b in pairs[n // 2:]:
    second.add(a)
first.wait(0); second.wait(0)
for a, b in pairs:
    b.send(b"x")
one = first.wait(1)
two = second.wait(1)
report = {{
    "first": sorted(fd for fd, band in one if band & 1),
    "second": sorted(fd for fd, band in two if band & 1),
    "want_first": sorted(a.fileno() for a, b in pairs[: n // 2]),
    "want_second": sorted(a.fileno() for a, b in pairs[n // 2:]),
    "overflowed": [first.overflowed, second.overflowed],
    "after": [first.wait(0), second.wait(0), first.overflowed, second.overflowed],
}}
first.close(); second.close()
print(json.dumps(report))
"""


def test_queue_overflow_loses_no_readiness(backend):
    """RLIMIT_SIGPENDING of 8 in a subprocess and 60 fds made ready at once:
    the kernel drops real-time signals and queues plain SIGIO; wait() must
    flag it and report every ready fd, for every SignalIO of the thread."""
    code = OVERFLOW_SCRIPT.format(limit=8, n=60, backend=backend.name)
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["overflowed"] == [True, True]
    assert report["first"] == report["want_first"]
    assert report["second"] == report["want_second"]
    first_after, second_after, *flags = report["after"]
    assert first_after == [] and second_after == []  # everything was reported the first time
    assert flags == [False, False]


def test_a_lone_sigio_triggers_the_poll_rule(backend, sockpair):
    """Whatever the kernel queued before, reading plain SIGIO means some fd's
    signal was lost: wait() polls every added fd (here SIGIO is sent by hand,
    to this thread, as the kernel's fallback would be)."""
    a, b = sockpair
    c, d = socket.socketpair()
    try:
        with backend.SignalIO() as sio:
            sio.add(a)
            sio.add(c)
            sio.wait(0)
            b.send(b"x")
            sio.wait(5)  # its signal is read; the data is still there
            signal.pthread_kill(threading.get_ident(), signal.SIGIO)
            events = dict(sio.wait(5))
            assert sio.overflowed and sio.overflows == 1
            assert events[a.fileno()] & fsigio.POLLIN  # still readable: reported again
            assert events[c.fileno()] & fsigio.POLLOUT and not events[c.fileno()] & fsigio.POLLIN
            assert sio.wait(0) == [] and not sio.overflowed
    finally:
        c.close()
        d.close()


def test_no_overflow_flag_in_normal_operation(backend, sockpair):
    a, b = sockpair
    with backend.SignalIO() as sio:
        sio.add(a)
        sio.wait(0)
        b.send(b"x")
        sio.wait(5)
        assert sio.overflowed is False and sio.overflows == 0


# ---------------------------------------------------------------- misuse found in review


def test_wait_cannot_be_reentered_from_a_signal_handler(backend, sockpair):
    """Regression: a handler calling wait(max_events=8192) during a wait grew the
    signalfd buffer under the outer read(2) (a kernel write into freed memory
    on the compiled backend). Re-entry is now a RuntimeError."""
    a, b = sockpair
    with backend.SignalIO() as sio:
        sio.add(a)
        sio.wait(0)
        seen = []

        def handler(*args):
            try:
                sio.wait(0, max_events=8192)
            except RuntimeError as exc:
                seen.append(str(exc))
            b.send(b"x")

        with interval_timer(handler, 0.02):
            events = sio.wait(5)
        assert seen and "re-entered" in seen[0]
        assert events == [(a.fileno(), fsigio.POLLIN | fsigio.POLLRDNORM)]


def test_close_while_waiting_is_refused(backend, sockpair):
    a, b = sockpair
    with backend.SignalIO() as sio:
        sio.add(a)
        sio.wait(0)
        errors = []

        def close_elsewhere():
            time.sleep(0.05)
            try:
                sio.close()
            except RuntimeError as exc:
                errors.append(str(exc))
            b.send(b"x")

        t = threading.Thread(target=close_elsewhere)
        t.start()
        assert sio.wait(5) == [(a.fileno(), fsigio.POLLIN | fsigio.POLLRDNORM)]
        t.join(5)
        assert errors and "while its wait() runs" in errors[0]
        assert not sio.closed


def test_a_dup_or_a_second_signalio_cannot_arm_the_same_file(backend, sockpair):
    """Regression: O_ASYNC, owner and signal belong to the open file. Arming a
    dup saved the first arming as "the original"; close() then left the file
    raising a signal nobody blocked, which killed the process."""
    a, b = sockpair
    dup = os.dup(a.fileno())
    before = fd_state(a.fileno())
    try:
        with backend.SignalIO() as sio, backend.SignalIO() as other:
            sio.add(a)
            with pytest.raises(FileExistsError, match="already has armed"):
                sio.add(dup)
            with pytest.raises(FileExistsError, match="already has armed"):
                other.add(a)
        assert fd_state(a.fileno()) == before
        b.send(b"x")  # would kill the process if the file were still armed
        assert a.recv(1) == b"x"
    finally:
        os.close(dup)


def test_a_file_without_fasync_cannot_be_armed_twice_either(backend):
    """Regression (found by tests/state/test_state_sigio.py): an eventfd (no fasync
    hook: the kernel keeps O_ASYNC off, yet sets its owner and signal) could
    be added to two SignalIO objects, since the check looked for O_ASYNC; the
    second saved the first's owner and signal as "the original" and, removed
    last, left them on the file. The check now reads the file's signal."""
    import ctypes

    efd = ctypes.CDLL(None, use_errno=True).eventfd(0, os.O_NONBLOCK | os.O_CLOEXEC)
    assert efd >= 0
    before = fd_state(efd)
    try:
        with backend.SignalIO() as sio, backend.SignalIO() as other:
            sio.add(efd)
            with pytest.raises(FileExistsError, match="already has armed"):
                other.add(efd)
            sio.remove(efd)
            other.add(efd)                      # free again once removed
        assert fd_state(efd) == before
    finally:
        os.close(efd)
