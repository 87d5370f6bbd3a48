"""Shared driver of the atheris harnesses in tools/fuzz/.

Each input is decoded into a short sequence of method calls on one fresh
object of the interface under test (a Ring, a Context, a selector, a
SignalIO), with arguments drawn from a pool of awkward values: huge and
negative ints, floats, None, str/bytes, read-only and writable buffers,
int64/int32 arrays, open, closed and absurd fds, sequences of those. The
same calls are made on both backends (the compiled one for crashes, the
pure one, plain Python, for the coverage atheris can see; gcc has no
libFuzzer coverage, so the Cython code itself is not instrumented).

Every call runs under a watchdog (SIGALRM after WATCHDOG s raising
FuzzTimeout), so a wait that would block forever ends through the PEP 475
path. Any exception outside ALLOWED, or a crash, is a finding: atheris
saves the input (crash-*) and stops.
"""

from __future__ import annotations

import array
import gc
import os
import signal
import socket
import sys

import atheris

with atheris.instrument_imports():
    import fastio  # noqa: F401
    import fastio._pure.aio  # noqa: F401
    import fastio._pure.epoll  # noqa: F401
    import fastio._pure.poll  # noqa: F401
    import fastio._pure.selectors  # noqa: F401
    import fastio._pure.sigio  # noqa: F401
    import fastio._pure.uring  # noqa: F401

from fastio import UnsupportedError


class FuzzTimeout(Exception):
    """Raised by the watchdog's SIGALRM handler to end a blocking call."""


ALLOWED = (ValueError, TypeError, OverflowError, OSError, RuntimeError, UnsupportedError, FuzzTimeout)
# KeyError is the stdlib's word for an fd not registered in a selector or select.poll
ALLOWED_MUX = ALLOWED + (KeyError,)
WATCHDOG = 0.02

# long-lived fds the calls may name: a pipe, a socket pair, a listening
# socket, a regular file, /dev/null; and numbers that are no open fd
_PIPE = os.pipe()
_PAIR = socket.socketpair()
_LISTEN = socket.create_server(("127.0.0.1", 0))
_FILE = os.open(os.environ.get("FUZZ_FILE", "/tmp/fastio-fuzz-file"), os.O_RDWR | os.O_CREAT, 0o600)
os.pwrite(_FILE, bytes(range(256)) * 64, 0)
_closed = os.open("/dev/null", os.O_RDONLY)
os.close(_closed)
FDS = [_PIPE[0], _PIPE[1], _PAIR[0].fileno(), _PAIR[1].fileno(), _LISTEN.fileno(), _FILE, _closed, -1, -100,
       2**31 - 1, 10**6]
INTS = [0, 1, 2, 3, 4, 7, 8, 64, 255, 4096, 65535, 2**31 - 1, 2**31, 2**32 - 1, 2**32, 2**63 - 1, 2**63,
        2**64, 10**30, -1, -2, -(2**31), -(2**63), -(2**63) - 1]
KWARGS = ["user_data", "flags", "rw_flags", "multishot", "timeout", "depth", "results", "min_complete",
          "max_nr", "min_nr", "reqprio", "events", "data", "count", "timeout_flags", "any", "all", "fd",
          "accept_flags", "max_events", "cq_entries"]


def value(fdp: atheris.FuzzedDataProvider, depth: int = 0):
    kind = fdp.ConsumeIntInRange(0, 17)
    if kind == 0:
        return fdp.PickValueInList(INTS)
    if kind == 1:
        return fdp.ConsumeInt(fdp.ConsumeIntInRange(1, 9))
    if kind == 2:
        return fdp.PickValueInList(FDS)
    if kind == 3:
        return None
    if kind == 4:
        return fdp.ConsumeRegularFloat() if fdp.ConsumeBool() else fdp.PickValueInList(
            [0.0, 1e-9, 0.001, -0.5, float("inf"), float("nan"), 1e300])
    if kind == 5:
        return bytearray(fdp.ConsumeIntInRange(0, 9000))
    if kind == 6:
        return fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 64))
    if kind == 7:
        return memoryview(bytes(fdp.ConsumeIntInRange(0, 4096)))          # read-only
    if kind == 8:
        return memoryview(bytearray(fdp.ConsumeIntInRange(1, 8192)))[fdp.ConsumeIntInRange(0, 8)::
                                                                      fdp.ConsumeIntInRange(1, 3)]
    if kind == 9:
        return array.array("q", [fdp.ConsumeIntInRange(-5, 1 << 20) for _ in range(fdp.ConsumeIntInRange(0, 8))])
    if kind == 10:
        return array.array("i", [0] * fdp.ConsumeIntInRange(0, 8))
    if kind == 11:
        return fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 16))
    if kind == 12 and depth < 2:
        return [value(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 6))]
    if kind == 13 and depth < 2:
        return tuple(value(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 3)))
    if kind == 14:
        return fdp.ConsumeBool()
    if kind == 15:
        return _PAIR[0] if fdp.ConsumeBool() else object()
    if kind == 16:
        return "/tmp/fastio-fuzz-file"
    return fdp.ConsumeIntInRange(0, 16)


def call(obj, methods, fdp):
    name = fdp.PickValueInList(methods)
    if not hasattr(obj, name):   # the harness may list methods of several classes
        return None
    args = [value(fdp) for _ in range(fdp.ConsumeIntInRange(0, 5))]
    kwargs = {fdp.PickValueInList(KWARGS): value(fdp) for _ in range(fdp.ConsumeIntInRange(0, 2))}
    attr = getattr(obj, name)
    return attr(*args, **kwargs) if callable(attr) else attr


_armed = [False]


def _alarm(*args):
    # Only while a call runs: a late alarm (Python runs handlers at the next
    # bytecode) must not fire in the harness's own code.
    if _armed[0]:
        _armed[0] = False
        raise FuzzTimeout


_allowed = [ALLOWED]


def guarded(func, *args):
    """func(*args) under the watchdog; an exception outside ALLOWED propagates."""
    try:
        _armed[0] = True
        signal.setitimer(signal.ITIMER_REAL, WATCHDOG)
        try:
            return func(*args)
        finally:
            _armed[0] = False
            signal.setitimer(signal.ITIMER_REAL, 0)
    except _allowed[0]:
        return None


def drain_fds(keep: set):
    """Close fds the fuzzed calls opened (openat/accept results): not a leak
    of fastio's, and they would exhaust RLIMIT_NOFILE."""
    for fd in os.listdir("/proc/self/fd"):
        if int(fd) not in keep:
            try:
                os.close(int(fd))
            except OSError:
                pass


def main(make, methods, finish=None, allowed=ALLOWED):
    """make(backend_name, fdp) -> object or None; methods: the names to call."""
    _allowed[0] = allowed
    signal.signal(signal.SIGALRM, _alarm)
    keep = {int(fd) for fd in os.listdir("/proc/self/fd")}
    counter = [0]

    def one_input(data: bytes):
        for backend in ("c", "pure"):
            fdp = atheris.FuzzedDataProvider(data)
            obj = guarded(make, backend, fdp)
            if obj is None:
                continue
            try:
                for _ in range(fdp.ConsumeIntInRange(1, 12)):
                    guarded(call, obj, methods, fdp)
            finally:
                guarded(finish or (lambda o: o.close()), obj)
        counter[0] += 1
        if counter[0] % 64 == 0:
            gc.collect()
            drain_fds(keep)

    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
