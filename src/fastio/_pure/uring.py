"""io_uring(7) through ctypes and mmap: the pure twin of ``fastio._c.uring``.

The same kernel interface (``io_uring_setup``/``enter``/``register`` through
``syscall(2)``, the rings mapped with the stdlib ``mmap``), the same rules;
the kernel facts are those in ``fastio/_c/uring.pyx``'s docstring. Requests
live in ``fastio._pure._inflight``'s table, which pins buffers exactly as in
C: ``PyObject_GetBuffer`` through ``ctypes.pythonapi``, released with
``PyBuffer_Release`` when reaped.

Memory ordering without atomics. Python cannot issue a load-acquire or a
store-release, so this backend orders its ring accesses through the syscalls
and the CPU's own rules, as follows:

* SQ, without SQPOLL: the kernel reads SQEs and the SQ tail only inside the
  ``io_uring_enter`` that this thread makes after writing them, on this
  thread; program order on one thread is all that is needed, on any CPU.
  With SQPOLL a kernel thread on another CPU reads the SQ concurrently, which
  needs the tail to be stored with release semantics: on x86-64 (TSO) every
  store is a release, so SQPOLL is allowed there; elsewhere ``Ring`` raises
  ``UnsupportedError`` for ``SETUP_SQPOLL`` in this backend.
* CQ: completions can be posted from other CPUs (io-wq workers, interrupts).
  On x86-64 every load is an acquire, so reading the CQ tail and then the CQEs
  is ordered, and our head store is a release. On weakly ordered CPUs
  (aarch64) this backend creates every ring with ``SETUP_SINGLE_ISSUER |
  SETUP_DEFER_TASKRUN`` (6.1): the kernel then posts CQEs only from task work
  run inside ``io_uring_enter(GETEVENTS)`` on this thread, so the kernel's CQ
  writes and our reads are again in one thread's program order (the price:
  one thread per ring, as the kernel enforces for SINGLE_ISSUER).
* Provided-buffer ring tails: written by this thread before the
  ``io_uring_enter`` that may consume them (same argument as the SQ).
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import operator
import os
import platform
import threading
import warnings

from fastio._errors import UnsupportedError
from fastio._abi import libc as _libc
from fastio._abi import uring as abi
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
from fastio._pure._inflight import InflightTable
# aio.py imports these two from here
from fastio._pure._inflight import pin as _pin
from fastio._pure._inflight import unpin as _unpin

_TSO = platform.machine() in ("x86_64", "AMD64", "i386", "i686")

_c_long = ctypes.c_long
_syscall = _libc.syscall
_OP = abi.OPCODES
_SQE_FLAGS_MASK = 0x7F
_DRAIN_LIMIT_NS = 10_000_000_000
_DRAIN_STEP_NS = 100_000_000

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


class Completion:
    """One completion; see ``fastio._c.uring.Completion``."""

    __slots__ = ("user_data", "res", "flags", "buffer_id", "buffer")

    def __init__(self, user_data=None, res=0, flags=0, buffer_id=None, buffer=None):
        self.user_data = user_data
        self.res = res
        self.flags = flags
        self.buffer_id = buffer_id
        self.buffer = buffer

    @property
    def more(self):
        """True if more completions of this multishot request will come."""
        return bool(self.flags & abi.CQE_F_MORE)

    def result(self):
        """Return ``res``, or raise the OSError a negative ``res`` stands for."""
        if self.res < 0:
            raise_errno(-self.res)
        return self.res

    def __repr__(self):
        extra = f", buffer_id={self.buffer_id}" if self.buffer_id is not None else ""
        return f"Completion(user_data={self.user_data!r}, res={self.res}, flags={self.flags:#x}{extra})"

    def __eq__(self, other):
        if not isinstance(other, Completion):
            return NotImplemented
        return (self.user_data, self.res, self.flags, self.buffer_id, self.buffer) == (
            other.user_data, other.res, other.flags, other.buffer_id, other.buffer)

    __hash__ = None


class BufRing:
    """A provided-buffer ring; see ``fastio._c.uring.BufRing``."""

    __slots__ = ("bgid", "entries", "size", "_ring_mm", "_bufs_mm", "_ring", "_bufs", "_bufs_addr", "_tail",
                 "_inflight")

    def __init__(self):
        raise TypeError("BufRing objects are made by Ring.register_buf_ring()")

    @classmethod
    def _make(cls, bgid: int, entries: int, size: int) -> "BufRing":
        self = cls.__new__(cls)
        self.bgid, self.entries, self.size = bgid, entries, size
        ring_sz = -(-entries * 16 // abi.PAGE_SIZE) * abi.PAGE_SIZE
        self._ring_mm = mmap.mmap(-1, ring_sz)          # anonymous: page aligned
        self._bufs_mm = mmap.mmap(-1, entries * size)
        self._ring = (abi.IoUringBuf * entries).from_buffer(self._ring_mm)
        self._bufs = (ctypes.c_char * (entries * size)).from_buffer(self._bufs_mm)
        self._bufs_addr = ctypes.addressof(self._bufs)
        self._tail = 0
        self._inflight = 0
        return self

    def _recycle(self, bid: int) -> None:
        entry = self._ring[self._tail & (self.entries - 1)]
        entry.addr = self._bufs_addr + bid * self.size
        entry.len = self.size
        entry.bid = bid
        self._tail = (self._tail + 1) & 0xFFFF
        # The tail lives in entry 0's resv; see the module docstring for why
        # a plain store is ordered here.
        self._ring[0].resv = self._tail

    def _free(self) -> None:
        if self._ring_mm is not None:
            self._ring = self._bufs = None
            self._ring_mm.close()
            self._bufs_mm.close()
            self._ring_mm = self._bufs_mm = None

    def __repr__(self):
        return f"<BufRing bgid={self.bgid} entries={self.entries} size={self.size}>"


def _check_sqe_flags(flags) -> int:
    flags = as_c_int(flags)
    if flags & ~_SQE_FLAGS_MASK:
        raise ValueError(f"unknown IOSQE_* bits in flags={flags:#x}")
    if flags & abi.IOSQE_BUFFER_SELECT:
        raise ValueError("IOSQE_BUFFER_SELECT is set by prep_recv_multishot (buf_group=), not by flags")
    return flags


def _poll_first(poll_first) -> int:
    """The sqe.ioprio bit a recv/send's ``poll_first=True`` sets."""
    return abi.RECVSEND_POLL_FIRST if poll_first else 0


