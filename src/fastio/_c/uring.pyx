# cython: language_level=3, embedsignature=True
"""io_uring(7) for Python, with no liburing: ``Ring`` over three syscalls.

Kernel facts this module relies on:

* ``io_uring_setup(2)`` returns an fd whose three regions (the SQ ring, the CQ
  ring, the SQE array) are mapped with ``mmap``; with ``FEAT_SINGLE_MMAP``
  (5.4) both rings share one mapping. The rings are single-producer,
  single-consumer: we own the SQ tail and the CQ head, the kernel the SQ head
  and the CQ tail. ``csrc/fio_barrier.h`` says which access pairs with which.
* Each SQE carries a 64-bit ``user_data`` that comes back in its CQE. Ours is
  never a pointer: it is ``(generation << 32) | slot`` in the in-flight table
  (``Slot`` in ``uring.pxd``). A slot owns the ``Py_buffer`` views of every
  buffer the kernel may touch, the memory it reads by pointer (iovecs,
  timespecs, paths), and the caller's ``user_data`` object (kept in a list
  the garbage collector traverses, so a ring in a reference cycle through a
  request's ``user_data`` is collected, and closed); it is released
  only when its last CQE has been reaped, so dropping every Python reference
  to a buffer in flight changes nothing, and a ``bytearray`` in flight cannot
  be resized (``BufferError``). The generation makes a stale id (a request
  already reaped) match nothing in ``prep_async_cancel``.
* A full SQ: ``prep_*`` first submits what is queued, which frees the SQ on
  this kernel (without SQPOLL the kernel consumes SQEs inside
  ``io_uring_enter``; with SQPOLL we wait with ``IORING_ENTER_SQ_WAIT``). If
  the kernel still takes nothing (``EBUSY``: reap completions first), the
  ``OSError`` is raised and the new request is not queued. That automatic
  submit stops before a link chain left open at the end of the queue (the
  kernel ends a chain with each submission, which would split it); a chain
  that fills the whole SQ raises ``OSError(EBUSY)``.
* With ``FEAT_NODROP`` (5.5) a full CQ loses nothing: the kernel keeps the
  overflow and sets ``IORING_SQ_CQ_OVERFLOW``; reaping then enters the kernel
  with ``GETEVENTS`` to flush it into the ring.
* Closing a ring fd does not wait for its requests: the kernel finishes them
  in the background and may still write into user memory. ``close()`` (and
  GC) therefore drops what is queued but not submitted (it never runs),
  cancels everything submitted
  (``ASYNC_CANCEL_ANY | ALL``), reaps until no slot is in flight, and only
  then releases buffers, unmaps and closes. A request that neither completes
  nor cancels within 10 s keeps its buffers forever (leaked, never freed).
* ``IOSQE_CQE_SKIP_SUCCESS`` posts no CQE on success, so nothing could
  release a slot: it is accepted only on requests that pin nothing and whose
  ``user_data`` is None (a failure comes back with ``user_data`` None).
* Threads: every access to ring memory happens with the GIL held; only
  ``io_uring_enter`` runs without it. ``close()`` while another thread waits
  in this ring raises ``RuntimeError``. After ``fork()`` the child shares the
  parent's ring; any use there raises ``RuntimeError`` and ``close()`` only
  drops the child's mapping and fd (no cancel of the parent's requests).
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyBUF_WRITABLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
cimport cython
from cpython.exc cimport PyErr_CheckSignals
from cpython.number cimport PyNumber_Index
from cpython.ref cimport Py_DECREF, Py_INCREF, Py_XDECREF
from libc.errno cimport EAGAIN, EBUSY, EEXIST, EINTR, EINVAL, ENOENT, ETIME, errno
from libc.stdint cimport INT64_MAX, int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, malloc, realloc
from libc.string cimport memcpy, memmove, memset, strlen
from posix.mman cimport MAP_ANONYMOUS, MAP_FAILED, MAP_PRIVATE, PROT_READ, PROT_WRITE, mmap, munmap

from fastio._c._common cimport (
    as_c_int, as_fd, check_fork, deadline_for, raise_errno, remaining_after_eintr, timeout_to_ns,
)
from fastio._c._sys cimport fio_fork_generation, fio_fork_init, fio_monotonic_ns
from fastio._c._inflight cimport MAX_VIEWS, NO_SLOT, InflightTable, Slot, get_buffer, new_table
from fastio._c._uring cimport *

import os as _os

from fastio._errors import UnsupportedError
from fastio._abi import uring as _abi

cdef extern from "Python.h":
    object PyLong_FromUnsignedLongLong(unsigned long long v)
    unsigned long long PyLong_AsUnsignedLongLongMask(object v) except? <unsigned long long>-1
    unsigned long PyThread_get_thread_ident()

cdef enum:
    STACK_CQES = 256
    SQE_FLAGS_MASK = 0x7f
    IOSQE_FIXED_FILE = 1
    IOSQE_BUFFER_SELECT = 1 << 5
    IOSQE_CQE_SKIP_SUCCESS = 1 << 6

cdef uint64_t UD_BATCH = 1ULL << 63
cdef uint64_t UD_INTERNAL = 0xFFFFFFFFFFFFFFFFULL
cdef uint64_t UD_SKIP = 0xFFFFFFFFFFFFFFFEULL
cdef long long DRAIN_LIMIT_NS = 10000000000LL   # close(): give up (leak) after 10 s
cdef long long DRAIN_STEP_NS = 100000000LL      # and re-check every 100 ms

if fio_fork_init() != 0:
    raise ImportError("pthread_atfork failed: fastio cannot detect fork()")

# Objects whose memory a request may still write after close() gave up on it.

# None: not probed yet; "": io_uring works; otherwise why it does not.
cdef object _probe_reason = None


cdef str _setup_reason(int err):
    return _abi.diagnose(err)


cdef str _kernel_reason():
    """Probe once with a one-entry ring; cache the answer."""
    global _probe_reason
    cdef fio_ring r
    cdef fio_io_uring_params p
    cdef int ret
    if _probe_reason is None:
        memset(&p, 0, sizeof(p))
        ret = fio_ring_init(&r, 1, &p)
        if ret < 0:
            _probe_reason = _setup_reason(-ret)
        else:
            fio_ring_exit(&r)
            _probe_reason = ""
    return _probe_reason


def available():
    """Whether io_uring can be used here: not switched off by
    ``FASTIO_DISABLE=uring`` and ``io_uring_setup(2)`` works (probed once)."""
    return _abi.disabled_by_env() is None and _kernel_reason() == ""


def why_unavailable():
    """None when :func:`available` is True, else the cause and the fix
    (``kernel.io_uring_disabled`` and its value, seccomp, ``ENOSYS``,
    ``kernel.io_uring_group``, ``RLIMIT_MEMLOCK``, ``FASTIO_DISABLE``)."""
    reason = _abi.disabled_by_env() or _kernel_reason()
    return reason or None


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
    :meth:`Ring.register_buf_ring`. The kernel picks one per completion of a
    ``BUFFER_SELECT`` request; fastio copies the bytes into the
    :class:`Completion` and gives the buffer back at once."""

    def __cinit__(self):
        self.ring_mem = MAP_FAILED
        self.bufs = <char *>MAP_FAILED

    def __init__(self):
        raise TypeError("BufRing objects are made by Ring.register_buf_ring()")

    cdef void recycle(self, uint16_t bid) noexcept:
        cdef fio_io_uring_buf *entry = &(<fio_io_uring_buf *>self.ring_mem)[self.tail & (self.entries - 1)]
        entry.addr = <uint64_t><size_t>(self.bufs + <size_t>bid * self.size)
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


cdef inline int check_sqe_flags(int flags) except -1:
    if flags & ~SQE_FLAGS_MASK:
        raise ValueError(f"unknown IOSQE_* bits in flags={flags:#x}")
    if flags & IOSQE_BUFFER_SELECT:
        raise ValueError("IOSQE_BUFFER_SELECT is set by prep_recv_multishot (buf_group=), not by flags")
    return 0


cdef inline uint16_t poll_first_bit(object poll_first) except? 0xFFFF:
    """The sqe.ioprio bit a recv/send's ``poll_first=True`` sets."""
    return FIO_IORING_RECVSEND_POLL_FIRST if poll_first else 0


cdef inline uint32_t len32(Py_ssize_t n) except? 0xFFFFFFFF:
    if n < 0:
        raise ValueError(f"a length must be >= 0, got {n}")
    if n > 0xFFFFFFFF:
        raise ValueError("a single request moves at most 4 GiB - 1 bytes")
    return <uint32_t>n


cdef inline uint32_t as_u32(object value) except? 0xFFFFFFFF:
    """An int argument for a 32-bit unsigned field: a float or a str is a
    TypeError (as CPython's converters say), a value outside 0..2**32-1 an
    OverflowError."""
    cdef object v = PyNumber_Index(value)
    if not 0 <= v <= 0xFFFFFFFF:
        raise OverflowError(f"{v} is out of range for a 32-bit unsigned field")
    return <uint32_t>v


cdef inline long long as_i64(object value) except? -1:
    """An int argument for a signed 64-bit field (OverflowError outside it)."""
    return PyNumber_Index(value)


cdef inline uint64_t as_u64(object value) except? 0xFFFFFFFFFFFFFFFF:
    """An int argument for an unsigned 64-bit field (OverflowError outside it)."""
    return PyNumber_Index(value)


cdef inline uint64_t as_offset(object offset) except? 0xFFFFFFFFFFFFFFFF:
    """A file offset (an int: 1.5 or "8" is a TypeError); -1 means the current
    file position (FEAT_RW_CUR_POS)."""
    cdef long long off = PyNumber_Index(offset)
    if off < -1:
        raise ValueError(f"offset must be >= 0 or -1 (current position), got {off}")
    return <uint64_t>off


cdef int32_t *fd_array(object fds, Py_ssize_t *n) except NULL:
    """A malloc'ed int32 array of fds (ints or objects with fileno(); -1
    stays -1, an empty fixed-file slot) for the file registrations; the
    caller frees it."""
    cdef list values = [-1 if f == -1 else as_fd(f) for f in fds]
    cdef int32_t *arr = <int32_t *>malloc(max(len(values), 1) * sizeof(int32_t))
    cdef Py_ssize_t i
    if arr == NULL:
        raise MemoryError()
    for i in range(len(values)):
        arr[i] = values[i]
    n[0] = len(values)
    return arr


