"""What the hypothesis state machines (tests/test_state_*.py) share: their
settings, and calls that must either succeed or raise one of the documented
exceptions.

``FASTIO_FUZZ_EXAMPLES=N`` raises the number of examples of every machine to
N (and its steps to ``FASTIO_FUZZ_STEPS``, default 100) for a long run;
unset, each machine runs a few dozen short examples so the suite stays fast.
"""

from __future__ import annotations

import os
import reprlib
import socket
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st


def fuzz_settings(examples: int, steps: int) -> settings:
    """``examples`` examples of ``steps`` steps, unless FASTIO_FUZZ_EXAMPLES
    (and FASTIO_FUZZ_STEPS) ask for more."""
    long_run = int(os.environ.get("FASTIO_FUZZ_EXAMPLES", "0") or 0)
    if long_run:
        examples = long_run
        steps = int(os.environ.get("FASTIO_FUZZ_STEPS", "100"))
    return settings(
        # The suite's short runs draw the same examples every time (a CI
        # verdict must not depend on the draw); long runs explore.
        derandomize=not long_run,
        max_examples=examples,
        stateful_step_count=steps,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
        # no "explain" phase: its traced reruns of a failing machine are slow
        phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
        database=None,
    )


def mostly(good, bad: list):
    """A good value nine times in ten, else one of ``bad``: calls with
    several arguments then mostly get through (so the requests they make are
    checked) and every refusal is still met often. ``good`` is a list of
    values or a strategy. (Weights by repetition: cheaper to draw than a
    flatmap, and shrinking goes to the first, good, values.)"""
    if isinstance(good, (list, tuple)):
        reps = max(1, (9 * len(bad)) // max(len(good), 1))
        return st.sampled_from(list(good) * reps + list(bad))
    return st.one_of(*([good] * 9), st.sampled_from(bad))


# An fd number nothing in these tests opens: every use of it is EBADF.
BADFD = 2**31 - 1


def closed_fd_number() -> int:
    """An fd number within RLIMIT_NOFILE that was open and is closed, and
    that no later open takes (the kernel hands out the lowest free number;
    this is the highest allowed): a request queued with it and submitted
    later still names a closed fd."""
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    high = min(soft, 1 << 20) - 1
    r, w = os.pipe()
    try:
        os.dup2(r, high)
        os.close(high)
    finally:
        os.close(r)
        os.close(w)
    return high


class Errno:
    """An expected OSError with this errno (None: any errno)."""

    def __init__(self, errno: int | None = None):
        self.errno = errno

    def matches(self, exc: BaseException) -> bool:
        return isinstance(exc, OSError) and (self.errno is None or exc.errno == self.errno)

    def __repr__(self):
        return f"OSError(errno={self.errno})"


def _matches(spec, exc: BaseException) -> bool:
    if isinstance(spec, Errno):
        return spec.matches(exc)
    return isinstance(exc, spec)


class Raised:
    """The outcome of a call that raised."""

    def __init__(self, exc: BaseException):
        self.exc = exc

    def __repr__(self):
        return f"Raised({self.exc!r})"


def attempt(call: Callable, *args, errors: list, maybe: list = (), **kwargs) -> Any:
    """``call(*args, **kwargs)``. With ``errors`` empty it must succeed (its
    result is returned) or raise one of ``maybe``; otherwise it must raise
    one of ``errors`` or ``maybe`` (a type, or an ``Errno``). An exception
    is returned as ``Raised``; anything else fails the test."""
    try:
        result = call(*args, **kwargs)
    except Exception as exc:
        if not any(_matches(spec, exc) for spec in list(errors) + list(maybe)):
            raise AssertionError(
                f"{getattr(call, '__name__', call)}{reprlib.repr(args)}{reprlib.repr(kwargs)} raised {exc!r}; "
                f"expected {'success' if not errors else 'one of ' + repr(errors)}"
                f"{' or one of ' + repr(list(maybe)) if maybe else ''}") from exc
        return Raised(exc)
    if errors:
        raise AssertionError(f"{getattr(call, '__name__', call)}{reprlib.repr(args)}{reprlib.repr(kwargs)} "
                             f"returned {reprlib.repr(result)}; expected one of {errors}")
    return result


def make(factory, *args):
    """factory(*args), waiting up to 30 s while io_uring or AIO is switched
    off for everyone (another test lowering fs.aio-max-nr or setting
    kernel.io_uring_disabled for a moment) instead of failing the machine."""
    import time

    from fastio import UnsupportedError

    deadline = time.monotonic() + 30
    while True:
        try:
            return factory(*args)
        except UnsupportedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def closed_socket() -> socket.socket:
    s = socket.socket()
    s.close()
    return s


# Bad fds every fd-taking method refuses before the kernel sees them, and the
# exception each gives (CPython's PyObject_AsFileDescriptor).
REFUSED_FDS: dict[str, tuple[Any, type]] = {
    "negative": (-1, ValueError),
    "too big": (2**31, OverflowError),
    "huge": (2**70, OverflowError),
    "str": ("3", TypeError),
    "float": (3.0, TypeError),
    "None": (None, TypeError),
    "closed socket": (closed_socket(), ValueError),   # fileno() is -1
}
