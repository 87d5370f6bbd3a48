# cython: language_level=3
# The in-flight table shared by fastio._c.uring.Ring and fastio._c.aio.Context:
# one slot per request the kernel may still touch. cimport it; the methods are
# cdef (a C call through the vtable, no Python).
from cpython.buffer cimport Py_buffer
from cpython.ref cimport PyObject
from libc.stdint cimport int32_t, uint8_t, uint32_t, uint64_t

cdef extern from "<sys/uio.h>" nogil:
    struct iovec:
        void *iov_base
        size_t iov_len

cdef extern from *:
    """
    #define FIO_NO_SLOT 0xFFFFFFFFu
    """
    const uint32_t NO_SLOT "FIO_NO_SLOT"   # no slot: a request that holds nothing

cdef enum:
    MAX_VIEWS = 1024            # buffers per vectored request (the kernel's UIO_MAXIOV)
    CHUNK_SHIFT = 8             # slots come in chunks of CHUNK, never moved
    CHUNK = 256


# One request. The kernel's id for it is (gen << 32) | index (Ring and Context
# add their own high bits for batch reads). What the owner needs beyond these
# fields lives in the slot's payload (InflightTable.payload(): `payload`
# bytes after the struct, zeroed when the table grows, kept across reuse).
cdef struct Slot:
    uint32_t gen            # bumped on every release: stale ids never match
    uint32_t pending        # completions still expected; 0 = free
    uint32_t next_free      # free-list link
    uint32_t nviews         # pinned buffers: view, then more_views[0..nviews-2]
    uint8_t tag             # the owner's: the opcode (Ring), the submit state (Context)
    uint8_t batch           # a read_batch/write_batch slot
    uint8_t batch_owned     # its batch call is still running
    uint8_t fixed           # Ring: uses a registered buffer
    int32_t group           # Ring: provided-buffer group, -1 for none
    PyObject *keep          # owned reference to objects the kernel reads (path bytes ...)
    Py_buffer view
    Py_buffer *more_views   # malloc'd, for vectored requests
    void *mem               # malloc'd memory the kernel reads (iovecs, timespecs, iocbs)
    int32_t *results        # batch: where each request's result goes
    int results_owned       # results was malloc'd here


cdef int get_buffer(object obj, Py_buffer *view, bint writable) except -1
cdef int get_results_view(object results, Py_buffer *view, Py_ssize_t n) except -1


cdef class InflightTable:
    cdef char **chunks          # chunks of CHUNK slots; never moved, so a Slot * stays valid
    cdef uint32_t nchunks
    cdef uint32_t free_head
    cdef size_t stride          # sizeof(Slot) + payload, 8-aligned
    cdef readonly unsigned int inflight   # slots taken
    cdef list uds               # user_data of slot i at [i] (None when free); traversed by the GC
    cdef bint leaked            # given up on: every slot and buffer is kept for ever

    cdef uint32_t alloc(self) except? 0xFFFFFFFF
    cdef void release(self, uint32_t idx) noexcept
    cdef void release_all(self) noexcept
    cdef object user_data(self, uint32_t idx)
    cdef void set_user_data(self, uint32_t idx, object user_data) noexcept
    cdef int pin(self, uint32_t idx, object obj, bint writable) except -1
    cdef iovec *pin_vector(self, uint32_t idx, object buffers, bint writable, size_t extra) except NULL
    cdef int keep(self, uint32_t idx, object obj) except -1
    cdef int pin_results(self, uint32_t idx, object results, Py_ssize_t n) except -1

    # The lookups every request makes, inline here so that the modules that
    # cimport the table compile them into their own code (no vtable call).
    cdef inline Slot *at(self, uint32_t idx) noexcept:
        """Slot idx, or NULL beyond the table."""
        if (idx >> CHUNK_SHIFT) >= self.nchunks:
            return NULL
        return <Slot *>(self.chunks[idx >> CHUNK_SHIFT] + (idx & (CHUNK - 1)) * self.stride)

    cdef inline void *payload(self, uint32_t idx) noexcept:
        """The owner's bytes after slot idx's struct (idx must be in the table)."""
        return <char *>self.at(idx) + sizeof(Slot)

    cdef inline uint64_t ident(self, uint32_t idx) noexcept:
        """The id the kernel carries for slot idx: (gen << 32) | idx."""
        return (<uint64_t>self.at(idx).gen << 32) | idx

    cdef inline Slot *lookup(self, uint64_t ident) noexcept:
        """The taken slot an id (gen << 32 | idx, top bit ignored) names, or NULL."""
        cdef Slot *s = self.at(<uint32_t>ident)   # (the low 32 bits: a literal 0xFFFFFFFF would be a Python int)
        if s == NULL or not s.pending or s.gen != <uint32_t>((ident >> 32) & 0x7FFFFFFF):
            return NULL
        return s


cdef InflightTable new_table(size_t payload)
