# cython: language_level=3
# cdef extern declarations of csrc/fio_uring_abi.h, fio_uring_ring.h,
# fio_uring_prep.h and the io_uring entries of fio_syscall.h. Declarations only.

from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t


cdef extern from "fio_uring_abi.h" nogil:
    struct fio_io_uring_sqe:
        uint8_t opcode
        uint8_t flags
        uint16_t ioprio
        int32_t fd
        uint64_t off
        uint64_t addr
        uint32_t len
        uint32_t op_flags
        uint64_t user_data
        uint16_t buf_index
        uint16_t personality
        int32_t splice_fd_in
        uint64_t addr3
        uint64_t __pad2

    struct fio_io_uring_cqe:
        uint64_t user_data
        int32_t res
        uint32_t flags

    struct fio_io_sqring_offsets:
        uint32_t head
        uint32_t tail
        uint32_t ring_mask
        uint32_t ring_entries
        uint32_t flags
        uint32_t dropped
        uint32_t array
        uint32_t resv1
        uint64_t user_addr

    struct fio_io_cqring_offsets:
        uint32_t head
        uint32_t tail
        uint32_t ring_mask
        uint32_t ring_entries
        uint32_t overflow
        uint32_t cqes
        uint32_t flags
        uint32_t resv1
        uint64_t user_addr

    struct fio_io_uring_params:
        uint32_t sq_entries
        uint32_t cq_entries
        uint32_t flags
        uint32_t sq_thread_cpu
        uint32_t sq_thread_idle
        uint32_t features
        uint32_t wq_fd
        uint32_t resv[3]
        fio_io_sqring_offsets sq_off
        fio_io_cqring_offsets cq_off

    struct fio_io_uring_probe_op:
        uint8_t op
        uint8_t resv
        uint16_t flags
        uint32_t resv2

    struct fio_io_uring_probe:
        uint8_t last_op
        uint8_t ops_len
        uint16_t resv
        uint32_t resv2[3]
        fio_io_uring_probe_op ops[1]

    struct fio_io_uring_buf:
        uint64_t addr
        uint32_t len
        uint16_t bid
        uint16_t resv

    struct fio_io_uring_buf_reg:
        uint64_t ring_addr
        uint32_t ring_entries
        uint16_t bgid
        uint16_t flags
        uint64_t resv[3]

    struct fio_io_uring_rsrc_update:
        uint32_t offset
        uint32_t resv
        uint64_t data

    struct fio_io_uring_getevents_arg:
        uint64_t sigmask
        uint32_t sigmask_sz
        uint32_t min_wait_usec
        uint64_t ts

    struct fio_kernel_timespec:
        int64_t tv_sec
        int64_t tv_nsec

    unsigned long long FIO_IORING_OFF_SQ_RING
    unsigned long long FIO_IORING_OFF_CQ_RING
    unsigned long long FIO_IORING_OFF_SQES
    unsigned FIO_IORING_SETUP_SQPOLL
    unsigned FIO_IORING_SETUP_SQ_AFF
    unsigned FIO_IORING_SETUP_CQSIZE
    unsigned FIO_IORING_SETUP_SQE128
    unsigned FIO_IORING_SETUP_CQE32
    unsigned FIO_IORING_SETUP_SINGLE_ISSUER
    unsigned FIO_IORING_SETUP_DEFER_TASKRUN
    unsigned FIO_IORING_SETUP_NO_MMAP
    unsigned FIO_IORING_SETUP_REGISTERED_FD_ONLY
    unsigned FIO_IORING_SETUP_NO_SQARRAY
    unsigned FIO_IORING_FEAT_SINGLE_MMAP
    unsigned FIO_IORING_FEAT_NODROP
    unsigned FIO_IORING_FEAT_EXT_ARG
    unsigned FIO_IORING_SQ_NEED_WAKEUP
    unsigned FIO_IORING_SQ_CQ_OVERFLOW
    unsigned FIO_IORING_SQ_TASKRUN
    unsigned FIO_IORING_ENTER_GETEVENTS
    unsigned FIO_IORING_ENTER_SQ_WAKEUP
    unsigned FIO_IORING_ENTER_SQ_WAIT
    unsigned FIO_IORING_ENTER_EXT_ARG
    unsigned FIO_IORING_CQE_F_BUFFER
    unsigned FIO_IORING_CQE_F_MORE
    unsigned FIO_IORING_CQE_BUFFER_SHIFT
    unsigned FIO_IORING_ASYNC_CANCEL_ALL
    unsigned FIO_IORING_ASYNC_CANCEL_FD
    unsigned FIO_IORING_ASYNC_CANCEL_ANY
    unsigned FIO_IORING_REGISTER_BUFFERS
    unsigned FIO_IORING_UNREGISTER_BUFFERS
    unsigned FIO_IORING_REGISTER_FILES
    unsigned FIO_IORING_UNREGISTER_FILES
    unsigned FIO_IORING_REGISTER_EVENTFD
    unsigned FIO_IORING_UNREGISTER_EVENTFD
    unsigned FIO_IORING_REGISTER_FILES_UPDATE
    unsigned FIO_IORING_REGISTER_PROBE
    unsigned FIO_IORING_REGISTER_PBUF_RING
    unsigned FIO_IORING_UNREGISTER_PBUF_RING
    unsigned FIO_IO_URING_OP_SUPPORTED


