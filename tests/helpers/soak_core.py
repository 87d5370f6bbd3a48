"""Leak soaks: one bounded loop per interface, checking that nothing grows.

Each soak drives one interface through its whole life cycle, valid and
invalid calls alike, in *cycles*: a cycle makes requests, reaps every one of
them, checks each result against what the data predicts, and ends where it
began (nothing registered, nothing in flight), so two samples taken between
cycles are comparable. Every few cycles the object itself is closed (with
requests in flight where the interface has them) and made again.

The driver (:func:`run`) runs a warm-up of cycles, samples, runs ``ops``
operations (an operation is one call into fastio: a ``prep_*``, ``submit``,
a ``wait`` ...; rounded up to whole cycles), samples again and compares:

==============  ========================================  ===============
measure         taken from                                may grow by
==============  ========================================  ===============
rss             ``/proc/self/statm`` (resident pages)     ``RSS_SLACK``
fds             ``len(os.listdir('/proc/self/fd'))``      0
objects         ``len(gc.get_objects())`` after collect   ``OBJECT_SLACK``
blocks          ``sys.getallocatedblocks()``              ``BLOCK_SLACK``
traced          ``tracemalloc`` current size              ``TRACED_SLACK``
==============  ========================================  ===============

The io_uring and AIO soaks also collect, every few cycles, a ring or a
context left in a reference cycle through a request's user_data with a
request in flight, and close a ring whose completions overflowed its CQ:
the two leaks these soaks were extended to keep found.

Under AddressSanitizer (tools/sanitize) RSS is not checked: its quarantine
keeps freed memory resident (256 MiB by default) so RSS climbs with no leak;
LeakSanitizer checks the C heap there instead.

The slack absorbs allocator noise (a new pymalloc arena, a resized free
list); a leak of one object or one small buffer per operation exceeds it
within 10 000 operations, a leak of a few bytes of C memory per operation
within a million. ``tools/soak.py`` is the command line; ``tests/system/test_soak.py``
runs every soak briefly on both backends.
"""

from __future__ import annotations

import tempfile
import time
import tracemalloc

from backends import load_backend
from soak_async import AioSoak, UringSoak
from soak_asyncio import AsyncioSoak
from soak_base import Result, Soak, sample
from soak_readiness import EpollSoak, PollSoak, SelectorsSoak, SigioSoak

SOAKS: dict[str, type[Soak]] = {
    "selectors": SelectorsSoak,
    "epoll": EpollSoak,
    "poll": PollSoak,
    "uring": UringSoak,
    "aio": AioSoak,
    "sigio": SigioSoak,
    "asyncio": AsyncioSoak,
}


def unavailable(name: str) -> str | None:
    """Why soak ``name`` cannot run here (None: it can)."""
    if name == "uring":
        from fastio import uring

        return None if uring.available() else f"io_uring unusable: {uring.why_unavailable()}"
    if name == "aio":
        from fastio import aio

        return None if aio.available() else f"Linux AIO unusable: {aio.why_unavailable()}"
    return None


def run(name: str, backend: str, ops: int, *, warmup: int | None = None, trace: bool = True) -> Result:
    """Soak ``name`` on ``backend``: ``warmup`` operations (default: a tenth
    of ``ops``, at least 2000), a sample, ``ops`` operations, a sample."""
    ns = load_backend(backend)
    warmup = max(ops // 10, 2000) if warmup is None else warmup
    started_tracing = False
    if trace and not tracemalloc.is_tracing():
        tracemalloc.start()
        started_tracing = True
    try:
        with tempfile.TemporaryDirectory(prefix="fastio-soak-") as tmp:
            soak = SOAKS[name](ns, tmp)
            try:
                done = 0
                while done < warmup:
                    done += soak.cycle()
                before = sample()
                t0 = time.perf_counter()
                done = 0
                while done < ops:
                    done += soak.cycle()
                seconds = time.perf_counter() - t0
                after = sample()
            finally:
                soak.close()
    finally:
        if started_tracing:
            tracemalloc.stop()
    return Result(name, backend, done, seconds, before, after)


def table(results: list[Result]) -> str:
    """The results as a fixed-width table, one row per soak."""
    head = (f"{'soak':<10} {'backend':<7} {'ops':>9} {'sec':>7} {'ops/s':>8} "
            f"{'RSS KiB before->after':>22} {'fds':>7} {'objects':>15} {'blocks':>17} "
            f"{'traced KiB':>15}  result")
    lines = [head, "-" * len(head)]
    for r in results:
        b, a = r.before, r.after
        fail = r.failures()
        lines.append(
            f"{r.name:<10} {r.backend:<7} {r.ops:>9} {r.seconds:>7.1f} {r.ops / max(r.seconds, 1e-9):>8.0f} "
            f"{b.rss >> 10:>10}->{a.rss >> 10:<10} {b.fds:>3}->{a.fds:<3} {b.objects:>7}->{a.objects:<7} "
            f"{b.blocks:>8}->{a.blocks:<8} {b.traced >> 10:>7}->{a.traced >> 10:<7}  "
            f"{'ok' if not fail else 'GREW: ' + '; '.join(fail)}")
    return "\n".join(lines)