def _len32(n: int) -> int:
    if n < 0:
        raise ValueError(f"a length must be >= 0, got {n}")
    if n > 0xFFFFFFFF:
        raise ValueError("a single request moves at most 4 GiB - 1 bytes")
    return n


def _as_offset(offset) -> int:
    off = _i64(offset)
    if off < -1:
        raise ValueError(f"offset must be >= 0 or -1 (current position), got {off}")
    return off & 0xFFFFFFFFFFFFFFFF


def _u32(value) -> int:
    """An int for a 32-bit unsigned field: a float is a TypeError, a value
    out of range an OverflowError (the C backend's as_u32)."""
    value = operator.index(value)
    if not 0 <= value <= 0xFFFFFFFF:
        raise OverflowError(f"{value} is out of range for a 32-bit unsigned field")
    return value


def _i64(value) -> int:
    """An int for a signed 64-bit field (OverflowError outside it)."""
    value = operator.index(value)
    if not -(2**63) <= value < 2**63:
        raise OverflowError("Python int too large to convert to C long")
    return value


def _u64(value) -> int:
    """An int for an unsigned 64-bit field (OverflowError outside it)."""
    value = operator.index(value)
    if value < 0:
        raise OverflowError("can't convert negative value to uint64_t")
    if value >= 2**64:
        raise OverflowError("Python int too large to convert to C unsigned long")
    return value