@cython.no_gc_clear
cdef class Ring:
    """Ring(entries=256, *, flags=0, cq_entries=None, sq_thread_idle=None, sq_thread_cpu=None)

    An io_uring instance: ``io_uring_setup(2)`` with ``entries`` SQ entries
    (rounded up to a power of two by the kernel) and the ``SETUP_*`` ``flags``;
    ``cq_entries`` sets ``SETUP_CQSIZE``, ``sq_thread_idle`` (milliseconds) and
    ``sq_thread_cpu`` (``SETUP_SQ_AFF``) tune ``SETUP_SQPOLL``.

    Each ``prep_*`` method queues one request and returns its id (the kernel's
    ``user_data``; pass it to ``prep_async_cancel``/``prep_poll_remove``/
    ``prep_timeout_remove``). Nothing reaches the kernel before ``submit()``,
    ``submit_and_wait()`` or ``wait()``.

    :raises fastio.UnsupportedError: io_uring is unusable here; the message
        names the cause (``kernel.io_uring_disabled``, seccomp, ``ENOSYS``,
        ``RLIMIT_MEMLOCK``, ``FASTIO_DISABLE=uring``).
    :raises ValueError: ``SETUP_SQE128``, ``SETUP_CQE32``, ``SETUP_NO_MMAP``
        or ``SETUP_REGISTERED_FD_ONLY`` (not supported by this binding).
    :raises OSError: any other refusal (``EINVAL`` for bad flags).

    See ``io_uring_setup(2)``.
    """

    def __cinit__(self):
        fio_ring_clear(&self.ring)
        self.fork_gen = fio_fork_generation()
        self.table = new_table(0)
        self.buf_rings = {}
        self.backlog = []

    def __init__(self, entries=256, *, flags=0, cq_entries=None, sq_thread_idle=None, sq_thread_cpu=None):
        cdef fio_io_uring_params p
        cdef int ret
        cdef int n = as_c_int(entries)
        cdef long long setup_flags = as_i64(flags)
        if self.initialised:
            raise RuntimeError("Ring.__init__ called twice")
        if n <= 0:
            raise ValueError(f"entries must be positive, got {n}")
        if not 0 <= setup_flags <= 0xFFFFFFFF:
            raise ValueError(f"invalid flags {setup_flags:#x}")
        if setup_flags & _abi.SETUP_REFUSED:
            raise ValueError("SETUP_SQE128, SETUP_CQE32, SETUP_NO_MMAP and SETUP_REGISTERED_FD_ONLY "
                             "are not supported by fastio.uring")
        reason = _abi.disabled_by_env()
        if reason:
            raise UnsupportedError(reason)
        memset(&p, 0, sizeof(p))
        p.flags = <uint32_t>setup_flags
        if cq_entries is not None:
            p.flags |= FIO_IORING_SETUP_CQSIZE
            p.cq_entries = as_c_int(cq_entries)
        if sq_thread_idle is not None:
            p.sq_thread_idle = as_c_int(sq_thread_idle)
        if sq_thread_cpu is not None:
            p.flags |= FIO_IORING_SETUP_SQ_AFF
            p.sq_thread_cpu = as_c_int(sq_thread_cpu)
        ret = fio_ring_init(&self.ring, n, &p)
        if ret < 0:
            if -ret in _abi.UNSUPPORTED_ERRNOS:
                raise UnsupportedError(-ret, _setup_reason(-ret))
            raise_errno(-ret)
        self.initialised = True
        self.issuer = PyThread_get_thread_ident()
        self.fork_gen = fio_fork_generation()
        self.sq_entries = p.sq_entries
        self.cq_entries = p.cq_entries
        self.features = p.features
        self.setup_flags = p.flags

    # ---- lifetime -------------------------------------------------------

    cdef int check(self) except -1:
        if self.ring.fd < 0 or self.closing:
            raise ValueError("I/O operation on closed Ring")
        check_fork(self.fork_gen, "Ring")
        return 0

    @property
    def closed(self):
        """True once the ring is closed."""
        return self.ring.fd < 0

    @property
    def inflight(self):
        """Requests queued or in flight whose completion is not reaped yet."""
        return self.table.inflight

    def fileno(self):
        """The ring's file descriptor."""
        if self.ring.fd < 0:
            raise ValueError("I/O operation on closed Ring")
        return self.ring.fd

    def close(self):
        """Cancel every request in flight, wait for their completions (they are
        discarded), release their buffers, unregister, unmap and close.
        Idempotent. In a forked child it only drops the child's copy.

        :raises RuntimeError: a call on this ring is still running: another
            thread waits in it, or close() was called from a signal handler or
            from Python code run inside a prep_*, peek, wait or batch call (a
            finalizer run while completions are reaped, say).
        """
        if self.ring.fd < 0 or self.closing:
            return
        if self.fork_gen == fio_fork_generation():
            if self.busy or self.preparing or self.batches or self.reg_changing:
                raise RuntimeError("Ring.close() while a call on this ring is running (another thread "
                                   "waiting in it, or a signal handler, finalizer or callback inside a "
                                   "prep_*, peek, wait or batch call); close it once that call has returned")
            if self.table.inflight and self.wrong_issuer():
                raise RuntimeError("Ring.close() from another thread on a SETUP_SINGLE_ISSUER ring with "
                                   "requests in flight: the kernel refuses io_uring_enter from any thread "
                                   "but the one that created the ring (EEXIST), so they could not be "
                                   "cancelled and reaped; close it from that thread")
        self.shutdown()

    def __enter__(self):
        self.check()
        return self

    def __exit__(self, *args):
        self.close()

    def __dealloc__(self):
        # Ring is no_gc_clear: its attributes (buf_rings, backlog) are intact here.
        if self.ring.fd >= 0 and not self.closing:
            try:
                import warnings
                warnings.warn(f"unclosed fastio.uring.Ring (fd {self.ring.fd})", ResourceWarning)
            except BaseException:
                pass
            self.shutdown()
        free(self.spill)
        self.spill = NULL

    cdef bint wrong_issuer(self) noexcept:
        """This thread may not enter a SETUP_SINGLE_ISSUER ring (the kernel
        binds such a ring to the task that created it, 6.0)."""
        return bool(self.ring.flags & FIO_IORING_SETUP_SINGLE_ISSUER) and \
            PyThread_get_thread_ident() != self.issuer

    cdef void shutdown(self) noexcept:
        """close()'s work; never raises."""
        cdef uint32_t i
        cdef int drained = 1
        cdef BufRing br
        # From here on every method but this one refuses the ring (check()).
        self.closing = True
        if self.fork_gen == fio_fork_generation():
            drained = self.drain()
        if drained:
            # Nothing in flight any more: release every slot still held (only
            # in a forked child, or SQEs the kernel never saw).
            self.table.release_all()
        else:
            # Some request outlived the limit: the kernel may still write into
            # its buffers. Leak them (the slot table keeps every Py_buffer and
            # so every exporter alive; the buffer rings keep their extra
            # reference) rather than free memory the kernel may touch.
            self.table.leaked = True
        fio_ring_exit(&self.ring)
        if drained:
            for i in range(self.nreg_views):
                PyBuffer_Release(&self.reg_views[i])
            free(self.reg_views)
            self.reg_views = NULL
            self.nreg_views = 0
            for br in self.buf_rings.values():
                br.free_memory()
                Py_DECREF(br)   # the reference register_buf_ring took
        self.buf_rings = {}
        self.backlog = []

    cdef int drain(self) noexcept:
        """Submit what is queued, cancel everything, reap until no slot is in
        flight. 1 when done, 0 when some request outlived the time limit."""
        cdef fio_io_uring_sqe *sqe
        cdef uint32_t head, pos
        cdef int ret
        cdef long long start = fio_monotonic_ns(), last_cancel = 0, now
        cdef list sink = []
        cdef object saved
        try:
            # 1. Requests queued but never taken by the kernel are dropped,
            #    not run: without SQPOLL nobody reads the SQ outside our own
            #    io_uring_enter, so the tail can be moved back to the head.
            #    With SQPOLL only the unpublished ones can be taken back.
            if self.ring.flags & FIO_IORING_SETUP_SQPOLL:
                head = self.ring.sq.ktail[0]
            else:
                head = self.ring.sq.khead[0]
            pos = head
            while pos != self.ring.sq.sqe_tail:     # uint32 indices wrap
                self.forget_ud(fio_ring_sqe_at(&self.ring, pos).user_data)
                pos += 1
            self.ring.sq.sqe_tail = head
            fio_ring_flush_sq(&self.ring)
            # 2. Cancel and reap until nothing is in flight.
            while self.table.inflight:
                now = fio_monotonic_ns()
                if now - start > DRAIN_LIMIT_NS:
                    return 0
                if now - last_cancel > 1000000000LL and fio_ring_sq_space(&self.ring):
                    sqe = fio_ring_get_sqe(&self.ring)
                    if sqe != NULL:
                        fio_prep_target(sqe, FIO_OP_ASYNC_CANCEL, -1, 0,
                                        FIO_IORING_ASYNC_CANCEL_ANY | FIO_IORING_ASYNC_CANCEL_ALL)
                        sqe.user_data = UD_INTERNAL
                    last_cancel = now
                fio_ring_flush_sq(&self.ring)
                ret = self.enter_raw(fio_ring_sq_ready(&self.ring), 1, FIO_IORING_ENTER_GETEVENTS, DRAIN_STEP_NS)
                if ret == -EEXIST:
                    # A SETUP_SINGLE_ISSUER ring finalized in another thread
                    # (close() refuses that): the kernel will not let this
                    # thread reap, so keep every buffer (leaked, never freed).
                    return 0
                self.reap(sink)
                del sink[:]
            return 1
        except BaseException:
            # KeyboardInterrupt or MemoryError mid-drain: the safe answer is
            # to keep everything that may still be in flight.
            return 0 if self.table.inflight else 1

    cdef void forget_ud(self, uint64_t ud) noexcept:
        """Release what an SQE the kernel never saw was holding."""
        cdef Slot *s
        if ud == UD_INTERNAL or ud == UD_SKIP:
            return
        s = self.table.at(<uint32_t>(ud & 0xFFFFFFFF))
        if s == NULL or not s.pending:
            return
        s.pending -= 1
        if not s.pending and not s.batch_owned:
            self.slot_release(<uint32_t>(ud & 0xFFFFFFFF))

    # ---- the in-flight table ----------------------------------------------

    cdef void slot_release(self, uint32_t idx) noexcept:
        """Release slot idx: this ring's own counts, then the table's part
        (which may run Python code, with everything consistent)."""
        cdef Slot *s = self.table.at(idx)
        cdef object group
        cdef BufRing br
        if s.fixed:
            self.fixed_inflight -= 1
        if s.group >= 0:
            group = self.buf_rings.get(s.group)
            if group is not None:
                br = group
                br.inflight -= 1
        self.table.release(idx)

    cdef uint32_t new_slot(self, object user_data, int flags, bint pins) except? 0xFFFFFFFF:
        """Validate flags and take a slot holding user_data. With
        CQE_SKIP_SUCCESS: NO_SLOT (the request pins nothing)."""
        cdef uint32_t idx
        check_sqe_flags(flags)
        self.check()
        if flags & IOSQE_CQE_SKIP_SUCCESS:
            if pins:
                raise ValueError("IOSQE_CQE_SKIP_SUCCESS is refused on requests that hold buffers "
                                 "or memory: no completion would tell when to release them")
            if user_data is not None:
                raise ValueError("IOSQE_CQE_SKIP_SUCCESS needs user_data=None: a successful "
                                 "request never comes back")
            self.preparing += 1
            return NO_SLOT
        idx = self.table.alloc()
        # Until commit() or abandon(): close() refuses (Python code run while
        # the request is built, a buffer's exporter say, may try to close).
        self.preparing += 1
        self.table.set_user_data(idx, user_data)
        if self.ring.fd < 0 or self.closing:
            # table.alloc() allocates (the user_data list grows), and the
            # garbage collector may have run a finalizer there that closed
            # the ring before the guard above was up.
            self.abandon(idx)
            raise ValueError("I/O operation on closed Ring")
        return idx

    cdef object commit(self, uint32_t idx, fio_io_uring_sqe *sqe, int flags):
        """Finish an SQE: IOSQE flags and user_data; returns the request id."""
        self.preparing -= 1
        sqe.flags |= <uint8_t>flags
        if idx == NO_SLOT:
            sqe.user_data = UD_SKIP
            return None
        sqe.user_data = self.table.ident(idx)
        self.table.at(idx).tag = sqe.opcode
        return PyLong_FromUnsignedLongLong(sqe.user_data)

    cdef void abandon(self, uint32_t idx) noexcept:
        self.preparing -= 1
        if idx != NO_SLOT:
            self.slot_release(idx)

    # ---- submission -------------------------------------------------------

    cdef int enter(self, unsigned to_submit, unsigned min_complete, unsigned flags,
                   long long timeout_ns) except? -1:
        """enter_raw() on an open ring. A signal that arrived while the kernel
        waited runs its handler even when the call succeeded (the kernel
        returns what it submitted, not EINTR, when the SQEs went in first), so
        Ctrl-C always ends a wait; the ring is checked again afterwards (a
        handler may have closed it)."""
        cdef int ret
        self.check()
        ret = self.enter_raw(to_submit, min_complete, flags, timeout_ns)
        if ret >= 0 and (flags & FIO_IORING_ENTER_GETEVENTS):
            PyErr_CheckSignals()
        self.check()
        return ret

    cdef int enter_raw(self, unsigned to_submit, unsigned min_complete, unsigned flags,
                       long long timeout_ns) except? -1:
        """io_uring_enter without the GIL; timeout_ns >= 0 bounds the wait
        (EXT_ARG). Returns the kernel's count or -errno (EINTR, ETIME, EBUSY)."""
        cdef fio_io_uring_getevents_arg arg
        cdef fio_kernel_timespec ts
        cdef const void *argp = NULL
        cdef size_t argsz = 0
        cdef int fd = self.ring.fd, ret
        if timeout_ns >= 0 and (flags & FIO_IORING_ENTER_GETEVENTS):
            if not (self.features & FIO_IORING_FEAT_EXT_ARG):
                raise UnsupportedError("waiting with a timeout needs IORING_FEAT_EXT_ARG (Linux 5.11)")
            memset(&arg, 0, sizeof(arg))
            ts.tv_sec = timeout_ns // 1000000000
            ts.tv_nsec = timeout_ns % 1000000000
            arg.ts = <uint64_t><size_t>&ts
            argp = &arg
            argsz = sizeof(arg)
            flags |= FIO_IORING_ENTER_EXT_ARG
        if self.ring.flags & FIO_IORING_SETUP_SQPOLL:
            fio_ring_needs_enter(&self.ring, &flags)
        self.busy += 1
        with nogil:
            ret = fio_sys_io_uring_enter(fd, to_submit, min_complete, flags, argp, argsz)
        self.busy -= 1
        return ret

    cdef int submit_pending(self) except -1:
        """Publish the queued SQEs and make the kernel take them; EINTR is
        retried. Returns the number the kernel took."""
        return self.submit_to(self.ring.sq.sqe_tail)

    cdef int submit_to(self, uint32_t upto) except -1:
        """submit_pending() of the queued SQEs before index upto only."""
        cdef unsigned flags = 0
        cdef uint32_t pending = fio_ring_flush_sq_to(&self.ring, upto)
        cdef int ret
        if not pending:
            return 0
        if not fio_ring_needs_enter(&self.ring, &flags):
            return pending   # the SQPOLL thread is awake and will take them
        while True:
            ret = self.enter(pending, 0, flags, -1)
            if ret >= 0:
                return ret
            if ret != -EINTR:
                raise_errno(-ret)
            PyErr_CheckSignals()
            self.check()

    cdef fio_io_uring_sqe *sqe_for(self, uint32_t idx) except NULL:
        """next_sqe() for a request whose slot idx is taken: on failure the
        slot is abandoned before the error propagates."""
        try:
            return self.next_sqe()
        except BaseException:
            self.abandon(idx)
            raise

    cdef fio_io_uring_sqe *next_sqe(self) except NULL:
        """A free SQE; on a full SQ, submit first (documented rule), but never
        the open link chain at the end of the queue: the kernel ends a chain
        at the end of a submission, so it would run split. A chain that
        fills the whole SQ raises OSError(EBUSY)."""
        cdef fio_io_uring_sqe *sqe = fio_ring_get_sqe(&self.ring)
        cdef int ret, attempt
        cdef uint32_t start
        if sqe != NULL:
            return sqe
        for attempt in range(3):
            start = fio_ring_open_chain_start(&self.ring)
            if start != self.ring.sq.sqe_tail and self.ring.sq.sqe_tail - start >= fio_ring_sq_ready(&self.ring):
                raise OSError(EBUSY, f"the submission queue ({self.sq_entries} entries) is full with one open "
                              "link chain (IOSQE_IO_LINK): submitting it now would split it; keep chains "
                              "shorter than the SQ, or submit() to send it as it is")
            self.submit_to(start)
            sqe = fio_ring_get_sqe(&self.ring)
            if sqe != NULL:
                return sqe
            if self.ring.flags & FIO_IORING_SETUP_SQPOLL:
                ret = self.enter(0, 0, FIO_IORING_ENTER_SQ_WAIT, -1)
                if ret < 0 and ret != -EINTR:
                    raise_errno(-ret)
                sqe = fio_ring_get_sqe(&self.ring)
                if sqe != NULL:
                    return sqe
        raise OSError(EBUSY, "the submission queue is full and the kernel takes no more "
                      "requests now; reap completions, then queue again")

    def submit(self):
        """Hand the queued requests to the kernel; returns how many it took.
        With ``SETUP_SQPOLL`` the kernel thread takes them (woken if asleep).

        See ``io_uring_enter(2)``.
        """
        self.check()
        return self.submit_pending()

    def submit_and_wait(self, wait_nr=1):
        """Submit, then wait until at least ``wait_nr`` completions are ready
        (they stay in the ring for :meth:`peek`/:meth:`wait`). Returns the
        number submitted. Matches ``io_uring_submit_and_wait(3)``."""
        cdef int n = as_c_int(wait_nr)
        cdef uint32_t pending
        cdef int ret, submitted
        cdef unsigned flags
        if n < 0:
            raise ValueError("wait_nr must be >= 0")
        self.check()
        pending = fio_ring_flush_sq(&self.ring)
        while True:
            flags = FIO_IORING_ENTER_GETEVENTS if n else 0
            if self.ring.flags & FIO_IORING_SETUP_SQPOLL:
                ret = self.enter(0, n, flags, -1)
                if ret >= 0:
                    ret = pending
            else:
                ret = self.enter(pending, n, flags, -1)
            if ret >= 0:
                break
            if ret != -EINTR:
                raise_errno(-ret)
            PyErr_CheckSignals()
            self.check()
            pending = fio_ring_sq_ready(&self.ring)
        # A signal that arrives after the kernel took the SQEs ends its wait
        # with the submitted count, not EINTR: wait on (PEP 475) until the
        # completions are there (at most a full CQ: the kernel caps
        # min_complete at the CQ size and keeps the rest in its overflow list).
        submitted = ret
        while n and fio_ring_cq_ready(&self.ring) < min(<uint32_t>n, <uint32_t>self.cq_entries):
            ret = self.enter(0, n, FIO_IORING_ENTER_GETEVENTS, -1)
            if ret < 0 and ret != -EINTR:
                raise_errno(-ret)
            if ret == -EINTR:
                PyErr_CheckSignals()
                self.check()
        return submitted

    # ---- completion -------------------------------------------------------

    cdef int handle_cqe(self, fio_io_uring_cqe *cqe, list out) except -1:
        cdef uint64_t ud = cqe.user_data
        cdef uint32_t idx, bid = 0
        cdef Slot *s
        cdef Completion c
        cdef BufRing br
        if ud == UD_INTERNAL:
            return 0
        if ud == UD_SKIP:
            c = Completion.__new__(Completion)
            c.res = cqe.res
            c.flags = cqe.flags
            out.append(c)
            return 0
        idx = <uint32_t>(ud & 0xFFFFFFFF)
        s = self.table.at(idx)
        if s == NULL or not s.pending:
            return 0   # cannot happen: every id we issue names a held slot
        if ud & UD_BATCH:
            s.results[(ud >> 32) & 0x7FFFFFFF] = cqe.res
            s.pending -= 1
            if not s.pending and not s.batch_owned:
                self.slot_release(idx)
            return 0
        if (ud >> 32) != s.gen:
            return 0
        # Everything that can raise (allocations) comes before anything that
        # changes state, so a CQE whose handling raised is untouched and
        # reap() keeps it for the next call.
        c = Completion.__new__(Completion)
        c.user_data = self.table.user_data(idx)
        c.res = cqe.res
        c.flags = cqe.flags
        br = None
        if cqe.flags & FIO_IORING_CQE_F_BUFFER:
            bid = cqe.flags >> FIO_IORING_CQE_BUFFER_SHIFT
            c.buffer_id = bid
            group = self.buf_rings.get(s.group)
            if group is not None and bid < (<BufRing>group).entries:
                br = group
                c.buffer = PyBytes_FromStringAndSize(br.bufs + <size_t>bid * br.size,
                                                     cqe.res if 0 < cqe.res <= <int>br.size else 0)
        out.append(c)
        if br is not None:
            br.recycle(<uint16_t>bid)
        if not (cqe.flags & FIO_IORING_CQE_F_MORE):
            self.slot_release(idx)   # may run finalizers; the table is consistent first
        return 0

    cdef int reap(self, list out) except -1:
        """Copy every ready CQE out (a block at a time, head advanced once per
        block), flushing kernel-side overflow and deferred task work.

        Python code can run in here (the finalizer of a user_data or buffer
        released with its slot, or any finalizer the garbage collector calls
        when a Completion is allocated), and it may call close() or let
        another thread call it: ``busy`` makes close() refuse until reap
        returns, since the CQ ring, the buffer rings and the table must stay.
        The flush uses enter_raw(): during close() (drain) the ring is already
        marked closing, and check() would refuse it."""
        cdef fio_io_uring_cqe cqes[STACK_CQES]
        cdef uint32_t n, i = 0
        cdef int rounds = 0, ret
        self.busy += 1
        try:
            if self.ring.fd < 0:
                # Closed by Python code run since the caller's check() (the
                # garbage collector when out was allocated, say).
                raise ValueError("I/O operation on closed Ring")
            if self.nspill:
                self.reap_spill(out)
            while rounds < 1024:
                rounds += 1
                n = fio_ring_cq_copy(&self.ring, cqes, STACK_CQES)
                try:
                    for i in range(n):
                        self.handle_cqe(&cqes[i], out)
                except BaseException:
                    # Taken off the CQ but not handled (a MemoryError, say):
                    # kept, and handed out by the next reap. Never lost.
                    self.keep_spill(&cqes[i], n - i, False)
                    raise
                if n == STACK_CQES:
                    continue
                if fio_ring_sq_flags(&self.ring) & (FIO_IORING_SQ_CQ_OVERFLOW | FIO_IORING_SQ_TASKRUN) or (
                        n == 0 and rounds == 1 and self.ring.flags & FIO_IORING_SETUP_DEFER_TASKRUN):
                    ret = self.enter_raw(0, 0, FIO_IORING_ENTER_GETEVENTS, -1)
                    if ret < 0 and ret != -EINTR and ret != -EBUSY and ret != -EAGAIN:
                        raise_errno(-ret)
                    if fio_ring_cq_ready(&self.ring):
                        continue
                break
        finally:
            self.busy -= 1
        return 0

    cdef void keep_spill(self, fio_io_uring_cqe *cqes, uint32_t n, bint front) noexcept:
        """Add n CQEs to the spill (what reap() took but could not hand out),
        at its end or its front. If even that allocation fails they are
        dropped: that needs the heap exhausted twice in a row."""
        cdef fio_io_uring_cqe *grown = <fio_io_uring_cqe *>realloc(
            self.spill, (self.nspill + n) * sizeof(fio_io_uring_cqe))
        if grown == NULL:
            return
        if front:
            memmove(grown + n, grown, self.nspill * sizeof(fio_io_uring_cqe))
            memcpy(grown, cqes, n * sizeof(fio_io_uring_cqe))
        else:
            memcpy(grown + self.nspill, cqes, n * sizeof(fio_io_uring_cqe))
        self.spill = grown
        self.nspill += n

    cdef int reap_spill(self, list out) except -1:
        """Hand out the spilled CQEs first, in their order. Each is taken off
        the spill before it is handled (handling may run a finalizer that
        reaps again), and put back in front if its handling raises."""
        cdef fio_io_uring_cqe cqe
        while self.nspill:
            cqe = self.spill[0]
            self.nspill -= 1
            memmove(self.spill, self.spill + 1, self.nspill * sizeof(fio_io_uring_cqe))
            try:
                self.handle_cqe(&cqe, out)
            except BaseException:
                self.keep_spill(&cqe, 1, True)
                raise
        return 0

    cdef list take_backlog(self):
        cdef list out = self.backlog
        if out:
            self.backlog = []
            return out
        return []

    def peek(self):
        """Every completion ready now, as a list (empty if none); never
        blocks. Matches ``io_uring_peek_batch_cqe(3)``, by copying."""
        self.check()
        cdef list out = self.take_backlog()
        try:
            self.reap(out)
        except BaseException:
            self.give_back(out)
            raise
        return out

    cdef void give_back(self, list out) noexcept:
        """Completions a call took but cannot return (it is raising) go back
        to the front of the backlog: the next peek()/wait() returns them."""
        if out:
            if self.backlog:
                out.extend(self.backlog)   # (a MemoryError here would drop the newer ones)
            self.backlog = out

    def wait(self, min_complete=1, timeout=None):
        """Submit what is queued, wait until at least ``min_complete``
        completions are ready or ``timeout`` seconds passed (None: no limit),
        and return every ready completion as a list (possibly shorter than
        ``min_complete`` after a timeout). The GIL is released while waiting;
        signals run their handlers and the wait resumes (PEP 475).

        See ``io_uring_enter(2)`` (``IORING_ENTER_GETEVENTS``).
        """
        cdef int need = as_c_int(min_complete)
        cdef long long timeout_ns = timeout_to_ns(timeout, 1000000000)
        cdef long long deadline
        cdef list out
        if need < 0:
            raise ValueError("min_complete must be >= 0")
        self.check()
        deadline = deadline_for(timeout_ns)
        out = self.take_backlog()
        try:
            self.wait_into(out, need, timeout_ns, deadline)
        except BaseException:
            # A signal handler raised (Ctrl-C, a deadline), or the ring was
            # closed under the wait: what was already taken off the CQ is
            # returned by the next call, not lost.
            self.give_back(out)
            raise
        return out

    cdef int wait_into(self, list out, int need, long long timeout_ns, long long deadline) except -1:
        cdef uint32_t pending
        cdef int ret
        self.reap(out)
        pending = fio_ring_flush_sq(&self.ring)
        if self.ring.flags & FIO_IORING_SETUP_SQPOLL:
            pending = 0
        while <int>len(out) < need or pending:
            ret = self.enter(pending, max(need - <int>len(out), 0),
                             FIO_IORING_ENTER_GETEVENTS if <int>len(out) < need else 0, timeout_ns)
            if ret >= 0:
                pending = 0
            elif ret == -ETIME:
                pending = 0
                self.reap(out)
                break
            elif ret == -EINTR:
                timeout_ns = remaining_after_eintr(deadline)
                self.check()
            else:
                raise_errno(-ret)
            self.reap(out)
            if deadline >= 0:
                timeout_ns = deadline - fio_monotonic_ns()
                if timeout_ns <= 0:
                    self.reap(out)
                    break
        return 0

    # ---- introspection ----------------------------------------------------

    @property
    def sq_ready(self):
        """Requests queued and not yet taken by the kernel."""
        self.check()
        return fio_ring_sq_ready(&self.ring)

    @property
    def cq_ready(self):
        """Completions in the CQ ring not yet reaped."""
        self.check()
        return fio_ring_cq_ready(&self.ring)

    def _peek_sqe(self, i):
        """The 64 bytes of the i-th queued, not yet submitted SQE (tests)."""
        cdef int k = as_c_int(i)
        self.check()
        if not 0 <= k < <int>fio_ring_sq_ready(&self.ring):
            raise IndexError("no such queued SQE")
        return PyBytes_FromStringAndSize(<char *>fio_ring_sqe_at(&self.ring, self.ring.sq.khead[0] + k), 64)

    def probe(self):
        """The opcodes this kernel supports, as a frozenset of ``IORING_OP_*``
        values. See ``io_uring_register(2)`` (``IORING_REGISTER_PROBE``)."""
        cdef size_t size = sizeof(fio_io_uring_probe) + 256 * sizeof(fio_io_uring_probe_op)
        cdef fio_io_uring_probe *probe
        cdef int ret, i
        self.check()
        probe = <fio_io_uring_probe *>calloc(1, size)
        if probe == NULL:
            raise MemoryError()
        try:
            ret = fio_sys_io_uring_register(self.ring.fd, FIO_IORING_REGISTER_PROBE, probe, 256)
            if ret < 0:
                raise_errno(-ret)
            return frozenset(probe.ops[i].op for i in range(probe.ops_len)
                             if probe.ops[i].flags & FIO_IO_URING_OP_SUPPORTED)
        finally:
            free(probe)

    # ---- registration -----------------------------------------------------

    cdef int register(self, unsigned opcode, const void *arg, unsigned nr) except? -1:
        cdef int ret
        cdef int fd = self.ring.fd
        while True:
            self.busy += 1     # close() from another thread meanwhile is refused
            with nogil:
                ret = fio_sys_io_uring_register(fd, opcode, arg, nr)
            self.busy -= 1
            if ret >= 0:
                return ret
            if ret != -EINTR:
                raise_errno(-ret)
            PyErr_CheckSignals()

    def register_files(self, fds):
        """Register ``fds`` (ints or objects with ``fileno()``; -1 leaves a
        slot empty) as fixed files 0..n-1, for ``IOSQE_FIXED_FILE`` requests
        whose ``fd`` is then the index. See ``io_uring_register_files(3)``."""
        self.check()
        cdef Py_ssize_t n
        cdef int32_t *arr = fd_array(fds, &n)
        try:
            self.register(FIO_IORING_REGISTER_FILES, arr, n)
        finally:
            free(arr)

    def register_files_update(self, offset, fds):
        """Replace fixed files from index ``offset`` on (-1 clears a slot);
        returns how many were updated. See ``io_uring_register_files_update(3)``."""
        self.check()
        cdef fio_io_uring_rsrc_update up
        cdef Py_ssize_t n
        cdef int32_t *arr = fd_array(fds, &n)
        try:
            memset(&up, 0, sizeof(up))
            up.offset = as_u32(offset)
            up.data = <uint64_t><size_t>arr
            return self.register(FIO_IORING_REGISTER_FILES_UPDATE, &up, n)
        finally:
            free(arr)

    def unregister_files(self):
        """Drop the fixed files (requests in flight keep their own reference)."""
        self.check()
        self.register(FIO_IORING_UNREGISTER_FILES, NULL, 0)

    def register_buffers(self, buffers):
        """Register writable buffers (bytearray, mmap, array ...) as fixed
        buffers 0..n-1 for ``prep_read_fixed``/``prep_write_fixed``. They stay
        pinned (a bytearray cannot be resized) until :meth:`unregister_buffers`
        or close. See ``io_uring_register_buffers(3)``."""
        self.check()
        cdef list objs = list(buffers)
        cdef uint32_t n = len(objs), done = 0, i
        cdef Py_buffer *views
        cdef iovec *iov
        self.check()   # list() may have run Python code (a generator, a finalizer) that closed it
        if self.nreg_views or self.reg_changing:
            raise OSError(EBUSY, "buffers are already registered; unregister_buffers() first")
        if n == 0 or n > 16384:
            raise ValueError("register between 1 and 16384 buffers")
        views = <Py_buffer *>calloc(n, sizeof(Py_buffer))
        iov = <iovec *>calloc(n, sizeof(iovec))
        if views == NULL or iov == NULL:
            free(views)
            free(iov)
            raise MemoryError()
        try:
            for done in range(n):
                get_buffer(objs[done], &views[done], True)
                iov[done].iov_base = views[done].buf
                iov[done].iov_len = views[done].len
            done = n
            # The exporters above may have run Python code: check again, then
            # hold the registration step (another thread may run while the
            # syscall has the GIL released).
            self.check()
            if self.nreg_views or self.reg_changing:
                raise OSError(EBUSY, "buffers are already registered; unregister_buffers() first")
            self.reg_changing = True
            try:
                self.register(FIO_IORING_REGISTER_BUFFERS, iov, n)
            except OSError as exc:
                raise _abi.register_buffers_error(exc, sum([views[i].len for i in range(n)])) from None
            finally:
                self.reg_changing = False
        except BaseException:
            for i in range(done):
                PyBuffer_Release(&views[i])
            free(views)
            raise
        finally:
            free(iov)
        self.reg_views = views
        self.nreg_views = n

    def unregister_buffers(self):
        """Unregister the fixed buffers and release them.

        :raises BlockingIOError: no; ``OSError(EBUSY)`` while a fixed-buffer
            request is in flight (its buffer must stay pinned).
        """
        cdef uint32_t i, n = self.nreg_views
        cdef Py_buffer *views = self.reg_views
        self.check()
        if self.reg_changing:
            raise OSError(EBUSY, "another thread is registering or unregistering buffers")
        if self.fixed_inflight:
            raise OSError(EBUSY, "a read_fixed/write_fixed request is in flight; reap it first")
        # Detached before the syscall, which runs with the GIL released: a
        # prep_*_fixed in another thread meanwhile finds no registration
        # (ValueError) instead of a view about to be freed.
        self.reg_views = NULL
        self.nreg_views = 0
        self.reg_changing = True
        try:
            self.register(FIO_IORING_UNREGISTER_BUFFERS, NULL, 0)
        except BaseException:
            self.reg_views = views   # still registered: put them back
            self.nreg_views = n
            raise
        finally:
            self.reg_changing = False
        for i in range(n):
            PyBuffer_Release(&views[i])
        free(views)

    def register_eventfd(self, fd):
        """Signal the eventfd ``fd`` on every completion, so an event loop can
        watch one fd. See ``io_uring_register_eventfd(3)``."""
        self.check()
        cdef int32_t efd = as_fd(fd)
        self.register(FIO_IORING_REGISTER_EVENTFD, &efd, 1)

    def unregister_eventfd(self):
        """Stop signalling the registered eventfd."""
        self.check()
        self.register(FIO_IORING_UNREGISTER_EVENTFD, NULL, 0)

    def register_buf_ring(self, bgid, entries, size):
        """Create and register a provided-buffer ring: group ``bgid``,
        ``entries`` (a power of two <= 32768) buffers of ``size`` bytes, all
        given to the kernel. Returns the :class:`BufRing`. Needs Linux 5.19.
        See ``io_uring_register_buf_ring(3)``."""
        self.check()
        cdef int gid = as_c_int(bgid), n = as_c_int(entries), sz = as_c_int(size)
        cdef fio_io_uring_buf_reg reg
        cdef BufRing br
        cdef int i
        if not 0 <= gid <= 0xFFFF:
            raise ValueError("bgid must be 0-65535")
        if n <= 0 or n > 32768 or n & (n - 1):
            raise ValueError("entries must be a power of two between 1 and 32768")
        if sz <= 0:
            raise ValueError("size must be positive")
        if gid in self.buf_rings:
            raise OSError(EBUSY, f"buffer group {gid} is already registered")
        br = BufRing.__new__(BufRing)
        br.bgid = gid
        br.entries = n
        br.size = sz
        br.ring_sz = ((n * sizeof(fio_io_uring_buf) + 4095) // 4096) * 4096
        br.ring_mem = mmap(NULL, br.ring_sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        if br.ring_mem == MAP_FAILED:
            raise_errno(errno)
        br.bufs_sz = <size_t>n * sz
        br.bufs = <char *>mmap(NULL, br.bufs_sz, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        if <void *>br.bufs == MAP_FAILED:
            raise_errno(errno)
        memset(&reg, 0, sizeof(reg))
        reg.ring_addr = <uint64_t><size_t>br.ring_mem
        reg.ring_entries = n
        reg.bgid = gid
        self.register(FIO_IORING_REGISTER_PBUF_RING, &reg, 1)
        br.registered = 1
        for i in range(n):
            br.recycle(<uint16_t>i)
        self.buf_rings[gid] = br
        # A reference the garbage collector cannot clear: the kernel may fill
        # these buffers until the ring is drained, whatever happens to the dict.
        Py_INCREF(br)
        return br

    def unregister_buf_ring(self, bgid):
        """Unregister provided-buffer group ``bgid`` and free its memory.

        :raises OSError: ``EBUSY`` while a request using it is in flight,
            ``ENOENT`` when no group ``bgid`` is registered.
        """
        self.check()
        cdef fio_io_uring_buf_reg reg
        cdef int gid = as_c_int(bgid)
        cdef BufRing br = self.buf_rings.get(gid)
        if br is None:
            # the kernel's own answer for an unknown group
            raise OSError(ENOENT, f"buffer group {gid} is not registered")
        if br.inflight:
            raise OSError(EBUSY, f"a request using buffer group {gid} is in flight")
        memset(&reg, 0, sizeof(reg))
        reg.bgid = gid
        self.register(FIO_IORING_UNREGISTER_PBUF_RING, &reg, 1)
        del self.buf_rings[gid]
        br.free_memory()
        Py_DECREF(br)   # the reference register_buf_ring took

    # ---- prep: one method per opcode ------------------------------------

    def prep_nop(self, *, user_data=None, flags=0):
        """Queue a NOP (completes with res 0). Matches ``io_uring_prep_nop(3)``."""
        cdef uint32_t idx = self.new_slot(user_data, as_c_int(flags), False)
        cdef fio_io_uring_sqe *sqe
        sqe = self.sqe_for(idx)
        fio_prep_nop(sqe)
        return self.commit(idx, sqe, flags)

    cdef object prep_buf(self, uint8_t op, int fd, object buf, uint64_t offset, uint32_t op_flags,
                         object user_data, int flags, bint writable, uint16_t ioprio=0):
        cdef uint32_t idx = self.new_slot(user_data, as_c_int(flags), True)
        cdef fio_io_uring_sqe *sqe
        cdef Slot *s
        try:
            self.table.pin(idx, buf, writable)
            s = self.table.at(idx)
            length = len32(s.view.len)
            sqe = self.next_sqe()
        except BaseException:
            self.abandon(idx)
            raise
        if op == FIO_OP_SEND or op == FIO_OP_RECV:
            fio_prep_sendrecv(sqe, op, fd, s.view.buf, length, op_flags)
            sqe.ioprio |= ioprio
        else:
            fio_prep_rw_op(sqe, op, fd, <uint64_t><size_t>s.view.buf, length, offset, op_flags)
        return self.commit(idx, sqe, flags)

    def prep_read(self, fd, buf, offset, *, user_data=None, flags=0, rw_flags=0):
        """Queue a read of ``len(buf)`` bytes at ``offset`` (-1: the file
        position) into the writable buffer ``buf``, pinned until reaped.
        Matches ``io_uring_prep_read(3)``."""
        return self.prep_buf(FIO_OP_READ, as_fd(fd), buf, as_offset(offset), as_u32(rw_flags), user_data,
                             as_c_int(flags), True)

    def prep_write(self, fd, buf, offset, *, user_data=None, flags=0, rw_flags=0):
        """Queue a write of ``buf`` at ``offset`` (-1: the file position).
        Matches ``io_uring_prep_write(3)``."""
        return self.prep_buf(FIO_OP_WRITE, as_fd(fd), buf, as_offset(offset), as_u32(rw_flags), user_data,
                             as_c_int(flags), False)

    def prep_recv(self, fd, buf, *, user_data=None, flags=0, msg_flags=0, poll_first=False):
        """Queue a recv into ``buf``. ``poll_first=True`` (5.19) sets
        ``IORING_RECVSEND_POLL_FIRST``: the kernel waits for readiness before
        trying, saving a failed attempt when data is not expected yet.
        Matches ``io_uring_prep_recv(3)``."""
        return self.prep_buf(FIO_OP_RECV, as_fd(fd), buf, 0, as_u32(msg_flags), user_data, as_c_int(flags), True,
                             poll_first_bit(poll_first))

    def prep_send(self, fd, buf, *, user_data=None, flags=0, msg_flags=0, poll_first=False):
        """Queue a send of ``buf``; ``poll_first`` as in :meth:`prep_recv`.
        Matches ``io_uring_prep_send(3)``."""
        return self.prep_buf(FIO_OP_SEND, as_fd(fd), buf, 0, as_u32(msg_flags), user_data, as_c_int(flags), False,
                             poll_first_bit(poll_first))

    cdef object prep_vec(self, uint8_t op, int fd, object buffers, uint64_t offset, uint32_t rw_flags,
                         object user_data, int flags, bint writable):
        cdef uint32_t idx = self.new_slot(user_data, as_c_int(flags), True)
        cdef fio_io_uring_sqe *sqe
        cdef iovec *iov
        try:
            iov = self.table.pin_vector(idx, buffers, writable, 0)
            sqe = self.next_sqe()
        except BaseException:
            self.abandon(idx)
            raise
        fio_prep_rw_op(sqe, op, fd, <uint64_t><size_t>iov, self.table.at(idx).nviews, offset, rw_flags)
        return self.commit(idx, sqe, flags)

    def prep_readv(self, fd, buffers, offset, *, user_data=None, flags=0, rw_flags=0):
        """Queue a vectored read into the writable ``buffers`` (a sequence),
        filled in order. Matches ``io_uring_prep_readv(3)``."""
        return self.prep_vec(FIO_OP_READV, as_fd(fd), buffers, as_offset(offset), as_u32(rw_flags), user_data,
                             as_c_int(flags), True)

    def prep_writev(self, fd, buffers, offset, *, user_data=None, flags=0, rw_flags=0):
        """Queue a vectored write of ``buffers``. Matches ``io_uring_prep_writev(3)``."""
        return self.prep_vec(FIO_OP_WRITEV, as_fd(fd), buffers, as_offset(offset), as_u32(rw_flags), user_data,
                             as_c_int(flags), False)

    cdef object prep_fixed(self, uint8_t op, int fd, object buf_index, object offset, object nbytes,
                           object buf_offset, object user_data, int flags):
        cdef int bi = as_c_int(buf_index)
        cdef long long boff = as_i64(buf_offset)
        cdef long long n = -1 if nbytes is None else as_i64(nbytes)   # converted before the table is read
        cdef uint64_t off = as_offset(offset)
        cdef uint32_t idx
        cdef fio_io_uring_sqe *sqe
        cdef Py_buffer *view
        cdef uint32_t length
        # Every conversion (which may run an __index__, and that may
        # unregister the buffers) is done first; then the slot is taken and
        # counted as fixed, so unregister_buffers() refuses (EBUSY) from here
        # on, whoever calls it (a finalizer run by the slot's allocation,
        # another thread while sqe_for() submits with the GIL released); only
        # then is the registration read.
        idx = self.new_slot(user_data, as_c_int(flags), True)
        self.table.at(idx).fixed = 1
        self.fixed_inflight += 1
        try:
            if not 0 <= bi < <int>self.nreg_views:
                raise ValueError(f"buf_index {bi} is not a registered buffer")
            view = &self.reg_views[bi]
            if nbytes is None:
                n = view.len - boff
            # (n > view.len - boff, not boff + n > view.len: that sum can overflow)
            if boff < 0 or n < 0 or boff > view.len or n > view.len - boff:
                raise ValueError("buf_offset/nbytes fall outside the registered buffer")
            length = len32(n)
        except BaseException:
            self.abandon(idx)
            raise
        sqe = self.sqe_for(idx)
        view = &self.reg_views[bi]
        fio_prep_rw_fixed(sqe, op, fd, <uint64_t><size_t>(<char *>view.buf + boff), length, off, <uint16_t>bi)
        return self.commit(idx, sqe, flags)

    def prep_read_fixed(self, fd, buf_index, offset, *, nbytes=None, buf_offset=0, user_data=None, flags=0):
        """Queue a read into registered buffer ``buf_index`` (from
        ``buf_offset``, ``nbytes`` bytes, default: to its end).
        Matches ``io_uring_prep_read_fixed(3)``."""
        return self.prep_fixed(FIO_OP_READ_FIXED, as_fd(fd), buf_index, offset, nbytes, buf_offset, user_data,
                               as_c_int(flags))

    def prep_write_fixed(self, fd, buf_index, offset, *, nbytes=None, buf_offset=0, user_data=None, flags=0):
        """Queue a write from registered buffer ``buf_index``.
        Matches ``io_uring_prep_write_fixed(3)``."""
        return self.prep_fixed(FIO_OP_WRITE_FIXED, as_fd(fd), buf_index, offset, nbytes, buf_offset, user_data,
                               as_c_int(flags))

    def prep_fsync(self, fd, *, fsync_flags=0, user_data=None, flags=0):
        """Queue an fsync (``FSYNC_DATASYNC``: fdatasync). Matches ``io_uring_prep_fsync(3)``."""
        cdef int cfd = as_fd(fd)
        cdef uint32_t fflags = as_u32(fsync_flags)   # every conversion before the SQE is taken
        cdef uint32_t idx = self.new_slot(user_data, as_c_int(flags), False)
        cdef fio_io_uring_sqe *sqe
        sqe = self.sqe_for(idx)
        fio_prep_fsync(sqe, cfd, fflags)
        return self.commit(idx, sqe, flags)

    def prep_fallocate(self, fd, mode, offset, length, *, user_data=None, flags=0):
        """Queue an fallocate. Matches ``io_uring_prep_fallocate(3)``."""
        cdef int cfd = as_fd(fd), cmode = as_c_int(mode)
        cdef uint64_t off = as_offset(offset), ln = as_u64(length)
        cdef uint32_t idx = self.new_slot(user_data, as_c_int(flags), False)
        cdef fio_io_uring_sqe *sqe
        sqe = self.sqe_for(idx)
        fio_prep_fallocate(sqe, cfd, cmode, off, ln)
        return self.commit(idx, sqe, flags)

    def prep_openat(self, dfd, path, open_flags=0, mode=0o666, *, user_data=None, flags=0):
        """Queue an openat of ``path`` (str, bytes or path-like) relative to
        ``dfd`` (``os.open``'s ``dir_fd``; ``AT_FDCWD`` for the cwd); the new fd
        is the completion's ``res``. ``O_CLOEXEC`` is added, as ``os.open``
        does. Matches ``io_uring_prep_openat(3)``."""
        cdef int cdfd = as_c_int(dfd), cflags = as_c_int(open_flags) | _os.O_CLOEXEC, cmode = as_c_int(mode)
        cdef bytes bpath = _os.fsencode(path)
        cdef uint32_t idx
        cdef fio_io_uring_sqe *sqe
        if b"\0" in bpath:
            raise ValueError("embedded null byte")
        idx = self.new_slot(user_data, as_c_int(flags), True)
        try:
            self.table.keep(idx, bpath)
            sqe = self.next_sqe()
        except BaseException:
            self.abandon(idx)
            raise
        fio_prep_openat(sqe, cdfd, PyBytes_AS_STRING(bpath), cflags, cmode)
        return self.commit(idx, sqe, flags)

    def prep_close(self, fd, *, user_data=None, flags=0):
        """Queue a close of ``fd``. Matches ``io_uring_prep_close(3)``."""
        cdef int cfd = as_fd(fd)
        cdef uint32_t idx = self.new_slot(user_data, as_c_int(flags), False)
        cdef fio_io_uring_sqe *sqe
        sqe = self.sqe_for(idx)
        fio_prep_close(sqe, cfd)
        return self.commit(idx, sqe, flags)

    def prep_statx(self, dfd, path, statx_flags, mask, statxbuf, *, user_data=None, flags=0):
        """Queue a statx of ``path`` into the writable ``statxbuf`` (at least
        256 bytes: ``struct statx``). Matches ``io_uring_prep_statx(3)``."""
        cdef int cdfd = as_c_int(dfd), cflags = as_c_int(statx_flags)
        cdef uint32_t cmask = as_u32(mask)
        cdef bytes bpath = _os.fsencode(path)
        cdef uint32_t idx
        cdef fio_io_uring_sqe *sqe
        cdef Slot *s
        if b"\0" in bpath:
            raise ValueError("embedded null byte")
        idx = self.new_slot(user_data, as_c_int(flags), True)
        try:
            self.table.keep(idx, bpath)
            self.table.pin(idx, statxbuf, True)
            s = self.table.at(idx)
            if s.view.len < _abi.STATX_SIZE:
                raise ValueError("statxbuf must hold at least 256 bytes (struct statx)")
            sqe = self.next_sqe()
        except BaseException:
            self.abandon(idx)
            raise
        fio_prep_statx(sqe, cdfd, PyBytes_AS_STRING(bpath), cflags, cmask, s.view.buf)
        return self.commit(idx, sqe, flags)

    def prep_poll_add(self, fd, poll_mask, *, multishot=False, user_data=None, flags=0):
        """Queue a poll for ``poll_mask`` (``select.POLLIN`` ...) on ``fd``;
        res is the ready mask. ``multishot=True`` (5.13) keeps it armed: each
        event is a completion with ``more`` True. Matches
        ``io_uring_prep_poll_add(3)`` / ``io_uring_prep_poll_multishot(3)``."""
        cdef int cfd = as_fd(fd)
        cdef uint32_t mask = as_u32(poll_mask)
        cdef uint32_t idx = self.new_slot(user_data, as_c_int(flags), False)
        cdef fio_io_uring_sqe *sqe
        sqe = self.sqe_for(idx)
        fio_prep_poll_add(sqe, cfd, mask, 1 if multishot else 0)
        return self.commit(idx, sqe, flags)

    cdef object prep_target(self, uint8_t op, int fd, object target, uint32_t op_flags, object user_data,
                            int flags):
        cdef uint64_t t = 0 if target is None else PyLong_AsUnsignedLongLongMask(PyNumber_Index(target))
        cdef uint32_t idx = self.new_slot(user_data, as_c_int(flags), False)
        cdef fio_io_uring_sqe *sqe
        sqe = self.sqe_for(idx)
        fio_prep_target(sqe, op, fd, t, op_flags)
        return self.commit(idx, sqe, flags)

    def prep_poll_remove(self, target, *, user_data=None, flags=0):
        """Queue the removal of the poll request whose id is ``target``.
        Matches ``io_uring_prep_poll_remove(3)``."""
        return self.prep_target(FIO_OP_POLL_REMOVE, -1, target, 0, user_data, as_c_int(flags))

    def prep_timeout_remove(self, target, *, timeout_flags=0, user_data=None, flags=0):
        """Queue the removal of the timeout whose id is ``target``.
        Matches ``io_uring_prep_timeout_remove(3)``."""
        return self.prep_target(FIO_OP_TIMEOUT_REMOVE, -1, target, as_u32(timeout_flags), user_data,
                                as_c_int(flags))

    def prep_async_cancel(self, target=None, *, fd=None, cancel_flags=0, user_data=None, flags=0):
        """Queue a cancel: of the request whose id is ``target``; or, with
        ``fd``, of requests on that fd (``ASYNC_CANCEL_FD``); or, with neither,
        of any request (``ASYNC_CANCEL_ANY``). Add ``ASYNC_CANCEL_ALL`` to
        ``cancel_flags`` to cancel every match, not just the first. res is 0
        (or the count with ALL), ``-ENOENT`` if nothing matched, ``-EALREADY``
        if it was already running. Matches ``io_uring_prep_cancel64(3)`` /
        ``io_uring_prep_cancel_fd(3)``."""
        cdef uint32_t cflags = as_u32(cancel_flags)
        cdef int cfd = -1
        if target is not None and fd is not None:
            raise ValueError("give target or fd, not both")
        if fd is not None:
            cfd = as_fd(fd)
            cflags |= FIO_IORING_ASYNC_CANCEL_FD
        elif target is None:
            cflags |= FIO_IORING_ASYNC_CANCEL_ANY
        return self.prep_target(FIO_OP_ASYNC_CANCEL, cfd, target, cflags, user_data, as_c_int(flags))

    cdef object prep_ts(self, uint8_t op, object seconds, uint32_t count, uint32_t timeout_flags,
                        object user_data, int flags):
        cdef long long ns = timeout_to_ns(seconds, 1000000000)
        cdef uint32_t idx
        cdef fio_io_uring_sqe *sqe
        cdef fio_kernel_timespec *ts
        if ns < 0:
            raise ValueError("a timeout must be a non-negative number of seconds")
        idx = self.new_slot(user_data, as_c_int(flags), True)
        try:
            ts = <fio_kernel_timespec *>malloc(sizeof(fio_kernel_timespec))
            if ts == NULL:
                raise MemoryError()
            self.table.at(idx).mem = ts
            ts.tv_sec = ns // 1000000000
            ts.tv_nsec = ns % 1000000000
            sqe = self.next_sqe()
        except BaseException:
            self.abandon(idx)
            raise
        fio_prep_timeout(sqe, op, ts, count, timeout_flags)
        return self.commit(idx, sqe, flags)

    def prep_timeout(self, seconds, count=0, *, timeout_flags=0, user_data=None, flags=0):
        """Queue a timeout: completes with ``-ETIME`` after ``seconds``, or
        with 0 once ``count`` other completions arrived (0: time only).
        Matches ``io_uring_prep_timeout(3)``."""
        return self.prep_ts(FIO_OP_TIMEOUT, seconds, as_u32(count), as_u32(timeout_flags), user_data,
                            as_c_int(flags))

    def prep_link_timeout(self, seconds, *, timeout_flags=0, user_data=None, flags=0):
        """Queue a timeout for the previous request, which must carry
        ``IOSQE_IO_LINK``: if it does not finish in ``seconds`` it is cancelled
        (res ``-ECANCELED``) and this completes with ``-ETIME``.
        Matches ``io_uring_prep_link_timeout(3)``."""
        return self.prep_ts(FIO_OP_LINK_TIMEOUT, seconds, 0, as_u32(timeout_flags), user_data, as_c_int(flags))

    def prep_accept(self, fd, *, multishot=False, accept_flags=0, user_data=None, flags=0):
        """Queue an accept on the listening ``fd``; res is the new fd (made
        close-on-exec: ``SOCK_CLOEXEC`` is added). ``multishot=True`` (5.19)
        accepts every connection until cancelled. Matches
        ``io_uring_prep_accept(3)`` / ``io_uring_prep_multishot_accept(3)``."""
        cdef int cfd = as_fd(fd)
        cdef uint32_t aflags = as_u32(accept_flags) | _os.O_CLOEXEC
        cdef uint32_t idx = self.new_slot(user_data, as_c_int(flags), False)
        cdef fio_io_uring_sqe *sqe
        sqe = self.sqe_for(idx)
        fio_prep_accept(sqe, cfd, aflags, 1 if multishot else 0)
        return self.commit(idx, sqe, flags)

    def prep_connect(self, fd, address, *, user_data=None, flags=0):
        """Queue a connect of socket ``fd`` to ``address``: ``(ip, port)``
        (IPv4 or IPv6, numeric) or an AF_UNIX path. Matches
        ``io_uring_prep_connect(3)``."""
        cdef int cfd = as_fd(fd)
        cdef bytes sa = _abi.sockaddr(address)
        cdef uint32_t idx = self.new_slot(user_data, as_c_int(flags), True)
        cdef fio_io_uring_sqe *sqe
        try:
            self.table.keep(idx, sa)
            sqe = self.next_sqe()
        except BaseException:
            self.abandon(idx)
            raise
        fio_prep_connect(sqe, cfd, PyBytes_AS_STRING(sa), <uint32_t>PyBytes_GET_SIZE(sa))
        return self.commit(idx, sqe, flags)

    def prep_recv_multishot(self, fd, buf_group, *, msg_flags=0, user_data=None, flags=0, poll_first=False):
        """Queue a multishot recv (6.0): every arrival is a completion whose
        ``buffer`` holds the bytes, taken from provided-buffer group
        ``buf_group`` (see :meth:`register_buf_ring`). It ends (``more``
        False) on EOF (res 0), an error, or ``-ENOBUFS`` when the group ran
        dry; re-arm it then. ``poll_first`` as in :meth:`prep_recv`.
        Matches ``io_uring_prep_recv_multishot(3)``."""
        cdef int cfd = as_fd(fd), gid = as_c_int(buf_group)
        cdef uint32_t mflags = as_u32(msg_flags)
        cdef uint16_t first = poll_first_bit(poll_first)
        cdef BufRing br
        cdef uint32_t idx = self.new_slot(user_data, as_c_int(flags), True)
        cdef fio_io_uring_sqe *sqe
        # Looked up under the guard (the slot's allocation may have run a
        # finalizer that unregistered the group) and counted before
        # sqe_for(), which may submit and run signal handlers:
        # unregister_buf_ring() refuses from here on (abandon() uncounts).
        group = self.buf_rings.get(gid)
        if group is None:
            self.abandon(idx)
            raise ValueError(f"buffer group {gid} is not registered on this ring")
        br = group
        self.table.at(idx).group = gid
        br.inflight += 1
        sqe = self.sqe_for(idx)
        fio_prep_recv_multishot(sqe, cfd, <uint16_t>gid, mflags)
        sqe.ioprio |= first
        return self.commit(idx, sqe, flags)

    cdef object prep_msg(self, uint8_t op, int fd, object buffers, object address, uint32_t msg_flags,
                         object user_data, int flags, bint writable, uint16_t ioprio):
        cdef uint32_t idx = self.new_slot(user_data, as_c_int(flags), True)
        cdef fio_io_uring_sqe *sqe
        cdef iovec *iov
        cdef msghdr *msg
        cdef bytes sa
        try:
            iov = self.table.pin_vector(idx, buffers, writable, sizeof(msghdr))
            msg = <msghdr *>self.table.at(idx).mem
            msg.msg_iov = iov
            msg.msg_iovlen = self.table.at(idx).nviews
            if address is not None:
                sa = _abi.sockaddr(address)
                self.table.keep(idx, sa)
                msg.msg_name = PyBytes_AS_STRING(sa)
                msg.msg_namelen = <unsigned int>PyBytes_GET_SIZE(sa)
            sqe = self.next_sqe()
        except BaseException:
            self.abandon(idx)
            raise
        fio_prep_msg(sqe, op, fd, msg, msg_flags)
        sqe.ioprio |= ioprio
        return self.commit(idx, sqe, flags)

    def prep_sendmsg(self, fd, buffers, address=None, *, msg_flags=0, user_data=None, flags=0, poll_first=False):
        """Queue a sendmsg of ``buffers`` (to ``address`` on an unconnected
        socket); ``poll_first`` as in :meth:`prep_recv`. Matches
        ``io_uring_prep_sendmsg(3)``."""
        return self.prep_msg(FIO_OP_SENDMSG, as_fd(fd), buffers, address, as_u32(msg_flags), user_data,
                             as_c_int(flags), False, poll_first_bit(poll_first))

    def prep_recvmsg(self, fd, buffers, *, msg_flags=0, user_data=None, flags=0, poll_first=False):
        """Queue a recvmsg into the writable ``buffers``; ``poll_first`` as in
        :meth:`prep_recv`. Matches ``io_uring_prep_recvmsg(3)``."""
        return self.prep_msg(FIO_OP_RECVMSG, as_fd(fd), buffers, None, as_u32(msg_flags), user_data,
                             as_c_int(flags), True, poll_first_bit(poll_first))

    def prep_shutdown(self, fd, how, *, user_data=None, flags=0):
        """Queue a shutdown (``socket.SHUT_RD``/``SHUT_WR``/``SHUT_RDWR``).
        Matches ``io_uring_prep_shutdown(3)``."""
        cdef int cfd = as_fd(fd), chow = as_c_int(how)
        cdef uint32_t idx = self.new_slot(user_data, as_c_int(flags), False)
        cdef fio_io_uring_sqe *sqe
        sqe = self.sqe_for(idx)
        fio_prep_shutdown(sqe, cfd, chow)
        return self.commit(idx, sqe, flags)

    def prep_splice(self, fd_in, off_in, fd_out, off_out, nbytes, *, splice_flags=0, user_data=None, flags=0):
        """Queue a splice of ``nbytes`` from ``fd_in`` to ``fd_out``; one of
        them must be a pipe, whose offset must be -1. Matches
        ``io_uring_prep_splice(3)``."""
        cdef int cin = as_fd(fd_in), cout = as_fd(fd_out)
        cdef long long oin = as_i64(off_in), oout = as_i64(off_out)
        cdef uint32_t n = len32(as_i64(nbytes))
        cdef uint32_t sflags = as_u32(splice_flags)
        cdef uint32_t idx = self.new_slot(user_data, as_c_int(flags), False)
        cdef fio_io_uring_sqe *sqe
        sqe = self.sqe_for(idx)
        fio_prep_splice(sqe, cin, oin, cout, oout, n, sflags)
        return self.commit(idx, sqe, flags)

    # ---- the batch path ---------------------------------------------------

    def read_batch(self, fd, buf, offsets, size, results=None, *, depth=0):
        """Read ``len(offsets)`` blocks of ``size`` bytes: block i from file
        offset ``offsets[i]`` into ``buf[i*size:(i+1)*size]``, keeping up to
        ``depth`` reads in flight (0: the SQ size), in one call. Returns the
        per-read results (bytes read or ``-errno``): a list, or ``results``
        filled in (a writable buffer of int32, e.g. ``array('i')``). The GIL is
        released while the kernel works; other completions that arrive
        meanwhile are kept for the next :meth:`peek`/:meth:`wait`.
        ``offsets`` is a sequence of ints or an int64 buffer (``array('q')``)."""
        return self.batch(FIO_OP_READ, fd, buf, offsets, size, results, depth)

    def write_batch(self, fd, buf, offsets, size, results=None, *, depth=0):
        """The write twin of :meth:`read_batch`: block i of ``buf`` goes to
        ``offsets[i]``."""
        return self.batch(FIO_OP_WRITE, fd, buf, offsets, size, results, depth)

    cdef object batch(self, uint8_t op, object fd, object buf, object offsets, object size, object results,
                      object depth):
        cdef int cfd = as_fd(fd)
        cdef long long bsize = as_i64(size)
        cdef int cdepth = as_c_int(depth)
        cdef Py_ssize_t n, i
        cdef int64_t *offs = NULL
        cdef Py_buffer oview
        cdef uint32_t idx
        cdef Slot *s
        cdef fio_io_uring_sqe *sqe
        cdef Py_ssize_t next_i = 0
        cdef int ret
        cdef uint32_t pending
        cdef list stray = []
        self.check()
        if bsize <= 0 or bsize > 0xFFFFFFFF:
            raise ValueError("size must be between 1 and 4 GiB - 1")
        # offsets -> a private int64 array (the kernel never sees it)
        if PyObject_CheckBuffer(offsets):
            PyObject_GetBuffer(offsets, &oview, 0x003C)  # PyBUF_C_CONTIGUOUS | PyBUF_FORMAT
            try:
                if oview.itemsize != 8 or (oview.format != NULL and (oview.format[0] == 0 or  # "": no last char
                                                           oview.format[strlen(oview.format) - 1] not in b"qQlL")):
                    raise TypeError("offsets must be an int64 buffer (array('q')) or a sequence of ints")
                n = oview.len // 8
                offs = <int64_t *>malloc(max(n, 1) * 8)
                if offs == NULL:
                    raise MemoryError()
                memcpy(offs, oview.buf, n * 8)
            finally:
                PyBuffer_Release(&oview)
        else:
            seq = list(offsets)
            n = len(seq)
            offs = <int64_t *>malloc(max(n, 1) * 8)
            if offs == NULL:
                raise MemoryError()
            try:
                for i in range(n):
                    offs[i] = as_i64(seq[i])
                    if offs[i] < 0:
                        raise ValueError("offsets must be >= 0")
            except BaseException:
                free(offs)
                raise
        try:
            for i in range(n):
                if offs[i] < 0:     # (an int64 buffer holds any value)
                    raise ValueError("offsets must be >= 0")
            if n >= 0x7FFFFFFF:
                raise ValueError("too many offsets for one batch")
            if cdepth <= 0 or cdepth > <int>self.sq_entries:
                cdepth = self.sq_entries
            idx = self.new_slot(None, 0, True)
            s = self.table.at(idx)
            s.pending = 0
            s.batch = 1
            s.batch_owned = 1
            self.batches += 1
            self.preparing -= 1   # not a prep: the batch owns the slot from here
            try:
                self.table.pin(idx, buf, op == FIO_OP_READ)
                if s.view.len < n * bsize:
                    raise ValueError(f"buf holds {s.view.len} bytes; {n} blocks of {bsize} need {n * bsize}")
                self.table.pin_results(idx, results, n)
                while True:
                    while next_i < n and <int>s.pending < cdepth:
                        sqe = fio_ring_get_sqe(&self.ring)
                        if sqe == NULL:
                            break
                        fio_prep_rw_op(sqe, op, cfd, <uint64_t><size_t>(<char *>s.view.buf + next_i * bsize),
                                       <uint32_t>bsize, <uint64_t>offs[next_i], 0)
                        sqe.user_data = UD_BATCH | (<uint64_t>next_i << 32) | idx
                        s.pending += 1
                        next_i += 1
                    if next_i >= n and s.pending == 0:
                        break
                    pending = fio_ring_flush_sq(&self.ring)
                    if self.ring.flags & FIO_IORING_SETUP_SQPOLL:
                        pending = 0
                    if s.pending:
                        ret = self.enter(pending, 1, FIO_IORING_ENTER_GETEVENTS, -1)
                    else:
                        # The SQ was full of other requests and none of ours
                        # is in flight: submit them, but never wait for them
                        # (they may never complete: a poll, a pipe read).
                        ret = self.enter(pending, 0, FIO_IORING_ENTER_SQ_WAIT if self.ring.flags &
                                         FIO_IORING_SETUP_SQPOLL else 0, -1)
                    if ret < 0 and ret != -EINTR and ret != -EBUSY and ret != -EAGAIN:
                        raise_errno(-ret)
                    if ret == -EINTR:
                        PyErr_CheckSignals()
                    self.reap(stray)
                if results is not None:
                    return results
                return [s.results[i] for i in range(n)]
            finally:
                # Other requests' completions met on the way go to the
                # backlog, whether the batch ends or raises.
                if stray:
                    self.backlog.extend(stray)
                s.batch_owned = 0
                self.batches -= 1
                if not s.pending:
                    self.slot_release(idx)
        finally:
            free(offs)


cdef extern from "Python.h":
    bint PyObject_CheckBuffer(object obj)


def _abi_layout():
    """Sizes and field offsets of the C ABI structs, as compiled (tests/test_abi.py)."""
    cdef fio_io_uring_sqe sqe
    cdef fio_io_uring_cqe cqe
    cdef fio_io_uring_params p
    cdef fio_io_uring_buf b
    cdef fio_io_uring_buf_reg reg
    cdef fio_io_uring_getevents_arg ga
    cdef fio_io_uring_rsrc_update up
    cdef char *base = <char *>&sqe
    sqe_off = {
        "opcode": <char *>&sqe.opcode - base, "flags": <char *>&sqe.flags - base,
        "ioprio": <char *>&sqe.ioprio - base, "fd": <char *>&sqe.fd - base, "off": <char *>&sqe.off - base,
        "addr": <char *>&sqe.addr - base, "len": <char *>&sqe.len - base,
        "op_flags": <char *>&sqe.op_flags - base, "user_data": <char *>&sqe.user_data - base,
        "buf_index": <char *>&sqe.buf_index - base, "personality": <char *>&sqe.personality - base,
        "splice_fd_in": <char *>&sqe.splice_fd_in - base, "addr3": <char *>&sqe.addr3 - base,
    }
    base = <char *>&p
    params_off = {
        "sq_entries": <char *>&p.sq_entries - base, "cq_entries": <char *>&p.cq_entries - base,
        "flags": <char *>&p.flags - base, "sq_thread_cpu": <char *>&p.sq_thread_cpu - base,
        "sq_thread_idle": <char *>&p.sq_thread_idle - base, "features": <char *>&p.features - base,
        "wq_fd": <char *>&p.wq_fd - base, "sq_off": <char *>&p.sq_off - base, "cq_off": <char *>&p.cq_off - base,
    }
    base = <char *>&p.sq_off
    sq_off = {name: value for name, value in {
        "head": <char *>&p.sq_off.head - base, "tail": <char *>&p.sq_off.tail - base,
        "ring_mask": <char *>&p.sq_off.ring_mask - base, "ring_entries": <char *>&p.sq_off.ring_entries - base,
        "flags": <char *>&p.sq_off.flags - base, "dropped": <char *>&p.sq_off.dropped - base,
        "array": <char *>&p.sq_off.array - base, "user_addr": <char *>&p.sq_off.user_addr - base}.items()}
    base = <char *>&p.cq_off
    cq_off = {
        "head": <char *>&p.cq_off.head - base, "tail": <char *>&p.cq_off.tail - base,
        "ring_mask": <char *>&p.cq_off.ring_mask - base, "ring_entries": <char *>&p.cq_off.ring_entries - base,
        "overflow": <char *>&p.cq_off.overflow - base, "cqes": <char *>&p.cq_off.cqes - base,
        "flags": <char *>&p.cq_off.flags - base, "user_addr": <char *>&p.cq_off.user_addr - base}
    base = <char *>&cqe
    cqe_off = {"user_data": <char *>&cqe.user_data - base, "res": <char *>&cqe.res - base,
               "flags": <char *>&cqe.flags - base}
    base = <char *>&b
    buf_off = {"addr": <char *>&b.addr - base, "len": <char *>&b.len - base, "bid": <char *>&b.bid - base,
               "resv": <char *>&b.resv - base}
    base = <char *>&reg
    reg_off = {"ring_addr": <char *>&reg.ring_addr - base, "ring_entries": <char *>&reg.ring_entries - base,
               "bgid": <char *>&reg.bgid - base}
    base = <char *>&ga
    ga_off = {"sigmask": <char *>&ga.sigmask - base, "sigmask_sz": <char *>&ga.sigmask_sz - base,
              "ts": <char *>&ga.ts - base}
    base = <char *>&up
    up_off = {"offset": <char *>&up.offset - base, "data": <char *>&up.data - base}
    return {
        "sizes": {
            "sqe": sizeof(fio_io_uring_sqe), "cqe": sizeof(fio_io_uring_cqe),
            "sqring_offsets": sizeof(fio_io_sqring_offsets), "cqring_offsets": sizeof(fio_io_cqring_offsets),
            "params": sizeof(fio_io_uring_params), "probe_op": sizeof(fio_io_uring_probe_op),
            "probe": 16, "buf": sizeof(fio_io_uring_buf), "buf_reg": sizeof(fio_io_uring_buf_reg),
            "rsrc_update": sizeof(fio_io_uring_rsrc_update), "getevents_arg": sizeof(fio_io_uring_getevents_arg),
            "kernel_timespec": sizeof(fio_kernel_timespec),
        },
        "offsets": {"sqe": sqe_off, "params": params_off, "sqring_offsets": sq_off, "cqring_offsets": cq_off,
                    "cqe": cqe_off, "buf": buf_off, "buf_reg": reg_off, "getevents_arg": ga_off,
                    "rsrc_update": up_off},
        "constants": {
            "SETUP_SQPOLL": FIO_IORING_SETUP_SQPOLL, "SETUP_SQ_AFF": FIO_IORING_SETUP_SQ_AFF,
            "SETUP_CQSIZE": FIO_IORING_SETUP_CQSIZE, "SETUP_SQE128": FIO_IORING_SETUP_SQE128,
            "SETUP_CQE32": FIO_IORING_SETUP_CQE32, "SETUP_DEFER_TASKRUN": FIO_IORING_SETUP_DEFER_TASKRUN,
            "SETUP_NO_MMAP": FIO_IORING_SETUP_NO_MMAP,
            "SETUP_REGISTERED_FD_ONLY": FIO_IORING_SETUP_REGISTERED_FD_ONLY,
            "SETUP_NO_SQARRAY": FIO_IORING_SETUP_NO_SQARRAY, "FEAT_SINGLE_MMAP": FIO_IORING_FEAT_SINGLE_MMAP,
            "FEAT_NODROP": FIO_IORING_FEAT_NODROP, "FEAT_EXT_ARG": FIO_IORING_FEAT_EXT_ARG,
            "SQ_NEED_WAKEUP": FIO_IORING_SQ_NEED_WAKEUP, "SQ_CQ_OVERFLOW": FIO_IORING_SQ_CQ_OVERFLOW,
            "SQ_TASKRUN": FIO_IORING_SQ_TASKRUN, "ENTER_GETEVENTS": FIO_IORING_ENTER_GETEVENTS,
            "ENTER_SQ_WAKEUP": FIO_IORING_ENTER_SQ_WAKEUP, "ENTER_SQ_WAIT": FIO_IORING_ENTER_SQ_WAIT,
            "ENTER_EXT_ARG": FIO_IORING_ENTER_EXT_ARG, "CQE_F_BUFFER": FIO_IORING_CQE_F_BUFFER,
            "CQE_F_MORE": FIO_IORING_CQE_F_MORE, "CQE_BUFFER_SHIFT": FIO_IORING_CQE_BUFFER_SHIFT,
            "ASYNC_CANCEL_ALL": FIO_IORING_ASYNC_CANCEL_ALL, "ASYNC_CANCEL_FD": FIO_IORING_ASYNC_CANCEL_FD,
            "ASYNC_CANCEL_ANY": FIO_IORING_ASYNC_CANCEL_ANY, "REGISTER_BUFFERS": FIO_IORING_REGISTER_BUFFERS,
            "UNREGISTER_BUFFERS": FIO_IORING_UNREGISTER_BUFFERS, "REGISTER_FILES": FIO_IORING_REGISTER_FILES,
            "UNREGISTER_FILES": FIO_IORING_UNREGISTER_FILES, "REGISTER_EVENTFD": FIO_IORING_REGISTER_EVENTFD,
            "UNREGISTER_EVENTFD": FIO_IORING_UNREGISTER_EVENTFD,
            "REGISTER_FILES_UPDATE": FIO_IORING_REGISTER_FILES_UPDATE,
            "REGISTER_PROBE": FIO_IORING_REGISTER_PROBE, "REGISTER_PBUF_RING": FIO_IORING_REGISTER_PBUF_RING,
            "UNREGISTER_PBUF_RING": FIO_IORING_UNREGISTER_PBUF_RING,
            "OFF_SQ_RING": FIO_IORING_OFF_SQ_RING, "OFF_CQ_RING": FIO_IORING_OFF_CQ_RING,
            "OFF_SQES": FIO_IORING_OFF_SQES,
            "IORING_OP_NOP": FIO_OP_NOP, "IORING_OP_READV": FIO_OP_READV, "IORING_OP_WRITEV": FIO_OP_WRITEV,
            "IORING_OP_FSYNC": FIO_OP_FSYNC, "IORING_OP_READ_FIXED": FIO_OP_READ_FIXED,
            "IORING_OP_WRITE_FIXED": FIO_OP_WRITE_FIXED, "IORING_OP_POLL_ADD": FIO_OP_POLL_ADD,
            "IORING_OP_POLL_REMOVE": FIO_OP_POLL_REMOVE, "IORING_OP_SENDMSG": FIO_OP_SENDMSG,
            "IORING_OP_RECVMSG": FIO_OP_RECVMSG, "IORING_OP_TIMEOUT": FIO_OP_TIMEOUT,
            "IORING_OP_TIMEOUT_REMOVE": FIO_OP_TIMEOUT_REMOVE, "IORING_OP_ACCEPT": FIO_OP_ACCEPT,
            "IORING_OP_ASYNC_CANCEL": FIO_OP_ASYNC_CANCEL, "IORING_OP_LINK_TIMEOUT": FIO_OP_LINK_TIMEOUT,
            "IORING_OP_CONNECT": FIO_OP_CONNECT, "IORING_OP_FALLOCATE": FIO_OP_FALLOCATE,
            "IORING_OP_OPENAT": FIO_OP_OPENAT, "IORING_OP_CLOSE": FIO_OP_CLOSE, "IORING_OP_STATX": FIO_OP_STATX,
            "IORING_OP_READ": FIO_OP_READ, "IORING_OP_WRITE": FIO_OP_WRITE, "IORING_OP_SEND": FIO_OP_SEND,
            "IORING_OP_RECV": FIO_OP_RECV, "IORING_OP_SPLICE": FIO_OP_SPLICE,
            "IORING_OP_SHUTDOWN": FIO_OP_SHUTDOWN,
        },
    }
