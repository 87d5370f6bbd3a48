# cython: language_level=3
from cpython.buffer cimport Py_buffer
from cpython.ref cimport PyObject
from libc.stdint cimport int32_t, uint8_t, uint16_t, uint32_t, uint64_t

from fastio._c._inflight cimport InflightTable, Slot
from fastio._c._uring cimport fio_io_uring_cqe, fio_io_uring_sqe, fio_ring, iovec


cdef class Completion:
    cdef readonly object user_data
    cdef readonly int res
    cdef readonly unsigned int flags
    cdef readonly object buffer_id
    cdef readonly object buffer


cdef class BufRing:
    cdef readonly int bgid
    cdef readonly unsigned int entries
    cdef readonly unsigned int size
    cdef void *ring_mem
    cdef size_t ring_sz
    cdef char *bufs
    cdef size_t bufs_sz
    cdef uint16_t tail
    cdef uint32_t inflight
    cdef int registered

    cdef void recycle(self, uint16_t bid) noexcept
    cdef void free_memory(self) noexcept


cdef class Ring:
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
    cdef object commit(self, uint32_t idx, fio_io_uring_sqe *sqe, int flags)
    cdef void abandon(self, uint32_t idx) noexcept
    cdef list take_backlog(self)
    cdef void give_back(self, list out) noexcept
    cdef int wait_into(self, list out, int need, long long timeout_ns, long long deadline) except -1
    cdef void keep_spill(self, fio_io_uring_cqe *cqes, uint32_t n, bint front) noexcept
    cdef int reap_spill(self, list out) except -1
    cdef bint wrong_issuer(self) noexcept
    cdef int register(self, unsigned opcode, const void *arg, unsigned nr) except? -1
    cdef object prep_buf(self, uint8_t op, int fd, object buf, uint64_t offset, uint32_t op_flags, object user_data, int flags, bint writable, uint16_t ioprio=*)
    cdef object prep_vec(self, uint8_t op, int fd, object buffers, uint64_t offset, uint32_t rw_flags, object user_data, int flags, bint writable)
    cdef object prep_fixed(self, uint8_t op, int fd, object buf_index, object offset, object nbytes, object buf_offset, object user_data, int flags)
    cdef object prep_target(self, uint8_t op, int fd, object target, uint32_t op_flags, object user_data, int flags)
    cdef object prep_ts(self, uint8_t op, object seconds, uint32_t count, uint32_t timeout_flags, object user_data, int flags)
    cdef object prep_msg(self, uint8_t op, int fd, object buffers, object address, uint32_t msg_flags, object user_data, int flags, bint writable, uint16_t ioprio)
    cdef object batch(self, uint8_t op, object fd, object buf, object offsets, object size, object results, object depth)