class Ring:
    """Ring(entries=256, *, flags=0, cq_entries=None, sq_thread_idle=None, sq_thread_cpu=None)

    An io_uring instance; see ``fastio._c.uring.Ring``.
    """

    def __init__(self, entries=256, *, flags=0, cq_entries=None, sq_thread_idle=None, sq_thread_cpu=None):
        if getattr(self, "_lock", None) is not None:
            raise RuntimeError("Ring.__init__ called twice")
        self._fd = -1
        self._closing = False
        self._fork_gen = fork_generation()
        self._lock = threading.Lock()
        self._owner = None
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

    def _acquire(self) -> None:
        """Serialise ring memory accesses between threads (the C backend has
        the GIL for that); re-entry from a signal handler or a finalizer
        running inside a ring call is refused rather than deadlocking."""
        me = threading.get_ident()
        if self._owner == me:
            raise RuntimeError("Ring used re-entrantly (from a signal handler or a finalizer "
                               "running inside one of its own calls)")
        self._lock.acquire()
        self._owner = me
        if self._fd < 0 or self._closing:
            # Closed while this call was between two holds of the lock (by a
            # signal handler, say): stop before touching the unmapped ring.
            self._release()
            raise ValueError("I/O operation on closed Ring")

    def _release(self) -> None:
        self._owner = None
        self._lock.release()

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
        if self._fork_gen == fork_generation():
            if self._busy or self._batches or self._owner is not None or self._reg_changing:
                raise RuntimeError("Ring.close() while a call on this ring is running (another thread "
                                   "waiting in it, or a signal handler, finalizer or callback inside a "
                                   "prep_*, peek, wait or batch call); close it once that call has returned")
            if self._table.inflight and self._wrong_issuer():
                raise RuntimeError("Ring.close() from another thread on a SETUP_SINGLE_ISSUER ring with "
                                   "requests in flight: the kernel refuses io_uring_enter from any thread "
                                   "but the one that created the ring (EEXIST), so they could not be "
                                   "cancelled and reaped; close it from that thread")
        self._shutdown()

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
            while pos != self._sqe_tail:
                self._forget_ud(self._sqes[pos & self._sq_mask].user_data)
                pos = (pos + 1) & 0xFFFFFFFF
            self._sqe_tail = head
            self._tail_publish()
            import time

            start = time.monotonic_ns()
            last_cancel = 0
            sink: list = []
            while self._table.inflight:
                now = time.monotonic_ns()
                if now - start > _DRAIN_LIMIT_NS:
                    return False
                if now - last_cancel > 1_000_000_000 and self._sq_ready() < self._sq_n:
                    sqe = self._get_sqe()
                    self._prep_rw(sqe, _OP["IORING_OP_ASYNC_CANCEL"], -1, 0, 0, 0)
                    sqe.op_flags = abi.ASYNC_CANCEL_ANY | abi.ASYNC_CANCEL_ALL
                    sqe.user_data = abi.UD_INTERNAL
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

    def _abandon(self, idx) -> None:
        if idx is not None:
            self._slot_release(idx)

    # ---- the SQ ------------------------------------------------------------

    def _sq_ready(self) -> int:
        return (self._sqe_tail - self._sq_head.value) & 0xFFFFFFFF

    def _get_sqe(self):
        if self._sq_ready() >= self._sq_n:
            return None
        sqe = self._sqes[self._sqe_tail & self._sq_mask]
        self._sqe_tail = (self._sqe_tail + 1) & 0xFFFFFFFF
        return sqe

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
        sqe = self._get_sqe()
        if sqe is not None:
            return sqe
        for _ in range(3):
            start = self._open_chain_start()
            if start != self._sqe_tail and ((self._sqe_tail - start) & 0xFFFFFFFF) >= self._sq_ready():
                raise OSError(errno.EBUSY, f"the submission queue ({self._sq_n} entries) is full with one open "
                              "link chain (IOSQE_IO_LINK): submitting it now would split it; keep chains "
                              "shorter than the SQ, or submit() to send it as it is")
            self._submit_pending(start)
            sqe = self._get_sqe()
            if sqe is not None:
                return sqe
            if self._setup_flags & abi.SETUP_SQPOLL:
                ret = self._enter_raw(0, 0, abi.ENTER_SQ_WAIT, -1)
                if ret < 0 and -ret != EINTR:
                    raise_errno(-ret)
                sqe = self._get_sqe()
                if sqe is not None:
                    return sqe
        raise OSError(errno.EBUSY, "the submission queue is full and the kernel takes no more "
                      "requests now; reap completions, then queue again")

    def submit(self):
        """Hand the queued requests to the kernel; returns how many it took."""
        self._check()
        self._acquire()
        try:
            return self._submit_pending()
        finally:
            self._release()

    def submit_and_wait(self, wait_nr=1):
        """Submit, then wait for ``wait_nr`` completions (left in the ring)."""
        n = as_c_int(wait_nr)
        if n < 0:
            raise ValueError("wait_nr must be >= 0")
        self._check()
        self._acquire()
        try:
            pending = self._tail_publish()
        finally:
            self._release()
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

    def _handle_cqe(self, ud: int, res: int, cflags: int, out: list) -> None:
        if ud == abi.UD_INTERNAL:
            return
        if ud == abi.UD_SKIP:
            out.append(Completion(None, res, cflags))
            return
        idx = ud & 0xFFFFFFFF
        if ud & abi.UD_BATCH:
            slot = self._table.at(idx)
            if slot is None or not slot.pending:
                return
            slot.results[(ud >> 32) & 0x7FFFFFFF] = res
            if self._table.count_done(idx):
                self._slot_release(idx)
            return
        slot = self._table.lookup(ud)
        if slot is None:
            return
        # What can raise comes before what changes state (the C twin says why).
        c = Completion(slot.user_data, res, cflags)
        br = None
        if cflags & abi.CQE_F_BUFFER:
            bid = cflags >> abi.CQE_BUFFER_SHIFT
            c.buffer_id = bid
            br = self._buf_rings.get(slot.group)
            if br is not None and bid < br.entries:
                start = bid * br.size
                c.buffer = bytes(br._bufs_mm[start:start + (res if 0 < res <= br.size else 0)])
            else:
                br = None
        out.append(c)
        if br is not None:
            br._recycle(bid)
        if not cflags & abi.CQE_F_MORE:
            self._slot_release(idx)

    def _reap(self, out: list) -> None:
        for rounds in range(1, 1025):
            head = self._cq_head.value
            # x86-64: this load is an acquire; elsewhere DEFER_TASKRUN keeps
            # every CQ write on this thread (module docstring).
            tail = self._cq_tail.value
            n = (tail - head) & 0xFFFFFFFF
            cqes, mask = self._cqes, self._cq_mask
            spill = self._spill
            for i in range(n):
                cqe = cqes[(head + i) & mask]
                spill.append((cqe.user_data, cqe.res, cqe.flags))
            if n:
                self._cq_head.value = (head + n) & 0xFFFFFFFF
            # Taken off the CQ: each leaves the spill only once handled, so
            # whatever raises meanwhile (a signal handler's exception, a
            # MemoryError), the rest is handed out by the next reap.
            while spill:
                ud, res, cflags = spill[0]
                self._handle_cqe(ud, res, cflags, out)
                del spill[0]
            if self._sq_flags.value & (abi.SQ_CQ_OVERFLOW | abi.SQ_TASKRUN) or (
                    n == 0 and rounds == 1 and self._setup_flags & abi.SETUP_DEFER_TASKRUN):
                ret = self._enter_raw(0, 0, abi.ENTER_GETEVENTS, -1)
                if ret < 0 and -ret not in (EINTR, errno.EBUSY, errno.EAGAIN):
                    raise_errno(-ret)
                if (self._cq_tail.value - self._cq_head.value) & 0xFFFFFFFF:
                    continue
            break

    def _take_backlog(self) -> list:
        out, self._backlog = self._backlog, []
        return out

    def peek(self):
        """Every completion ready now, as a list; never blocks."""
        self._check()
        self._acquire()
        try:
            out = self._take_backlog()
            try:
                self._reap(out)
            except BaseException:
                self._give_back(out)
                raise
            return out
        finally:
            self._release()

    def _give_back(self, out: list) -> None:
        """Completions a raising call took go back to the front of the backlog."""
        if out:
            out.extend(self._backlog)
            self._backlog = out

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
            # what was taken off the CQ comes back from the next call.
            self._give_back(out)
            raise
        return out

    def _wait_into(self, out: list, need: int, timeout_ns: int, deadline: int) -> None:
        self._acquire()
        try:
            out.extend(self._take_backlog())
            self._reap(out)
            pending = self._tail_publish()
        finally:
            self._release()
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
            self._acquire()
            try:
                self._reap(out)
            finally:
                self._release()
            if ret == -errno.ETIME:
                break
            if deadline >= 0:
                import time

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

    # ---- registration ------------------------------------------------------

    def _register(self, opcode: int, arg, nr: int) -> int:
        while True:
            ret = _register(self._fd, opcode, arg, nr)
            if ret >= 0:
                return ret
            if -ret != EINTR:
                raise_errno(-ret)

    def register_files(self, fds):
        """Register fixed files; see ``fastio._c.uring.Ring.register_files``."""
        self._check()
        values = [-1 if f == -1 else as_fd(f) for f in fds]
        arr = (ctypes.c_int32 * max(len(values), 1))(*values)
        self._register(abi.REGISTER_FILES, ctypes.byref(arr), len(values))

    def register_files_update(self, offset, fds):
        """Replace fixed files from ``offset`` on; returns how many were updated."""
        self._check()
        values = [-1 if f == -1 else as_fd(f) for f in fds]
        arr = (ctypes.c_int32 * max(len(values), 1))(*values)
        up = abi.IoUringRsrcUpdate(_u32(offset), 0, ctypes.addressof(arr))
        return self._register(abi.REGISTER_FILES_UPDATE, ctypes.byref(up), len(values))

    def unregister_files(self):
        """Drop the fixed files."""
        self._check()
        self._register(abi.UNREGISTER_FILES, None, 0)

    def register_buffers(self, buffers):
        """Register fixed buffers; see ``fastio._c.uring.Ring.register_buffers``."""
        self._check()
        objs = list(buffers)
        self._check()
        if self._reg_views or self._reg_changing:
            raise OSError(errno.EBUSY, "buffers are already registered; unregister_buffers() first")
        if not 1 <= len(objs) <= 16384:
            raise ValueError("register between 1 and 16384 buffers")
        views = []
        try:
            for obj in objs:
                views.append(_pin(obj, True))
            iov = (abi.Iovec * len(views))(*[(v.buf, v.len) for v in views])
            self._check()
            if self._reg_views or self._reg_changing:
                raise OSError(errno.EBUSY, "buffers are already registered; unregister_buffers() first")
            self._reg_changing = True
            try:
                self._register(abi.REGISTER_BUFFERS, ctypes.byref(iov), len(views))
            except OSError as exc:
                raise abi.register_buffers_error(exc, sum(v.len for v in views)) from None
            finally:
                self._reg_changing = False
        except BaseException:
            for view in views:
                _unpin(view)
            raise
        self._reg_views = views

    def unregister_buffers(self):
        """Unregister the fixed buffers (``OSError(EBUSY)`` while one is in use)."""
        self._check()
        if self._reg_changing:
            raise OSError(errno.EBUSY, "another thread is registering or unregistering buffers")
        if self._fixed_inflight:
            raise OSError(errno.EBUSY, "a read_fixed/write_fixed request is in flight; reap it first")
        # Detached before the syscall (the GIL is released in it), as in the C twin.
        views, self._reg_views = self._reg_views, []
        self._reg_changing = True
        try:
            self._register(abi.UNREGISTER_BUFFERS, None, 0)
        except BaseException:
            self._reg_views = views
            raise
        finally:
            self._reg_changing = False
        for view in views:
            _unpin(view)

    def register_eventfd(self, fd):
        """Signal the eventfd ``fd`` on every completion."""
        self._check()
        efd = ctypes.c_int32(as_fd(fd))
        self._register(abi.REGISTER_EVENTFD, ctypes.byref(efd), 1)

    def unregister_eventfd(self):
        """Stop signalling the registered eventfd."""
        self._check()
        self._register(abi.UNREGISTER_EVENTFD, None, 0)

    def register_buf_ring(self, bgid, entries, size):
        """Create and register a provided-buffer ring; returns the ``BufRing``."""
        self._check()
        gid, n, sz = as_c_int(bgid), as_c_int(entries), as_c_int(size)
        if not 0 <= gid <= 0xFFFF:
            raise ValueError("bgid must be 0-65535")
        if n <= 0 or n > 32768 or n & (n - 1):
            raise ValueError("entries must be a power of two between 1 and 32768")
        if sz <= 0:
            raise ValueError("size must be positive")
        if gid in self._buf_rings:
            raise OSError(errno.EBUSY, f"buffer group {gid} is already registered")
        br = BufRing._make(gid, n, sz)
        try:
            reg = abi.IoUringBufReg(ctypes.addressof(br._ring), n, gid, 0)
            self._register(abi.REGISTER_PBUF_RING, ctypes.byref(reg), 1)
        except BaseException:
            br._free()
            raise
        for bid in range(n):
            br._recycle(bid)
        self._buf_rings[gid] = br
        return br

    def unregister_buf_ring(self, bgid):
        """Unregister buffer group ``bgid`` (``OSError(EBUSY)`` while in use)."""
        self._check()
        gid = as_c_int(bgid)
        br = self._buf_rings.get(gid)
        if br is None:
            # the kernel's own answer for an unknown group
            raise OSError(errno.ENOENT, f"buffer group {gid} is not registered")
        if br._inflight:
            raise OSError(errno.EBUSY, f"a request using buffer group {gid} is in flight")
        reg = abi.IoUringBufReg(0, 0, gid, 0)
        self._register(abi.UNREGISTER_PBUF_RING, ctypes.byref(reg), 1)
        del self._buf_rings[gid]
        br._free()

    # ---- prep ----------------------------------------------------------------

    def _queue(self, user_data, flags, pins, build):
        """The shape of every prep: slot, then the Python-side work
        (``build(slot) -> fill``), then the SQE, filled in one go."""
        flags = _check_sqe_flags(flags)
        self._check()
        self._acquire()
        try:
            idx = self._new_slot(user_data, flags, pins)
            try:
                fill = build(self._table.slots[idx] if idx is not None else None)
                sqe = self._next_sqe()
            except BaseException:
                self._abandon(idx)
                raise
            fill(sqe)
            sqe.flags |= flags
            if idx is None:
                sqe.user_data = abi.UD_SKIP
                return None
            self._table.slots[idx].tag = sqe.opcode
            sqe.user_data = self._table.ident(idx)
            return sqe.user_data
        finally:
            self._release()

    def _simple(self, op, fd, addr, length, off, op_flags, user_data, flags):
        def build(slot):
            def fill(sqe):
                self._prep_rw(sqe, op, fd, addr, length, off)
                sqe.op_flags = op_flags
            return fill
        return self._queue(user_data, flags, False, build)

    def prep_nop(self, *, user_data=None, flags=0):
        """Queue a NOP. Matches ``io_uring_prep_nop(3)``."""
        return self._simple(_OP["IORING_OP_NOP"], -1, 0, 0, 0, 0, user_data, flags)

    def _prep_buf(self, op, fd, buf, offset, op_flags, user_data, flags, writable, ioprio=0):
        op_flags = _u32(op_flags)

        def build(slot):
            view = slot.pin(buf, writable)
            length = _len32(view.len)

            def fill(sqe):
                self._prep_rw(sqe, op, fd, view.buf or 0, length, offset)
                sqe.op_flags = op_flags
                sqe.ioprio |= ioprio
            return fill
        return self._queue(user_data, flags, True, build)

    def prep_read(self, fd, buf, offset, *, user_data=None, flags=0, rw_flags=0):
        """Queue a read into ``buf``; see ``fastio._c.uring.Ring.prep_read``."""
        return self._prep_buf(_OP["IORING_OP_READ"], as_fd(fd), buf, _as_offset(offset), rw_flags, user_data,
                              flags, True)

    def prep_write(self, fd, buf, offset, *, user_data=None, flags=0, rw_flags=0):
        """Queue a write of ``buf``. Matches ``io_uring_prep_write(3)``."""
        return self._prep_buf(_OP["IORING_OP_WRITE"], as_fd(fd), buf, _as_offset(offset), rw_flags, user_data,
                              flags, False)

    def prep_recv(self, fd, buf, *, user_data=None, flags=0, msg_flags=0, poll_first=False):
        """Queue a recv into ``buf``; see ``fastio._c.uring.Ring.prep_recv``."""
        return self._prep_buf(_OP["IORING_OP_RECV"], as_fd(fd), buf, 0, msg_flags, user_data, flags, True,
                              _poll_first(poll_first))

    def prep_send(self, fd, buf, *, user_data=None, flags=0, msg_flags=0, poll_first=False):
        """Queue a send of ``buf``. Matches ``io_uring_prep_send(3)``."""
        return self._prep_buf(_OP["IORING_OP_SEND"], as_fd(fd), buf, 0, msg_flags, user_data, flags, False,
                              _poll_first(poll_first))

    def _prep_vec(self, op, fd, buffers, offset, rw_flags, user_data, flags, writable):
        rw_flags = _u32(rw_flags)

        def build(slot):
            iov = slot.pin_vector(buffers, writable)

            def fill(sqe):
                self._prep_rw(sqe, op, fd, ctypes.addressof(iov), len(iov), offset)
                sqe.op_flags = rw_flags
            return fill
        return self._queue(user_data, flags, True, build)

    def prep_readv(self, fd, buffers, offset, *, user_data=None, flags=0, rw_flags=0):
        """Queue a vectored read. Matches ``io_uring_prep_readv(3)``."""
        return self._prep_vec(_OP["IORING_OP_READV"], as_fd(fd), buffers, _as_offset(offset), rw_flags,
                              user_data, flags, True)

    def prep_writev(self, fd, buffers, offset, *, user_data=None, flags=0, rw_flags=0):
        """Queue a vectored write. Matches ``io_uring_prep_writev(3)``."""
        return self._prep_vec(_OP["IORING_OP_WRITEV"], as_fd(fd), buffers, _as_offset(offset), rw_flags,
                              user_data, flags, False)

    def _prep_fixed(self, op, fd, buf_index, offset, nbytes, buf_offset, user_data, flags):
        bi = as_c_int(buf_index)
        boff = _i64(buf_offset)
        off = _as_offset(offset)
        n = None if nbytes is None else _i64(nbytes)

        def build(slot):
            # Counted as fixed first (unregister_buffers refuses from here on),
            # then the registration is read: a finalizer that unregistered it
            # while the slot was taken is seen here, as in the C twin.
            slot.fixed = True
            self._fixed_inflight += 1
            if not 0 <= bi < len(self._reg_views):
                raise ValueError(f"buf_index {bi} is not a registered buffer")
            view = self._reg_views[bi]
            length = view.len - boff if n is None else n
            if boff < 0 or length < 0 or boff + length > view.len:
                raise ValueError("buf_offset/nbytes fall outside the registered buffer")
            length = _len32(length)

            def fill(sqe):
                self._prep_rw(sqe, op, fd, view.buf + boff, length, off)
                sqe.buf_index = bi
            return fill
        return self._queue(user_data, flags, True, build)

    def prep_read_fixed(self, fd, buf_index, offset, *, nbytes=None, buf_offset=0, user_data=None, flags=0):
        """Queue a read into a registered buffer. Matches ``io_uring_prep_read_fixed(3)``."""
        return self._prep_fixed(_OP["IORING_OP_READ_FIXED"], as_fd(fd), buf_index, offset, nbytes, buf_offset,
                                user_data, flags)

    def prep_write_fixed(self, fd, buf_index, offset, *, nbytes=None, buf_offset=0, user_data=None, flags=0):
        """Queue a write from a registered buffer. Matches ``io_uring_prep_write_fixed(3)``."""
        return self._prep_fixed(_OP["IORING_OP_WRITE_FIXED"], as_fd(fd), buf_index, offset, nbytes, buf_offset,
                                user_data, flags)

    def prep_fsync(self, fd, *, fsync_flags=0, user_data=None, flags=0):
        """Queue an fsync. Matches ``io_uring_prep_fsync(3)``."""
        return self._simple(_OP["IORING_OP_FSYNC"], as_fd(fd), 0, 0, 0, _u32(fsync_flags), user_data, flags)

    def prep_fallocate(self, fd, mode, offset, length, *, user_data=None, flags=0):
        """Queue an fallocate (length in addr, mode in len, as the kernel reads them)."""
        return self._simple(_OP["IORING_OP_FALLOCATE"], as_fd(fd), _u64(length),
                            as_c_int(mode) & 0xFFFFFFFF, _as_offset(offset), 0, user_data, flags)

    def prep_openat(self, dfd, path, open_flags=0, mode=0o666, *, user_data=None, flags=0):
        """Queue an openat; see ``fastio._c.uring.Ring.prep_openat``."""
        cdfd = as_c_int(dfd)
        cflags = (as_c_int(open_flags) | os.O_CLOEXEC) & 0xFFFFFFFF
        cmode = as_c_int(mode) & 0xFFFFFFFF
        bpath = os.fsencode(path)
        if b"\0" in bpath:
            raise ValueError("embedded null byte")

        def build(slot):
            cpath = ctypes.create_string_buffer(bpath)
            slot.keep.append(cpath)

            def fill(sqe):
                self._prep_rw(sqe, _OP["IORING_OP_OPENAT"], cdfd, ctypes.addressof(cpath), cmode, 0)
                sqe.op_flags = cflags
            return fill
        return self._queue(user_data, flags, True, build)

    def prep_close(self, fd, *, user_data=None, flags=0):
        """Queue a close. Matches ``io_uring_prep_close(3)``."""
        return self._simple(_OP["IORING_OP_CLOSE"], as_fd(fd), 0, 0, 0, 0, user_data, flags)

    def prep_statx(self, dfd, path, statx_flags, mask, statxbuf, *, user_data=None, flags=0):
        """Queue a statx into ``statxbuf`` (>= 256 bytes). Matches ``io_uring_prep_statx(3)``."""
        cdfd = as_c_int(dfd)
        cflags = as_c_int(statx_flags) & 0xFFFFFFFF
        cmask = _u32(mask)
        bpath = os.fsencode(path)
        if b"\0" in bpath:
            raise ValueError("embedded null byte")

        def build(slot):
            cpath = ctypes.create_string_buffer(bpath)
            slot.keep.append(cpath)
            view = slot.pin(statxbuf, True)
            if view.len < abi.STATX_SIZE:
                raise ValueError("statxbuf must hold at least 256 bytes (struct statx)")

            def fill(sqe):
                self._prep_rw(sqe, _OP["IORING_OP_STATX"], cdfd, ctypes.addressof(cpath), cmask, view.buf)
                sqe.op_flags = cflags
            return fill
        return self._queue(user_data, flags, True, build)

    def prep_poll_add(self, fd, poll_mask, *, multishot=False, user_data=None, flags=0):
        """Queue a poll (multishot: stays armed). Matches ``io_uring_prep_poll_add(3)``."""
        return self._simple(_OP["IORING_OP_POLL_ADD"], as_fd(fd), 0, abi.POLL_ADD_MULTI if multishot else 0,
                            0, _u32(poll_mask), user_data, flags)

    def _target(self, op, fd, target, op_flags, user_data, flags):
        t = 0 if target is None else operator.index(target) & 0xFFFFFFFFFFFFFFFF
        return self._simple(op, fd, t, 0, 0, _u32(op_flags), user_data, flags)

    def prep_poll_remove(self, target, *, user_data=None, flags=0):
        """Queue the removal of poll request ``target``. Matches ``io_uring_prep_poll_remove(3)``."""
        return self._target(_OP["IORING_OP_POLL_REMOVE"], -1, target, 0, user_data, flags)

    def prep_timeout_remove(self, target, *, timeout_flags=0, user_data=None, flags=0):
        """Queue the removal of timeout ``target``. Matches ``io_uring_prep_timeout_remove(3)``."""
        return self._target(_OP["IORING_OP_TIMEOUT_REMOVE"], -1, target, timeout_flags, user_data, flags)

    def prep_async_cancel(self, target=None, *, fd=None, cancel_flags=0, user_data=None, flags=0):
        """Queue a cancel; see ``fastio._c.uring.Ring.prep_async_cancel``."""
        cflags = _u32(cancel_flags)
        cfd = -1
        if target is not None and fd is not None:
            raise ValueError("give target or fd, not both")
        if fd is not None:
            cfd = as_fd(fd)
            cflags |= abi.ASYNC_CANCEL_FD
        elif target is None:
            cflags |= abi.ASYNC_CANCEL_ANY
        return self._target(_OP["IORING_OP_ASYNC_CANCEL"], cfd, target, cflags, user_data, flags)

    def _prep_ts(self, op, seconds, count, timeout_flags, user_data, flags):
        ns = timeout_to_ns(seconds, 1_000_000_000)
        if ns < 0:
            raise ValueError("a timeout must be a non-negative number of seconds")
        count, timeout_flags = _u32(count), _u32(timeout_flags)

        def build(slot):
            ts = abi.KernelTimespec(*divmod(ns, 1_000_000_000))
            slot.keep.append(ts)

            def fill(sqe):
                self._prep_rw(sqe, op, -1, ctypes.addressof(ts), 1, count)
                sqe.op_flags = timeout_flags
            return fill
        return self._queue(user_data, flags, True, build)

    def prep_timeout(self, seconds, count=0, *, timeout_flags=0, user_data=None, flags=0):
        """Queue a timeout. Matches ``io_uring_prep_timeout(3)``."""
        return self._prep_ts(_OP["IORING_OP_TIMEOUT"], seconds, count, timeout_flags, user_data, flags)

    def prep_link_timeout(self, seconds, *, timeout_flags=0, user_data=None, flags=0):
        """Queue a timeout for the previous, linked request. Matches ``io_uring_prep_link_timeout(3)``."""
        return self._prep_ts(_OP["IORING_OP_LINK_TIMEOUT"], seconds, 0, timeout_flags, user_data, flags)

    def prep_accept(self, fd, *, multishot=False, accept_flags=0, user_data=None, flags=0):
        """Queue an accept (multishot: every connection). Matches ``io_uring_prep_accept(3)``."""
        cfd = as_fd(fd)
        aflags = _u32(accept_flags) | os.O_CLOEXEC

        def build(slot):
            def fill(sqe):
                self._prep_rw(sqe, _OP["IORING_OP_ACCEPT"], cfd, 0, 0, 0)
                sqe.op_flags = aflags
                if multishot:
                    sqe.ioprio |= abi.ACCEPT_MULTISHOT
            return fill
        return self._queue(user_data, flags, False, build)

    def prep_connect(self, fd, address, *, user_data=None, flags=0):
        """Queue a connect. Matches ``io_uring_prep_connect(3)``."""
        cfd = as_fd(fd)
        sa = abi.sockaddr(address)

        def build(slot):
            csa = ctypes.create_string_buffer(sa, len(sa))
            slot.keep.append(csa)

            def fill(sqe):
                self._prep_rw(sqe, _OP["IORING_OP_CONNECT"], cfd, ctypes.addressof(csa), 0, len(sa))
            return fill
        return self._queue(user_data, flags, True, build)

    def prep_recv_multishot(self, fd, buf_group, *, msg_flags=0, user_data=None, flags=0, poll_first=False):
        """Queue a multishot recv on provided buffers; see ``fastio._c.uring.Ring.prep_recv_multishot``."""
        cfd, gid = as_fd(fd), as_c_int(buf_group)
        mflags = _u32(msg_flags)
        first = _poll_first(poll_first)
        br = self._buf_rings.get(gid)
        if br is None:
            raise ValueError(f"buffer group {gid} is not registered on this ring")

        def build(slot):
            slot.group = gid
            br._inflight += 1

            def fill(sqe):
                self._prep_rw(sqe, _OP["IORING_OP_RECV"], cfd, 0, 0, 0)
                sqe.op_flags = mflags
                sqe.ioprio |= abi.RECV_MULTISHOT | first
                sqe.flags |= abi.IOSQE_BUFFER_SELECT
                sqe.buf_index = gid
            return fill
        return self._queue(user_data, flags, True, build)

    def _prep_msg(self, op, fd, buffers, address, msg_flags, user_data, flags, writable, ioprio):
        mflags = _u32(msg_flags)
        sa = abi.sockaddr(address) if address is not None else None

        def build(slot):
            iov = slot.pin_vector(buffers, writable)
            msg = abi.Msghdr()
            msg.msg_iov = ctypes.addressof(iov)
            msg.msg_iovlen = len(iov)
            if sa is not None:
                csa = ctypes.create_string_buffer(sa, len(sa))
                slot.keep.append(csa)
                msg.msg_name = ctypes.addressof(csa)
                msg.msg_namelen = len(sa)
            slot.keep.append(msg)

            def fill(sqe):
                self._prep_rw(sqe, op, fd, ctypes.addressof(msg), 1, 0)
                sqe.op_flags = mflags
                sqe.ioprio |= ioprio
            return fill
        return self._queue(user_data, flags, True, build)

    def prep_sendmsg(self, fd, buffers, address=None, *, msg_flags=0, user_data=None, flags=0, poll_first=False):
        """Queue a sendmsg. Matches ``io_uring_prep_sendmsg(3)``."""
        return self._prep_msg(_OP["IORING_OP_SENDMSG"], as_fd(fd), buffers, address, msg_flags, user_data, flags,
                              False, _poll_first(poll_first))

    def prep_recvmsg(self, fd, buffers, *, msg_flags=0, user_data=None, flags=0, poll_first=False):
        """Queue a recvmsg. Matches ``io_uring_prep_recvmsg(3)``."""
        return self._prep_msg(_OP["IORING_OP_RECVMSG"], as_fd(fd), buffers, None, msg_flags, user_data, flags,
                              True, _poll_first(poll_first))

    def prep_shutdown(self, fd, how, *, user_data=None, flags=0):
        """Queue a shutdown. Matches ``io_uring_prep_shutdown(3)``."""
        return self._simple(_OP["IORING_OP_SHUTDOWN"], as_fd(fd), 0, as_c_int(how) & 0xFFFFFFFF, 0, 0,
                            user_data, flags)

    def prep_splice(self, fd_in, off_in, fd_out, off_out, nbytes, *, splice_flags=0, user_data=None, flags=0):
        """Queue a splice. Matches ``io_uring_prep_splice(3)``."""
        cin, cout = as_fd(fd_in), as_fd(fd_out)
        oin, oout = _i64(off_in) & 0xFFFFFFFFFFFFFFFF, _i64(off_out) & 0xFFFFFFFFFFFFFFFF
        n, sflags = _len32(_i64(nbytes)), _u32(splice_flags)

        def build(slot):
            def fill(sqe):
                self._prep_rw(sqe, _OP["IORING_OP_SPLICE"], cout, oin, n, oout)
                sqe.splice_fd_in = cin
                sqe.op_flags = sflags
            return fill
        return self._queue(user_data, flags, False, build)

    # ---- the batch path ------------------------------------------------------

    def read_batch(self, fd, buf, offsets, size, results=None, *, depth=0):
        """Many reads of one file in one call; see ``fastio._c.uring.Ring.read_batch``."""
        return self._batch(_OP["IORING_OP_READ"], fd, buf, offsets, size, results, depth)

    def write_batch(self, fd, buf, offsets, size, results=None, *, depth=0):
        """Many writes of one file in one call; see ``fastio._c.uring.Ring.write_batch``."""
        return self._batch(_OP["IORING_OP_WRITE"], fd, buf, offsets, size, results, depth)

    def _batch(self, op, fd, buf, offsets, size, results, depth):
        cfd = as_fd(fd)
        bsize = _i64(size)
        cdepth = as_c_int(depth)
        self._check()
        if not 0 < bsize <= 0xFFFFFFFF:
            raise ValueError("size must be between 1 and 4 GiB - 1")
        try:
            mv = memoryview(offsets)
        except TypeError:
            offs = [_i64(o) for o in offsets]
            if any(o < 0 for o in offs):
                raise ValueError("offsets must be >= 0") from None
        else:
            with mv:
                if mv.itemsize != 8 or mv.format[-1:] not in ("q", "Q", "l", "L"):
                    raise TypeError("offsets must be an int64 buffer (array('q')) or a sequence of ints")
                offs = mv.cast("B").cast("q").tolist()
            if any(o < 0 for o in offs):
                raise ValueError("offsets must be >= 0")
        n = len(offs)
        if n >= 0x7FFFFFFF:
            raise ValueError("too many offsets for one batch")
        if cdepth <= 0 or cdepth > self._sq_entries:
            cdepth = self._sq_entries
        stray: list = []
        self._acquire()
        try:
            idx = self._table.alloc(batch=True)
            slot = self._table.slots[idx]
            self._batches += 1   # close() refuses until the batch is over
        finally:
            self._release()
        try:
            view = slot.pin(buf, op == _OP["IORING_OP_READ"])
            if view.len < n * bsize:
                raise ValueError(f"buf holds {view.len} bytes; {n} blocks of {bsize} need {n * bsize}")
            slot.pin_results(results, n)   # pinned until every request is reaped
            base = view.buf or 0
            next_i = 0
            sqpoll = self._setup_flags & abi.SETUP_SQPOLL
            while True:
                self._acquire()
                try:
                    while next_i < n and slot.pending < cdepth:
                        sqe = self._get_sqe()
                        if sqe is None:
                            break
                        self._prep_rw(sqe, op, cfd, base + next_i * bsize, bsize, offs[next_i])
                        sqe.user_data = abi.UD_BATCH | (next_i << 32) | idx
                        slot.pending += 1
                        next_i += 1
                    if next_i >= n and slot.pending == 0:
                        break
                    pending = 0 if sqpoll else self._tail_publish()
                    if sqpoll:
                        self._tail_publish()
                finally:
                    self._release()
                if slot.pending:
                    ret = self._enter_raw(pending, 1, abi.ENTER_GETEVENTS, -1)
                else:
                    # the SQ was full of other requests, none of ours in
                    # flight: submit them, never wait for them (see the C twin)
                    ret = self._enter_raw(pending, 0, abi.ENTER_SQ_WAIT if sqpoll else 0, -1)
                if ret < 0 and -ret not in (EINTR, errno.EBUSY, errno.EAGAIN):
                    raise_errno(-ret)
                self._acquire()
                try:
                    self._reap(stray)
                finally:
                    self._release()
            if results is not None:
                return results
            return list(slot.results)
        finally:
            # Other requests' completions met on the way go to the backlog,
            # whether the batch ends or raises.
            self._backlog.extend(stray)
            self._acquire()
            try:
                self._batches -= 1
                if self._table.disown(idx):
                    self._slot_release(idx)
            finally:
                self._release()
