# cython: language_level=3, embedsignature=True
"""io_uring(7) for Python, with no liburing: ``Ring``, one method per
operation (``prep_*``, named after ``io_uring_prep_*(3)``) and the batch
path, over the layers in ``_uring_core`` (setup, lifetime, submit and reap)
and ``_uring_register`` (registration). Kernel facts: ``docs/uring.md``."""

from cpython.buffer cimport Py_buffer, PyBuffer_Release, PyObject_GetBuffer
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
cimport cython
from cpython.exc cimport PyErr_CheckSignals
from cpython.number cimport PyNumber_Index
from libc.errno cimport EAGAIN, EBUSY, EINTR, EINVAL
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcpy, memset, strlen

from fastio._c._common cimport (
    as_c_int, as_fd, as_i64, as_u32, as_u64, len32, raise_errno, timeout_to_ns,
)
from fastio._c._inflight cimport NO_SLOT, Slot, iovec
from fastio._c._uring cimport *
from fastio._c._uring_core cimport IO_PLUG_THRESHOLD, IOSQE_CQE_SKIP_SUCCESS, UD_BATCH
from fastio._c._uring_register cimport RingRegistry
from fastio._c cimport _uring_types

import os as _os

from fastio._abi import uring as _abi
from fastio._c._uring_core import available, why_unavailable  # noqa: F401  (the module's API)
from fastio._c._uring_types import BufRing, Completion  # noqa: F401  (the module's API)

cdef extern from "Python.h":
    bint PyObject_CheckBuffer(object obj)
    object PyLong_FromUnsignedLongLong(unsigned long long v)
    unsigned long long PyLong_AsUnsignedLongLongMask(object v) except? <unsigned long long>-1


cdef inline uint16_t poll_first_bit(object poll_first) except? 0xFFFF:
    """The sqe.ioprio bit a recv/send's ``poll_first=True`` sets."""
    return FIO_IORING_RECVSEND_POLL_FIRST if poll_first else 0


cdef inline uint64_t as_offset(object offset) except? 0xFFFFFFFFFFFFFFFF:
    """A file offset (an int: 1.5 or "8" is a TypeError); -1 means the current
    file position (FEAT_RW_CUR_POS)."""
    cdef long long off = PyNumber_Index(offset)
    if off < -1:
        raise ValueError(f"offset must be >= 0 or -1 (current position), got {off}")
    return <uint64_t>off


