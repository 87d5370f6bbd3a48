# cython: language_level=3, embedsignature=True
"""What a ``Ring`` hands out: ``Completion`` (one reaped CQE) and ``BufRing``
(a provided-buffer ring, ``IORING_REGISTER_PBUF_RING``)."""

from libc.stdint cimport uint16_t, uint64_t
from posix.mman cimport MAP_FAILED, munmap

from fastio._c._common cimport raise_errno
from fastio._c._uring cimport FIO_IORING_CQE_F_MORE, fio_io_uring_buf, fio_store_release16


cdef class Completion:
    """One completion: ``user_data`` (the object given to ``prep_*``), ``res``
    (the kernel's result: a count, an fd, or ``-errno``), ``flags``
    (``CQE_F_*``), and for provided buffers ``buffer_id`` and ``buffer`` (the
    ``res`` bytes received, copied out; the buffer is already back in its
    ring). Matches ``struct io_uring_cqe``."""

    def __init__(self, user_data=None, res=0, flags=0, buffer_id=None, buffer=None):
        self.user_data = user_data
        self.res = res
        self.flags = flags
        self.buffer_id = buffer_id
        self.buffer = buffer

    @property
    def more(self):
        """True if the request is multishot and more completions will come
        (``IORING_CQE_F_MORE``)."""
        return bool(self.flags & FIO_IORING_CQE_F_MORE)

    def result(self):
        """Return ``res``, or raise the ``OSError`` a negative ``res`` stands
        for (``FileNotFoundError`` for ``-ENOENT`` ...)."""
        if self.res < 0:
            raise_errno(-self.res)
        return self.res

    def __repr__(self):
        extra = f", buffer_id={self.buffer_id}" if self.buffer_id is not None else ""
        return f"Completion(user_data={self.user_data!r}, res={self.res}, flags={self.flags:#x}{extra})"

    def __eq__(self, other):
        if not isinstance(other, Completion):
            return NotImplemented
        cdef Completion o = other
        return (self.user_data == o.user_data and self.res == o.res and self.flags == o.flags
                and self.buffer_id == o.buffer_id and self.buffer == o.buffer)

    __hash__ = None


cdef class BufRing:
    """A provided-buffer ring (``IORING_REGISTER_PBUF_RING``, 5.19): ``entries``
    buffers of ``size`` bytes in group ``bgid``, made by
    :meth:`fastio.uring.Ring.register_buf_ring`. The kernel picks one per completion of a
    ``BUFFER_SELECT`` request; fastio copies the bytes into the
    :class:`Completion` and gives the buffer back at once."""

    def __cinit__(self):
        self.ring_mem = MAP_FAILED
        self.bufs = <char *>MAP_FAILED

    def __init__(self):
        raise TypeError("BufRing objects are made by Ring.register_buf_ring()")

    cdef void recycle(self, uint16_t bid) noexcept:
        cdef fio_io_uring_buf *entry = &(<fio_io_uring_buf *>self.ring_mem)[self.tail & (self.entries - 1)]
        entry.addr = <uint64_t><size_t>self.at(bid)
        entry.len = self.size
        entry.bid = bid
        self.tail += 1
        # release: the entry is written before the kernel sees the new tail
        # (it sits in entry 0's resv field; pairs with the kernel's acquire).
        fio_store_release16(&(<fio_io_uring_buf *>self.ring_mem)[0].resv, self.tail)

    cdef void free_memory(self) noexcept:
        if self.ring_mem != MAP_FAILED:
            munmap(self.ring_mem, self.ring_sz)
            self.ring_mem = MAP_FAILED
        if <void *>self.bufs != MAP_FAILED:
            munmap(self.bufs, self.bufs_sz)
            self.bufs = <char *>MAP_FAILED

    def __dealloc__(self):
        self.free_memory()

    def __repr__(self):
        return f"<BufRing bgid={self.bgid} entries={self.entries} size={self.size}>"
