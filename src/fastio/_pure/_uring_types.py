"""The value types of the pure ``uring`` (the pure twin of
``fastio._c._uring_types``): ``Completion``, ``BufRing``, and the argument
coercions every part of ``Ring`` uses (the compiled backend's ``as_u32`` and
friends, with the same errors)."""

from __future__ import annotations

import ctypes
import mmap
import operator

from fastio._abi import uring as abi
from fastio._util import as_c_int, raise_errno

_SQE_FLAGS_MASK = 0x7F


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
                 "_inflight", "_due")

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
        self._due: list[int] = []   # buffer ids to give back to the kernel
        return self

    def _recycle_due(self) -> None:
        """Give the buffers listed in ``_due`` back to the kernel. Each goes
        in one call-free run (entry, tail, taken off the list), so a signal
        handler that raises between two leaves none given twice or lost:
        the next call goes on."""
        due = self._due
        while due:
            bid = due[-1]
            entry = self._ring[self._tail & (self.entries - 1)]
            entry.addr = self._bufs_addr + bid * self.size
            entry.len = self.size
            entry.bid = bid
            self._tail = (self._tail + 1) & 0xFFFF
            # The tail lives in entry 0's resv; fastio._pure._uring_core's
            # docstring says why a plain store is ordered here.
            self._ring[0].resv = self._tail
            del due[-1]

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
