"""io_uring(7) through ctypes and mmap: the pure twin of ``fastio._c.uring``.

The same kernel interface (``io_uring_setup``/``enter``/``register`` through
``syscall(2)``, the rings mapped with the stdlib ``mmap``), the same rules;
the kernel facts are those in ``docs/uring.md``. Split by
concern, as the compiled backend is:

* ``_uring_types``: ``Completion``, ``BufRing``, argument coercion;
* ``_uring_core``: ``RingCore``, setup and probing, the SQ and CQ, lifetime,
  submit and reap (its docstring says how the rings are ordered without
  atomics);
* ``_uring_register``: ``RingRegistry(RingCore)``, the register_* methods;
* here: ``Ring(RingRegistry)``, the prep_* table and the batch path.

Requests live in ``fastio._pure._inflight``'s table, which pins buffers
exactly as in C: ``PyObject_GetBuffer`` through ``ctypes.pythonapi``,
released with ``PyBuffer_Release`` when reaped.
"""

from __future__ import annotations

import ctypes
import errno
import operator
import os

from fastio._abi import uring as abi
from fastio._util import EINTR, as_c_int, as_fd, raise_errno, timeout_to_ns
from fastio._pure._uring_core import _NO_GROUP, _OP, available, why_unavailable
from fastio._pure._uring_register import RingRegistry
from fastio._pure._uring_types import (
    BufRing,
    Completion,
    _as_offset,
    _check_sqe_flags,
    _i64,
    _len32,
    _poll_first,
    _u32,
    _u64,
)


