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

import array
import dataclasses
import errno
import gc
import os
import random
import reprlib
import select
import socket
import sys
import tempfile
import time
import tracemalloc
import types
import warnings
import weakref
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


class _Marker:
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


# ---- selectors -----------------------------------------------------------------

class SelectorsSoak(Soak):
    """register/modify/unregister/select/get_key/get_map on the three fastio
    selector classes in turn, over socketpairs made readable and drained,
    with the errors the stdlib raises (KeyError, ValueError) mixed in."""

    PAIRS = 8

    def __init__(self, ns, tmp):
        super().__init__(ns, tmp)
        self.pairs = [socket.socketpair() for _ in range(self.PAIRS)]
        for a, b in self.pairs:
            a.setblocking(False)
            b.setblocking(False)
        mod = ns.selectors
        self.classes = [mod.EpollSelector, mod.PollSelector, mod.SelectSelector]
        self.dead = socket.socket()
        self.dead.close()

    def cycle(self):
        import selectors as std

        R, W = std.EVENT_READ, std.EVENT_WRITE
        sel = self.classes[self.cycles % 3]()
        self.cycles += 1
        ops = 1
        try:
            for i, (a, _) in enumerate(self.pairs):
                key = sel.register(a, R, i)
                check(key.fd == a.fileno() and key.data == i, f"register returned {key}")
            ops += self.PAIRS
            ready = sel.select(0)
            ops += 1
            check(ready == [], f"nothing was sent, yet select() says {ready}")
            for _, b in self.pairs[::2]:
                b.send(b"x")
            ready = sel.select(0)
            ops += 1
            check(sorted(k.data for k, ev in ready) == list(range(0, self.PAIRS, 2)), f"select() said {ready}")
            check(all(ev == R for _, ev in ready), f"select() events {ready}")
            for i, (a, _) in enumerate(self.pairs):
                sel.modify(a, R | W, ("m", i))
            ops += self.PAIRS
            ready = sel.select(0)
            ops += 1
            check(len(ready) == self.PAIRS, f"every socket is writable, yet select() said {ready}")
            for a, _ in self.pairs[::2]:
                a.recv(16)
            check(len(sel.get_map()) == self.PAIRS, "get_map() lost keys")
            check(sel.get_key(self.pairs[1][0]).data == ("m", 1), "get_key() data")
            ops += 2
            # the errors, as the stdlib raises them
            a0 = self.pairs[0][0]
            raises(KeyError, sel.register, a0, R)
            raises(ValueError, sel.unregister, self.dead)
            raises(ValueError, sel.register, -1, R)
            raises(ValueError, sel.register, self.dead, R)
            raises(ValueError, sel.register, self.pairs[1][1], 1 << 5)
            raises(KeyError, sel.get_key, self.pairs[1][1])
            raises(KeyError, sel.modify, BADFD, R)
            ops += 7
            for a, _ in self.pairs:
                sel.unregister(a)
            ops += self.PAIRS
            check(not sel.get_map(), "keys left after unregistering all")
        finally:
            sel.close()
        check(sel.get_map() is None, "get_map() of a closed selector")
        ops += 1
        return ops

    def close(self):
        for a, b in self.pairs:
            a.close()
            b.close()


# ---- epoll -------------------------------------------------------------------