cdef extern from "fio_syscall.h" nogil:
    int fio_sys_io_uring_setup(unsigned entries, void *params)
    int fio_sys_io_uring_enter(int fd, unsigned to_submit, unsigned min_complete, unsigned flags,
                               const void *arg, size_t argsz)
    int fio_sys_io_uring_register(int fd, unsigned opcode, const void *arg, unsigned nr_args)


cdef extern from "fio_barrier.h" nogil:
    void fio_store_release16(uint16_t *p, uint16_t v)


cdef extern from "fio_uring_ring.h" nogil:
    struct fio_sq:
        uint32_t *khead
        uint32_t *ktail
        uint32_t *kflags
        uint32_t *kdropped
        uint32_t *array
        fio_io_uring_sqe *sqes
        uint32_t ring_mask
        uint32_t ring_entries
        uint32_t sqe_tail

    struct fio_cq:
        uint32_t *khead
        uint32_t *ktail
        uint32_t *koverflow
        fio_io_uring_cqe *cqes
        uint32_t ring_mask
        uint32_t ring_entries

    struct fio_ring:
        int fd
        uint32_t flags
        uint32_t features
        fio_sq sq
        fio_cq cq

    void fio_ring_clear(fio_ring *r)
    void fio_ring_exit(fio_ring *r)
    int fio_ring_init(fio_ring *r, unsigned entries, fio_io_uring_params *p)
    uint32_t fio_ring_sq_ready(const fio_ring *r)
    uint32_t fio_ring_sq_space(const fio_ring *r)
    fio_io_uring_sqe *fio_ring_get_sqe(fio_ring *r)
    fio_io_uring_sqe *fio_ring_sqe_at(fio_ring *r, uint32_t index)
    uint32_t fio_ring_flush_sq(fio_ring *r)
    uint32_t fio_ring_flush_sq_to(fio_ring *r, uint32_t upto)
    uint32_t fio_ring_open_chain_start(const fio_ring *r)
    int fio_ring_needs_enter(const fio_ring *r, unsigned *flags)
    uint32_t fio_ring_sq_flags(const fio_ring *r)
    uint32_t fio_ring_cq_ready(const fio_ring *r)
    uint32_t fio_ring_cq_copy(fio_ring *r, fio_io_uring_cqe *out, uint32_t max)