class Ring(RingRegistry):
    """Ring(entries=256, *, flags=0, cq_entries=None, sq_thread_idle=None, sq_thread_cpu=None)

    An io_uring instance; see ``fastio._c.uring.Ring``.
    """

    # ---- prep ----------------------------------------------------------------

    def _queue(self, user_data, flags, pins, build):
        """The shape of every prep: slot, then the Python-side work
        (``build(slot) -> fill``), then the SQE, filled whole and only then
        queued (``_free_sqe`` says why). Whatever raises before that, a
        signal handler's exception included, the slot is given back."""
        flags = _check_sqe_flags(flags)
        with self._lock():
            self._check()
            tail = self._sqe_tail
            allocs = self._table.allocs
            idx = None
            try:
                idx = self._new_slot(user_data, flags, pins)
                fill = build(self._table.slots[idx] if idx is not None else None)
                sqe = self._next_sqe()
                fill(sqe)
                sqe.flags |= flags
                if idx is None:
                    ud = sqe.user_data = abi.UD_SKIP
                else:
                    slot = self._table.slots[idx]
                    slot.tag = sqe.opcode
                    ud = sqe.user_data = (slot.gen << 32) | idx   # the table's ident(), inlined: once per request
                self._sqe_tail = (tail + 1) & 0xFFFFFFFF          # queued: the kernel may take it from here
            except BaseException:
                if idx is None and self._table.allocs != allocs:
                    idx = self._table.last   # (cut as the slot was taken: CPython 3.10 checks on return)
                if idx is not None and self._sqe_tail == tail:
                    # Never queued: the slot is done, in a run with no call
                    # or branch (a call could be cut and leave it taken).
                    slot = self._table.slots[idx]
                    fixed, groups = int(slot.fixed), self._buf_rings
                    group = groups[slot.group] if slot.group in groups else _NO_GROUP
                    done = ((idx, slot.gen),)
                    slot.pending = 0
                    self._fixed_inflight -= fixed
                    group._inflight -= 1
                    self._table.due += done
                    self._table.settle()
                raise
        return None if idx is None else ud

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

    def prep_ftruncate(self, fd, length, *, user_data=None, flags=0):
        """Queue an ftruncate (the length in off); see ``fastio._c.uring.Ring.prep_ftruncate``."""
        return self._simple(_OP["IORING_OP_FTRUNCATE"], as_fd(fd), 0, 0, _u64(length), 0, user_data, flags)

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

    def _prep_path2(self, op, fd, path, length, path2, op_flags, user_data, flags):
        """A path operation: the paths kept with the request until it is reaped."""
        b1 = os.fsencode(path)
        b2 = None if path2 is None else os.fsencode(path2)
        if b"\0" in b1 or (b2 is not None and b"\0" in b2):
            raise ValueError("embedded null byte")

        def build(slot):
            c1 = ctypes.create_string_buffer(b1)
            c2 = None if b2 is None else ctypes.create_string_buffer(b2)
            slot.keep.append((c1, c2))

            def fill(sqe):
                self._prep_rw(sqe, op, fd, ctypes.addressof(c1), length, 0 if c2 is None else ctypes.addressof(c2))
                sqe.op_flags = op_flags
            return fill
        return self._queue(user_data, flags, True, build)

    def prep_renameat(self, olddfd, oldpath, newdfd, newpath, rename_flags=0, *, user_data=None, flags=0):
        """Queue a renameat2; see ``fastio._c.uring.Ring.prep_renameat``."""
        return self._prep_path2(_OP["IORING_OP_RENAMEAT"], as_c_int(olddfd), oldpath,
                                as_c_int(newdfd) & 0xFFFFFFFF, newpath, _u32(rename_flags), user_data, flags)

    def prep_unlinkat(self, dfd, path, unlink_flags=0, *, user_data=None, flags=0):
        """Queue an unlinkat; see ``fastio._c.uring.Ring.prep_unlinkat``."""
        return self._prep_path2(_OP["IORING_OP_UNLINKAT"], as_c_int(dfd), path, 0, None, _u32(unlink_flags),
                                user_data, flags)

    def prep_mkdirat(self, dfd, path, mode=0o777, *, user_data=None, flags=0):
        """Queue a mkdirat; see ``fastio._c.uring.Ring.prep_mkdirat``."""
        return self._prep_path2(_OP["IORING_OP_MKDIRAT"], as_c_int(dfd), path, _u32(mode), None, 0,
                                user_data, flags)

    def prep_symlinkat(self, target, newdfd, linkpath, *, user_data=None, flags=0):
        """Queue a symlinkat; see ``fastio._c.uring.Ring.prep_symlinkat``."""
        return self._prep_path2(_OP["IORING_OP_SYMLINKAT"], as_c_int(newdfd), target, 0, linkpath, 0,
                                user_data, flags)

    def prep_linkat(self, olddfd, oldpath, newdfd, newpath, link_flags=0, *, user_data=None, flags=0):
        """Queue a linkat; see ``fastio._c.uring.Ring.prep_linkat``."""
        return self._prep_path2(_OP["IORING_OP_LINKAT"], as_c_int(olddfd), oldpath,
                                as_c_int(newdfd) & 0xFFFFFFFF, newpath, _u32(link_flags), user_data, flags)

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
        idx = None
        counted = False
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
                self._batches += 1   # close() refuses until the batch is over
                counted = True
            view = slot.pin(buf, op == _OP["IORING_OP_READ"])
            if view.len < n * bsize:
                raise ValueError(f"buf holds {view.len} bytes; {n} blocks of {bsize} need {n * bsize}")
            slot.pin_results(results, n)   # pinned until every request is reaped
            base = view.buf or 0
            next_i = 0
            sqpoll = self._setup_flags & abi.SETUP_SQPOLL
            while True:
                with self._lock():
                    own = 0
                    while True:   # (not `while cond:`: CPython 3.13, gh-130279)
                        if not (next_i < n and slot.pending < cdepth):
                            break
                        sqe = self._free_sqe()
                        if sqe is None:
                            break
                        self._prep_rw(sqe, op, cfd, base + next_i * bsize, bsize, offs[next_i])
                        sqe.user_data = abi.UD_BATCH | (next_i << 32) | idx
                        # Counted, then queued: a raise between the two leaves
                        # the slot held for ever (a leak), never released under
                        # a read the kernel has.
                        slot.pending += 1
                        self._sqe_tail = (self._sqe_tail + 1) & 0xFFFFFFFF
                        next_i += 1
                        own += 1
                    if next_i >= n and slot.pending == 0:
                        break
                    pending = 0 if sqpoll else self._tail_publish()
                    if sqpoll:
                        self._tail_publish()
                # A device's reads a few at a time, unplugged (see the C twin).
                sent = 0
                seen = self._cq_count()
                while True:   # (not `while cond:`: CPython 3.13, gh-130279)
                    if not (pending == own and pending > abi.IO_PLUG_THRESHOLD and self._sq_ready() == own):
                        break
                    ret = self._enter_raw(abi.IO_PLUG_THRESHOLD, 0, 0, -1)
                    if ret <= 0:
                        break
                    pending -= ret
                    own -= ret
                    sent += ret
                    if (self._cq_count() - seen) & 0xFFFFFFFF >= sent:
                        break
                if slot.pending:
                    ret = self._enter_raw(pending, 1, abi.ENTER_GETEVENTS, -1)
                else:
                    # the SQ was full of other requests, none of ours in
                    # flight: submit them, never wait for them (see the C twin)
                    ret = self._enter_raw(pending, 0, abi.ENTER_SQ_WAIT if sqpoll else 0, -1)
                if ret < 0 and -ret not in (EINTR, errno.EBUSY, errno.EAGAIN):
                    raise_errno(-ret)
                with self._lock():
                    self._reap(stray)
            if results is not None:
                return results
            return list(slot.results)
        finally:
            # Other requests' completions met on the way go to the backlog,
            # whether the batch ends or raises, and the batch lets go of its
            # slot: one call-free run, unlocked (no thread switch or signal
            # handler comes inside one), then the slot released if done.
            if idx is not None:
                slot = self._table.slots[idx]
                done, batches = ((idx, slot.gen),), int(counted)
                self._backlog += stray
                self._batches -= batches
                slot.batch_owned = False
                self._table.due += done   # (settle() leaves it while reads are in flight)
                with self._lock():
                    self._table.settle()
