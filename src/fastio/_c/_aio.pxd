# cython: language_level=3
# cdef extern declarations of csrc/fio_aio_abi.h and the AIO entries of
# fio_syscall.h. Declarations only.

from libc.stdint cimport int16_t, int64_t, uint16_t, uint32_t, uint64_t

from fastio._c._sys cimport timespec


cdef extern from "fio_aio_abi.h" nogil:
    ctypedef unsigned long fio_aio_context_t

    struct fio_iocb:
        uint64_t aio_data
        uint32_t aio_key
        uint32_t aio_rw_flags
        uint16_t aio_lio_opcode
        int16_t aio_reqprio
        uint32_t aio_fildes
        uint64_t aio_buf
        uint64_t aio_nbytes
        int64_t aio_offset
        uint64_t aio_reserved2
        uint32_t aio_flags
        uint32_t aio_resfd

    struct fio_io_event:
        uint64_t data
        uint64_t obj
        int64_t res
        int64_t res2

    enum:
        FIO_IOCB_CMD_PREAD
        FIO_IOCB_CMD_PWRITE
        FIO_IOCB_CMD_FSYNC
        FIO_IOCB_CMD_FDSYNC
        FIO_IOCB_CMD_POLL
        FIO_IOCB_CMD_NOOP
        FIO_IOCB_CMD_PREADV
        FIO_IOCB_CMD_PWRITEV
        FIO_IOCB_FLAG_RESFD
        FIO_IOCB_FLAG_IOPRIO
        FIO_RWF_HIPRI
        FIO_RWF_DSYNC
        FIO_RWF_SYNC
        FIO_RWF_NOWAIT
        FIO_RWF_APPEND


cdef extern from "<sys/uio.h>" nogil:
    struct iovec:
        void *iov_base
        size_t iov_len


cdef extern from "fio_syscall.h" nogil:
    int fio_sys_io_setup(unsigned nr_events, unsigned long *ctx)
    int fio_sys_io_destroy(unsigned long ctx)
    long fio_sys_io_submit(unsigned long ctx, long nr, void **iocbpp)
    long fio_sys_io_getevents(unsigned long ctx, long min_nr, long nr, void *events, timespec *timeout)
    int fio_sys_io_cancel(unsigned long ctx, void *iocb, void *result)
