# cython: language_level=3, embedsignature=True
"""The Linux AIO context's core (``fastio._c.aio`` is the public module):
``ContextCore`` owns the kernel context, the in-flight table, the submit
queue and the reaping (``getevents``, ``cancel``, ``close``);
``aio.Context`` adds the ``prep_*`` methods and the batch path. The rules
it keeps (iocb addresses, signals, partial submission, close): docs/aio.md."""

cimport cython

from cpython.exc cimport PyErr_CheckSignals
from cpython.number cimport PyNumber_Index

from libc.errno cimport EAGAIN, EINPROGRESS, EINTR, EINVAL
from libc.stdint cimport INT32_MAX, INT32_MIN, int16_t, int32_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport free, realloc
from libc.string cimport memcpy, memmove, memset

from fastio._c._aio cimport (
    FIO_IOCB_CMD_PREADV, FIO_IOCB_CMD_PWRITEV, FIO_IOCB_FLAG_IOPRIO, FIO_IOCB_FLAG_RESFD, fio_aio_context_t,
    fio_io_event, fio_iocb, fio_sys_io_cancel, fio_sys_io_destroy, fio_sys_io_getevents, fio_sys_io_setup,
    fio_sys_io_submit,
)
from fastio._c._common cimport (
    as_c_int, as_fd, check_fork, deadline_for, raise_errno, remaining_after_eintr, timeout_to_ns,
)
from fastio._c._inflight cimport Slot, iovec, new_table
from fastio._c._sys cimport fio_fork_generation, fio_fork_init, fio_monotonic_ns, timespec

from fastio._errors import UnsupportedError
from fastio._abi import aio as _abi

cdef extern from "<errno.h>":
    int ECANCELED
    int ENOMEM

cdef extern from "Python.h":
    object PyLong_FromUnsignedLongLong(unsigned long long v)

cdef long long DRAIN_LIMIT_NS = 10000000000LL   # close(): give up (leak) after 10 s
cdef long long DRAIN_STEP_NS = 100000000LL      # and re-check every 100 ms

if fio_fork_init() != 0:
    raise ImportError("pthread_atfork failed: fastio cannot detect fork()")

# Contexts whose requests outlived close(): kept (with their buffers) forever.
_leaked = []

# None: not probed yet; "": Linux AIO works; otherwise why it does not.
cdef object _probe_reason = None


cdef str _kernel_reason():
    """Probe once with a one-event context; cache the answer."""
    global _probe_reason
    cdef fio_aio_context_t ctx = 0
    cdef int ret
    if _probe_reason is None:
        ret = fio_sys_io_setup(1, &ctx)
        if ret < 0:
            _probe_reason = _abi.diagnose(-ret, 1)
        else:
            fio_sys_io_destroy(ctx)
            _probe_reason = ""
    return _probe_reason


def available():
    """Whether Linux AIO can be used here: not switched off by
    ``FASTIO_DISABLE=aio`` and ``io_setup(2)`` works (probed once)."""
    return _abi.disabled_by_env() is None and _kernel_reason() == ""


def why_unavailable():
    """None when :func:`available` is True, else the cause and the fix
    (``fs.aio-max-nr`` and its values, seccomp, ``CONFIG_AIO``,
    ``FASTIO_DISABLE``)."""
    reason = _abi.disabled_by_env() or _kernel_reason()
    return reason or None


cdef class Completion:
    """One completion: ``user_data`` (the object given to ``prep_*``), ``res``
    (bytes moved, a poll mask, or ``-errno``), ``res2`` (the kernel's
    secondary result, 0 for file and socket requests) and ``detail`` (for a
    misaligned ``O_DIRECT`` request's ``-EINVAL``: which of offset, length or
    buffer address is not aligned, and to what; else None). Matches
    ``struct io_event``."""

    def __init__(self, user_data=None, res=0, res2=0, detail=None):
        self.user_data = user_data
        self.res = res
        self.res2 = res2
        self.detail = detail

    def result(self):
        """Return ``res``, or raise the ``OSError`` a negative ``res`` stands
        for (``FileNotFoundError`` for ``-ENOENT`` ...), its message replaced
        by ``detail`` when there is one."""
        if self.res < 0:
            if self.detail is not None:
                raise OSError(<int>-self.res, self.detail)
            raise_errno(<int>-self.res)
        return self.res

    def __repr__(self):
        return f"Completion(user_data={self.user_data!r}, res={self.res}, res2={self.res2})"

    def __eq__(self, other):
        if not isinstance(other, Completion):
            return NotImplemented
        cdef Completion o = other
        return self.user_data == o.user_data and self.res == o.res and self.res2 == o.res2

    __hash__ = None


