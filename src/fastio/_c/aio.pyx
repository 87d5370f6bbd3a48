# cython: language_level=3, embedsignature=True
"""Linux native AIO (``io_setup(2)``, ``io_submit(2)``, ``io_getevents(2)``,
``io_cancel(2)``, ``io_destroy(2)``) for Python, through ``syscall(2)``, with
no libaio: ``Context``, the ``prep_*`` methods and the batch path over
``_aio_core.ContextCore``. The kernel facts it relies on: docs/aio.md."""

cimport cython
from cpython.buffer cimport Py_buffer, PyBuffer_Release, PyObject_GetBuffer
from cpython.exc cimport PyErr_CheckSignals
from cpython.number cimport PyNumber_Index

from libc.errno cimport EAGAIN, EINTR, EINVAL
from posix.fcntl cimport F_GETFL, O_DIRECT, fcntl
from libc.stdint cimport int32_t, int64_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcpy, strlen

from fastio._c._aio cimport (
    FIO_IOCB_CMD_FDSYNC, FIO_IOCB_CMD_FSYNC, FIO_IOCB_CMD_POLL, FIO_IOCB_CMD_PREAD, FIO_IOCB_CMD_PREADV,
    FIO_IOCB_CMD_PWRITE, FIO_IOCB_CMD_PWRITEV, fio_aio_context_t, fio_io_event, fio_iocb, fio_sys_io_submit,
)
from fastio._c._common cimport as_c_int, as_fd, raise_errno
from fastio._c._aio_core cimport AIO_PLUG_THRESHOLD, ST_SUBMITTED, STACK_EVENTS, SUBMIT_BATCH, UD_BATCH, ContextCore
from fastio._c._inflight cimport MAX_VIEWS, Slot, iovec

from fastio._abi import aio as _abi
from fastio._c._aio_core import Completion, available, why_unavailable  # noqa: F401  (the public names)

cdef extern from "Python.h":
    bint PyObject_CheckBuffer(object obj)


cdef inline uint32_t as_rw_flags(object rw_flags) except? 0xFFFFFFFF:
    cdef long long f = PyNumber_Index(rw_flags)   # an int: 8.5 is a TypeError
    if f & ~(<long long>_abi.RWF_MASK) or f < 0:
        raise ValueError(f"unknown RWF_* bits in rw_flags={f:#x}")
    return <uint32_t>f


cdef inline int as_prio(object reqprio) except? -1:
    cdef int p = as_c_int(reqprio)
    if not 0 <= p <= 0xFFFF:
        raise ValueError(f"reqprio must be an ioprio value 0..65535, got {p}")
    return p


cdef inline int64_t as_offset(object offset) except? -1:
    cdef long long off = PyNumber_Index(offset)   # an int: 1.9 is a TypeError
    if off < 0:
        raise ValueError(f"offset must be >= 0, got {off}")
    return off


