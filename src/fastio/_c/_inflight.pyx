# cython: language_level=3, embedsignature=True
"""The in-flight table of the compiled backend, shared by ``uring.Ring`` and
``aio.Context``: the slots of the requests the kernel may still touch.

A slot owns, until its owner releases it after the kernel's last completion
for it: the ``Py_buffer`` views of every buffer the kernel may read or write
(so dropping the last Python reference to such a buffer changes nothing, and
a ``bytearray`` in flight cannot be resized), the memory the kernel reads by
pointer (iovecs, timespecs, iocbs), a reference to objects it reads (a path's
bytes) and the caller's ``user_data`` (in a list the garbage collector
traverses). Slots never move (chunks are not reallocated), so a ``Slot *``
stays valid while the table lives. The generation in each id makes an id
already reaped match nothing.

Releasing a slot runs Python code (a buffer's exporter, a finalizer of the
last reference); the table is consistent before that, so such code may use
the table's owner again.
"""

cimport cython
from cpython.buffer cimport PyBUF_SIMPLE, PyBUF_WRITABLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.ref cimport Py_INCREF, Py_XDECREF
from libc.stdlib cimport calloc, free, realloc
from libc.string cimport memset

cdef extern from "Python.h":
    Py_ssize_t PyList_GET_SIZE(object l)
    PyObject *PyList_GET_ITEM(object l, Py_ssize_t i)

cdef int get_buffer(object obj, Py_buffer *view, bint writable) except -1:
    """Pin obj's buffer (C-contiguous). A read-only buffer where the kernel
    must write is a TypeError, as CPython's "w*" argument converter says."""
    if writable:
        try:
            PyObject_GetBuffer(obj, view, PyBUF_WRITABLE)
        except BufferError:
            raise TypeError(f"a writable bytes-like object is required, not '{type(obj).__name__}'") from None
    else:
        PyObject_GetBuffer(obj, view, PyBUF_SIMPLE)
    return 0


cdef int get_results_view(object results, Py_buffer *view, Py_ssize_t n) except -1:
    """Pin a batch's results buffer: writable, C-contiguous, native signed
    32-bit items ('i', or 'l' where that is 4 bytes; '@' or '=' byte order),
    at least n of them. Anything else is a TypeError, read-only included."""
    cdef bytes fmt
    try:
        PyObject_GetBuffer(results, view, 0x003D)  # C_CONTIGUOUS | FORMAT | WRITABLE
    except BufferError:
        raise TypeError("results must be a writable int32 buffer (array('i')) of len(offsets)") from None
    fmt = b"B" if view.format == NULL else <bytes>view.format
    if fmt[:1] in (b"@", b"="):
        fmt = fmt[1:]
    if view.itemsize != 4 or fmt not in (b"i", b"l") or view.len < n * 4:
        PyBuffer_Release(view)
        raise TypeError("results must be a writable int32 buffer (array('i')) of len(offsets)")
    return 0


cdef InflightTable new_table(size_t payload):
    """A table whose slots carry `payload` bytes of the owner's after each."""
    cdef InflightTable t = InflightTable.__new__(InflightTable)
    t.stride = (sizeof(Slot) + payload + 7) & ~(<size_t>7)
    return t


