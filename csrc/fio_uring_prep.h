/* SPDX-License-Identifier: MIT */
/*
 * One helper per opcode, each a pure function of the SQE: fio_prep_rw()
 * writes all 64 bytes (so no field of a reused SQE survives), and each
 * fio_prep_<op>() then sets only its op-specific fields. Names and argument
 * order follow io_uring_prep_<op>(3), so the man pages apply; the field each
 * argument lands in is the kernel's (the *_prep functions of io_uring/).
 */
#ifndef FIO_URING_PREP_H
#define FIO_URING_PREP_H

#include <string.h>

#include "fio_common.h"
#include "fio_uring_abi.h"

enum {
    FIO_OP_NOP = 0, FIO_OP_READV = 1, FIO_OP_WRITEV = 2, FIO_OP_FSYNC = 3,
    FIO_OP_READ_FIXED = 4, FIO_OP_WRITE_FIXED = 5, FIO_OP_POLL_ADD = 6,
    FIO_OP_POLL_REMOVE = 7, FIO_OP_SENDMSG = 9, FIO_OP_RECVMSG = 10,
    FIO_OP_TIMEOUT = 11, FIO_OP_TIMEOUT_REMOVE = 12, FIO_OP_ACCEPT = 13,
    FIO_OP_ASYNC_CANCEL = 14, FIO_OP_LINK_TIMEOUT = 15, FIO_OP_CONNECT = 16,
    FIO_OP_FALLOCATE = 17, FIO_OP_OPENAT = 18, FIO_OP_CLOSE = 19, FIO_OP_STATX = 21,
    FIO_OP_READ = 22, FIO_OP_WRITE = 23, FIO_OP_SEND = 26, FIO_OP_RECV = 27,
    FIO_OP_SPLICE = 30, FIO_OP_SHUTDOWN = 34, FIO_OP_RENAMEAT = 35, FIO_OP_UNLINKAT = 36,
    FIO_OP_MKDIRAT = 37, FIO_OP_SYMLINKAT = 38, FIO_OP_LINKAT = 39, FIO_OP_FTRUNCATE = 55,
};

#define FIO_IOSQE_BUFFER_SELECT (1U << 5)
#define FIO_IORING_POLL_ADD_MULTI (1U << 0)
#define FIO_IORING_RECVSEND_POLL_FIRST (1U << 0)
#define FIO_IORING_RECV_MULTISHOT (1U << 1)
#define FIO_IORING_ACCEPT_MULTISHOT (1U << 0)

/* The base of every helper: zero the SQE, then opcode, fd, addr, len, off. */
FIO_INLINE void fio_prep_rw(struct fio_io_uring_sqe *sqe, uint8_t op, int fd, uint64_t addr, uint32_t len,
                            uint64_t off)
{
    memset(sqe, 0, sizeof(*sqe));
    sqe->opcode = op;
    sqe->fd = fd;
    sqe->addr = addr;
    sqe->len = len;
    sqe->off = off;
}

/* NOP: completes with res 0. */
FIO_INLINE void fio_prep_nop(struct fio_io_uring_sqe *sqe)
{
    fio_prep_rw(sqe, FIO_OP_NOP, -1, 0, 0, 0);
}

/* READ/WRITE (and READV/WRITEV with addr = iovec array, len = count):
 * offset (uint64_t)-1 means the file position. rw_flags: RWF_*. */
FIO_INLINE void fio_prep_rw_op(struct fio_io_uring_sqe *sqe, uint8_t op, int fd, uint64_t addr, uint32_t len,
                               uint64_t offset, uint32_t rw_flags)
{
    fio_prep_rw(sqe, op, fd, addr, len, offset);
    sqe->op_flags = rw_flags;
}

/* READ_FIXED/WRITE_FIXED: addr must lie inside registered buffer buf_index. */
FIO_INLINE void fio_prep_rw_fixed(struct fio_io_uring_sqe *sqe, uint8_t op, int fd, uint64_t addr, uint32_t len,
                                  uint64_t offset, uint16_t buf_index)
{
    fio_prep_rw(sqe, op, fd, addr, len, offset);
    sqe->buf_index = buf_index;
}