class EpollSoak(Soak):
    """Epoll register/modify/unregister/poll with traffic and every errno the
    kernel gives (EEXIST, ENOENT, EBADF, EPERM), close and fromfd."""

    PAIRS = 8

    def __init__(self, ns, tmp):
        super().__init__(ns, tmp)
        self.pairs = [socket.socketpair() for _ in range(self.PAIRS)]
        for a, b in self.pairs:
            a.setblocking(False)
            b.setblocking(False)
        self.regular, _ = data_file(tmp, 16, 1)
        self.ep = ns.Epoll()

    def cycle(self):
        ep = self.ep
        self.cycles += 1
        IN, OUT = select.EPOLLIN, select.EPOLLOUT
        for a, _ in self.pairs:
            ep.register(a, IN)
        ops = self.PAIRS
        check(ep.poll(0) == [], "nothing was sent")
        for _, b in self.pairs[1::2]:
            b.send(b"y")
        got = ep.poll(0)
        ops += 2
        want = {a.fileno() for a, _ in self.pairs[1::2]}
        check({fd for fd, _ in got} == want and all(ev == IN for _, ev in got), f"poll() said {got}")
        got = ep.poll(0, 2)
        ops += 1
        check(len(got) == 2, f"maxevents=2 gave {got}")
        for a, _ in self.pairs:
            ep.modify(a.fileno(), IN | OUT)
        ops += self.PAIRS
        got = ep.poll(0.0)
        ops += 1
        check(len(got) == self.PAIRS, f"all writable, poll() said {got}")
        for a, _ in self.pairs[1::2]:
            a.recv(16)
        a0 = self.pairs[0][0]
        raises(FileExistsError, ep.register, a0, IN)
        raises(FileNotFoundError, ep.modify, self.pairs[0][1], IN)
        raises(FileNotFoundError, ep.unregister, self.pairs[0][1])
        raises(OSError, ep.register, BADFD, IN, errno_=errno.EBADF)
        raises(OSError, ep.register, closed_fd_number(), IN, errno_=errno.EBADF)
        raises(PermissionError, ep.register, self.regular, IN)
        raises(ValueError, ep.register, -1, IN)
        raises(TypeError, ep.register, "3", IN)
        raises(OverflowError, ep.register, 2**40, IN)
        raises(ValueError, ep.poll, 0, 0)
        ops += 10
        for a, _ in self.pairs:
            ep.unregister(a)
        ops += self.PAIRS
        check(ep.poll(0) == [], "events after unregister")
        ops += 1
        if self.cycles % 64 == 0:
            ep.close()
            raises(ValueError, ep.poll, 0)
            raises(ValueError, ep.register, a0, IN)
            raises(ValueError, ep.fileno)
            self.ep = self.ns.Epoll()
            ops += 5
        return ops

    def close(self):
        self.ep.close()
        os.close(self.regular)
        for a, b in self.pairs:
            a.close()
            b.close()


# ---- poll --------------------------------------------------------------------

class PollSoak(Soak):
    """Poll register/modify/unregister/poll with traffic, a closed fd
    (POLLNVAL) and the errors of select.poll (KeyError, FileNotFoundError,
    ValueError, OverflowError, TypeError)."""

    PAIRS = 8

    def __init__(self, ns, tmp):
        super().__init__(ns, tmp)
        self.pairs = [socket.socketpair() for _ in range(self.PAIRS)]
        for a, b in self.pairs:
            a.setblocking(False)
            b.setblocking(False)
        self.p = ns.Poll()

    def cycle(self):
        p = self.p
        self.cycles += 1
        IN, OUT = select.POLLIN, select.POLLOUT
        for a, _ in self.pairs:
            p.register(a, IN)
        ops = self.PAIRS
        check(p.poll(0) == [], "nothing was sent")
        for _, b in self.pairs[::2]:
            b.send(b"z")
        got = p.poll(0)
        ops += 2
        want = {a.fileno() for a, _ in self.pairs[::2]}
        check({fd for fd, _ in got} == want, f"poll() said {got}")
        for a, _ in self.pairs:
            p.modify(a, IN | OUT)
        got = p.poll(0)
        ops += self.PAIRS + 1
        check(len(got) == self.PAIRS, f"all writable: {got}")
        for a, _ in self.pairs[::2]:
            a.recv(16)
        dead = closed_fd_number()
        p.register(dead, IN)
        got = p.poll(0)
        ops += 2
        check((dead, select.POLLNVAL) in got, f"a closed fd gives POLLNVAL: {got}")
        p.unregister(dead)
        raises(FileNotFoundError, p.modify, self.pairs[0][1], IN)
        raises(KeyError, p.unregister, self.pairs[0][1])
        raises(ValueError, p.register, -1, IN)
        raises(OverflowError, p.register, self.pairs[0][1], 1 << 16)
        raises(TypeError, p.register, None, IN)
        raises(TypeError, p.poll, "0")
        ops += 7
        for a, _ in self.pairs:
            p.unregister(a.fileno())
        ops += self.PAIRS
        check(p.poll(0) == [], "events after unregister")
        ops += 1
        if self.cycles % 64 == 0:
            self.p = self.ns.Poll()
            ops += 1
        return ops

    def close(self):
        for a, b in self.pairs:
            a.close()
            b.close()


