"""Registration for the pure ``uring.Ring`` (the pure twin of
``fastio._c._uring_register``): fixed files, fixed buffers, the eventfd and
provided-buffer rings, on top of ``RingCore``."""

from __future__ import annotations

import ctypes
import errno

from fastio._abi import uring as abi
from fastio._util import EINTR, as_c_int, as_fd, raise_errno
from fastio._pure._inflight import pin as _pin
from fastio._pure._inflight import unpin as _unpin
from fastio._pure._uring_core import RingCore, _register
from fastio._pure._uring_types import BufRing, _u32


class RingRegistry(RingCore):
    """The register_*/unregister_* methods of a ``Ring`` (which see)."""

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
        br._due += range(n - 1, -1, -1)
        br._recycle_due()
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