cdef inline unsigned long long as_request_id(object request_id) except? 0xFFFFFFFFFFFFFFFF:
    """A request id (an int: a float is a TypeError; outside 0..2**64-1 an
    OverflowError, as every id prep_* returns is in range)."""
    cdef object v = PyNumber_Index(request_id)
    if not 0 <= v <= 0xFFFFFFFFFFFFFFFF:
        raise OverflowError(f"request id {v} is out of range (0 .. 2**64 - 1)")
    return v


cdef class ContextCore:
    """The kernel context, the table and the reaping: see ``aio.Context``."""

    def __cinit__(self):
        self.ctx = 0
        self.fork_gen = fio_fork_generation()
        self.table = new_table(sizeof(fio_iocb))
        self.backlog = []
        self.resfd = -1

    def __init__(self, maxevents=128):
        cdef int n = as_c_int(maxevents)
        cdef int ret
        cdef fio_aio_context_t ctx = 0
        if self.ctx != 0:
            raise RuntimeError("Context.__init__ called twice")
        if n <= 0:
            raise ValueError(f"maxevents must be positive, got {n}")
        reason = _abi.disabled_by_env()
        if reason:
            raise UnsupportedError(reason)
        ret = fio_sys_io_setup(<unsigned>n, &ctx)
        if ret < 0:
            if -ret in _abi.UNSUPPORTED_ERRNOS:
                raise UnsupportedError(-ret, _abi.diagnose(-ret, n))
            raise OSError(-ret, _abi.diagnose(-ret, n))
        self.ctx = ctx
        self.fork_gen = fio_fork_generation()
        self.maxevents = n

    # ---- lifetime -------------------------------------------------------

    cdef int check(self) except -1:
        if self.ctx == 0 or self.closing:
            raise ValueError("I/O operation on closed Context")
        check_fork(self.fork_gen, "aio.Context")
        return 0

    @property
    def closed(self):
        """True once the context is closed."""
        return self.ctx == 0

    @property
    def queued(self):
        """Requests prepared and not yet taken by the kernel."""
        return self.qlen

    @property
    def inflight(self):
        """Requests whose completion has not been reaped yet (queued or
        submitted; their buffers are pinned)."""
        return self.table.inflight

    def close(self):
        """Drop the queued requests, cancel what is in flight, wait for it
        (the completions are discarded), destroy the context and release the
        buffers. Idempotent. In a forked child it only drops the child's copy.
        ``io_destroy`` waits for an RCU grace period in the kernel even with
        nothing in flight (about 30 ms on 6.18 here): keep one context for
        many requests rather than one per request.

        :raises RuntimeError: another thread is inside ``submit``/``getevents``.
        """
        if self.ctx == 0 or self.closing:
            return
        if (self.busy or self.preparing or self.batches or self.waiters) and \
                self.fork_gen == fio_fork_generation():
            raise RuntimeError("Context.close() while a call on this context is running (another "
                               "thread in it, or a signal handler or a buffer exporter inside a "
                               "prep_*, getevents or batch call); close it once that call has returned")
        self.shutdown()

    def __enter__(self):
        self.check()
        return self

    def __exit__(self, *args):
        self.close()

    def __dealloc__(self):
        if self.ctx != 0:
            try:
                import warnings
                warnings.warn(f"unclosed fastio.aio.Context ({self.table.inflight} requests in flight)",
                              ResourceWarning)
            except BaseException:
                pass
            self.shutdown()
        free(self.queue)
        self.queue = NULL

    cdef int shutdown(self) noexcept:
        """close()'s work; never raises. 1 when every slot could be released;
        0 when some request outlived the time limit: then the table (every
        slot and the buffers it pins) is kept for ever."""
        cdef int drained = 1
        # From here on every method refuses the context (check()): Python
        # code run while slots are released (a buffer's finalizer) must not
        # submit or queue what is being torn down.
        self.closing = True
        if self.fork_gen == fio_fork_generation():
            drained = self.drain()
            if drained:
                fio_sys_io_destroy(self.ctx)   # nothing in flight; still one RCU grace period (~30 ms)
        if drained:
            self.table.release_all()
        else:
            self.table.leaked = True
            try:
                _leaked.append(self.table)
            except BaseException:
                pass
        self.ctx = 0
        self.qlen = 0
        self.submitted = 0
        self.backlog = []
        return drained

    cdef int drain(self) noexcept:
        """Drop the queue, cancel and reap until nothing is in flight. 1 when
        done, 0 when some request outlived the time limit."""
        cdef long long start = fio_monotonic_ns(), last_cancel = -DRAIN_LIMIT_NS, now
        cdef fio_io_event events[STACK_EVENTS]
        cdef fio_io_event ev
        cdef long ret
        cdef uint32_t i
        cdef Slot *s
        cdef list sink = []
        try:
            while self.qlen:
                self.qlen -= 1
                self.table.release(self.queue[self.qlen])
            while self.submitted:
                now = fio_monotonic_ns()
                if now - start > DRAIN_LIMIT_NS:
                    return 0
                if now - last_cancel > 1000000000LL:
                    last_cancel = now
                    i = 0
                    s = self.table.at(0)
                    while s != NULL:      # (at() is NULL beyond the table)
                        if s.pending and s.tag == ST_SUBMITTED and not s.batch:
                            if fio_sys_io_cancel(self.ctx, self.cb(i), &ev) == 0:
                                self.handle_events(&ev, 1, sink)     # kernels before 4.19
                        i += 1
                        s = self.table.at(i)
                ret = self.getevents_raw(1, STACK_EVENTS, events, DRAIN_STEP_NS)
                if ret > 0:
                    self.handle_events(events, ret, sink)
                del sink[:]
            return 1
        except BaseException:
            return 0 if self.submitted else 1

    # ---- the in-flight table ----------------------------------------------

    cdef fio_iocb *cb(self, uint32_t idx) noexcept:
        """Slot idx's iocb (its payload)."""
        return <fio_iocb *>self.table.payload(idx)

    cdef uint32_t new_slot(self, object user_data) except? 0xFFFFFFFF:
        """A slot holding user_data, with the "preparing" guard up (the
        caller lowers it when its prep returns)."""
        cdef uint32_t idx
        self.check()
        idx = self.table.alloc()
        # Until the prep returns (its finally): close() refuses, since Python
        # code may run meanwhile (a buffer exporter, a signal handler).
        self.preparing += 1
        self.table.set_user_data(idx, user_data)
        if self.ctx == 0 or self.closing:
            # table.alloc() allocates (its user_data list grows): the garbage
            # collector may have run a finalizer there that closed the
            # context before the guard was up.
            self.preparing -= 1
            self.table.release(idx)
            raise ValueError("I/O operation on closed Context")
        return idx

    cdef void fill(self, uint32_t idx, uint32_t op, int fd, uint32_t rw_flags, int prio) noexcept:
        """The iocb fields every request has; the caller sets buf/nbytes/offset."""
        cdef fio_iocb *cb = self.cb(idx)
        memset(cb, 0, sizeof(fio_iocb))
        cb.aio_data = self.table.ident(idx)
        cb.aio_lio_opcode = <uint16_t>op
        cb.aio_fildes = <uint32_t>fd
        cb.aio_rw_flags = rw_flags
        if prio:
            cb.aio_reqprio = <int16_t>prio
            cb.aio_flags |= FIO_IOCB_FLAG_IOPRIO
        if self.resfd >= 0:
            cb.aio_flags |= FIO_IOCB_FLAG_RESFD
            cb.aio_resfd = <uint32_t>self.resfd

    cdef int reserve(self, uint32_t n) except -1:
        """Room for n entries in the submission queue."""
        cdef uint32_t *q
        cdef uint32_t cap = self.qcap if self.qcap else 64
        while cap < n:
            cap *= 2
        if cap != self.qcap:
            q = <uint32_t *>realloc(self.queue, cap * sizeof(uint32_t))
            if q == NULL:
                raise MemoryError()
            self.queue = q
            self.qcap = cap
        return 0

    cdef object enqueue(self, uint32_t idx):
        """Append the filled slot to the submission queue; returns its id."""
        cdef object rid = PyLong_FromUnsignedLongLong(self.cb(idx).aio_data)
        self.reserve(self.qlen + 1)
        self.queue[self.qlen] = idx
        self.qlen += 1
        self.table.at(idx).tag = ST_QUEUED
        return rid

    cdef int reject(self, uint32_t idx, long err) except -1:
        """Complete a request the kernel never took with res=err (-errno)."""
        cdef Completion c = Completion.__new__(Completion)
        c.user_data = self.table.user_data(idx)
        c.res = err
        self.backlog.append(c)
        self.table.release(idx)   # may run Python code: the backlog holds the completion first
        return 0

    # ---- eventfd ------------------------------------------------------------

    def register_eventfd(self, fd):
        """Make every request prepared from now on signal the eventfd ``fd``
        when it completes (``IOCB_FLAG_RESFD``), so an event loop can watch
        one fd; each completion adds 1 to its counter."""
        cdef int efd = as_fd(fd)   # (may run fileno(): before the check)
        self.check()
        self.resfd = efd

    def unregister_eventfd(self):
        """Requests prepared from now on signal no eventfd."""
        self.check()
        self.resfd = -1

    # ---- submission and completion ------------------------------------------

    cdef long submit_queue(self) except -1:
        """io_submit the queue, SUBMIT_BATCH iocbs per call, until it is empty
        or the kernel takes no more (documented rule in the module docstring).
        Returns the number taken."""
        cdef void *ptrs[SUBMIT_BATCH]
        cdef uint32_t taken_idx[SUBMIT_BATCH]
        cdef uint32_t taken_gen[SUBMIT_BATCH]
        cdef uint32_t k, i, nt
        cdef Slot *s
        cdef long ret, total = 0
        cdef fio_aio_context_t ctx = self.ctx
        # Python code may run in here (a refused request's Completion is
        # allocated, its buffer released): close() refuses meanwhile, or it
        # would release the slots this loop still holds (taken_idx).
        self.busy += 1
        try:
            while self.qlen:
                k = self.qlen if self.qlen < SUBMIT_BATCH else SUBMIT_BATCH
                # Take the first k out of the queue: another thread may append
                # (or submit the rest) while the GIL is released.
                memcpy(taken_idx, self.queue, k * sizeof(uint32_t))
                memmove(self.queue, self.queue + k, (self.qlen - k) * sizeof(uint32_t))
                self.qlen -= k
                for i in range(k):
                    s = self.table.at(taken_idx[i])
                    ptrs[i] = self.cb(taken_idx[i])
                    s.tag = ST_SUBMITTING
                    taken_gen[i] = s.gen
                with nogil:
                    ret = fio_sys_io_submit(ctx, k, ptrs)
                nt = <uint32_t>ret if ret > 0 else 0
                for i in range(nt):
                    # Another thread may have reaped this request while io_submit
                    # ran (handle_events then left it out of the count) and even
                    # reused its slot: only a slot still ours is marked and counted.
                    s = self.table.at(taken_idx[i])
                    if s.pending and s.gen == taken_gen[i] and s.tag == ST_SUBMITTING:
                        s.tag = ST_SUBMITTED
                        self.submitted += 1
                total += nt
                # Put what the kernel did not take back at the front, in order
                # (other threads may have queued more meanwhile: make room).
                if self.qlen + (k - nt) > self.qcap:
                    try:
                        self.reserve(self.qlen + (k - nt))
                    except MemoryError:
                        for i in range(nt, k):
                            self.reject(taken_idx[i], -ENOMEM)
                        raise
                memmove(self.queue + (k - nt), self.queue, self.qlen * sizeof(uint32_t))
                for i in range(nt, k):
                    self.queue[i - nt] = taken_idx[i]
                    self.table.at(taken_idx[i]).tag = ST_QUEUED
                self.qlen += k - nt
                if ret < 0 and ret != -EAGAIN and ret != -EINTR:
                    # The kernel refused the first one outright: it completes now.
                    self.qlen -= 1
                    memmove(self.queue, self.queue + 1, self.qlen * sizeof(uint32_t))
                    self.reject(taken_idx[0], ret)
                    continue
                if ret == -EINTR:
                    PyErr_CheckSignals()
                    continue
                if nt == 0:
                    break             # EAGAIN: the context is full; the rest waits
                # nt < k without an error: the kernel stopped at a request it
                # refuses or has no room for; the next round learns which.
            return total
        finally:
            self.busy -= 1

    def submit(self):
        """Hand the queued requests to the kernel; returns how many it took.
        What it did not take (the context is full: ``EAGAIN``) stays queued
        for the next call; a request it refused (``EBADF`` ...) completes with
        ``res = -errno`` at the next :meth:`getevents`. The GIL is released
        (buffered IO runs inside ``io_submit``). See ``io_submit(2)``."""
        self.check()
        return self.submit_queue()

    cdef long getevents_raw(self, long min_nr, long nr, fio_io_event *events, long long timeout_ns) noexcept:
        """io_getevents without the GIL; timeout_ns < 0: no limit."""
        cdef timespec ts
        cdef timespec *tsp = NULL
        cdef long ret
        cdef fio_aio_context_t ctx = self.ctx
        if timeout_ns >= 0:
            ts.tv_sec = timeout_ns // 1000000000
            ts.tv_nsec = timeout_ns % 1000000000
            tsp = &ts
        self.busy += 1
        with nogil:
            ret = fio_sys_io_getevents(ctx, min_nr, nr, events, tsp)
        self.busy -= 1
        return ret

    cdef int handle_events(self, fio_io_event *events, long n, list out) except -1:
        """Account for a block of n events taken off the kernel: a batch's go
        to its results, the others become Completions appended to out. Every
        event is stored before any Python code of ours runs (the -EINVAL
        explanation): a signal handler raising there loses nothing. What can
        still raise here is MemoryError."""
        cdef long k
        cdef Py_ssize_t first = len(out)
        cdef Py_ssize_t j
        cdef Completion c
        for k in range(n):
            c = self.take_event(&events[k])
            if c is not None:
                out.append(c)
        # Second pass, everything stored: explain the -EINVAL ones (Python
        # code: the fd's O_DIRECT alignment). take_event left the request's
        # fields in c.detail as a tuple.
        for j in range(first, len(out)):
            c = out[j]
            if type(c.detail) is tuple:
                args = c.detail
                c.detail = None
                c.detail = _abi.explain_einval(*args)
        return 0

    cdef object take_event(self, fio_io_event *ev):
        """One event: the request's Completion (None for a batch's request or
        an id that names no request), its slot released. For -EINVAL, detail
        holds (fd, opcode, addrs, lengths, offset) for handle_events."""
        cdef uint64_t ud = ev.data
        cdef uint32_t idx = <uint32_t>ud
        cdef Slot *s = self.table.at(idx)
        cdef fio_iocb *cb
        cdef Completion c
        cdef iovec *iov
        cdef uint32_t i
        if s == NULL or not s.pending:
            return None   # cannot happen: every id we issue names a held slot
        if ud & UD_BATCH:
            s.results[(ud >> 32) & 0x7FFFFFFF] = <int32_t>(INT32_MIN if ev.res < INT32_MIN else
                                                          INT32_MAX if ev.res > INT32_MAX else ev.res)
            s.pending -= 1
            self.submitted -= 1
            if not s.pending and not s.batch_owned:
                self.table.release(idx)
            return None
        if self.table.lookup(ud) == NULL:
            return None
        cb = self.cb(idx)
        c = Completion.__new__(Completion)
        c.user_data = self.table.user_data(idx)
        c.res = ev.res
        c.res2 = ev.res2
        if ev.res == -EINVAL:
            if cb.aio_lio_opcode == FIO_IOCB_CMD_PREADV or cb.aio_lio_opcode == FIO_IOCB_CMD_PWRITEV:
                iov = <iovec *>s.mem
                addrs = [<size_t>iov[i].iov_base for i in range(s.nviews)]
                lengths = [iov[i].iov_len for i in range(s.nviews)]
            else:
                addrs = [<size_t>cb.aio_buf]
                lengths = [cb.aio_nbytes]
            c.detail = (cb.aio_fildes, cb.aio_lio_opcode, addrs, lengths, cb.aio_offset)
        if s.tag != ST_SUBMITTING:
            self.submitted -= 1   # else its io_submit (in another thread) has not counted it yet, and will not
        self.table.release(idx)   # may run finalizers; the table is consistent first
        return c

    def getevents(self, min_nr=1, max_nr=None, timeout=None):
        """Submit what is queued, wait until at least ``min_nr`` requests
        completed or ``timeout`` seconds passed (None: no limit), and return
        up to ``max_nr`` (default ``maxevents``) completions as a list, the
        ready ones all in one call. ``min_nr`` is lowered to the number of
        requests in flight, so the call never waits for a request that does
        not exist. The GIL is released while waiting; signals run their
        handlers and the wait resumes (PEP 475). See ``io_getevents(2)``."""
        cdef int need = as_c_int(min_nr)
        cdef int maxn = self.maxevents if max_nr is None else as_c_int(max_nr)
        cdef long long timeout_ns = timeout_to_ns(timeout, 1000000000)
        cdef long long deadline
        cdef list out = None
        if need < 0:
            raise ValueError("min_nr must be >= 0")
        if maxn < 1 or need > maxn:
            raise ValueError(f"max_nr must be >= 1 and >= min_nr, got {maxn}")
        self.check()
        if self.batches:
            raise RuntimeError("a read_batch/write_batch is running on this Context: it reaps "
                               "the context's events itself; getevents() must wait until it returns")
        deadline = deadline_for(timeout_ns)
        # The guard goes up before anything that allocates: a finalizer run
        # there that calls close() gets RuntimeError, not a context closed
        # under this call.
        self.waiters += 1
        try:
            if self.qlen:
                self.submit_queue()
            # Completions already here (refused at submission, cancelled while
            # queued, reaped by a batch) count towards max_nr like the others.
            out = self.backlog
            if <int>len(out) > maxn:
                self.backlog = out[maxn:]
                del out[maxn:]
            else:
                self.backlog = []
            return self.getevents_loop(out, need, maxn, timeout_ns, deadline)
        except BaseException:
            # A handler's exception (or an error) must not lose what was
            # already reaped: it goes back to the front of the backlog.
            if out is not None and out is not self.backlog:
                out.extend(self.backlog)
                self.backlog = out
            raise
        finally:
            self.waiters -= 1

    cdef list getevents_loop(self, list out, int need, int maxn, long long timeout_ns, long long deadline):
        cdef fio_io_event events[STACK_EVENTS]
        cdef long ret, want, chunk
        while <int>len(out) < maxn:
            chunk = maxn - <int>len(out)
            if chunk > STACK_EVENTS:
                chunk = STACK_EVENTS
            want = need - <int>len(out)
            if want > <long>self.submitted:
                want = self.submitted
            if want > chunk:
                want = chunk
            if want < 0:
                want = 0
            ret = self.getevents_raw(want, chunk, events, timeout_ns if want > 0 else 0)
            if ret == -EINTR:
                timeout_ns = remaining_after_eintr(deadline)
                self.check()
                continue
            if ret < 0:
                raise_errno(<int>-ret)
            self.handle_events(events, ret, out)
            if ret == chunk:
                continue          # maybe more are ready
            if want == 0 or <int>len(out) >= need:
                break             # done, or nothing to wait for
            # Fewer than asked: the timeout passed, or a signal cut the wait
            # short (io_getevents then returns what it had, not EINTR).
            PyErr_CheckSignals()
            self.check()
            if deadline >= 0:
                timeout_ns = deadline - fio_monotonic_ns()
                if timeout_ns <= 0:
                    break
        return out

    def cancel(self, request_id):
        """Cancel the request whose id (from ``prep_*``) is ``request_id``.
        Returns True when it is cancelled or being cancelled (its completion
        comes through :meth:`getevents`; a request still queued here completes
        with ``-ECANCELED``), False when no such request is pending (already
        reaped).

        :raises OSError: ``EINVAL`` when the kernel cannot cancel it (only
            ``IOCB_CMD_POLL`` is cancellable on Linux; a read or write runs to
            completion and its buffer stays pinned until reaped).

        See ``io_cancel(2)``.
        """
        cdef unsigned long long ud = as_request_id(request_id)
        cdef uint32_t idx = <uint32_t>ud, i
        cdef Slot *s
        cdef fio_io_event ev
        cdef int ret
        self.check()
        if ud & UD_BATCH:
            return False
        s = self.table.lookup(ud)
        if s == NULL or s.batch:
            return False
        # reject() and handle_events() may run Python code (the request's
        # buffer or user_data finalized): close() refuses meanwhile.
        self.busy += 1
        try:
            if s.tag == ST_QUEUED:
                for i in range(self.qlen):
                    if self.queue[i] == idx:
                        memmove(self.queue + i, self.queue + i + 1, (self.qlen - i - 1) * sizeof(uint32_t))
                        self.qlen -= 1
                        break
                self.reject(idx, -ECANCELED)
                return True
            ret = fio_sys_io_cancel(self.ctx, self.cb(idx), &ev)
            if ret == -EINPROGRESS:
                return True
            if ret == 0:              # kernels before 4.19 hand the event back here
                self.handle_events(&ev, 1, self.backlog)
                return True
        finally:
            self.busy -= 1
        if ret == -EINVAL:
            raise OSError(EINVAL, "io_cancel: the kernel cannot cancel this request (only IOCB_CMD_POLL "
                          "requests are cancellable; reads, writes and syncs run to completion) or it "
                          "has already completed; reap it with getevents()")
        raise_errno(-ret)