# ---- io_uring ----------------------------------------------------------------

class UringSoak(Soak):
    """Ring: reads of a known file (data checked), writes, reads of a bad fd
    (-EBADF), nops, timeouts, a poll cancelled by prep_async_cancel, a pipe
    read cut by a linked timeout, CQE_SKIP_SUCCESS nops; submit, wait with a
    timeout, peek; read_batch; argument errors; registered files and buffers;
    and every few cycles a close with requests in flight."""

    SIZE = 1 << 16

    def __init__(self, ns, tmp):
        super().__init__(ns, tmp)
        from fastio import uring

        self.u = uring
        self.fd, self.data = data_file(tmp, self.SIZE, 2)
        self.out = scratch_file(tmp, "uring-out")
        self.r, self.w = os.pipe()
        self.ring = ns.Ring(64)
        self.bufs = [bytearray(4096) for _ in range(8)]
        self.batch_buf = bytearray(32 * 512)

    def expect_read(self, buf, off, res):
        want = max(0, min(len(buf), self.SIZE - off))
        check(res == want, f"read at {off} of {len(buf)}: res {res}, wanted {want}")
        check(buf[:res] == self.data[off:off + res], f"read at {off}: wrong bytes")

    def reap(self, ring, n):
        """Exactly n completions (bounded); returns (ops, completions)."""
        out = []
        ops = 0
        deadline = time.monotonic() + 10
        while len(out) < n:
            check(time.monotonic() < deadline, f"only {len(out)} of {n} completions in 10 s")
            out += ring.wait(n - len(out), timeout=1.0)
            ops += 1
        check(len(out) == n, f"{len(out)} completions, expected {n}")
        return ops, out

    def cycle(self):
        u, ring, rng = self.u, self.ring, self.rng
        self.cycles += 1
        ops = 0
        expect: dict = {}      # user_data -> check(completion)
        for i in range(8):
            buf = self.bufs[i] if i % 2 else bytearray(rng.choice((1, 100, 4096)))
            off = rng.randrange(0, self.SIZE + 200)
            ring.prep_read(self.fd, buf, off, user_data=("r", i))
            expect[("r", i)] = (lambda c, buf=buf, off=off: self.expect_read(buf, off, c.res))
        payload = rng.randbytes(64)
        for i in range(2):
            ring.prep_write(self.out, payload, i * 64, user_data=("w", i))
            expect[("w", i)] = lambda c: check(c.res == 64, f"write res {c.res}")
        for i, bad in enumerate((BADFD, closed_fd_number())):
            ring.prep_read(bad, self.bufs[0], 0, user_data=("bad", i))
            expect[("bad", i)] = lambda c: check(c.res == -errno.EBADF, f"bad fd res {c.res}")
        ring.prep_nop(user_data="nop")
        expect["nop"] = lambda c: check(c.res == 0, f"nop res {c.res}")
        check(ring.prep_nop(flags=u.IOSQE_CQE_SKIP_SUCCESS) is None, "a CQE_SKIP_SUCCESS nop has no id")
        ring.prep_timeout(0.000001, user_data="t")
        expect["t"] = lambda c: check(c.res == -errno.ETIME, f"timeout res {c.res}")
        target = ring.prep_poll_add(self.r, select.POLLIN, user_data="poll")
        expect["poll"] = lambda c: check(c.res == -errno.ECANCELED, f"cancelled poll res {c.res}")
        ring.prep_async_cancel(target, user_data="cancel")
        expect["cancel"] = lambda c: check(c.res in (0, -errno.ENOENT, -errno.EALREADY), f"cancel res {c.res}")
        ring.prep_read(self.r, bytearray(8), -1, flags=u.IOSQE_IO_LINK, user_data="linked")
        expect["linked"] = lambda c: check(c.res in (-errno.ECANCELED, -errno.EINTR), f"linked read res {c.res}")
        ring.prep_link_timeout(0.00001, user_data="lt")
        expect["lt"] = lambda c: check(c.res == -errno.ETIME, f"link timeout res {c.res}")
        ops += len(expect) + 1
        if self.cycles % 2:
            ring.submit()
            ops += 1
            n, got = self.reap(ring, len(expect))
        else:
            got = ring.peek()
            n, rest = self.reap(ring, len(expect) - len(got))
            got += rest
            ops += 1
        ops += n
        seen = set()
        for c in got:
            check(c.user_data in expect and c.user_data not in seen, f"unexpected completion {c}")
            seen.add(c.user_data)
            expect[c.user_data](c)
        check(ring.inflight == 0, f"inflight {ring.inflight} after reaping everything")
        check(ring.wait(0, timeout=0) == [], "a completion came twice")
        ops += 1
        if self.cycles % 8 == 0:
            ops += self.batch(ring)
        if self.cycles % 4 == 0:
            ops += self.errors(ring)
        if self.cycles % 32 == 0:
            ops += self.registered(ring)
        if self.cycles % 16 == 0:
            ops += self.cycle_collected()
        if self.cycles % 128 == 0:
            ops += self.reopen()
        return ops

    def batch(self, ring):
        offsets = [self.rng.randrange(0, self.SIZE) for _ in range(32)]
        res = ring.read_batch(self.fd, self.batch_buf, offsets, 512)
        for i, off in enumerate(offsets):
            want = min(512, self.SIZE - off)
            check(res[i] == want, f"read_batch[{i}] res {res[i]}")
            check(self.batch_buf[i * 512:i * 512 + want] == self.data[off:off + want], "read_batch bytes")
        results = array.array("i", [0] * 4)
        ring.read_batch(BADFD, self.batch_buf, array.array("q", [0, 1, 2, 3]), 16, results)
        check(list(results) == [-errno.EBADF] * 4, f"read_batch on a bad fd: {results}")
        return 2

    def errors(self, ring):
        buf = self.bufs[1]
        raises(TypeError, ring.prep_read, self.fd, "text", 0)
        raises(TypeError, ring.prep_read, self.fd, b"read-only", 0)
        raises(TypeError, ring.prep_read, self.fd, memoryview(b"read-only"), 0)
        raises(TypeError, ring.prep_read, self.fd, None, 0)
        raises(TypeError, ring.prep_read, self.fd, 12, 0)
        raises(ValueError, ring.prep_read, -1, buf, 0)
        raises(OverflowError, ring.prep_read, 2**40, buf, 0)
        raises(ValueError, ring.prep_read, self.fd, buf, -2)
        raises(OverflowError, ring.prep_read, self.fd, buf, 2**64)
        raises(TypeError, ring.prep_read, self.fd, buf, 1.5)
        raises(ValueError, ring.prep_timeout, -1)
        raises(ValueError, ring.prep_nop, flags=1 << 7)
        raises(ValueError, ring.prep_nop, flags=u_skip(self.u), user_data="x")
        raises(ValueError, ring.prep_readv, self.fd, [], 0)
        raises(ValueError, ring.prep_read_fixed, self.fd, 5, 0)
        raises(ValueError, ring.read_batch, self.fd, bytearray(10), [0, 1], 8)
        raises(ValueError, ring.read_batch, self.fd, self.batch_buf, [0], -1)
        raises(ValueError, ring.wait, -1, 0)
        raises(TypeError, ring.wait, 1, "1")
        check(ring.sq_ready == 0 and ring.inflight == 0, "a refused prep left something queued")
        return 20

    def registered(self, ring):
        u = self.u
        fixed = bytearray(4096)
        ring.register_buffers([fixed])
        raises(OSError, ring.register_buffers, [bytearray(8)], errno_=errno.EBUSY)
        ring.register_files([self.fd, -1])
        raises(OSError, ring.register_files, [self.fd], errno_=errno.EBUSY)
        ring.prep_read_fixed(self.fd, 0, 100, nbytes=1000, buf_offset=50, user_data="fixed")
        ring.prep_read(0, self.bufs[2], 7, flags=u.IOSQE_FIXED_FILE, user_data="ff")
        ring.prep_read(1, self.bufs[3], 7, flags=u.IOSQE_FIXED_FILE, user_data="ff-empty")
        n, got = self.reap(ring, 3)
        res = {c.user_data: c.res for c in got}
        check(res["fixed"] == 1000 and fixed[50:1050] == self.data[100:1100], f"read_fixed {res}")
        self.expect_read(self.bufs[2], 7, res["ff"])
        check(res["ff-empty"] == -errno.EBADF, f"empty fixed-file slot: {res}")
        check(ring.register_files_update(1, [self.fd]) == 1, "register_files_update")
        ring.unregister_files()
        ring.unregister_buffers()
        raises(OSError, ring.unregister_buffers, errno_=errno.ENXIO)
        raises(OSError, ring.unregister_files, errno_=errno.ENXIO)
        raises(OSError, ring.register_files, [BADFD], errno_=errno.EBADF)
        return 15 + n

    def reopen(self):
        """Close with requests in flight (a poll, a pipe read, a long
        timeout, queued SQEs), check use-after-close, make a new ring."""
        ring = self.ring
        ring.prep_poll_add(self.r, select.POLLIN, user_data="p")
        ring.prep_read(self.r, bytearray(64), -1, user_data="pr")
        ring.prep_timeout(30, user_data="long")
        ring.submit()
        ring.prep_nop(user_data="queued")
        ring.close()
        check(ring.closed, "closed")
        raises(ValueError, ring.prep_nop)
        raises(ValueError, ring.submit)
        raises(ValueError, ring.wait, 0, 0)
        raises(ValueError, ring.peek)
        raises(ValueError, ring.prep_read, self.fd, bytearray(1), 0)
        raises(ValueError, ring.fileno)
        ring.close()
        self.ring = self.ns.Ring(64)
        return 13 + self.overflow_at_close()

    def overflow_at_close(self):
        """A ring of 1 SQE and 2 CQEs closed with 5 completions waiting (3
        kept by the kernel beyond the CQ): close() must release them all."""
        ring = self.ns.Ring(1)
        bufs = [bytearray(16) for _ in range(5)]
        for i, buf in enumerate(bufs):
            ring.prep_read(self.fd, buf, i)         # a full SQ: each submits the previous
        ring.submit()
        ring.close()
        for buf in bufs:
            buf.extend(b"x")                        # BufferError if a pin leaked
        return 8

    def cycle_collected(self):
        """A ring in a reference cycle through a request's user_data, with a
        pipe read in flight: the GC must collect it (and close it)."""
        marker = _Marker()
        ring = self.ns.Ring(4)
        holder = [ring, marker]
        ring.prep_read(self.r, bytearray(8), -1, user_data=holder)
        ring.submit()
        ref = weakref.ref(marker)
        del ring, holder, marker
        collected(ref)
        return 4

    def close(self):
        self.ring.close()
        for fd in (self.fd, self.out, self.r, self.w):
            os.close(fd)


