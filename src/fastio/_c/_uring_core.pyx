# cython: language_level=3, embedsignature=True
"""The io_uring instance without its operations: setup and the kernel probe,
the lifetime (close cancels, reaps, then releases), the SQ (take an SQE,
publish, submit) and the CQ (reap into ``Completion`` objects, wait). The
public ``fastio._c.uring.Ring`` adds registration (``_uring_register``) and
the ``prep_*`` table and batch path on top. Another Cython module can
``cimport`` ``RingCore`` from ``_uring_core.pxd`` and drive the ring with no
Python call per request: ``new_slot``/``next_sqe``/``commit`` to queue,
``submit_pending``/``enter`` to submit and wait, and an override of
``handle_cqe`` to receive each completion.

The kernel facts this relies on (ownership of the ring indices, user_data as
a slot id, the full-SQ and open-chain rules, CQ overflow, why close drains,
CQE_SKIP_SUCCESS, threads and fork) are written down in ``docs/uring.md``.
"""

from cpython.bytes cimport PyBytes_FromStringAndSize
cimport cython
from cpython.exc cimport PyErr_CheckSignals
from libc.errno cimport EAGAIN, EBUSY, EEXIST, EINTR, ETIME
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport free, realloc
from libc.string cimport memcpy, memmove, memset
from cpython.buffer cimport PyBuffer_Release
from cpython.ref cimport Py_DECREF

from fastio._c._common cimport (
    as_c_int, as_i64, check_fork, deadline_for, raise_errno, remaining_after_eintr, timeout_to_ns,
)
from fastio._c._inflight cimport NO_SLOT, InflightTable, Slot, new_table
from fastio._c._sys cimport fio_fork_generation, fio_fork_init, fio_monotonic_ns
from fastio._c._uring cimport *
from fastio._c._uring_types cimport BufRing, Completion

from fastio._errors import UnsupportedError
from fastio._abi import uring as _abi

cdef extern from "Python.h":
    object PyLong_FromUnsignedLongLong(unsigned long long v)
    unsigned long PyThread_get_thread_ident()

cdef long long DRAIN_LIMIT_NS = 10000000000LL   # close(): give up (leak) after 10 s
cdef long long DRAIN_STEP_NS = 100000000LL      # and re-check every 100 ms
cdef long long SQ_WAIT_LIMIT_NS = 10000000000LL  # a full SQ under SQPOLL: wait up to 10 s for the SQ thread

if fio_fork_init() != 0:
    raise ImportError("pthread_atfork failed: fastio cannot detect fork()")

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


cdef inline int check_sqe_flags(int flags) except -1:
    if flags & ~SQE_FLAGS_MASK:
        raise ValueError(f"unknown IOSQE_* bits in flags={flags:#x}")
    if flags & IOSQE_BUFFER_SELECT:
        raise ValueError("IOSQE_BUFFER_SELECT is set by prep_recv_multishot (buf_group=), not by flags")
    return 0


@cython.no_gc_clear
cdef class RingCore:
    """The ring's setup, lifetime, submission and completion; see
    ``fastio._c.uring.Ring`` for the constructor's arguments."""

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
        s = self.table.at(<uint32_t>ud)
        if s == NULL or not s.pending:
            return
        s.pending -= 1
        if not s.pending and not s.batch_owned:
            self.slot_release(<uint32_t>ud)

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

    cdef uint64_t finish(self, uint32_t idx, fio_io_uring_sqe *sqe, int flags) noexcept:
        """Finish an SQE: IOSQE flags and user_data; returns the request id
        (UD_SKIP for a request without a slot). No Python object is made:
        the call for Cython users."""
        self.preparing -= 1
        sqe.flags |= <uint8_t>flags
        if idx == NO_SLOT:
            sqe.user_data = UD_SKIP
            return UD_SKIP
        sqe.user_data = self.table.ident(idx)
        self.table.at(idx).tag = sqe.opcode
        return sqe.user_data

    cdef object commit(self, uint32_t idx, fio_io_uring_sqe *sqe, int flags):
        """finish(), returning the id as a Python int (None without a slot)."""
        cdef uint64_t ident = self.finish(idx, sqe, flags)
        if idx == NO_SLOT:
            return None
        return PyLong_FromUnsignedLongLong(ident)

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
        fills the whole SQ raises OSError(EBUSY).

        With SQPOLL the kernel thread frees entries when it gets to them:
        ENTER_SQ_WAIT sleeps until one is free, but returns early, with no
        error, when a signal or task work is pending for this thread, so it
        is repeated (handlers run between) until an entry frees or
        SQ_WAIT_LIMIT_NS has passed."""
        cdef fio_io_uring_sqe *sqe = fio_ring_get_sqe(&self.ring)
        cdef int ret, attempt = 0
        cdef uint32_t start
        cdef long long deadline = 0, now
        if sqe != NULL:
            return sqe
        while True:
            start = fio_ring_open_chain_start(&self.ring)
            if start != self.ring.sq.sqe_tail and self.ring.sq.sqe_tail - start >= fio_ring_sq_ready(&self.ring):
                raise OSError(EBUSY, f"the submission queue ({self.sq_entries} entries) is full with one open "
                              "link chain (IOSQE_IO_LINK): submitting it now would split it; keep chains "
                              "shorter than the SQ, or submit() to send it as it is")
            self.submit_to(start)
            sqe = fio_ring_get_sqe(&self.ring)
            if sqe != NULL:
                return sqe
            if not self.ring.flags & FIO_IORING_SETUP_SQPOLL:
                attempt += 1
                if attempt == 3:
                    break
                continue
            now = fio_monotonic_ns()
            if deadline == 0:
                deadline = now + SQ_WAIT_LIMIT_NS
            elif now > deadline:
                break
            ret = self.enter(0, 0, FIO_IORING_ENTER_SQ_WAIT | FIO_IORING_ENTER_SQ_WAKEUP, -1)
            if ret < 0 and ret != -EINTR:
                raise_errno(-ret)
            PyErr_CheckSignals()
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
        idx = <uint32_t>ud
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
                c.buffer = PyBytes_FromStringAndSize(br.at(bid),
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
