# cython: language_level=3
from cpython.buffer cimport Py_buffer
from cpython.ref cimport PyObject
from libc.stdint cimport int32_t, uint8_t, uint32_t, uint64_t

from fastio._c._aio cimport fio_aio_context_t, fio_io_event, fio_iocb, iovec


# One request of the in-flight table; its user_data object is
# Context.uds[index], where the garbage collector sees it. The kernel's aio_data for it is
# (gen << 32) | index, or for a batch read (1 << 63) | (i << 32) | index.
cdef struct Slot:
    fio_iocb cb             # submitted from here: io_cancel finds the request by this address
    uint32_t gen            # bumped on every release: stale ids never match
    uint32_t pending        # events still expected; 0 = free
    uint32_t next_free      # free-list link
    uint32_t nviews         # pinned buffers: view, then more_views[0..nviews-2]
    uint8_t state           # QUEUED, SUBMITTING (inside io_submit), SUBMITTED
    uint8_t batch           # a read_batch/write_batch slot
    uint8_t batch_owned     # its batch call is still running
    Py_buffer view
    Py_buffer *more_views   # malloc'd, for vectored requests
    void *mem               # malloc'd: the iovec array, or a batch's iocbs
    int32_t *results        # batch: where each request's res goes
    int results_owned       # results was malloc'd by us


cdef class Completion:
    cdef readonly object user_data
    cdef readonly long long res
    cdef readonly long long res2
    cdef readonly object detail


cdef class Context:
    cdef fio_aio_context_t ctx
    cdef unsigned long fork_gen
    cdef int busy
    cdef int preparing
    cdef int batches
    cdef int waiters
    cdef bint closing
    cdef Slot **chunks
    cdef uint32_t nchunks
    cdef uint32_t free_head
    cdef uint32_t *queue
    cdef uint32_t qlen
    cdef uint32_t qcap
    cdef readonly unsigned int inflight
    cdef uint32_t submitted
    cdef list backlog
    cdef list uds           # user_data of slot i at [i] (None when free); traversed by the GC
    cdef int resfd
    cdef readonly unsigned int maxevents

    cdef int check(self) except -1
    cdef Slot *slot_at(self, uint32_t idx) noexcept
    cdef uint32_t slot_alloc(self) except? 0xFFFFFFFF
    cdef void slot_release(self, uint32_t idx) noexcept
    cdef object ud_get(self, uint32_t idx)
    cdef uint32_t new_slot(self, object user_data) except? 0xFFFFFFFF
    cdef void fill(self, uint32_t idx, uint32_t op, int fd, uint32_t rw_flags, int prio) noexcept
    cdef int reserve(self, uint32_t n) except -1
    cdef object enqueue(self, uint32_t idx)
    cdef int reject(self, uint32_t idx, long err) except -1
    cdef long submit_queue(self) except -1
    cdef long getevents_raw(self, long min_nr, long nr, fio_io_event *events, long long timeout_ns) noexcept
    cdef int handle_event(self, fio_io_event *ev, list out) except -1
    cdef int drain(self) noexcept
    cdef int shutdown(self) noexcept
    cdef void free_table(self) noexcept
    cdef object prep_buf(self, uint32_t op, object fd, object buf, object offset, object user_data,
                         object rw_flags, object reqprio, bint writable)
    cdef object prep_vec(self, uint32_t op, object fd, object buffers, object offset, object user_data,
                         object rw_flags, object reqprio, bint writable)
    cdef object prep_plain(self, uint32_t op, object fd, uint64_t mask, object user_data, object reqprio)
    cdef object batch(self, uint32_t op, object fd, object buf, object offsets, object size, object results,
                      object depth)
    cdef list getevents_loop(self, list out, int need, int maxn, long long timeout_ns, long long deadline)