def u_skip(u):
    return u.IOSQE_CQE_SKIP_SUCCESS


# ---- Linux AIO ---------------------------------------------------------------

def make_context(ns, maxevents):
    """A Context, retrying while another test has fs.aio-max-nr lowered."""
    from fastio import UnsupportedError

    deadline = time.monotonic() + 30
    while True:
        try:
            return ns.Context(maxevents)
        except UnsupportedError as exc:
            if exc.errno != errno.EAGAIN or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


class AioSoak(Soak):
    """Context: preads of a known file (data checked), pwrites, fsync, preads
    of bad fds (refused at submission: -EBADF through getevents), a poll
    cancelled in flight, a request cancelled while queued (-ECANCELED);
    submit, getevents with a timeout; read_batch; argument errors; and every
    few cycles a close with a poll in flight."""

    SIZE = 1 << 16

    def __init__(self, ns, tmp):
        super().__init__(ns, tmp)
        self.fd, self.data = data_file(tmp, self.SIZE, 3)
        self.out = scratch_file(tmp, "aio-out")
        self.r, self.w = os.pipe()
        self.ctx = make_context(ns, 64)
        self.bufs = [bytearray(4096) for _ in range(8)]
        self.batch_buf = bytearray(16 * 512)

    def expect_read(self, buf, off, res):
        want = max(0, min(len(buf), self.SIZE - off))
        check(res == want, f"pread at {off} of {len(buf)}: res {res}, wanted {want}")
        check(buf[:res] == self.data[off:off + res], f"pread at {off}: wrong bytes")

    def reap(self, ctx, n):
        out = []
        ops = 0
        deadline = time.monotonic() + 10
        while len(out) < n:
            check(time.monotonic() < deadline, f"only {len(out)} of {n} events in 10 s")
            out += ctx.getevents(1, n - len(out), timeout=1.0)
            ops += 1
        check(len(out) == n, f"{len(out)} events, expected {n}")
        return ops, out

    def cycle(self):
        ctx, rng = self.ctx, self.rng
        self.cycles += 1
        expect: dict = {}
        for i in range(8):
            buf = self.bufs[i] if i % 2 else bytearray(rng.choice((1, 100, 4096)))
            off = rng.randrange(0, self.SIZE + 200)
            ctx.prep_pread(self.fd, buf, off, user_data=("r", i))
            expect[("r", i)] = (lambda c, buf=buf, off=off: self.expect_read(buf, off, c.res))
        payload = rng.randbytes(64)
        for i in range(2):
            ctx.prep_pwrite(self.out, payload, i * 64, user_data=("w", i))
            expect[("w", i)] = lambda c: check(c.res == 64, f"pwrite res {c.res}")
        if self.cycles % 32 == 0:   # a real flush: milliseconds on a disk
            ctx.prep_fdatasync(self.out, user_data="fsync")
            expect["fsync"] = lambda c: check(c.res in (0, -errno.EINVAL), f"fsync res {c.res}")
        for i, bad in enumerate((BADFD, closed_fd_number())):
            ctx.prep_pread(bad, self.bufs[0], 0, user_data=("bad", i))
            expect[("bad", i)] = lambda c: check(c.res == -errno.EBADF, f"bad fd res {c.res}")
        queued = ctx.prep_pread(self.fd, self.bufs[1], 0, user_data="dropped")
        check(ctx.cancel(queued) is True, "cancel of a queued request")
        check(ctx.cancel(queued) is False, "a second cancel finds nothing")
        expect["dropped"] = lambda c: check(c.res == -errno.ECANCELED, f"queued cancel res {c.res}")
        poll = ctx.prep_poll(self.r, select.POLLIN, user_data="poll")
        expect["poll"] = lambda c: check(c.res in (0, -errno.ECANCELED), f"cancelled poll res {c.res}")
        ops = len(expect) + 2
        ctx.submit()
        check(ctx.cancel(poll) is True, "cancel of a poll in flight")
        ops += 2
        n, got = self.reap(ctx, len(expect))
        ops += n
        seen = set()
        for c in got:
            check(c.user_data in expect and c.user_data not in seen, f"unexpected event {c}")
            seen.add(c.user_data)
            expect[c.user_data](c)
        check(ctx.inflight == 0 and ctx.queued == 0, f"inflight {ctx.inflight} after reaping everything")
        check(ctx.getevents(0, timeout=0) == [], "an event came twice")
        check(ctx.cancel(poll) is False, "cancel of a reaped request")
        ops += 2
        if self.cycles % 8 == 0:
            ops += self.batch(ctx)
        if self.cycles % 4 == 0:
            ops += self.errors(ctx)
        if self.cycles % 64 == 0:   # io_destroy waits an RCU grace period: ~30 ms
            ops += self.cycle_collected()
        if self.cycles % 128 == 0:
            ops += self.reopen()
        return ops

    def batch(self, ctx):
        offsets = [self.rng.randrange(0, self.SIZE) for _ in range(16)]
        res = ctx.read_batch(self.fd, self.batch_buf, offsets, 512, depth=8)
        for i, off in enumerate(offsets):
            want = min(512, self.SIZE - off)
            check(res[i] == want, f"read_batch[{i}] res {res[i]}")
            check(self.batch_buf[i * 512:i * 512 + want] == self.data[off:off + want], "read_batch bytes")
        results = array.array("i", [0] * 4)
        ctx.read_batch(BADFD, self.batch_buf, array.array("q", [0, 1, 2, 3]), 16, results)
        check(list(results) == [-errno.EBADF] * 4, f"read_batch on a bad fd: {results}")
        return 2

    def errors(self, ctx):
        buf = self.bufs[1]
        raises(TypeError, ctx.prep_pread, self.fd, "text", 0)
        raises(TypeError, ctx.prep_pread, self.fd, b"read-only", 0)
        raises(TypeError, ctx.prep_pread, self.fd, memoryview(b"ro"), 0)
        raises(TypeError, ctx.prep_pread, self.fd, None, 0)
        raises(ValueError, ctx.prep_pread, -1, buf, 0)
        raises(OverflowError, ctx.prep_pread, 2**40, buf, 0)
        raises(ValueError, ctx.prep_pread, self.fd, buf, -1)
        raises(OverflowError, ctx.prep_pread, self.fd, buf, 2**64)
        raises(TypeError, ctx.prep_pread, self.fd, buf, 0.5)
        raises(ValueError, ctx.prep_pread, self.fd, buf, 0, rw_flags=1 << 30)
        raises(ValueError, ctx.prep_poll, self.r, 1 << 20)
        raises(ValueError, ctx.prep_preadv, self.fd, [], 0)
        raises(ValueError, ctx.getevents, -1)
        raises(ValueError, ctx.getevents, 2, 1)
        raises(TypeError, ctx.getevents, 0, None, "1")
        raises(ValueError, ctx.read_batch, self.fd, bytearray(10), [0, 1], 8)
        check(ctx.inflight == 0 and ctx.queued == 0, "a refused prep left something queued")
        return 16

    def reopen(self):
        ctx = self.ctx
        ctx.prep_poll(self.r, select.POLLIN, user_data="p")
        ctx.submit()
        ctx.prep_pread(self.fd, bytearray(64), 0, user_data="queued")
        ctx.close()
        check(ctx.closed, "closed")
        raises(ValueError, ctx.prep_pread, self.fd, bytearray(1), 0)
        raises(ValueError, ctx.submit)
        raises(ValueError, ctx.getevents, 0)
        raises(ValueError, ctx.cancel, 1)
        ctx.close()
        self.ctx = make_context(self.ns, 64)
        return 9

    def cycle_collected(self):
        """A context in a reference cycle through a request's user_data, with
        a poll in flight: the GC must collect it (and destroy it)."""
        marker = _Marker()
        ctx = make_context(self.ns, 4)
        holder = [ctx, marker]
        ctx.prep_poll(self.r, select.POLLIN, user_data=holder)
        ctx.submit()
        ref = weakref.ref(marker)
        del ctx, holder, marker
        collected(ref)
        return 4

    def close(self):
        self.ctx.close()
        for fd in (self.fd, self.out, self.r, self.w):
            os.close(fd)


