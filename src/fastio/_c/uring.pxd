# cython: language_level=3
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t

from fastio._c._uring_register cimport RingRegistry


cdef class Ring(RingRegistry):
    cdef object prep_buf(self, uint8_t op, int fd, object buf, uint64_t offset, uint32_t op_flags, object user_data, int flags, bint writable, uint16_t ioprio=*)
    cdef object prep_vec(self, uint8_t op, int fd, object buffers, uint64_t offset, uint32_t rw_flags, object user_data, int flags, bint writable)
    cdef object prep_fixed(self, uint8_t op, int fd, object buf_index, object offset, object nbytes, object buf_offset, object user_data, int flags)
    cdef object prep_target(self, uint8_t op, int fd, object target, uint32_t op_flags, object user_data, int flags)
    cdef object prep_ts(self, uint8_t op, object seconds, uint32_t count, uint32_t timeout_flags, object user_data, int flags)
    cdef object prep_path2(self, uint8_t op, int fd, object path, uint32_t length, object path2, uint32_t op_flags, object user_data, int flags)
    cdef object prep_msg(self, uint8_t op, int fd, object buffers, object address, uint32_t msg_flags, object user_data, int flags, bint writable, uint16_t ioprio)
    cdef object batch(self, uint8_t op, object fd, object buf, object offsets, object size, object results, object depth)
