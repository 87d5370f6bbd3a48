# cython: language_level=3
# RingCore: the C API of an io_uring instance for other Cython modules (see the
# module docstring of _uring_core.pyx for how to drive it).
from cpython.buffer cimport Py_buffer
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t

from fastio._c._inflight cimport InflightTable
from fastio._c._uring cimport fio_io_uring_cqe, fio_io_uring_sqe, fio_ring

cdef enum:
    STACK_CQES = 256            # CQEs copied out per block
    SQE_FLAGS_MASK = 0x7f       # the IOSQE_* bits a caller may set
    IOSQE_FIXED_FILE = 1
    IOSQE_BUFFER_SELECT = 1 << 5
    IOSQE_CQE_SKIP_SUCCESS = 1 << 6
    IO_PLUG_THRESHOLD = 2       # io_uring plugs the block layer for submits of more SQEs than this

cdef extern from *:
    """
    #define FIO_UD_BATCH (1ULL << 63)                 /* a batch read: (1 << 63) | (i << 32) | slot */
    #define FIO_UD_INTERNAL 0xFFFFFFFFFFFFFFFFULL     /* close()'s own cancel: no slot */
    #define FIO_UD_SKIP 0xFFFFFFFFFFFFFFFEULL         /* CQE_SKIP_SUCCESS request: no slot */
    """
    const uint64_t UD_BATCH "FIO_UD_BATCH"
    const uint64_t UD_INTERNAL "FIO_UD_INTERNAL"
    const uint64_t UD_SKIP "FIO_UD_SKIP"


cdef class RingCore:
    cdef fio_ring ring
    cdef InflightTable table    # every request the kernel may still touch
    cdef unsigned long fork_gen
    cdef int busy
    cdef int preparing
    cdef int batches
    cdef bint closing
    cdef bint initialised   # __init__ ran once: a second call (even after close) is refused
    cdef bint reg_changing  # a (un)register_buffers syscall runs with the GIL released
    cdef unsigned long issuer   # the creating thread (SETUP_SINGLE_ISSUER rings)
    cdef fio_io_uring_cqe *spill    # CQEs taken off the CQ whose handling raised: reaped first next time
    cdef uint32_t nspill
    cdef uint32_t fixed_inflight
    cdef Py_buffer *reg_views
    cdef uint32_t nreg_views
    cdef dict buf_rings
    cdef list backlog
    cdef readonly unsigned int sq_entries
    cdef readonly unsigned int cq_entries
    cdef readonly unsigned int features
    cdef readonly unsigned int setup_flags

    cdef int check(self) except -1
    cdef void slot_release(self, uint32_t idx) noexcept
    cdef fio_io_uring_sqe *next_sqe(self) except NULL
    cdef fio_io_uring_sqe *sqe_for(self, uint32_t idx) except NULL
    cdef int enter(self, unsigned to_submit, unsigned min_complete, unsigned flags, long long timeout_ns) except? -1
    cdef int enter_raw(self, unsigned to_submit, unsigned min_complete, unsigned flags, long long timeout_ns) except? -1
    cdef int submit_pending(self) except -1
    cdef int submit_to(self, uint32_t upto) except -1
    cdef int reap(self, list out) except -1
    cdef int handle_cqe(self, fio_io_uring_cqe *cqe, list out) except -1
    cdef int drain(self) noexcept
    cdef void shutdown(self) noexcept
    cdef void forget_ud(self, uint64_t ud) noexcept
    cdef uint32_t new_slot(self, object user_data, int flags, bint pins) except? 0xFFFFFFFF
    cdef uint64_t finish(self, uint32_t idx, fio_io_uring_sqe *sqe, int flags) noexcept
    cdef object commit(self, uint32_t idx, fio_io_uring_sqe *sqe, int flags)
    cdef void abandon(self, uint32_t idx) noexcept
    cdef list take_backlog(self)
    cdef void give_back(self, list out) noexcept
    cdef int wait_into(self, list out, int need, long long timeout_ns, long long deadline) except -1
    cdef void keep_spill(self, fio_io_uring_cqe *cqes, uint32_t n, bint front) noexcept
    cdef int reap_spill(self, list out) except -1
    cdef bint wrong_issuer(self) noexcept