# ---- signal-driven IO --------------------------------------------------------

class SigioSoak(Soak):
    """SignalIO: add sockets and a pipe, write to make them ready, wait (with
    a timeout) until each is reported, drain, remove; the errors (EEXIST,
    ENOENT, EBADF, EPERM for a regular file, ValueError, TypeError); close
    and make a new one every few cycles."""

    PAIRS = 4

    def __init__(self, ns, tmp):
        super().__init__(ns, tmp)
        self.pairs = [socket.socketpair() for _ in range(self.PAIRS)]
        self.r, self.w = os.pipe()
        self.regular, _ = data_file(tmp, 16, 4)
        self.sio = ns.SignalIO()

    def cycle(self):
        sio = self.sio
        self.cycles += 1
        ends = [a for a, _ in self.pairs] + [self.r]
        for end in ends:
            sio.add(end)
        ops = len(ends)
        # Freshly added, nothing to read: add() polled and found them
        # writable (sockets) or not ready (the pipe's read end).
        first = dict(sio.wait(0))
        ops += 1
        check(set(first) <= {a.fileno() for a, _ in self.pairs}, f"first wait {first}")
        for _, b in self.pairs:
            b.send(b"s")
        os.write(self.w, b"p")
        want = {a.fileno() for a, _ in self.pairs} | {self.r}
        seen: set = set()
        deadline = time.monotonic() + 10
        while not want <= seen:
            check(time.monotonic() < deadline, f"after 10 s only {seen} of {want} reported")
            for fd, band in sio.wait(1.0):
                check(band & select.POLLIN or fd not in want, f"fd {fd} band {band:#x}")
                seen.add(fd)
            ops += 1
        check(seen <= want, f"reported fds that were not added: {seen - want}")
        for a, _ in self.pairs:
            check(a.recv(16) == b"s", "socket data")
        check(os.read(self.r, 16) == b"p", "pipe data")
        a0 = self.pairs[0][0]
        raises(FileExistsError, sio.add, a0)
        raises(FileNotFoundError, sio.remove, self.pairs[0][1])
        raises(OSError, sio.add, BADFD, errno_=errno.EBADF)
        raises(OSError, sio.add, closed_fd_number(), errno_=errno.EBADF)
        raises(PermissionError, sio.add, self.regular)
        raises(ValueError, sio.add, -1)
        raises(TypeError, sio.add, "0")
        raises(ValueError, sio.wait, 0, 0)
        ops += 8
        for end in ends:
            sio.remove(end)
        ops += len(ends)
        check(sio.wait(0) == [], "events for removed fds")
        ops += 1
        if self.cycles % 64 == 0:
            sio.close()
            raises(ValueError, sio.add, a0)
            raises(ValueError, sio.wait, 0)
            raises(ValueError, sio.fileno)
            sio.close()
            self.sio = self.ns.SignalIO()
            ops += 6
        return ops

    def close(self):
        self.sio.close()
        for a, b in self.pairs:
            a.close()
            b.close()
        for fd in (self.r, self.w, self.regular):
            os.close(fd)


SOAKS: dict[str, type[Soak]] = {
    "selectors": SelectorsSoak,
    "epoll": EpollSoak,
    "poll": PollSoak,
    "uring": UringSoak,
    "aio": AioSoak,
    "sigio": SigioSoak,
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


def load_backend(name: str) -> types.SimpleNamespace:
    """The backend's classes by name, as tests/conftest.py's fixture gives them."""
    import importlib

    from fastio._api import PUBLIC_API

    ns = types.SimpleNamespace(name=name)
    owners: dict[str, list[str]] = {}
    for module, names in PUBLIC_API.items():
        setattr(ns, module, importlib.import_module(f"fastio._{name}.{module}"))
        for attr in names:
            owners.setdefault(attr, []).append(module)
    for attr, modules in owners.items():
        if len(modules) == 1:
            setattr(ns, attr, getattr(getattr(ns, modules[0]), attr))
    return ns


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
