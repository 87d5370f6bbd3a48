"""The leak soaks of the asynchronous interfaces: io_uring and Linux AIO
(soak_core.py explains the method and runs them)."""

from __future__ import annotations

import array
import errno
import os
import select
import time
import weakref

from soak_base import BADFD, Marker, Soak, check, closed_fd_number, collected, data_file, raises, scratch_file


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
        marker = Marker()
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
        marker = Marker()
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
