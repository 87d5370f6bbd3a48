# cython: language_level=3, embedsignature=True
"""Registration on an io_uring instance (``io_uring_register(2)``): fixed
files and buffers, the eventfd, provided-buffer rings, and the opcode probe.
A layer of the public ``fastio._c.uring.Ring``."""

cimport cython
from cpython.buffer cimport Py_buffer, PyBuffer_Release
from cpython.exc cimport PyErr_CheckSignals
from cpython.ref cimport Py_DECREF, Py_INCREF
from libc.errno cimport EBUSY, EINTR, ENOENT, errno
from libc.stdint cimport int32_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memset
from posix.mman cimport MAP_ANONYMOUS, MAP_FAILED, MAP_PRIVATE, PROT_READ, PROT_WRITE, mmap

from fastio._c._common cimport as_c_int, as_fd, as_u32, raise_errno
from fastio._c._inflight cimport get_buffer, iovec
from fastio._c._uring cimport *
from fastio._c._uring_core cimport RingCore
from fastio._c._uring_types cimport BufRing

from fastio._abi import uring as _abi


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
cdef class RingRegistry(RingCore):
    """RingCore plus registration; see ``fastio._c.uring.Ring``."""

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
