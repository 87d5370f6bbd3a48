"""What the leak soaks share (soak_core.py is the driver): the samples and
their slack, and the checks and files each soak uses."""

from __future__ import annotations

import dataclasses
import gc
import os
import random
import reprlib
import sys
import tracemalloc
import types
import warnings
from collections.abc import Callable

RSS_SLACK = 4 << 20          # bytes
with open("/proc/self/maps") as _maps:
    UNDER_ASAN = "libasan" in _maps.read()    # the runtime tools/sanitize preloads
OBJECT_SLACK = 16            # gc-tracked objects
BLOCK_SLACK = 2000           # pymalloc blocks
TRACED_SLACK = 128 << 10     # bytes traced by tracemalloc

# An fd number no test opens: every use of it is EBADF.
BADFD = 2**31 - 1
PAGE = os.sysconf("SC_PAGE_SIZE")


# ---- measuring ---------------------------------------------------------------

@dataclasses.dataclass
class Sample:
    rss: int
    fds: int
    objects: int
    blocks: int
    traced: int


# The reference cycles the soaks make are young: collecting the two young
# generations finds them in microseconds, where a full collection walks every
# object in the process (tens of milliseconds inside the test suite).
YOUNG = 1


class Marker:
    """Rides in a reference cycle, weakly referenced: it dies with the cycle."""


def collected(ref: Callable[[], object]) -> None:
    """Collect the young reference cycle the object of weak reference ``ref``
    is in (a full collection if an automatic one has aged it), and check it
    is gone."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect(YOUNG)
        if ref() is not None:
            gc.collect()
    check(ref() is None, "a reference cycle through a request's user_data was not collected")


def sample() -> Sample:
    gc.collect()
    gc.collect()
    with open("/proc/self/statm") as f:
        rss = int(f.read().split()[1]) * PAGE
    fds = len(os.listdir("/proc/self/fd"))
    traced = tracemalloc.get_traced_memory()[0] if tracemalloc.is_tracing() else 0
    return Sample(rss, fds, len(gc.get_objects()), sys.getallocatedblocks(), traced)


@dataclasses.dataclass
class Result:
    name: str
    backend: str
    ops: int
    seconds: float
    before: Sample
    after: Sample

    def growth(self) -> dict[str, int]:
        return {f.name: getattr(self.after, f.name) - getattr(self.before, f.name)
                for f in dataclasses.fields(Sample)}

    def failures(self) -> list[str]:
        g = self.growth()
        limits = {"rss": None if UNDER_ASAN else RSS_SLACK, "fds": 0, "objects": OBJECT_SLACK, "blocks": BLOCK_SLACK,
                  "traced": TRACED_SLACK if self.after.traced else None}
        return [f"{k} grew by {g[k]} (limit {v})" for k, v in limits.items() if v is not None and g[k] > v]


# ---- helpers the soaks share ---------------------------------------------------

def check(cond: bool, what: str) -> None:
    if not cond:
        raise AssertionError(what)


def raises(exc: type[BaseException] | tuple, call: Callable, *args, errno_: int | None = None, **kw) -> None:
    """call(*args, **kw) must raise exc (with errno_, if given)."""
    try:
        call(*args, **kw)
    except exc as e:
        if errno_ is not None:
            check(getattr(e, "errno", None) == errno_, f"{call.__name__}: errno {e!r}, wanted {errno_}")
        return
    raise AssertionError(f"{getattr(call, '__name__', call)}{reprlib.repr(args)} did not raise {exc}")


def closed_fd_number() -> int:
    """The number of an fd just closed (valid until the next open)."""
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    return r


def data_file(tmp: str, size: int, seed: int) -> tuple[int, bytes]:
    """A file of ``size`` random bytes, opened read-only: (fd, bytes)."""
    data = random.Random(seed).randbytes(size)
    path = os.path.join(tmp, f"data-{seed}")
    with open(path, "wb") as f:
        f.write(data)
    return os.open(path, os.O_RDONLY | os.O_CLOEXEC), data


def scratch_file(tmp: str, name: str) -> int:
    return os.open(os.path.join(tmp, name), os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)


class Soak:
    """One interface's workload: ``cycle()`` does a whole number of operations
    and returns how many; ``close()`` releases everything."""

    def __init__(self, ns: types.SimpleNamespace, tmp: str):
        self.ns = ns
        self.tmp = tmp
        self.rng = random.Random(7)
        self.cycles = 0

    def cycle(self) -> int:
        raise NotImplementedError

    def close(self) -> None:
        pass