/* FSYNC: fsync_flags IORING_FSYNC_DATASYNC for fdatasync. */
FIO_INLINE void fio_prep_fsync(struct fio_io_uring_sqe *sqe, int fd, uint32_t fsync_flags)
{
    fio_prep_rw(sqe, FIO_OP_FSYNC, fd, 0, 0, 0);
    sqe->op_flags = fsync_flags;
}

/* FALLOCATE: the kernel reads the length from addr and the mode from len. */
FIO_INLINE void fio_prep_fallocate(struct fio_io_uring_sqe *sqe, int fd, int mode, uint64_t offset, uint64_t len)
{
    fio_prep_rw(sqe, FIO_OP_FALLOCATE, fd, len, (uint32_t)mode, offset);
}

/* FTRUNCATE (Linux 6.9): the new length in off; addr, len and the op flags
 * stay 0 (the kernel refuses anything else there with EINVAL). */
FIO_INLINE void fio_prep_ftruncate(struct fio_io_uring_sqe *sqe, int fd, uint64_t length)
{
    fio_prep_rw(sqe, FIO_OP_FTRUNCATE, fd, 0, 0, length);
}

/* OPENAT: path is a NUL-terminated string the caller keeps alive until the
 * completion; the mode travels in len, the flags in open_flags. */
FIO_INLINE void fio_prep_openat(struct fio_io_uring_sqe *sqe, int dfd, const char *path, int flags, uint32_t mode)
{
    fio_prep_rw(sqe, FIO_OP_OPENAT, dfd, (uint64_t)(uintptr_t)path, mode, 0);
    sqe->op_flags = (uint32_t)flags;
}

/* The path operations (RENAMEAT, UNLINKAT, MKDIRAT, SYMLINKAT, LINKAT): the
 * first path in addr, a second one (new name, link name) in off (addr2), a
 * second dir fd or the mode in len, the operation's flags in op_flags. The
 * paths are NUL-terminated strings the caller keeps alive until the
 * completion is reaped. */
FIO_INLINE void fio_prep_path2(struct fio_io_uring_sqe *sqe, uint8_t op, int fd, const char *path, uint32_t len,
                               const char *path2, uint32_t op_flags)
{
    fio_prep_rw(sqe, op, fd, (uint64_t)(uintptr_t)path, len, (uint64_t)(uintptr_t)path2);
    sqe->op_flags = op_flags;
}

/* CLOSE of a normal fd. */
FIO_INLINE void fio_prep_close(struct fio_io_uring_sqe *sqe, int fd)
{
    fio_prep_rw(sqe, FIO_OP_CLOSE, fd, 0, 0, 0);
}

/* STATX: the mask travels in len, the statx buffer address in off. */
FIO_INLINE void fio_prep_statx(struct fio_io_uring_sqe *sqe, int dfd, const char *path, int flags, uint32_t mask,
                               void *statxbuf)
{
    fio_prep_rw(sqe, FIO_OP_STATX, dfd, (uint64_t)(uintptr_t)path, mask, (uint64_t)(uintptr_t)statxbuf);
    sqe->op_flags = (uint32_t)flags;
}

/* POLL_ADD: poll32_events (little-endian word order, as the kernel reads it
 * on LE machines); multishot goes in len (IORING_POLL_ADD_MULTI). */
FIO_INLINE void fio_prep_poll_add(struct fio_io_uring_sqe *sqe, int fd, uint32_t poll_mask, int multishot)
{
    fio_prep_rw(sqe, FIO_OP_POLL_ADD, fd, 0, multishot ? FIO_IORING_POLL_ADD_MULTI : 0, 0);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    poll_mask = (poll_mask << 16) | (poll_mask >> 16);
#endif
    sqe->op_flags = poll_mask;
}

/* POLL_REMOVE / TIMEOUT_REMOVE / ASYNC_CANCEL by user_data: the target's
 * user_data travels in addr. */
FIO_INLINE void fio_prep_target(struct fio_io_uring_sqe *sqe, uint8_t op, int fd, uint64_t target, uint32_t op_flags)
{
    fio_prep_rw(sqe, op, fd, target, 0, 0);
    sqe->op_flags = op_flags;
}