cdef extern from "fio_uring_prep.h" nogil:
    enum:
        FIO_OP_NOP, FIO_OP_READV, FIO_OP_WRITEV, FIO_OP_FSYNC, FIO_OP_READ_FIXED,
        FIO_OP_WRITE_FIXED, FIO_OP_POLL_ADD, FIO_OP_POLL_REMOVE, FIO_OP_SENDMSG,
        FIO_OP_RECVMSG, FIO_OP_TIMEOUT, FIO_OP_TIMEOUT_REMOVE, FIO_OP_ACCEPT,
        FIO_OP_ASYNC_CANCEL, FIO_OP_LINK_TIMEOUT, FIO_OP_CONNECT, FIO_OP_FALLOCATE,
        FIO_OP_OPENAT, FIO_OP_CLOSE, FIO_OP_STATX, FIO_OP_READ, FIO_OP_WRITE,
        FIO_OP_SEND, FIO_OP_RECV, FIO_OP_SPLICE, FIO_OP_SHUTDOWN, FIO_OP_RENAMEAT,
        FIO_OP_UNLINKAT, FIO_OP_MKDIRAT, FIO_OP_SYMLINKAT, FIO_OP_LINKAT, FIO_OP_FTRUNCATE
    enum:
        FIO_IORING_RECVSEND_POLL_FIRST
    void fio_prep_rw(fio_io_uring_sqe *sqe, uint8_t op, int fd, uint64_t addr, uint32_t len, uint64_t off)
    void fio_prep_nop(fio_io_uring_sqe *sqe)
    void fio_prep_rw_op(fio_io_uring_sqe *sqe, uint8_t op, int fd, uint64_t addr, uint32_t len,
                        uint64_t offset, uint32_t rw_flags)
    void fio_prep_rw_fixed(fio_io_uring_sqe *sqe, uint8_t op, int fd, uint64_t addr, uint32_t len,
                           uint64_t offset, uint16_t buf_index)
    void fio_prep_fsync(fio_io_uring_sqe *sqe, int fd, uint32_t fsync_flags)
    void fio_prep_fallocate(fio_io_uring_sqe *sqe, int fd, int mode, uint64_t offset, uint64_t len)
    void fio_prep_ftruncate(fio_io_uring_sqe *sqe, int fd, uint64_t length)
    void fio_prep_openat(fio_io_uring_sqe *sqe, int dfd, const char *path, int flags, uint32_t mode)
    void fio_prep_close(fio_io_uring_sqe *sqe, int fd)
    void fio_prep_path2(fio_io_uring_sqe *sqe, uint8_t op, int fd, const char *path, uint32_t len,
                        const char *path2, uint32_t op_flags)
    void fio_prep_statx(fio_io_uring_sqe *sqe, int dfd, const char *path, int flags, uint32_t mask,
                        void *statxbuf)
    void fio_prep_poll_add(fio_io_uring_sqe *sqe, int fd, uint32_t poll_mask, int multishot)
    void fio_prep_target(fio_io_uring_sqe *sqe, uint8_t op, int fd, uint64_t target, uint32_t op_flags)
    void fio_prep_timeout(fio_io_uring_sqe *sqe, uint8_t op, fio_kernel_timespec *ts, uint32_t count,
                          uint32_t timeout_flags)
    void fio_prep_accept(fio_io_uring_sqe *sqe, int fd, uint32_t accept_flags, int multishot)
    void fio_prep_connect(fio_io_uring_sqe *sqe, int fd, const void *addr, uint32_t addrlen)
    void fio_prep_sendrecv(fio_io_uring_sqe *sqe, uint8_t op, int fd, void *buf, uint32_t len,
                           uint32_t msg_flags)
    void fio_prep_recv_multishot(fio_io_uring_sqe *sqe, int fd, uint16_t buf_group, uint32_t msg_flags)
    void fio_prep_msg(fio_io_uring_sqe *sqe, uint8_t op, int fd, void *msg, uint32_t msg_flags)
    void fio_prep_shutdown(fio_io_uring_sqe *sqe, int fd, int how)
    void fio_prep_splice(fio_io_uring_sqe *sqe, int fd_in, int64_t off_in, int fd_out, int64_t off_out,
                         uint32_t nbytes, uint32_t splice_flags)


cdef extern from "<sys/socket.h>" nogil:
    struct msghdr:
        void *msg_name
        unsigned int msg_namelen
        void *msg_iov
        size_t msg_iovlen
        void *msg_control
        size_t msg_controllen
        int msg_flags

cdef extern from "<sys/uio.h>" nogil:
    struct iovec:
        void *iov_base
        size_t iov_len