@cython.no_gc_clear
cdef class Ring(RingRegistry):
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

    def prep_ftruncate(self, fd, length, *, user_data=None, flags=0):
        """Queue an ftruncate of ``fd`` to ``length`` bytes (Linux 6.9: an
        older kernel completes it with ``-EINVAL``; ``probe()`` tells). The
        kernel always runs it on an io-wq thread. Matches
        ``io_uring_prep_ftruncate(3)``."""
        cdef int cfd = as_fd(fd)
        cdef uint64_t ln = as_u64(length)
        cdef uint32_t idx = self.new_slot(user_data, as_c_int(flags), False)
        cdef fio_io_uring_sqe *sqe
        sqe = self.sqe_for(idx)
        fio_prep_ftruncate(sqe, cfd, ln)
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

    cdef object prep_path2(self, uint8_t op, int fd, object path, uint32_t length, object path2,
                           uint32_t op_flags, object user_data, int flags):
        """A path operation: ``path`` (and ``path2``, or None) kept with the
        request until it is reaped."""
        cdef bytes b1 = _os.fsencode(path)
        cdef bytes b2 = None if path2 is None else _os.fsencode(path2)
        cdef uint32_t idx
        cdef fio_io_uring_sqe *sqe
        if b"\0" in b1 or (b2 is not None and b"\0" in b2):
            raise ValueError("embedded null byte")
        idx = self.new_slot(user_data, flags, True)
        try:
            self.table.keep(idx, (b1, b2))
            sqe = self.next_sqe()
        except BaseException:
            self.abandon(idx)
            raise
        fio_prep_path2(sqe, op, fd, PyBytes_AS_STRING(b1), length,
                       NULL if b2 is None else PyBytes_AS_STRING(b2), op_flags)
        return self.commit(idx, sqe, flags)

    def prep_renameat(self, olddfd, oldpath, newdfd, newpath, rename_flags=0, *, user_data=None, flags=0):
        """Queue a renameat2 of ``oldpath`` (relative to ``olddfd``) to
        ``newpath`` (relative to ``newdfd``; ``AT_FDCWD`` for the cwd).
        Matches ``io_uring_prep_renameat(3)`` (Linux 5.11)."""
        return self.prep_path2(FIO_OP_RENAMEAT, as_c_int(olddfd), oldpath, <uint32_t>as_c_int(newdfd), newpath,
                               as_u32(rename_flags), user_data, as_c_int(flags))

    def prep_unlinkat(self, dfd, path, unlink_flags=0, *, user_data=None, flags=0):
        """Queue an unlinkat of ``path`` (``AT_REMOVEDIR`` in ``unlink_flags``:
        rmdir). Matches ``io_uring_prep_unlinkat(3)`` (Linux 5.11)."""
        return self.prep_path2(FIO_OP_UNLINKAT, as_c_int(dfd), path, 0, None, as_u32(unlink_flags), user_data,
                               as_c_int(flags))

    def prep_mkdirat(self, dfd, path, mode=0o777, *, user_data=None, flags=0):
        """Queue a mkdirat of ``path``. Matches ``io_uring_prep_mkdirat(3)``
        (Linux 5.15)."""
        return self.prep_path2(FIO_OP_MKDIRAT, as_c_int(dfd), path, as_u32(mode), None, 0, user_data,
                               as_c_int(flags))

    def prep_symlinkat(self, target, newdfd, linkpath, *, user_data=None, flags=0):
        """Queue a symlinkat: ``linkpath`` (relative to ``newdfd``) becomes a
        link to ``target``. Matches ``io_uring_prep_symlinkat(3)`` (Linux 5.15)."""
        return self.prep_path2(FIO_OP_SYMLINKAT, as_c_int(newdfd), target, 0, linkpath, 0, user_data,
                               as_c_int(flags))

    def prep_linkat(self, olddfd, oldpath, newdfd, newpath, link_flags=0, *, user_data=None, flags=0):
        """Queue a linkat (a hard link ``newpath`` to ``oldpath``;
        ``AT_SYMLINK_FOLLOW`` in ``link_flags``). Matches
        ``io_uring_prep_linkat(3)`` (Linux 5.15)."""
        return self.prep_path2(FIO_OP_LINKAT, as_c_int(olddfd), oldpath, <uint32_t>as_c_int(newdfd), newpath,
                               as_u32(link_flags), user_data, as_c_int(flags))

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
        cdef _uring_types.BufRing br
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
        ``offsets`` is a sequence of ints or an int64 buffer (``array('q')``).
        Reads that wait on a device go to the kernel two per submit, so that
        the device starts on the first while the rest are issued; reads the
        kernel finishes inside the submit (the page cache) go a refill at a
        time."""
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
        cdef uint32_t pending, own, sent, seen
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
                    own = 0
                    while next_i < n and <int>s.pending < cdepth:
                        sqe = fio_ring_get_sqe(&self.ring)
                        if sqe == NULL:
                            break
                        fio_prep_rw_op(sqe, op, cfd, <uint64_t><size_t>(<char *>s.view.buf + next_i * bsize),
                                       <uint32_t>bsize, <uint64_t>offs[next_i], 0)
                        sqe.user_data = UD_BATCH | (<uint64_t>next_i << 32) | idx
                        s.pending += 1
                        next_i += 1
                        own += 1
                    if next_i >= n and s.pending == 0:
                        break
                    pending = fio_ring_flush_sq(&self.ring)
                    if self.ring.flags & FIO_IORING_SETUP_SQPOLL:
                        pending = 0
                    # Requests a device serves: hand them over a few at a
                    # time, unplugged, so the device starts on the first while
                    # the kernel issues the rest (a plugged submit of the
                    # whole refill reaches the device only at its end, and
                    # after a burst of completions the device idles for all
                    # of it: bench/RESULTS.md, issue 12). Only our own SQEs
                    # (no links among them) are split. When all those sent
                    # so far are already done (the page cache: the kernel
                    # finished them inside the submit), there is no device to
                    # keep busy and the rest goes at once. The split stops
                    # too when the SQ holds anything but our own SQEs (another
                    # thread queued or submitted while the GIL was released).
                    sent = 0
                    seen = fio_ring_cq_ready(&self.ring)
                    while (pending == own and pending > IO_PLUG_THRESHOLD
                           and fio_ring_sq_ready(&self.ring) == own):
                        ret = self.enter(IO_PLUG_THRESHOLD, 0, 0, -1)
                        if ret <= 0:
                            break       # the wait below submits the rest and reports its error
                        pending -= <uint32_t>ret
                        own -= <uint32_t>ret
                        sent += <uint32_t>ret
                        if fio_ring_cq_ready(&self.ring) - seen >= sent:
                            break
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
