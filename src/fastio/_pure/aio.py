"""Linux native AIO through ctypes: the pure twin of ``fastio._c.aio``.

The same syscalls (``io_setup``/``io_submit``/``io_getevents``/``io_cancel``/
``io_destroy`` through ``syscall(2)``) and rules; the kernel facts are those
in docs/aio.md. Requests live in the pure backend's
in-flight table (``fastio._pure._inflight``, shared with ``uring.Ring``):
each slot's payload is its ``struct iocb`` (a ctypes object, so its address
is stable, which ``io_cancel`` needs); the slot pins the request's buffers
until its event has been reaped. ctypes releases the GIL around every
syscall; a lock serialises the table between threads and is not held while
the kernel waits.

Signals: an event is marked handled (its ``data`` zeroed) in the same
call-free run of code that stores its completion and counts it off its slot
(see ``_inflight``'s docstring), so a signal handler that raises anywhere
leaves each event either handled or still in the array, which the
interrupted call scans again on its way out (or, cut there too, lists for
the next call): nothing taken off the kernel is lost. A submit's count is
stored by C code as io_submit returns, and the requests it took wait in a
limbo that any later call can finish (``_submit_queue`` says how), so none
is submitted twice or forgotten; prep_* and read_batch recover a slot taken
just before a cut through the table's ``allocs``. This holds on CPython
3.10 and later (3.9 runs a handler between almost any two bytecodes: see
``_inflight``).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import itertools
import operator
import os
import warnings
import time

from fastio._errors import UnsupportedError
from fastio._abi import aio as abi
from fastio._util import (
    EINTR,
    as_c_int,
    as_fd,
    check_fork,
    deadline_for,
    fork_generation,
    raise_errno,
    remaining,
    timeout_to_ns,
)
from fastio._pure._calllock import CallLock
from fastio._pure._inflight import InflightTable, Slot

_c_long = ctypes.c_long
_syscall = abi._libc.syscall
_syscall.restype = ctypes.c_long
_NR = abi.SYSCALLS
_STACK_EVENTS = 128
_SUBMIT_BATCH = 256
_UD_BATCH = 1 << 63
_DRAIN_LIMIT_NS = 10_000_000_000
_DRAIN_STEP_NS = 100_000_000
_QUEUED, _SUBMITTED = 1, 2          # a slot's tag (still _QUEUED while its submit is in limbo: _submit_queue)

_NO_SLOT = Slot(None)      # stands in for "no slot" where a run must store into one

_CLOSE_REFUSED = ("Context.close() while a call on this context is running (another thread in it, or a "
                  "signal handler or a buffer exporter inside a prep_*, getevents or batch call); close it "
                  "once that call has returned")


def _sys(name: str, *args) -> int:
    """One AIO syscall: the result, or -errno."""
    if _NR is None:
        return -errno.ENOSYS
    ret = _syscall(_c_long(_NR[name]), *args)
    return -ctypes.get_errno() if ret < 0 else ret


def _io_setup(nr: int, ctx: ctypes.c_ulong) -> int:
    return _sys("io_setup", ctypes.c_uint(nr), ctypes.byref(ctx))


def _io_destroy(ctx: int) -> int:
    return _sys("io_destroy", ctypes.c_ulong(ctx))


_probe_reason: str | None = None


def _kernel_reason() -> str:
    global _probe_reason
    if _probe_reason is None:
        ctx = ctypes.c_ulong(0)
        ret = _io_setup(1, ctx)
        if ret < 0:
            _probe_reason = abi.diagnose(-ret, 1)
        else:
            _io_destroy(ctx.value)
            _probe_reason = ""
    return _probe_reason


def available() -> bool:
    """Whether Linux AIO can be used here; see ``fastio._c.aio.available``."""
    return abi.disabled_by_env() is None and _kernel_reason() == ""


def why_unavailable():
    """None when available, else the cause; see ``fastio._c.aio.why_unavailable``."""
    return abi.disabled_by_env() or _kernel_reason() or None


class Completion:
    """One completion; see ``fastio._c.aio.Completion``."""

    __slots__ = ("user_data", "res", "res2", "detail")

    def __init__(self, user_data=None, res=0, res2=0, detail=None):
        self.user_data = user_data
        self.res = res
        self.res2 = res2
        self.detail = detail

    def result(self):
        """Return ``res``, or raise the OSError a negative ``res`` stands for."""
        if self.res < 0:
            if self.detail is not None:
                raise OSError(-self.res, self.detail)
            raise_errno(-self.res)
        return self.res

    def __repr__(self):
        return f"Completion(user_data={self.user_data!r}, res={self.res}, res2={self.res2})"

    def __eq__(self, other):
        if not isinstance(other, Completion):
            return NotImplemented
        return (self.user_data, self.res, self.res2) == (other.user_data, other.res, other.res2)

    __hash__ = None


def _i64(value) -> int:
    """An int the C backend holds in a long long: OverflowError outside it."""
    value = operator.index(value)
    if not -(2**63) <= value < 2**63:
        raise OverflowError("Python int too large to convert to C long")
    return value


def _rw_flags(rw_flags) -> int:
    f = _i64(rw_flags)
    if f < 0 or f & ~abi.RWF_MASK:
        raise ValueError(f"unknown RWF_* bits in rw_flags={f:#x}")
    return f


def _prio(reqprio) -> int:
    p = as_c_int(reqprio)
    if not 0 <= p <= 0xFFFF:
        raise ValueError(f"reqprio must be an ioprio value 0..65535, got {p}")
    return p


def _offset(offset) -> int:
    off = operator.index(offset)
    if off < 0:
        raise ValueError(f"offset must be >= 0, got {off}")
    if off > 2**63 - 1:
        raise OverflowError("offset is too large")
    return off


class Context:
    """Context(maxevents=128)

    A Linux AIO context; see ``fastio._c.aio.Context``.
    """

    def __init__(self, maxevents=128):
        self._ctx = 0
        self._fork_gen = fork_generation()
        self._lock = CallLock("aio.Context")
        self._busy = 0
        self._batches = 0
        self._waiters = 0
        self._table = InflightTable(abi.Iocb)   # a slot's payload: its iocb; tag: its _QUEUED ... state
        self._queue: list[int] = []
        self._submitted = 0
        self._backlog: list = []
        self._resfd = -1
        # What a call cut by a raising signal handler (or running in
        # another thread) leaves for the next (_settle_cut): the submits
        # whose requests are out of the queue and not yet accounted for, by
        # id, and arrays of events taken off the kernel and not handled.
        self._limbos: dict = {}
        self._unhandled: list = []
        n = as_c_int(maxevents)
        if n <= 0:
            raise ValueError(f"maxevents must be positive, got {n}")
        reason = abi.disabled_by_env()
        if reason:
            raise UnsupportedError(reason)
        ctx = ctypes.c_ulong(0)
        ret = _io_setup(n, ctx)
        if ret < 0:
            if -ret in abi.UNSUPPORTED_ERRNOS:
                raise UnsupportedError(-ret, abi.diagnose(-ret, n))
            raise OSError(-ret, abi.diagnose(-ret, n))
        self._ctx = ctx.value
        self._maxevents = n

    @property
    def maxevents(self):
        """The ``maxevents`` the context was made with."""
        return self._maxevents

    @property
    def inflight(self):
        """Requests whose completion has not been reaped yet (queued or
        submitted; their buffers are pinned)."""
        return self._table.inflight

    @property
    def queued(self):
        """Requests prepared and not yet taken by the kernel."""
        return len(self._queue)

    @property
    def closed(self):
        """True once the context is closed."""
        return self._ctx == 0

    # ---- lifetime --------------------------------------------------------

    def _check(self) -> None:
        if self._ctx == 0:
            raise ValueError("I/O operation on closed Context")
        check_fork(self._fork_gen, "aio.Context")

    def close(self):
        """Drop, cancel, wait, destroy, release; see ``fastio._c.aio.Context.close``."""
        if getattr(self, "_ctx", 0) == 0:
            return
        if (self._busy or self._batches or self._waiters or self._lock.owned()) and \
                self._fork_gen == fork_generation():
            raise RuntimeError(_CLOSE_REFUSED)
        with self._lock():      # (another thread's prep holds it briefly, never across a wait)
            if self._ctx == 0:
                return
            if self._fork_gen == fork_generation():
                self._settle_cut(self._backlog)   # (what stays in limbo: an io_submit running now)
                if self._busy or self._batches or self._waiters or self._limbos:
                    raise RuntimeError(_CLOSE_REFUSED)
            self._shutdown()

    def __enter__(self):
        self._check()
        return self

    def __exit__(self, *args):
        self.close()

    def __del__(self):
        if getattr(self, "_ctx", 0) != 0:
            try:
                warnings.warn(f"unclosed fastio.aio.Context ({self._table.inflight} requests in flight)",
                              ResourceWarning)
            except BaseException:
                pass
            self._shutdown()

    def _shutdown(self) -> None:
        drained = True
        if self._fork_gen == fork_generation():
            drained = self._drain()
        ctx, self._ctx = self._ctx, 0       # (zeroed first: a cut after the destroy must not destroy it again)
        if drained and self._fork_gen == fork_generation():
            _io_destroy(ctx)                # nothing in flight; still one RCU grace period (~30 ms)
        self._queue = []
        self._submitted = 0
        self._backlog = []
        if drained:
            self._table.release_all()
        else:
            self._table.leak()      # a request outlived the drain: its buffers are kept for ever

    def _drain(self) -> bool:
        try:
            self._settle_cut(self._backlog)
            for idx in self._queue:
                self._table.release(idx)
            self._queue = []
            start = time.monotonic_ns()
            last_cancel = start - _DRAIN_LIMIT_NS
            events = (abi.IoEvent * _STACK_EVENTS)()
            result = (abi.IoEvent * 1)()
            sink: list = []
            while True:   # (not `while cond:`: CPython 3.13, gh-130279)
                if not self._submitted:
                    break
                now = time.monotonic_ns()
                if now - start > _DRAIN_LIMIT_NS:
                    return False
                if now - last_cancel > 1_000_000_000:
                    last_cancel = now
                    self._cancel_submitted(result, sink)
                ret = self._getevents_raw(1, _STACK_EVENTS, events, _DRAIN_STEP_NS)
                self._handle_block(events, max(ret, 0), sink)
                sink.clear()
            return True
        except BaseException:
            return not self._submitted

    # Loops whose body ends in an ``if`` live in functions of their own when
    # a try or with encloses them: CPython 3.13 (gh-130279) puts such a
    # loop's jump back outside the enclosing handler, so a signal handler
    # raising there skipped the except, finally or lock release.

    def _cancel_submitted(self, result, sink: list) -> None:
        for slot in self._table.slots:
            if slot.pending and slot.tag == _SUBMITTED and not slot.batch:
                if self._io_cancel(slot.payload, result) == 0:
                    self._handle_block(result, 1, sink)   # kernels before 4.19

    # ---- the in-flight table ----------------------------------------------

    def _new_slot(self, user_data) -> int:
        self._check()
        idx = self._table.alloc()
        self._table.slots[idx].user_data = user_data
        return idx

    def _fill(self, idx: int, op: int, fd: int, rw_flags: int, prio: int) -> abi.Iocb:
        slot = self._table.slots[idx]
        cb = slot.payload
        ctypes.memset(ctypes.byref(cb), 0, ctypes.sizeof(cb))
        cb.aio_data = (slot.gen << 32) | idx      # the table's ident(), inlined: once per request
        cb.aio_lio_opcode = op
        cb.aio_fildes = fd
        cb.aio_rw_flags = rw_flags
        if prio:
            cb.aio_reqprio = prio - 0x10000 if prio > 0x7FFF else prio
            cb.aio_flags |= abi.IOCB_FLAG_IOPRIO
        if self._resfd >= 0:
            cb.aio_flags |= abi.IOCB_FLAG_RESFD
            cb.aio_resfd = self._resfd
        return cb

    def _enqueue(self, idx: int) -> int:
        slot, queued = self._table.slots[idx], (idx,)
        # One run: queued and tagged so (a raise after it must not release it).
        self._queue += queued
        slot.tag = _QUEUED
        return slot.payload.aio_data

    def _prepared(self, build, user_data) -> int:
        """Under the lock: a slot, build(idx) filling its iocb, then queued.
        Whatever raises before it is queued gives the slot back, a signal
        handler's exception included (one cutting the slot's taking finds
        it through the table's ``allocs``, see ``_inflight``)."""
        allocs = self._table.allocs
        idx = None
        try:
            idx = self._new_slot(user_data)
            build(idx)
            return self._enqueue(idx)
        except BaseException:
            if idx is None and self._table.allocs != allocs:
                idx = self._table.last   # (cut as the slot was taken: CPython 3.10 checks on return)
            if idx is not None and self._table.slots[idx].tag != _QUEUED:
                slot = self._table.slots[idx]
                done = ((idx, slot.gen),)
                # Never queued: the slot is done, in one run (not release():
                # a call could be cut and leave it taken).
                slot.pending = 0
                self._table.due += done
                self._table.settle()
            raise

    def _reject(self, pos: int, err: int) -> None:
        """Complete the request at self._queue[pos], which the kernel never
        took, with res=err (-errno)."""
        idx = self._queue[pos]
        slot = self._table.slots[idx]
        stored, done = (Completion(slot.user_data, err, 0),), ((idx, slot.gen),)
        # One call-free run: out of the queue, the completion stored, the slot done.
        del self._queue[pos]
        self._backlog += stored
        slot.pending = 0
        self._table.due += done
        self._table.settle()

    # ---- preparation --------------------------------------------------------

    def _prep_rw(self, op, fd, buf, offset, user_data, rw_flags, reqprio, writable):
        """A read or write of one buffer, or (PREADV/PWRITEV) of a sequence of them."""
        cfd, off, rwf, prio = as_fd(fd), _offset(offset), _rw_flags(rw_flags), _prio(reqprio)
        vector = op in (abi.IOCB_CMD_PREADV, abi.IOCB_CMD_PWRITEV)
        if vector:
            buf = list(buf)     # (the caller's iterator runs before the lock is taken)
        def build(idx):
            slot = self._table.slots[idx]
            if vector:
                iov = slot.pin_vector(buf, writable)
                addr, length = ctypes.addressof(iov), len(iov)
            else:
                view = slot.pin(buf, writable)
                addr, length = view.buf or 0, view.len
            cb = self._fill(idx, op, cfd, rwf, prio)
            cb.aio_buf = addr
            cb.aio_nbytes = length
            cb.aio_offset = off
        with self._lock():
            return self._prepared(build, user_data)

    def prep_pread(self, fd, buf, offset, *, user_data=None, rw_flags=0, reqprio=0):
        """Queue a read into ``buf``; see ``fastio._c.aio.Context.prep_pread``."""
        return self._prep_rw(abi.IOCB_CMD_PREAD, fd, buf, offset, user_data, rw_flags, reqprio, True)

    def prep_pwrite(self, fd, buf, offset, *, user_data=None, rw_flags=0, reqprio=0):
        """Queue a write of ``buf``; see ``fastio._c.aio.Context.prep_pwrite``."""
        return self._prep_rw(abi.IOCB_CMD_PWRITE, fd, buf, offset, user_data, rw_flags, reqprio, False)

    def prep_preadv(self, fd, buffers, offset, *, user_data=None, rw_flags=0, reqprio=0):
        """Queue a vectored read; see ``fastio._c.aio.Context.prep_preadv``."""
        return self._prep_rw(abi.IOCB_CMD_PREADV, fd, buffers, offset, user_data, rw_flags, reqprio, True)

    def prep_pwritev(self, fd, buffers, offset, *, user_data=None, rw_flags=0, reqprio=0):
        """Queue a vectored write; see ``fastio._c.aio.Context.prep_pwritev``."""
        return self._prep_rw(abi.IOCB_CMD_PWRITEV, fd, buffers, offset, user_data, rw_flags, reqprio, False)

    def _prep_plain(self, op, fd, mask, user_data, reqprio):
        cfd, prio = as_fd(fd), _prio(reqprio)
        def build(idx):
            self._fill(idx, op, cfd, 0, prio).aio_buf = mask
        with self._lock():
            return self._prepared(build, user_data)

    def prep_fsync(self, fd, *, user_data=None, reqprio=0):
        """Queue an fsync; see ``fastio._c.aio.Context.prep_fsync``."""
        return self._prep_plain(abi.IOCB_CMD_FSYNC, fd, 0, user_data, reqprio)

    def prep_fdatasync(self, fd, *, user_data=None, reqprio=0):
        """Queue an fdatasync; see ``fastio._c.aio.Context.prep_fdatasync``."""
        return self._prep_plain(abi.IOCB_CMD_FDSYNC, fd, 0, user_data, reqprio)

    def prep_poll(self, fd, events, *, user_data=None, reqprio=0):
        """Queue a readiness poll; see ``fastio._c.aio.Context.prep_poll``."""
        mask = _i64(events)
        if not 0 <= mask <= 0xFFFF:
            raise ValueError(f"events must be a 16-bit poll mask, got {mask:#x}")
        return self._prep_plain(abi.IOCB_CMD_POLL, fd, mask, user_data, reqprio)

    def register_eventfd(self, fd):
        """Signal eventfd ``fd`` on completion; see ``fastio._c.aio.Context.register_eventfd``."""
        self._check()
        self._resfd = as_fd(fd)

    def unregister_eventfd(self):
        """Requests prepared from now on signal no eventfd."""
        self._check()
        self._resfd = -1

    # ---- submission and completion ------------------------------------------

    def _io_cancel(self, cb: abi.Iocb, result) -> int:
        """io_cancel(2) of the request submitted from cb; result: an array of one event."""
        return _sys("io_cancel", ctypes.c_ulong(self._ctx), ctypes.byref(cb), result)

    # A submit takes requests off the queue into a *limbo* (taken, gens,
    # rets, claim, void) and calls io_submit outside the lock (a buffered read of
    # an empty pipe blocks inside it, while other threads reap). The call is
    # made by C code, ``rets.extend(starmap(_syscall, claim))``: ``claim``
    # is a one-shot iterator over the syscall's arguments, so taking it,
    # making the syscall and storing its count into ``rets`` happen with no
    # place between for a signal handler or another thread. Whoever finds a
    # limbo (under the lock) then knows where it stands: ``rets`` filled, the
    # kernel has answered and anyone may account for it; ``claim`` not yet
    # taken, the submitting call was cut before the syscall, and whoever
    # takes the claim first owns it (taken into ``void`` by C code too, so a
    # cut after it leaves a limbo the next call finishes: its requests go
    # back to the queue); neither, the syscall is running right now, and it
    # is left alone.

    def _settle_cut(self, out: list) -> None:
        """Under the lock: finish what calls cut by a raising signal handler
        left, and what other threads' calls have finished (submits'
        accounting; events taken off the kernel and not handled, into out).
        A limbo whose io_submit is running is left alone."""
        for key in reversed(list(self._limbos)):     # (each one goes back to the queue's front)
            taken, gens, rets, claim, void = self._limbos[key]
            void.extend(claim)        # (the claim taken, if still there, and recorded)
            if rets or void:
                self._finish_submit(key, 0)
        while True:   # (not `while cond:`: CPython 3.13, gh-130279)
            if not self._unhandled:
                break
            block = self._unhandled[-1]
            self._handle_block(block, _STACK_EVENTS, out)
            self._unhandled.remove(block)    # (by identity: another call may have listed one since)

    def _finish_submit(self, key: int, err: int) -> bool:
        """Account for the limbo ``key``: the requests the kernel took are
        submitted, the rest go back to the queue's front. err: the -errno of
        a failed io_submit when the submitting call finishes its own (other
        calls cannot know it: then none counts as refused, and the next
        submit meets the error again). A refusal other than EAGAIN or EINTR
        completes the first request with it, as the kernel never took it.
        Idempotent up to the run that ends the limbo. True when a request
        was refused."""
        taken, gens, rets, _claim, _void = self._limbos[key]
        nt = rets[0] if rets and rets[0] > 0 else 0
        self._mark_submitted(taken[:nt], gens)
        rest = taken[nt:]
        refused = bool(rest) and nt == 0 and bool(rets) and rets[0] < 0 and err not in (0, -errno.EAGAIN, -EINTR)
        slot = self._table.slots[rest[0]] if refused else _NO_SLOT
        stored = (Completion(slot.user_data, err, 0),) if refused else ()
        done = ((rest[0], slot.gen),) if refused else ()
        requeued = rest[1:] if refused else rest
        # One run: back in the queue, the refused one completed, the limbo over.
        self._queue[:0] = requeued
        del self._limbos[key]
        self._backlog += stored
        slot.pending = 0
        self._table.due += done
        self._table.settle()
        return refused

    def _mark_submitted(self, taken: list, gens: list) -> None:
        for idx, gen in zip(taken, gens):
            # Reaped by another thread while io_submit ran (not counted
            # there), maybe reused, or marked by an earlier try: only a slot
            # still queued and ours.
            slot = self._table.slots[idx]
            if slot.pending and slot.gen == gen and slot.tag == _QUEUED:
                slot.tag = _SUBMITTED
                self._submitted += 1

    def _submit_queue(self) -> int:
        total = 0
        ptrs = (ctypes.c_void_p * _SUBMIT_BATCH)()
        nr = _c_long(_NR["io_submit"])     # (a Context exists: the syscalls do)
        while True:
            with self._lock():
                self._settle_cut(self._backlog)
                if not self._queue:
                    return total
                taken = self._queue[:_SUBMIT_BATCH]
                gens = [self._table.slots[idx].gen for idx in taken]
                for i, idx in enumerate(taken):
                    ptrs[i] = ctypes.addressof(self._table.slots[idx].payload)
                rets: list = []
                k = len(taken)
                claim = iter(((nr, ctypes.c_ulong(self._ctx), _c_long(k), ptrs),))
                limbo = (taken, gens, rets, claim, [])
                key = id(limbo)
                # One run: out of the queue, into limbo.
                del self._queue[:k]
                self._limbos[key] = limbo
            rets.extend(itertools.starmap(_syscall, claim))
            err = -ctypes.get_errno()
            with self._lock():
                refused = key in self._limbos and self._finish_submit(key, err)
            if not rets:
                continue        # a call cut this one before io_submit and took the claim
            total += max(rets[0], 0)
            if refused or rets[0] > 0 or err == -EINTR:
                continue        # (EINTR: the signal handlers ran as rets.extend returned)
            return total        # EAGAIN: the context is full; the rest waits

    def submit(self):
        """Hand the queued requests to the kernel; see ``fastio._c.aio.Context.submit``."""
        self._check()
        return self._submit_queue()

    def _getevents_raw(self, min_nr: int, nr: int, events, timeout_ns: int) -> int:
        ts = None
        if timeout_ns >= 0:
            from fastio._abi.libc import Timespec

            ts = ctypes.byref(Timespec(*divmod(timeout_ns, 1_000_000_000)))
        self._busy += 1
        try:
            return _sys("io_getevents", ctypes.c_ulong(self._ctx), _c_long(min_nr), _c_long(nr), events, ts)
        finally:
            self._busy -= 1

    def _handle_block(self, events, n: int, out: list) -> None:
        """Handle the events taken off the kernel among events[:n] (data != 0;
        _handle_event zeroes data when it has accounted for one), then
        release the slots they completed. A signal handler that raises
        meanwhile does not lose the rest: the scan goes on (twice more at
        most) and the first exception is raised once the block is done."""
        first = None
        for _attempt in range(3):
            try:
                self._handle_events(events, n, out)
                self._table.settle()
                break
            except BaseException as exc:
                if first is None:
                    first = exc
        if first is not None:
            raise first

    def _handle_events(self, events, n: int, out: list) -> None:
        for k in range(n):
            if events[k].data:
                self._handle_event(events[k], out)

    def _handle_event(self, ev, out: list) -> None:
        """Account for one event: into its batch's results, or as a
        Completion appended to out; its slot, once done, is left in the
        table's ``due`` for _handle_block to release."""
        ud = ev.data
        idx = ud & 0xFFFFFFFF
        slots = self._table.slots          # (the table's at(), inlined: once per event)
        slot = slots[idx] if idx < len(slots) else None
        if ud & _UD_BATCH and slot is not None and slot.pending:
            res = ev.res
            res = -2**31 if res < -2**31 else 2**31 - 1 if res > 2**31 - 1 else res
            done = ((idx, slot.gen),)
            # One call-free run: the event handled, its result stored and
            # counted off its slot (no count_done(): a call is where a
            # raising signal handler runs).
            ev.data = 0
            slot.results[(ud >> 32) & 0x7FFFFFFF] = res
            slot.pending -= 1
            self._submitted -= 1
            self._table.due += done * (slot.pending == 0) * (not slot.batch_owned)   # (no branch: 3.10 checks at jumps)
            return
        slot = self._table.lookup(ud)
        if slot is None:
            ev.data = 0      # names no request (cannot happen: each id we issue names a held slot)
            return
        c = Completion(slot.user_data, ev.res, ev.res2)
        if ev.res == -errno.EINVAL:
            cb, iov = slot.payload, slot.mem
            if iov is not None:
                addrs, lengths = [v.iov_base or 0 for v in iov], [v.iov_len for v in iov]
            else:
                addrs, lengths = [cb.aio_buf], [cb.aio_nbytes]
            c.detail = abi.explain_einval(cb.aio_fildes, cb.aio_lio_opcode, addrs, lengths, cb.aio_offset)
        stored, done = (c,), ((idx, slot.gen),)
        # One call-free run: the event handled, its completion stored, its
        # slot done; an interrupt before it changes nothing (the event is
        # handled again).
        ev.data = 0
        # (not an `if`: 3.10 checks at jumps) Uncounted while its io_submit
        # is in limbo, which will not count it either.
        self._submitted -= slot.tag == _SUBMITTED
        out += stored
        slot.pending = 0
        self._table.due += done

    def getevents(self, min_nr=1, max_nr=None, timeout=None):
        """Submit, wait, reap; see ``fastio._c.aio.Context.getevents``."""
        need = as_c_int(min_nr)
        maxn = self._maxevents if max_nr is None else as_c_int(max_nr)
        timeout_ns = timeout_to_ns(timeout, 1_000_000_000)
        if need < 0:
            raise ValueError("min_nr must be >= 0")
        if maxn < 1 or need > maxn:
            raise ValueError(f"max_nr must be >= 1 and >= min_nr, got {maxn}")
        self._check()
        if self._batches:
            raise RuntimeError("a read_batch/write_batch is running on this Context: it reaps "
                               "the context's events itself; getevents() must wait until it returns")
        deadline = deadline_for(timeout_ns)
        out = None
        # The guard goes up before anything that allocates (a finalizer run
        # there that calls close() gets RuntimeError), then the context is
        # looked at again.
        self._waiters += 1
        try:
            self._check()
            if self._queue or self._limbos:
                self._submit_queue()
            with self._lock():
                self._settle_cut(self._backlog)
                # what is already here counts towards max_nr (see the C twin)
                out, self._backlog = self._backlog[:maxn], self._backlog[maxn:]
            return self._getevents_loop(out, need, maxn, timeout_ns, deadline)
        except BaseException:
            # What was already reaped goes back to the front of the backlog,
            # in place and in one C call (no lock: a call there could be cut
            # and lose it; the list itself, which another thread may be
            # adding to, is kept).
            if out:
                self._backlog[:0] = out
            raise
        finally:
            self._waiters -= 1

    def _getevents_loop(self, out, need, maxn, timeout_ns, deadline):
        events = (abi.IoEvent * _STACK_EVENTS)()
        try:
            return self._getevents_wait(events, out, need, maxn, timeout_ns, deadline)
        except BaseException:
            # A handler raised right after io_getevents returned (its count
            # lost) or inside the block: what the kernel wrote into events
            # (data != 0) is still to be handled, into out (which getevents
            # puts back into the backlog). Listed first, in one run, so a
            # handler cutting this too leaves them to the next call.
            stashed = (events,)
            self._unhandled += stashed
            with self._lock():
                self._settle_cut(out)
            raise

    def _getevents_wait(self, events, out, need, maxn, timeout_ns, deadline):
        while len(out) < maxn:
            chunk = min(maxn - len(out), _STACK_EVENTS)
            want = max(min(need - len(out), self._submitted, chunk), 0)
            ret = self._getevents_raw(want, chunk, events, timeout_ns if want > 0 else 0)
            if ret == -EINTR:
                timeout_ns = remaining(deadline)
                self._check()
                continue
            if ret < 0:
                raise_errno(-ret)
            with self._lock():
                self._handle_block(events, ret, out)
            if ret == chunk:
                continue
            if want == 0 or len(out) >= need:
                break
            # Fewer than asked: the timeout passed or a signal cut the wait
            # short (its handler has run by now); wait on unless out of time.
            self._check()
            if deadline >= 0:
                timeout_ns = deadline - time.monotonic_ns()
                if timeout_ns <= 0:
                    break
        return out

    def cancel(self, request_id):
        """Cancel a request; see ``fastio._c.aio.Context.cancel``."""
        ud = operator.index(request_id)
        if not 0 <= ud <= 0xFFFFFFFFFFFFFFFF:
            raise OverflowError(f"request id {ud} is out of range (0 .. 2**64 - 1)")
        self._check()
        with self._lock():
            self._settle_cut(self._backlog)
            slot = self._table.lookup(ud)     # (None for an id with the batch bit)
            if slot is None:
                return False
            if (ud & 0xFFFFFFFF) in self._queue:
                self._reject(self._queue.index(ud & 0xFFFFFFFF), -errno.ECANCELED)
                return True
            result = (abi.IoEvent * 1)()
            ret = self._io_cancel(slot.payload, result)
            if ret == -errno.EINPROGRESS:
                return True
            if ret == 0:              # kernels before 4.19 hand the event back here
                self._handle_block(result, 1, self._backlog)
                return True
        if ret == -errno.EINVAL:
            raise OSError(errno.EINVAL, "io_cancel: the kernel cannot cancel this request (only IOCB_CMD_POLL "
                          "requests are cancellable; reads, writes and syncs run to completion) or it "
                          "has already completed; reap it with getevents()")
        raise_errno(-ret)

    # ---- the batch path ---------------------------------------------------

    def read_batch(self, fd, buf, offsets, size, results=None, *, depth=0):
        """Many reads in one call; see ``fastio._c.aio.Context.read_batch``."""
        return self._batch(abi.IOCB_CMD_PREAD, fd, buf, offsets, size, results, depth)

    def write_batch(self, fd, buf, offsets, size, results=None, *, depth=0):
        """Many writes in one call; see ``fastio._c.aio.Context.write_batch``."""
        return self._batch(abi.IOCB_CMD_PWRITE, fd, buf, offsets, size, results, depth)

    def _batch(self, op, fd, buf, offsets, size, results, depth):
        cfd = as_fd(fd)
        bsize = _i64(size)
        cdepth = as_c_int(depth)
        self._check()
        if bsize <= 0 or bsize > 0x7FFFFFFF:
            raise ValueError("size must be between 1 and 2 GiB - 1")
        if isinstance(offsets, (bytes, bytearray, memoryview)) or hasattr(offsets, "typecode"):
            mv = memoryview(offsets)
            if mv.itemsize != 8 or mv.format[-1:] not in ("q", "Q", "l", "L"):
                raise TypeError("offsets must be an int64 buffer (array('q')) or a sequence of ints")
            offs = mv.cast("B").cast("q").tolist()
        else:
            offs = [_i64(o) for o in offsets]
        if any(o < 0 for o in offs):
            raise ValueError("offsets must be >= 0")
        n = len(offs)
        if cdepth <= 0:
            cdepth = self._maxevents
        if self._batches or self._waiters:
            raise RuntimeError("another read_batch/write_batch or getevents() is running on this "
                               "Context: a batch reaps the context's events itself, so it needs "
                               "the context to itself (use one Context per thread)")
        stray: list = []
        events = (abi.IoEvent * _STACK_EVENTS)()
        idx = None
        counted = counting = 0
        rets: list = []
        try:
            with self._lock():
                self._check()
                allocs = self._table.allocs
                try:
                    idx = self._table.alloc(batch=True)
                finally:
                    if idx is None and self._table.allocs != allocs:
                        idx = self._table.last   # (cut as the slot was taken: CPython 3.10 checks on return)
                slot = self._table.slots[idx]
                slot.tag = _SUBMITTED
                self._batches += 1   # close() and getevents() refuse until the batch is over
                counted = 1
            view = slot.pin(buf, op == abi.IOCB_CMD_PREAD)
            if view.len < n * bsize:
                raise ValueError(f"buf holds {view.len} bytes; {n} blocks of {bsize} need {n * bsize}")
            slot.pin_results(results, n)
            cbs = (abi.Iocb * max(n, 1))()
            slot.keep.append(cbs)
            for i in range(n):
                cb = cbs[i]
                cb.aio_data = _UD_BATCH | (i << 32) | idx
                cb.aio_lio_opcode = op
                cb.aio_fildes = cfd
                cb.aio_buf = view.buf + i * bsize
                cb.aio_nbytes = bsize
                cb.aio_offset = offs[i]
            base = ctypes.addressof(cbs)
            ptrs = (ctypes.c_void_p * _SUBMIT_BATCH)()
            per_submit = _SUBMIT_BATCH
            try:
                if fcntl.fcntl(cfd, fcntl.F_GETFL) & os.O_DIRECT:
                    per_submit = abi.AIO_PLUG_THRESHOLD   # a device's reads a few at a time (see the C twin)
            except OSError:
                pass                                      # a bad fd: io_submit reports it
            next_i = 0
            while True:
                k = 0
                while True:   # (not `while cond:`: CPython 3.13, gh-130279)
                    if not (next_i + k < n and slot.pending + k < cdepth and k < per_submit):
                        break
                    ptrs[k] = base + (next_i + k) * 64
                    k += 1
                if k:
                    call = ((_c_long(_NR["io_submit"]), ctypes.c_ulong(self._ctx), _c_long(k), ptrs),)
                    # No earlier count left for the finally to take, then
                    # io_submit, its count stored by C code (see _submit_queue).
                    del rets[:]
                    counting = 1
                    rets.extend(itertools.starmap(_syscall, call))
                    ret = rets[0] if rets[0] >= 0 else -ctypes.get_errno()
                    # Counted in one run: a handler raising before it leaves
                    # the count in rets, which the finally counts (a read
                    # in flight uncounted could see its buffer released).
                    taken = ret if ret > 0 else 0
                    slot.pending += taken
                    self._submitted += taken
                    counting = 0
                    next_i += taken
                    if ret < 0 and ret not in (-errno.EAGAIN, -EINTR):
                        slot.results[next_i] = ret
                        next_i += 1
                    elif ret == k and next_i < n and slot.pending < cdepth:
                        continue      # the next few before waiting
                    elif ret == -errno.EAGAIN and slot.pending == 0:
                        # full of other requests, none of ours to wait for
                        # (see the C twin): the rest gets -EAGAIN
                        while True:   # (not `while cond:`: CPython 3.13, gh-130279)
                            if next_i >= n:
                                break
                            slot.results[next_i] = -errno.EAGAIN
                            next_i += 1
                if next_i >= n and slot.pending == 0:
                    break
                if slot.pending == 0:
                    continue      # none of ours in flight: never wait for others' (see the C twin)
                ret = self._getevents_raw(1, _STACK_EVENTS, events, -1)
                if ret == -EINTR:
                    continue
                if ret < 0:
                    raise_errno(-ret)
                with self._lock():
                    self._handle_block(events, ret, stray)
            if results is not None:
                return results
            return list(slot.results)
        finally:
            if idx is not None:
                slot = self._table.slots[idx]
                # First, in one run: what the kernel took from a submit that
                # a raising handler cut before it was counted.
                got = rets + [0]
                cut = counting * (got[0] > 0) * got[0]
                slot.pending += cut
                self._submitted += cut
                counting = 0
                done, stashed = ((idx, slot.gen),), (events,)
                # Events a raising handler left unhandled, listed for whichever
                # call gets to them (see _getevents_loop).
                self._unhandled += stashed
                try:
                    with self._lock():
                        self._settle_cut(stray)
                finally:
                    # One call-free run: other requests' completions met on
                    # the way go to the backlog (whether the batch ends or
                    # raises) and the batch gives its slot up.
                    self._backlog += stray
                    self._batches -= counted
                    slot.batch_owned = False
                    self._table.due += done   # (settle() leaves it while reads are in flight)
                    with self._lock():
                        self._table.settle()     # (interrupted: the next block's settle() goes on)