# no_gc_clear: the garbage collector breaks a cycle through a request's
# user_data by clearing the table's user_data list; the context's own
# attributes stay intact for __dealloc__, which still has to drain what is in
# flight.
@cython.no_gc_clear
cdef class Context(ContextCore):
    """Context(maxevents=128)

    A Linux AIO context: ``io_setup(2)`` for ``maxevents`` requests in flight.
    Each ``prep_*`` method queues one request and returns its id (for
    :meth:`cancel`); nothing reaches the kernel before :meth:`submit` or
    :meth:`getevents`. Requests prepared after :meth:`register_eventfd`
    signal that eventfd when they complete (``IOCB_FLAG_RESFD``).

    :raises fastio.UnsupportedError: Linux AIO is unusable here; the message
        names the cause (``fs.aio-max-nr`` and its values for ``EAGAIN``,
        seccomp, ``CONFIG_AIO``, ``FASTIO_DISABLE=aio``).
    :raises OSError: any other refusal (``EINVAL``: ``maxevents`` too large).

    See ``io_setup(2)``.
    """

    # ---- preparation --------------------------------------------------------

    cdef object prep_buf(self, uint32_t op, object fd, object buf, object offset, object user_data,
                         object rw_flags, object reqprio, bint writable):
        cdef int cfd = as_fd(fd)
        cdef int64_t off = as_offset(offset)
        cdef uint32_t rwf = as_rw_flags(rw_flags)
        cdef int prio = as_prio(reqprio)
        cdef uint32_t idx = self.new_slot(user_data)
        cdef Slot *s = self.table.at(idx)
        cdef fio_iocb *cb
        try:
            self.table.pin(idx, buf, writable)
            self.fill(idx, op, cfd, rwf, prio)
            cb = self.cb(idx)
            cb.aio_buf = <uint64_t><size_t>s.view.buf
            cb.aio_nbytes = <uint64_t>s.view.len
            cb.aio_offset = off
            return self.enqueue(idx)
        except BaseException:
            self.table.release(idx)
            raise
        finally:
            self.preparing -= 1

    def prep_pread(self, fd, buf, offset, *, user_data=None, rw_flags=0, reqprio=0):
        """Queue a read of ``len(buf)`` bytes from ``fd`` at ``offset`` into
        the writable ``buf`` (pinned until reaped); res is the count read.
        ``rw_flags``: ``RWF_NOWAIT``, ``RWF_HIPRI`` ... ``reqprio``: an ioprio
        value (sets ``IOCB_FLAG_IOPRIO``). Returns the request id.
        See ``io_submit(2)`` (``IOCB_CMD_PREAD``)."""
        return self.prep_buf(FIO_IOCB_CMD_PREAD, fd, buf, offset, user_data, rw_flags, reqprio, True)

    def prep_pwrite(self, fd, buf, offset, *, user_data=None, rw_flags=0, reqprio=0):
        """Queue a write of ``buf`` to ``fd`` at ``offset``; res is the count
        written. ``rw_flags``: ``RWF_DSYNC``, ``RWF_SYNC``, ``RWF_APPEND`` ...
        See ``io_submit(2)`` (``IOCB_CMD_PWRITE``)."""
        return self.prep_buf(FIO_IOCB_CMD_PWRITE, fd, buf, offset, user_data, rw_flags, reqprio, False)

    cdef object prep_vec(self, uint32_t op, object fd, object buffers, object offset, object user_data,
                         object rw_flags, object reqprio, bint writable):
        cdef int cfd = as_fd(fd)
        cdef int64_t off = as_offset(offset)
        cdef uint32_t rwf = as_rw_flags(rw_flags)
        cdef int prio = as_prio(reqprio)
        cdef list objs = list(buffers)
        cdef iovec *iov
        cdef uint32_t idx
        cdef fio_iocb *cb
        if len(objs) == 0 or len(objs) > MAX_VIEWS:
            raise ValueError(f"give between 1 and {MAX_VIEWS} buffers")
        idx = self.new_slot(user_data)
        try:
            iov = self.table.pin_vector(idx, objs, writable, 0)
            self.fill(idx, op, cfd, rwf, prio)
            cb = self.cb(idx)
            cb.aio_buf = <uint64_t><size_t>iov
            cb.aio_nbytes = self.table.at(idx).nviews
            cb.aio_offset = off
            return self.enqueue(idx)
        except BaseException:
            self.table.release(idx)
            raise
        finally:
            self.preparing -= 1

    def prep_preadv(self, fd, buffers, offset, *, user_data=None, rw_flags=0, reqprio=0):
        """Queue a vectored read into the writable ``buffers`` (in order) from
        ``offset``. See ``io_submit(2)`` (``IOCB_CMD_PREADV``)."""
        return self.prep_vec(FIO_IOCB_CMD_PREADV, fd, buffers, offset, user_data, rw_flags, reqprio, True)

    def prep_pwritev(self, fd, buffers, offset, *, user_data=None, rw_flags=0, reqprio=0):
        """Queue a vectored write of ``buffers`` at ``offset``.
        See ``io_submit(2)`` (``IOCB_CMD_PWRITEV``)."""
        return self.prep_vec(FIO_IOCB_CMD_PWRITEV, fd, buffers, offset, user_data, rw_flags, reqprio, False)

    cdef object prep_plain(self, uint32_t op, object fd, uint64_t mask, object user_data, object reqprio):
        cdef int cfd = as_fd(fd)
        cdef int prio = as_prio(reqprio)
        cdef uint32_t idx = self.new_slot(user_data)
        try:
            self.fill(idx, op, cfd, 0, prio)
            self.cb(idx).aio_buf = mask
            return self.enqueue(idx)
        except BaseException:
            self.table.release(idx)
            raise
        finally:
            self.preparing -= 1

    def prep_fsync(self, fd, *, user_data=None, reqprio=0):
        """Queue an fsync of ``fd`` (it runs inside ``io_submit``). The kernel
        takes no ``rw_flags`` here. See ``io_submit(2)`` (``IOCB_CMD_FSYNC``)."""
        return self.prep_plain(FIO_IOCB_CMD_FSYNC, fd, 0, user_data, reqprio)

    def prep_fdatasync(self, fd, *, user_data=None, reqprio=0):
        """Queue an fdatasync of ``fd``. See ``io_submit(2)`` (``IOCB_CMD_FDSYNC``)."""
        return self.prep_plain(FIO_IOCB_CMD_FDSYNC, fd, 0, user_data, reqprio)

    def prep_poll(self, fd, events, *, user_data=None, reqprio=0):
        """Queue a one-shot readiness poll of ``fd`` (a socket, pipe, eventfd
        ...) for ``events`` (``select.POLLIN`` ...); res is the ready mask.
        Cancellable. See ``io_submit(2)`` (``IOCB_CMD_POLL``, Linux 4.18)."""
        cdef long long mask = PyNumber_Index(events)
        if not 0 <= mask <= 0xFFFF:
            raise ValueError(f"events must be a 16-bit poll mask, got {mask:#x}")
        return self.prep_plain(FIO_IOCB_CMD_POLL, fd, <uint64_t>mask, user_data, reqprio)

    # ---- the batch path ---------------------------------------------------

    def read_batch(self, fd, buf, offsets, size, results=None, *, depth=0):
        """Read ``len(offsets)`` blocks of ``size`` bytes: block i from file
        offset ``offsets[i]`` into ``buf[i*size:(i+1)*size]``, keeping up to
        ``depth`` reads in flight (0: ``maxevents``), in one call. Returns the
        per-read results (bytes read or ``-errno``): a list, or ``results``
        filled in (a writable buffer of native int32, ``array('i')``; anything
        else is a TypeError). The GIL is released while the kernel works;
        signal handlers run after each block of completions (one raising ends
        the batch: reads still in flight keep their buffers until reaped);
        other completions that arrive meanwhile are kept for the next
        :meth:`getevents`, also when the batch raises. ``offsets`` is a
        sequence of ints or an int64 buffer (``array('q')``). Reads the kernel
        cannot take because the context is full of other requests (and none
        of this batch is in flight) get ``-EAGAIN``: the call never waits on
        requests it did not make. On an O_DIRECT fd the requests (reads here,
        writes in :meth:`write_batch`) go two per ``io_submit``, so that the
        device starts on the first while the rest are issued."""
        return self.batch(FIO_IOCB_CMD_PREAD, fd, buf, offsets, size, results, depth)

    def write_batch(self, fd, buf, offsets, size, results=None, *, depth=0):
        """The write twin of :meth:`read_batch`: block i of ``buf`` goes to
        ``offsets[i]``."""
        return self.batch(FIO_IOCB_CMD_PWRITE, fd, buf, offsets, size, results, depth)

    cdef object batch(self, uint32_t op, object fd, object buf, object offsets, object size, object results,
                      object depth):
        cdef int cfd = as_fd(fd)
        cdef long long bsize = PyNumber_Index(size)
        cdef int cdepth = as_c_int(depth)
        cdef Py_ssize_t n, i, next_i = 0
        cdef int64_t *offs = NULL
        cdef Py_buffer oview
        cdef uint32_t idx, k
        cdef Slot *s
        cdef fio_iocb *cbs
        cdef void *ptrs[SUBMIT_BATCH]
        cdef fio_io_event events[STACK_EVENTS]
        cdef long ret, taken
        cdef uint32_t per_submit = SUBMIT_BATCH
        cdef fio_aio_context_t ctx
        cdef list stray
        self.check()
        if self.batches or self.waiters:
            raise RuntimeError("another read_batch/write_batch or getevents() is running on this "
                               "Context: a batch reaps the context's events itself, so it needs "
                               "the context to itself (use one Context per thread)")
        if bsize <= 0 or bsize > 0x7FFFFFFF:
            raise ValueError("size must be between 1 and 2 GiB - 1")
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
            if not PyObject_CheckBuffer(offsets):
                for i in range(n):
                    offs[i] = PyNumber_Index(seq[i])
            for i in range(n):
                if offs[i] < 0:
                    raise ValueError("offsets must be >= 0")
            if n >= 0x7FFFFFFF:
                raise ValueError("too many offsets for one batch")
            if cdepth <= 0:
                cdepth = self.maxevents
            ret = fcntl(cfd, F_GETFL)     # (-1 for a bad fd: io_submit reports it)
            if ret != -1 and ret & O_DIRECT:
                # The device serves every request: hand them over a few at
                # a time, unplugged, so it starts on the first while the
                # kernel issues the rest (see Ring.read_batch; issue 12 in
                # bench/RESULTS.md). Buffered AIO is synchronous: no device
                # to keep busy, one io_submit per refill.
                per_submit = AIO_PLUG_THRESHOLD
            idx = self.new_slot(None)   # checks the context again, after its allocation
            ctx = self.ctx
            s = self.table.at(idx)
            s.pending = 0
            s.batch = 1
            s.batch_owned = 1
            self.batches += 1
            self.preparing -= 1   # not a prep: the batch owns the slot from here
            s.tag = ST_SUBMITTED
            stray = []
            try:
                self.table.pin(idx, buf, op == FIO_IOCB_CMD_PREAD)
                if s.view.len < n * bsize:
                    raise ValueError(f"buf holds {s.view.len} bytes; {n} blocks of {bsize} need {n * bsize}")
                self.table.pin_results(idx, results, n)
                cbs = <fio_iocb *>calloc(max(n, 1), sizeof(fio_iocb))
                if cbs == NULL:
                    raise MemoryError()
                s.mem = cbs
                for i in range(n):
                    cbs[i].aio_data = UD_BATCH | (<uint64_t>i << 32) | idx
                    cbs[i].aio_lio_opcode = <uint16_t>op
                    cbs[i].aio_fildes = <uint32_t>cfd
                    cbs[i].aio_buf = <uint64_t><size_t>(<char *>s.view.buf + i * bsize)
                    cbs[i].aio_nbytes = <uint64_t>bsize
                    cbs[i].aio_offset = offs[i]
                while True:
                    k = 0
                    while next_i + k < n and <long>(s.pending + k) < cdepth and k < per_submit:
                        ptrs[k] = &cbs[next_i + k]
                        k += 1
                    if k:
                        self.busy += 1
                        with nogil:
                            ret = fio_sys_io_submit(ctx, k, ptrs)
                        self.busy -= 1
                        taken = ret if ret > 0 else 0
                        s.pending += <uint32_t>taken
                        self.submitted += <uint32_t>taken
                        next_i += taken
                        if ret < 0 and ret != -EAGAIN and ret != -EINTR:
                            s.results[next_i] = <int32_t>ret     # refused outright
                            next_i += 1
                        elif ret == -EINTR:
                            PyErr_CheckSignals()
                        elif ret == k and next_i < n and <long>s.pending < cdepth:
                            continue    # the next few before waiting
                        elif ret == -EAGAIN and s.pending == 0:
                            # The context is full of other requests, none of
                            # ours is in flight to make room: waiting could be
                            # forever (polls that never fire). The rest: -EAGAIN.
                            while next_i < n:
                                s.results[next_i] = -EAGAIN
                                next_i += 1
                    if next_i >= n and s.pending == 0:
                        break
                    if s.pending == 0:
                        # none of ours in flight (one was refused outright):
                        # submit the next; waiting here would wait for other
                        # requests, maybe forever (polls that never fire)
                        continue
                    ret = self.getevents_raw(1, STACK_EVENTS, events, -1)
                    if ret == -EINTR:
                        PyErr_CheckSignals()
                        continue
                    if ret < 0:
                        raise_errno(<int>-ret)
                    self.handle_events(events, ret, stray)
                    # The block is stored (results, stray): a handler may
                    # raise now and lose nothing; it runs within one block's
                    # time, not at the end of the batch.
                    PyErr_CheckSignals()
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
                    self.table.release(idx)
        finally:
            free(offs)