/* TIMEOUT / LINK_TIMEOUT: addr points at one __kernel_timespec (len 1);
 * TIMEOUT's off is the completion count that also ends it (0: time only). */
FIO_INLINE void fio_prep_timeout(struct fio_io_uring_sqe *sqe, uint8_t op, struct fio_kernel_timespec *ts,
                                 uint32_t count, uint32_t timeout_flags)
{
    fio_prep_rw(sqe, op, -1, (uint64_t)(uintptr_t)ts, 1, count);
    sqe->op_flags = timeout_flags;
}

/* ACCEPT: addr/addrlen may be NULL; multishot is an ioprio flag (5.19). */
FIO_INLINE void fio_prep_accept(struct fio_io_uring_sqe *sqe, int fd, uint32_t accept_flags, int multishot)
{
    fio_prep_rw(sqe, FIO_OP_ACCEPT, fd, 0, 0, 0);
    sqe->op_flags = accept_flags;
    if (multishot)
        sqe->ioprio |= FIO_IORING_ACCEPT_MULTISHOT;
}

/* CONNECT: addr is the sockaddr, off its length. */
FIO_INLINE void fio_prep_connect(struct fio_io_uring_sqe *sqe, int fd, const void *addr, uint32_t addrlen)
{
    fio_prep_rw(sqe, FIO_OP_CONNECT, fd, (uint64_t)(uintptr_t)addr, 0, addrlen);
}

/* SEND/RECV (op) of len bytes at buf; msg_flags: MSG_*. */
FIO_INLINE void fio_prep_sendrecv(struct fio_io_uring_sqe *sqe, uint8_t op, int fd, void *buf, uint32_t len,
                                  uint32_t msg_flags)
{
    fio_prep_rw(sqe, op, fd, (uint64_t)(uintptr_t)buf, len, 0);
    sqe->op_flags = msg_flags;
}

/* RECV multishot (6.0): no buffer; each completion picks one from the
 * provided-buffer group buf_group (IOSQE_BUFFER_SELECT). */
FIO_INLINE void fio_prep_recv_multishot(struct fio_io_uring_sqe *sqe, int fd, uint16_t buf_group,
                                        uint32_t msg_flags)
{
    fio_prep_rw(sqe, FIO_OP_RECV, fd, 0, 0, 0);
    sqe->op_flags = msg_flags;
    sqe->ioprio |= FIO_IORING_RECV_MULTISHOT;
    sqe->flags |= FIO_IOSQE_BUFFER_SELECT;
    sqe->buf_index = buf_group;
}

/* SENDMSG/RECVMSG: addr is a struct msghdr, len 1. */
FIO_INLINE void fio_prep_msg(struct fio_io_uring_sqe *sqe, uint8_t op, int fd, void *msg, uint32_t msg_flags)
{
    fio_prep_rw(sqe, op, fd, (uint64_t)(uintptr_t)msg, 1, 0);
    sqe->op_flags = msg_flags;
}

/* SHUTDOWN: how (SHUT_RD/WR/RDWR) travels in len. */
FIO_INLINE void fio_prep_shutdown(struct fio_io_uring_sqe *sqe, int fd, int how)
{
    fio_prep_rw(sqe, FIO_OP_SHUTDOWN, fd, 0, (uint32_t)how, 0);
}

/* SPLICE: fd_out/off_out in fd/off, fd_in in splice_fd_in, off_in in addr
 * (splice_off_in); an offset of (uint64_t)-1 means "no offset" (a pipe). */
FIO_INLINE void fio_prep_splice(struct fio_io_uring_sqe *sqe, int fd_in, int64_t off_in, int fd_out,
                                int64_t off_out, uint32_t nbytes, uint32_t splice_flags)
{
    fio_prep_rw(sqe, FIO_OP_SPLICE, fd_out, (uint64_t)off_in, nbytes, (uint64_t)off_out);
    sqe->splice_fd_in = fd_in;
    sqe->op_flags = splice_flags;
}

#endif /* FIO_URING_PREP_H */
