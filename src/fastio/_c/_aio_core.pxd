# cython: language_level=3
from libc.stdint cimport uint32_t, uint64_t

from fastio._c._aio cimport fio_aio_context_t, fio_io_event, fio_iocb
from fastio._c._inflight cimport InflightTable

cdef enum:
    STACK_EVENTS = 128      # io_events read per io_getevents on the stack
    SUBMIT_BATCH = 256      # iocb pointers per io_submit
    AIO_PLUG_THRESHOLD = 2  # io_submit plugs the block layer for more iocbs than this
    ST_QUEUED = 1           # Slot.tag: the submit state of a request
    ST_SUBMITTING = 2
    ST_SUBMITTED = 3

cdef extern from *:
    """
    #define FIO_AIO_UD_BATCH (1ULL << 63)
    """
    # aio_data of a batch request: UD_BATCH | (i << 32) | slot
    const uint64_t UD_BATCH "FIO_AIO_UD_BATCH"


cdef class Completion:
    cdef readonly object user_data
    cdef readonly long long res
    cdef readonly long long res2
    cdef readonly object detail


cdef class ContextCore:
    cdef fio_aio_context_t ctx
    # Every request the kernel may still touch. Each slot's payload is its
    # struct iocb (submitted from there: io_cancel finds a request by that
    # address); Slot.tag is its submit state (QUEUED, SUBMITTING, SUBMITTED).
    # The kernel's aio_data is table.ident(idx), or for a batch request
    # (1 << 63) | (i << 32) | idx.
    cdef InflightTable table
    cdef unsigned long fork_gen
    cdef int busy
    cdef int preparing
    cdef int batches
    cdef int waiters
    cdef bint closing
    cdef uint32_t *queue
    cdef uint32_t qlen
    cdef uint32_t qcap
    cdef uint32_t submitted
    cdef list backlog
    cdef int resfd
    cdef readonly unsigned int maxevents

    cdef int check(self) except -1
    cdef fio_iocb *cb(self, uint32_t idx) noexcept
    cdef uint32_t new_slot(self, object user_data) except? 0xFFFFFFFF
    cdef void fill(self, uint32_t idx, uint32_t op, int fd, uint32_t rw_flags, int prio) noexcept
    cdef int reserve(self, uint32_t n) except -1
    cdef object enqueue(self, uint32_t idx)
    cdef int reject(self, uint32_t idx, long err) except -1
    cdef long submit_queue(self) except -1
    cdef long getevents_raw(self, long min_nr, long nr, fio_io_event *events, long long timeout_ns) noexcept
    cdef int handle_events(self, fio_io_event *events, long n, list out) except -1
    cdef object take_event(self, fio_io_event *ev)
    cdef int drain(self) noexcept
    cdef int shutdown(self) noexcept
    cdef list getevents_loop(self, list out, int need, int maxn, long long timeout_ns, long long deadline)
