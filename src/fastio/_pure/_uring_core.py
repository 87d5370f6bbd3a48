"""The ring itself, for the pure ``uring.Ring`` (the pure twin of
``fastio._c._uring_core``): setup and probing, the mapped SQ and CQ,
lifetime (close's cancel-and-drain), submit and enter, reap/peek/wait.
``RingCore`` holds no prep and no registration; ``_uring_register`` and
``uring`` build ``Ring`` on it.

How this backend orders its ring accesses without atomics (program order
around ``io_uring_enter``, x86-64's TSO, ``SETUP_SINGLE_ISSUER |
SETUP_DEFER_TASKRUN`` on weakly ordered CPUs, SQPOLL only on x86-64) is
written down in ``docs/uring.md``.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import platform
import threading
import time
import warnings

from fastio._errors import UnsupportedError
from fastio._abi import libc as _libc
from fastio._abi import uring as abi
from fastio._util import (
    EINTR,
    as_c_int,
    check_fork,
    deadline_for,
    fork_generation,
    raise_errno,
    remaining,
    timeout_to_ns,
)
from fastio._pure._calllock import CallLock
from fastio._pure._inflight import InflightTable
from fastio._pure._inflight import unpin as _unpin
from fastio._pure._uring_types import BufRing, Completion, _i64

_TSO = platform.machine() in ("x86_64", "AMD64", "i386", "i686")

_c_long = ctypes.c_long
_syscall = _libc.syscall
_OP = abi.OPCODES
_DRAIN_LIMIT_NS = 10_000_000_000
_SQ_WAIT_LIMIT_NS = 10_000_000_000   # a full SQ under SQPOLL: wait up to 10 s for the SQ thread
_DRAIN_STEP_NS = 100_000_000


class _NoGroup:
    """Stands for "no buffer group" in a run with no branch (_handle_cqe):
    its count is written and never read."""

    __slots__ = ("_inflight",)

    def __init__(self):
        self._inflight = 0


_NO_GROUP = _NoGroup()

# Ring state (registered buffers, buffer rings) the kernel may still write
# into after close() gave up on a request; the slots are kept by their table.
_leaked: list = []


def _enter(fd: int, to_submit: int, min_complete: int, flags: int, arg, argsz: int) -> int:
    """io_uring_enter(2); the count or -errno. ctypes releases the GIL."""
    ret = _syscall(_c_long(abi.NR_IO_URING_ENTER), ctypes.c_int(fd), ctypes.c_uint(to_submit),
                   ctypes.c_uint(min_complete), ctypes.c_uint(flags), arg, ctypes.c_size_t(argsz))
    return -ctypes.get_errno() if ret < 0 else ret


def _register(fd: int, opcode: int, arg, nr: int) -> int:
    ret = _syscall(_c_long(abi.NR_IO_URING_REGISTER), ctypes.c_int(fd), ctypes.c_uint(opcode), arg,
                   ctypes.c_uint(nr))
    return -ctypes.get_errno() if ret < 0 else ret


def _setup(entries: int, params: abi.IoUringParams) -> int:
    ret = _syscall(_c_long(abi.NR_IO_URING_SETUP), ctypes.c_uint(entries), ctypes.byref(params))
    return -ctypes.get_errno() if ret < 0 else ret


_probe_reason: str | None = None


def _kernel_reason() -> str:
    global _probe_reason
    if _probe_reason is None:
        params = abi.IoUringParams()
        fd = _setup(1, params)
        if fd < 0:
            _probe_reason = abi.diagnose(-fd)
        else:
            os.close(fd)
            _probe_reason = ""
    return _probe_reason


def available() -> bool:
    """Whether io_uring can be used here; see ``fastio._c.uring.available``."""
    return abi.disabled_by_env() is None and _kernel_reason() == ""


def why_unavailable():
    """None when available, else the cause; see ``fastio._c.uring.why_unavailable``."""
    return abi.disabled_by_env() or _kernel_reason() or None


class RingCore:
    """Setup, the SQ and CQ, lifetime, submit and reap of a ``Ring``
    (which see; this class is never used alone)."""

    def __init__(self, entries=256, *, flags=0, cq_entries=None, sq_thread_idle=None, sq_thread_cpu=None):
        if getattr(self, "_lock", None) is not None:
            raise RuntimeError("Ring.__init__ called twice")
        self._fd = -1
        self._closing = False
        self._fork_gen = fork_generation()
        self._lock = CallLock("Ring")
        self._busy = 0
        self._batches = 0
        self._table = InflightTable()
        self._fixed_inflight = 0
        self._reg_views: list = []
        self._buf_rings: dict[int, BufRing] = {}
        self._backlog: list = []
        self._spill: list = []          # CQEs taken off the CQ, not handled yet
        self._reg_changing = False      # an (un)register_buffers syscall runs
        self._issuer = threading.get_ident()   # SETUP_SINGLE_ISSUER: the creating thread
        n = as_c_int(entries)
        setup_flags = _i64(flags)
        if n <= 0:
            raise ValueError(f"entries must be positive, got {n}")
        if not 0 <= setup_flags <= 0xFFFFFFFF:
            raise ValueError(f"invalid flags {setup_flags:#x}")
        if setup_flags & abi.SETUP_REFUSED:
            raise ValueError("SETUP_SQE128, SETUP_CQE32, SETUP_NO_MMAP and SETUP_REGISTERED_FD_ONLY "
                             "are not supported by fastio.uring")
        reason = abi.disabled_by_env()
        if reason:
            raise UnsupportedError(reason)
        if not _TSO:
            if setup_flags & abi.SETUP_SQPOLL:
                raise UnsupportedError("the pure backend cannot order an SQPOLL ring on this CPU "
                                       f"({platform.machine()}); use the c backend")
            setup_flags |= abi.SETUP_SINGLE_ISSUER | abi.SETUP_DEFER_TASKRUN
        p = abi.IoUringParams()
        p.flags = setup_flags
        if cq_entries is not None:
            p.flags |= abi.SETUP_CQSIZE
            p.cq_entries = as_c_int(cq_entries)
        if sq_thread_idle is not None:
            p.sq_thread_idle = as_c_int(sq_thread_idle)
        if sq_thread_cpu is not None:
            p.flags |= abi.SETUP_SQ_AFF
            p.sq_thread_cpu = as_c_int(sq_thread_cpu)
        fd = _setup(n, p)
        if fd < 0:
            if -fd in abi.UNSUPPORTED_ERRNOS:
                raise UnsupportedError(-fd, abi.diagnose(-fd))
            raise_errno(-fd)
        try:
            self._map(fd, p)
        except BaseException:
            self._unmap()
            os.close(fd)
            raise
        self._fd = fd
        self._sq_entries = p.sq_entries
        self._cq_entries = p.cq_entries
        self._features = p.features
        self._setup_flags = p.flags

    def _map(self, fd: int, p) -> None:
        self._sq_mm = self._cq_mm = self._sqes_mm = None
        sq_sz = p.sq_off.array + p.sq_entries * 4
        cq_sz = p.cq_off.cqes + p.cq_entries * 16
        single = bool(p.features & abi.FEAT_SINGLE_MMAP)
        if single:
            sq_sz = cq_sz = max(sq_sz, cq_sz)
        prot = mmap.PROT_READ | mmap.PROT_WRITE
        self._sq_mm = mmap.mmap(fd, sq_sz, mmap.MAP_SHARED, prot, offset=abi.OFF_SQ_RING)
        self._cq_mm = self._sq_mm if single else mmap.mmap(fd, cq_sz, mmap.MAP_SHARED, prot,
                                                           offset=abi.OFF_CQ_RING)
        self._sqes_mm = mmap.mmap(fd, p.sq_entries * 64, mmap.MAP_SHARED, prot, offset=abi.OFF_SQES)
        u32 = ctypes.c_uint32
        self._sq_head = u32.from_buffer(self._sq_mm, p.sq_off.head)
        self._sq_tail_k = u32.from_buffer(self._sq_mm, p.sq_off.tail)
        self._sq_flags = u32.from_buffer(self._sq_mm, p.sq_off.flags)
        self._sq_mask = u32.from_buffer(self._sq_mm, p.sq_off.ring_mask).value
        self._sq_n = u32.from_buffer(self._sq_mm, p.sq_off.ring_entries).value
        self._sqe_tail = self._sq_tail_k.value
        if not p.flags & abi.SETUP_NO_SQARRAY:
            array = (u32 * self._sq_n).from_buffer(self._sq_mm, p.sq_off.array)
            for i in range(self._sq_n):
                array[i] = i
            del array
        self._sqes = (abi.IoUringSqe * self._sq_n).from_buffer(self._sqes_mm)
        self._cq_head = u32.from_buffer(self._cq_mm, p.cq_off.head)
        self._cq_tail = u32.from_buffer(self._cq_mm, p.cq_off.tail)
        self._cq_mask = u32.from_buffer(self._cq_mm, p.cq_off.ring_mask).value
        self._cqes = (abi.IoUringCqe * (self._cq_mask + 1)).from_buffer(self._cq_mm, p.cq_off.cqes)

    def _unmap(self) -> None:
        # ctypes views export the mmaps' buffers; drop them before closing.
        for name in ("_sq_head", "_sq_tail_k", "_sq_flags", "_sqes", "_cq_head", "_cq_tail", "_cqes"):
            self.__dict__.pop(name, None)
        for name in ("_cq_mm", "_sq_mm", "_sqes_mm"):
            mm = self.__dict__.get(name)
            if mm is not None and not mm.closed:
                try:
                    mm.close()
                except BufferError:
                    # A view is still alive elsewhere (a traceback kept by the
                    # caller holds one of our frames): the mapping goes away
                    # with the last view; nothing reads it any more.
                    pass
            self.__dict__[name] = None

    @property
    def inflight(self):
        """Requests whose completion has not been reaped yet (their buffers are pinned)."""
        return self._table.inflight

    @property
    def sq_entries(self):
        """SQ size the kernel chose."""
        return self._sq_entries

    @property
    def cq_entries(self):
        """CQ size the kernel chose."""
        return self._cq_entries

    @property
    def features(self):
        """The ``FEAT_*`` bits the kernel reported."""
        return self._features

    @property
    def setup_flags(self):
        """The ``SETUP_*`` flags the ring was made with."""
        return self._setup_flags

    # ---- lifetime --------------------------------------------------------

    def _check(self) -> None:
        if self._fd < 0 or self._closing:
            raise ValueError("I/O operation on closed Ring")
        check_fork(self._fork_gen, "Ring")

    @property
    def closed(self):
        """True once the ring is closed."""
        return self._fd < 0

    def fileno(self):
        """The ring's file descriptor."""
        if self._fd < 0:
            raise ValueError("I/O operation on closed Ring")
        return self._fd

    def close(self):
        """Cancel, wait, release, unmap, close; see ``fastio._c.uring.Ring.close``."""
        if getattr(self, "_fd", -1) < 0 or self._closing:
            return
        if self._fork_gen != fork_generation():
            self._shutdown()    # (the lock may be held by a thread the child does not have)
            return
        self._refuse_close(self._lock.owned())
        # Another thread's prep or reap holds the lock briefly, never across a wait.
        with self._lock():
            if self._fd < 0 or self._closing:
                return
            self._refuse_close(False)
            self._shutdown()

    def _refuse_close(self, in_call: bool) -> None:
        if in_call or self._busy or self._batches or self._reg_changing:
            raise RuntimeError("Ring.close() while a call on this ring is running (another thread "
                               "waiting in it, or a signal handler, finalizer or callback inside a "
                               "prep_*, peek, wait or batch call); close it once that call has returned")
        if self._table.inflight and self._wrong_issuer():
            raise RuntimeError("Ring.close() from another thread on a SETUP_SINGLE_ISSUER ring with "
                               "requests in flight: the kernel refuses io_uring_enter from any thread "
                               "but the one that created the ring (EEXIST), so they could not be "
                               "cancelled and reaped; close it from that thread")

    def _wrong_issuer(self) -> bool:
        return bool(self._setup_flags & abi.SETUP_SINGLE_ISSUER) and threading.get_ident() != self._issuer

    def __enter__(self):
        self._check()
        return self

    def __exit__(self, *args):
        self.close()

    def __del__(self):
        if getattr(self, "_fd", -1) >= 0 and not self._closing:
            try:
                warnings.warn(f"unclosed fastio.uring.Ring (fd {self._fd})", ResourceWarning)
            except BaseException:
                pass
            self._shutdown()

    def _shutdown(self) -> None:
        # From here on every method but this one refuses the ring (_check()).
        self._closing = True
        drained = True
        if self._fork_gen == fork_generation():
            drained = self._drain()
        if drained:
            # Nothing in flight any more: release every slot still held (only
            # in a forked child, or SQEs the kernel never saw).
            self._table.release_all()
            self._fixed_inflight = 0
        else:
            # Some request outlived the limit: keep what the kernel may still
            # write into (the slots' pinned buffers, the buffer rings) forever;
            # not the ring's own views, or its mmap could not be closed.
            self._table.leak()
            _leaked.append((self._reg_views, dict(self._buf_rings)))
        fd, self._fd = self._fd, -1
        self._unmap()
        os.close(fd)
        if drained:
            for view in self._reg_views:
                _unpin(view)
            self._reg_views = []
            for br in self._buf_rings.values():
                br._free()
        self._buf_rings = {}
        self._backlog = []

    def _drain(self) -> bool:
        try:
            # Queued, never submitted: dropped (see the C twin's drain()).
            if self._setup_flags & abi.SETUP_SQPOLL:
                head = self._sq_tail_k.value
            else:
                head = self._sq_head.value
            pos = head
            while True:   # (not `while cond:`: CPython 3.13, gh-130279)
                if pos == self._sqe_tail:
                    break
                self._forget_ud(self._sqes[pos & self._sq_mask].user_data)
                pos = (pos + 1) & 0xFFFFFFFF
            self._sqe_tail = head
            self._tail_publish()
            start = time.monotonic_ns()
            last_cancel = 0
            sink: list = []
            while True:   # (not `while cond:`: CPython 3.13, gh-130279)
                if not self._table.inflight:
                    break
                now = time.monotonic_ns()
                if now - start > _DRAIN_LIMIT_NS:
                    return False
                sqe = self._free_sqe() if now - last_cancel > 1_000_000_000 else None
                if sqe is not None:
                    self._prep_rw(sqe, _OP["IORING_OP_ASYNC_CANCEL"], -1, 0, 0, 0)
                    sqe.op_flags = abi.ASYNC_CANCEL_ANY | abi.ASYNC_CANCEL_ALL
                    sqe.user_data = abi.UD_INTERNAL
                    self._sqe_tail = (self._sqe_tail + 1) & 0xFFFFFFFF
                    last_cancel = now
                self._tail_publish()
                if self._enter_raw(self._sq_ready(), 1, abi.ENTER_GETEVENTS, _DRAIN_STEP_NS) == -errno.EEXIST:
                    return False   # SINGLE_ISSUER ring finalized in another thread: keep (leak) everything
                self._reap(sink)
                sink.clear()
            return True
        except BaseException:
            return not self._table.inflight

    def _forget_ud(self, ud: int) -> None:
        if ud in (abi.UD_INTERNAL, abi.UD_SKIP):
            return
        idx = ud & 0xFFFFFFFF
        slot = self._table.at(idx)
        if slot is None or not slot.pending:
            return
        if self._table.count_done(idx):
            self._slot_release(idx)

    # ---- the in-flight table ----------------------------------------------

    def _slot_release(self, idx: int) -> None:
        """Release slot idx: this ring's own counts, then the table's part
        (which may run Python code, with everything consistent)."""
        slot = self._table.slots[idx]
        if slot.fixed:
            self._fixed_inflight -= 1
        if slot.group >= 0:
            br = self._buf_rings.get(slot.group)
            if br is not None:
                br._inflight -= 1
        self._table.release(idx)

    def _new_slot(self, user_data, flags: int, pins: bool):
        if flags & abi.IOSQE_CQE_SKIP_SUCCESS:
            if pins:
                raise ValueError("IOSQE_CQE_SKIP_SUCCESS is refused on requests that hold buffers "
                                 "or memory: no completion would tell when to release them")
            if user_data is not None:
                raise ValueError("IOSQE_CQE_SKIP_SUCCESS needs user_data=None: a successful "
                                 "request never comes back")
            return None
        idx = self._table.alloc()
        self._table.slots[idx].user_data = user_data
        return idx

    # ---- the SQ ------------------------------------------------------------

    def _sq_ready(self) -> int:
        return (self._sqe_tail - self._sq_head.value) & 0xFFFFFFFF

    def _free_sqe(self):
        """The SQE at the local tail, or None on a full SQ. It joins the
        queue only when its filler advances ``_sqe_tail`` past it, the last
        store, once it is whole: a signal handler that raises anywhere
        before leaves it unqueued (the next fill overwrites it), never a
        queued SQE holding a previous request's fields."""
        if self._sq_ready() >= self._sq_n:
            return None
        return self._sqes[self._sqe_tail & self._sq_mask]

    def _tail_publish(self) -> int:
        self._sq_tail_k.value = self._sqe_tail
        return self._sq_ready()

    @staticmethod
    def _prep_rw(sqe, op, fd, addr, length, off) -> None:
        ctypes.memset(ctypes.addressof(sqe), 0, 64)
        sqe.opcode = op
        sqe.fd = fd
        sqe.addr = addr
        sqe.len = length
        sqe.off = off

    def _enter_raw(self, to_submit: int, min_complete: int, flags: int, timeout_ns: int) -> int:
        arg, argsz = None, 0
        if timeout_ns >= 0 and flags & abi.ENTER_GETEVENTS:
            if not self._features & abi.FEAT_EXT_ARG:
                raise UnsupportedError("waiting with a timeout needs IORING_FEAT_EXT_ARG (Linux 5.11)")
            ts = abi.KernelTimespec(*divmod(timeout_ns, 1_000_000_000))
            ev = abi.IoUringGeteventsArg(0, 0, 0, ctypes.addressof(ts))
            arg, argsz = ctypes.byref(ev), ctypes.sizeof(ev)
            flags |= abi.ENTER_EXT_ARG
        if self._setup_flags & abi.SETUP_SQPOLL and self._sq_flags.value & abi.SQ_NEED_WAKEUP:
            flags |= abi.ENTER_SQ_WAKEUP
        self._busy += 1
        try:
            return _enter(self._fd, to_submit, min_complete, flags, arg, argsz)
        finally:
            self._busy -= 1

    def _open_chain_start(self) -> int:
        """Index of the first SQE of the link chain left open at the end of
        the queue (``_sqe_tail`` when none is open): an automatic submit
        stops before it, since the kernel ends a chain with each submission.
        The walk stops at the published tail: what lies below it is the
        kernel's already (csrc/fio_uring_ring.h says why)."""
        published = self._sq_tail_k.value
        i = self._sqe_tail
        while i != published and self._sqes[(i - 1) & self._sq_mask].flags & (abi.IOSQE_IO_LINK | abi.IOSQE_IO_HARDLINK):
            i = (i - 1) & 0xFFFFFFFF
        return i

    def _submit_pending(self, upto=None) -> int:
        if upto is None:
            pending = self._tail_publish()
        else:
            # Never lower the published tail: the kernel may have read up to it.
            published = self._sq_tail_k.value
            if 0 < ((upto - published) & 0xFFFFFFFF) <= ((self._sqe_tail - published) & 0xFFFFFFFF):
                self._sq_tail_k.value = upto
            else:
                upto = published
            pending = (upto - self._sq_head.value) & 0xFFFFFFFF
        if not pending:
            return 0
        flags = 0
        if self._setup_flags & abi.SETUP_SQPOLL:
            # Reading SQ_NEED_WAKEUP after storing the tail needs a full fence
            # (store->load; even x86-64 reorders that), which Python cannot
            # issue. A syscall is one: always enter with SQ_WAKEUP, which
            # wakes the SQ thread if it went to sleep meanwhile.
            flags = abi.ENTER_SQ_WAKEUP
        while True:
            ret = self._enter_raw(pending, 0, flags, -1)
            if ret >= 0:
                return ret
            if -ret != EINTR:
                raise_errno(-ret)
            self._check()

    def _next_sqe(self):
        """A free SQE (as ``_free_sqe``), submitting first on a full SQ (see
        the C twin: never the open link chain; under SQPOLL, SQ_WAIT
        repeated, for it returns early on a pending signal or task work, up
        to _SQ_WAIT_LIMIT_NS)."""
        sqe = self._free_sqe()
        if sqe is not None:
            return sqe
        attempt = 0
        deadline = None
        while True:
            start = self._open_chain_start()
            if start != self._sqe_tail and ((self._sqe_tail - start) & 0xFFFFFFFF) >= self._sq_ready():
                raise OSError(errno.EBUSY, f"the submission queue ({self._sq_n} entries) is full with one open "
                              "link chain (IOSQE_IO_LINK): submitting it now would split it; keep chains "
                              "shorter than the SQ, or submit() to send it as it is")
            self._submit_pending(start)
            sqe = self._free_sqe()
            if sqe is not None:
                return sqe
            if not self._setup_flags & abi.SETUP_SQPOLL:
                attempt += 1
                if attempt == 3:
                    break
                continue
            now = time.monotonic_ns()
            if deadline is None:
                deadline = now + _SQ_WAIT_LIMIT_NS
            elif now > deadline:
                break
            ret = self._enter_raw(0, 0, abi.ENTER_SQ_WAIT | abi.ENTER_SQ_WAKEUP, -1)
            if ret < 0 and -ret != EINTR:
                raise_errno(-ret)
            sqe = self._free_sqe()
            if sqe is not None:
                return sqe
        raise OSError(errno.EBUSY, "the submission queue is full and the kernel takes no more "
                      "requests now; reap completions, then queue again")

    def submit(self):
        """Hand the queued requests to the kernel; returns how many it took."""
        with self._lock():
            self._check()
            return self._submit_pending()

    def submit_and_wait(self, wait_nr=1):
        """Submit, then wait for ``wait_nr`` completions (left in the ring)."""
        n = as_c_int(wait_nr)
        if n < 0:
            raise ValueError("wait_nr must be >= 0")
        with self._lock():
            self._check()
            pending = self._tail_publish()
        while True:
            flags = abi.ENTER_GETEVENTS if n else 0
            if self._setup_flags & abi.SETUP_SQPOLL:
                ret = self._enter_raw(0, n, flags, -1)
                if ret >= 0:
                    ret = pending
            else:
                ret = self._enter_raw(pending, n, flags, -1)
            if ret >= 0:
                break
            if -ret != EINTR:
                raise_errno(-ret)
            self._check()
            pending = self._sq_ready()
        # A signal after the kernel took the SQEs ends its wait with the
        # submitted count, not EINTR: wait on (PEP 475), up to a full CQ.
        submitted = ret
        while n and self.cq_ready < min(n, self._cq_entries):
            ret = self._enter_raw(0, n, abi.ENTER_GETEVENTS, -1)
            if ret < 0 and -ret != EINTR:
                raise_errno(-ret)
            self._check()
        return submitted

    # ---- the CQ ------------------------------------------------------------

    def _handle_cqe(self, spill: list, out: list) -> None:
        """Hand out the completion at the front of the spill. What can raise
        (a MemoryError, a signal handler at a call) comes first and changes
        nothing; then one run, no call and no branch (``fastio._pure._inflight``
        says why that is atomic), hands it out, takes it off the spill, marks
        its slot done and its buffer due back to the kernel: a completion is
        handed out once, and never lost, whatever raises. The slot is
        released by the table's ``settle()``, the buffer by ``_recycle_due()``."""
        ud, res, cflags = spill[0]
        if ud == abi.UD_INTERNAL:
            del spill[0]
            return
        if ud == abi.UD_SKIP:
            stored = (Completion(None, res, cflags),)
            out += stored
            del spill[0]
            return
        idx = ud & 0xFFFFFFFF
        table = self._table
        if ud & abi.UD_BATCH:
            slots = table.slots      # (the table's at(), inlined: once per CQE)
            slot = slots[idx] if idx < len(slots) else None
            if slot is None or not slot.pending:
                del spill[0]
                return
            results, k, left = slot.results, (ud >> 32) & 0x7FFFFFFF, slot.pending - 1
            # Listed as due when the last: settle() releases it once its
            # batch call has let go too (which lists it again, see _batch).
            done = ((idx, slot.gen),) if not left else ()
            results[k] = res
            del spill[0]            # (off the spill before counted: see _reap)
            slot.pending = left
            table.due += done
            return
        slot = table.lookup(ud)
        if slot is None:
            del spill[0]
            return
        c = Completion(slot.user_data, res, cflags)
        br = None
        recycle, recycled = [], ()      # (a list no one reads when no buffer goes back)
        if cflags & abi.CQE_F_BUFFER:
            bid = cflags >> abi.CQE_BUFFER_SHIFT
            c.buffer_id = bid
            br = self._buf_rings.get(slot.group)
            if br is not None and bid < br.entries:
                start = bid * br.size
                c.buffer = bytes(br._bufs_mm[start:start + (res if 0 < res <= br.size else 0)])
                recycle, recycled = br._due, (bid,)
            else:
                br = None
        done, pending, fixed, group, ended = (), slot.pending, 0, _NO_GROUP, 0
        if not cflags & abi.CQE_F_MORE:
            done, pending, fixed, ended = ((idx, slot.gen),), 0, int(slot.fixed), 1
            group = self._buf_rings.get(slot.group, _NO_GROUP)
        stored = (c,)
        out += stored
        del spill[0]
        recycle += recycled
        slot.pending = pending
        self._fixed_inflight -= fixed
        group._inflight -= ended
        table.due += done
        if br is not None:
            br._recycle_due()

    def _reap(self, out: list) -> None:
        """Take every ready CQE off the CQ into the spill and hand them out
        (``_handle_cqe``), flushing overflow and deferred task work."""
        for rounds in range(1, 1025):
            head = self._cq_head.value
            # x86-64: this load is an acquire; elsewhere DEFER_TASKRUN keeps
            # every CQ write on this thread (this module's docstring).
            tail = self._cq_tail.value
            n = (tail - head) & 0xFFFFFFFF
            spill = self._spill
            if n:
                cqes, mask = self._cqes, self._cq_mask
                taken = [(cqe.user_data, cqe.res, cqe.flags) for cqe in
                         [cqes[(head + i) & mask] for i in range(n)]]
                # Off the CQ and onto the spill in one call-free run; each
                # leaves the spill only as it is handed out (_handle_cqe),
                # so whatever raises, the rest goes out from the next reap.
                # (Where a run can be cut, CPython 3.9, these orders lose a
                # completion rather than count one twice, which could
                # release a batch's buffer under reads still in flight.)
                self._cq_head.value = (head + n) & 0xFFFFFFFF
                spill += taken
            while spill:
                self._handle_cqe(spill, out)
            if self._sq_flags.value & (abi.SQ_CQ_OVERFLOW | abi.SQ_TASKRUN) or (
                    n == 0 and rounds == 1 and self._setup_flags & abi.SETUP_DEFER_TASKRUN):
                ret = self._enter_raw(0, 0, abi.ENTER_GETEVENTS, -1)
                if ret < 0 and -ret not in (EINTR, errno.EBUSY, errno.EAGAIN):
                    raise_errno(-ret)
                if (self._cq_tail.value - self._cq_head.value) & 0xFFFFFFFF:
                    continue
            break
        # What an interrupted call left: slots done, buffers due back.
        if self._table.due:
            self._table.settle()
        if self._buf_rings:
            for br in self._buf_rings.values():
                if br._due:
                    br._recycle_due()

    def peek(self):
        """Every completion ready now, as a list; never blocks."""
        with self._lock():
            self._check()
            out, self._backlog = self._backlog, []   # (call-free: see _wait_into)
            try:
                self._reap(out)
            except BaseException:
                # What was taken goes back to the front of the backlog, in
                # a call-free statement (a call here could be interrupted).
                self._backlog = out + self._backlog
                raise
            return out

    def wait(self, min_complete=1, timeout=None):
        """Submit, wait for ``min_complete`` completions or ``timeout``
        seconds, return every ready completion; see ``fastio._c.uring.Ring.wait``."""
        need = as_c_int(min_complete)
        timeout_ns = timeout_to_ns(timeout, 1_000_000_000)
        if need < 0:
            raise ValueError("min_complete must be >= 0")
        self._check()
        deadline = deadline_for(timeout_ns)
        out = []
        try:
            self._wait_into(out, need, timeout_ns, deadline)
        except BaseException:
            # A signal handler raised, or the ring was closed under the wait:
            # what was taken off the CQ comes back from the next call (as in
            # peek, call-free).
            self._backlog = out + self._backlog
            raise
        return out

    def _wait_into(self, out: list, need: int, timeout_ns: int, deadline: int) -> None:
        with self._lock():
            self._check()
            # Call-free: on CPython 3.10 a handler may raise once any call
            # has returned, which would drop a backlog a call handed back.
            out += self._backlog
            self._backlog = []
            self._reap(out)
            pending = self._tail_publish()
        if self._setup_flags & abi.SETUP_SQPOLL:
            pending = 0
        while len(out) < need or pending:
            ret = self._enter_raw(pending, max(need - len(out), 0),
                                  abi.ENTER_GETEVENTS if len(out) < need else 0, timeout_ns)
            if ret >= 0 or ret == -errno.ETIME:
                pending = 0
            elif ret == -EINTR:
                timeout_ns = remaining(deadline)
                self._check()
            else:
                raise_errno(-ret)
            with self._lock():
                self._check()
                self._reap(out)
            if ret == -errno.ETIME:
                break
            if deadline >= 0:
                timeout_ns = deadline - time.monotonic_ns()
                if timeout_ns <= 0:
                    break

    # ---- introspection ---------------------------------------------------

    @property
    def sq_ready(self):
        """Requests queued and not yet taken by the kernel."""
        self._check()
        return self._sq_ready()

    @property
    def cq_ready(self):
        """Completions in the CQ ring not yet reaped."""
        self._check()
        return self._cq_count()

    def _cq_count(self) -> int:
        return (self._cq_tail.value - self._cq_head.value) & 0xFFFFFFFF

    def _peek_sqe(self, i):
        """The 64 bytes of the i-th queued, not yet submitted SQE (tests)."""
        k = as_c_int(i)
        self._check()
        if not 0 <= k < self._sq_ready():
            raise IndexError("no such queued SQE")
        pos = ((self._sq_head.value + k) & self._sq_mask) * 64
        return bytes(self._sqes_mm[pos:pos + 64])

    def probe(self):
        """The opcodes this kernel supports, as a frozenset of ``IORING_OP_*``."""
        self._check()

        class _Probe(ctypes.Structure):
            _fields_ = [("hdr", abi.IoUringProbe), ("ops", abi.IoUringProbeOp * 256)]

        probe = _Probe()
        ret = _register(self._fd, abi.REGISTER_PROBE, ctypes.byref(probe), 256)
        if ret < 0:
            raise_errno(-ret)
        return frozenset(probe.ops[i].op for i in range(probe.hdr.ops_len)
                         if probe.ops[i].flags & abi.IO_URING_OP_SUPPORTED)