@cython.no_gc_clear
@cython.final
cdef class InflightTable:
    """The slots of one Ring or Context (made by new_table(), for Cython)."""

    def __cinit__(self):
        self.stride = sizeof(Slot)
        self.free_head = NO_SLOT
        self.uds = []

    def __dealloc__(self):
        cdef uint32_t i
        if self.leaked:
            return   # the kernel may still write into what the slots hold
        self.release_all()
        for i in range(self.nchunks):
            free(self.chunks[i])
        free(self.chunks)

    cdef uint32_t alloc(self) except? 0xFFFFFFFF:
        """A free slot (pending = 1, everything else cleared, gen kept),
        growing the table by a chunk when needed. Growing allocates Python
        objects, so the garbage collector may run finalizers in here: the
        caller checks its own state again afterwards."""
        cdef char **chunks
        cdef char *chunk
        cdef Slot *s
        cdef uint32_t i, base, idx
        while self.free_head == NO_SLOT:
            if self.nchunks >= (1U << (32 - CHUNK_SHIFT)) - 1:
                raise MemoryError("too many requests in flight")
            base = self.nchunks << CHUNK_SHIFT
            if <uint32_t>PyList_GET_SIZE(self.uds) < base + CHUNK:
                self.uds.extend([None] * (base + CHUNK - len(self.uds)))
                continue   # finalizers run in there may have freed or taken slots: look again
            chunk = <char *>calloc(CHUNK, self.stride)
            chunks = <char **>realloc(self.chunks, (self.nchunks + 1) * sizeof(char *)) if chunk != NULL else NULL
            if chunks == NULL:
                free(chunk)
                raise MemoryError()
            self.chunks = chunks
            self.chunks[self.nchunks] = chunk
            self.nchunks += 1
            for i in range(<uint32_t>CHUNK):
                s = <Slot *>(chunk + i * self.stride)
                s.gen = 1
                s.group = -1
                s.next_free = base + i + 1 if i + 1 < CHUNK else NO_SLOT
            self.free_head = base
        idx = self.free_head
        s = self.at(idx)
        self.free_head = s.next_free
        s.pending = 1
        s.nviews = 0
        s.tag = 0
        s.batch = 0
        s.batch_owned = 0
        s.fixed = 0
        s.group = -1
        self.inflight += 1
        return idx

    cdef void release(self, uint32_t idx) noexcept:
        """Free slot idx and give back everything it holds. The slot is free
        and the table consistent before anything that can run Python code
        (an exporter's release, the finalizer of a last reference)."""
        cdef Slot *s = self.at(idx)
        cdef uint32_t i
        cdef uint32_t nviews = s.nviews
        cdef Py_buffer view = s.view
        cdef Py_buffer *more_views = s.more_views
        cdef void *mem = s.mem
        cdef int32_t *results = s.results if s.results_owned else NULL
        cdef PyObject *keep = s.keep
        cdef object user_data = None
        s.more_views = NULL
        s.mem = NULL
        s.results = NULL
        s.results_owned = 0
        s.nviews = 0
        s.fixed = 0
        s.group = -1
        s.keep = NULL
        if idx < <uint32_t>PyList_GET_SIZE(self.uds):
            user_data = self.uds[idx]
            self.uds[idx] = None
        s.pending = 0
        s.gen = s.gen + 1 if s.gen < 0x7FFFFFFF else 1
        s.next_free = self.free_head
        self.free_head = idx
        self.inflight -= 1
        if nviews:
            PyBuffer_Release(&view)
            for i in range(nviews - 1):
                PyBuffer_Release(&more_views[i])
        free(more_views)
        free(mem)
        free(results)
        Py_XDECREF(keep)
        user_data = None   # the last reference may run a finalizer: the table is consistent

    cdef void release_all(self) noexcept:
        """Release every slot still taken (the owner knows the kernel is done
        with them, or never saw them)."""
        cdef uint32_t i
        for i in range(self.nchunks << CHUNK_SHIFT):
            if self.at(i).pending:
                self.release(i)

    cdef object user_data(self, uint32_t idx):
        if idx < <uint32_t>PyList_GET_SIZE(self.uds):
            return <object>PyList_GET_ITEM(self.uds, idx)
        return None

    cdef void set_user_data(self, uint32_t idx, object user_data) noexcept:
        if idx < <uint32_t>PyList_GET_SIZE(self.uds):
            self.uds[idx] = user_data   # (replaces None: no finalizer runs)

    cdef int pin(self, uint32_t idx, object obj, bint writable) except -1:
        """Pin obj's buffer into the slot's first view."""
        cdef Slot *s = self.at(idx)
        get_buffer(obj, &s.view, writable)
        s.nviews = 1
        return 0

    cdef iovec *pin_vector(self, uint32_t idx, object buffers, bint writable, size_t extra) except NULL:
        """Pin every buffer of the sequence and build the iovec array in the
        slot's memory, after `extra` leading bytes the caller uses."""
        cdef Slot *s = self.at(idx)
        cdef list objs = list(buffers)
        cdef uint32_t n = len(objs), i
        cdef iovec *iov
        if n == 0 or n > MAX_VIEWS:
            raise ValueError(f"give between 1 and {MAX_VIEWS} buffers")
        s.mem = calloc(1, extra + n * sizeof(iovec))
        if s.mem == NULL:
            raise MemoryError()
        if n > 1:
            s.more_views = <Py_buffer *>calloc(n - 1, sizeof(Py_buffer))
            if s.more_views == NULL:
                raise MemoryError()
        iov = <iovec *>(<char *>s.mem + extra)
        for i in range(n):
            if i == 0:
                get_buffer(objs[0], &s.view, writable)
                iov[0].iov_base = s.view.buf
                iov[0].iov_len = s.view.len
            else:
                get_buffer(objs[i], &s.more_views[i - 1], writable)
                iov[i].iov_base = s.more_views[i - 1].buf
                iov[i].iov_len = s.more_views[i - 1].len
            s.nviews = i + 1
        return iov

    cdef int keep(self, uint32_t idx, object obj) except -1:
        """Hold a reference to obj (memory the kernel reads) with the slot."""
        cdef Slot *s = self.at(idx)
        Py_INCREF(obj)
        Py_XDECREF(s.keep)
        s.keep = <PyObject *>obj
        return 0

    cdef int pin_results(self, uint32_t idx, object results, Py_ssize_t n) except -1:
        """A batch's per-request results, after pin() took its data buffer:
        the caller's int32 buffer, pinned in the slot (more_views[0], so
        requests still in flight after an interrupt stay safe), or, when
        results is None, memory of ours."""
        cdef Slot *s = self.at(idx)
        if results is not None:
            s.more_views = <Py_buffer *>calloc(1, sizeof(Py_buffer))
            if s.more_views == NULL:
                raise MemoryError()
            get_results_view(results, &s.more_views[0], n)
            s.nviews = 2
            s.results = <int32_t *>s.more_views[0].buf
        else:
            s.results = <int32_t *>calloc(max(n, 1), 4)
            if s.results == NULL:
                raise MemoryError()
            s.results_owned = 1
        return 0
