/* SPDX-License-Identifier: MIT */
/*
 * The io_uring user ABI subset fastio uses, written from the kernel's
 * include/uapi/linux/io_uring.h (Linux 6.18) and io_uring_setup(2) /
 * io_uring_enter(2) / io_uring_register(2). Kept here, with a fio_ prefix,
 * because manylinux's kernel headers are too old (DESIGN principle 1).
 *
 * Field names are the kernel's. Where the kernel has a union, the struct here
 * has one plain field named after the union's first member; the comment names
 * the aliases. Every size and every offset fastio touches is checked below
 * with _Static_assert, and again from Python in tests/interfaces/test_abi.py against the
 * ctypes mirror in src/fastio/_pure/_uring_abi.py.
 */
#ifndef FIO_URING_ABI_H
#define FIO_URING_ABI_H

#include <stddef.h>
#include <stdint.h>

#include "fio_common.h"

/* ---- submission queue entry: 64 bytes (no SETUP_SQE128) ---- */
struct fio_io_uring_sqe {
    uint8_t opcode;        /* IORING_OP_* */
    uint8_t flags;         /* IOSQE_* */
    uint16_t ioprio;       /* request priority; RECV/SEND/ACCEPT flags */
    int32_t fd;            /* file descriptor (or fixed file index) */
    uint64_t off;          /* file offset; aliases: addr2, {cmd_op, __pad1} */
    uint64_t addr;         /* buffer / iovec / path pointer; alias splice_off_in */
    uint32_t len;          /* buffer length or iovec count */
    uint32_t op_flags;     /* rw_flags, fsync_flags, poll32_events, msg_flags,
                            * timeout_flags, accept_flags, cancel_flags,
                            * open_flags, statx_flags, splice_flags ... */
    uint64_t user_data;    /* returned unchanged in the completion */
    uint16_t buf_index;    /* fixed buffer index; alias buf_group (BUFFER_SELECT) */
    uint16_t personality;  /* credentials id, 0 = the submitter's */
    int32_t splice_fd_in;  /* aliases: file_index, optlen, {addr_len, __pad3} */
    uint64_t addr3;        /* third address (sendmsg/recvmsg: unused by us) */
    uint64_t __pad2;       /* reserved, must be 0 */
};

/* ---- completion queue entry: 16 bytes (no SETUP_CQE32) ---- */
struct fio_io_uring_cqe {
    uint64_t user_data;    /* the sqe's user_data */
    int32_t res;           /* result: >= 0 success, -errno failure */
    uint32_t flags;        /* IORING_CQE_F_*; upper 16 bits: buffer id */
};

/* ---- offsets into the mmapped SQ ring, filled in by io_uring_setup ---- */
struct fio_io_sqring_offsets {
    uint32_t head;         /* kernel-owned consumer index */
    uint32_t tail;         /* user-owned producer index */
    uint32_t ring_mask;    /* entries - 1 */
    uint32_t ring_entries; /* number of entries */
    uint32_t flags;        /* IORING_SQ_* (NEED_WAKEUP, CQ_OVERFLOW, TASKRUN) */
    uint32_t dropped;      /* invalid indices the kernel skipped */
    uint32_t array;        /* the index array (absent with SETUP_NO_SQARRAY) */
    uint32_t resv1;
    uint64_t user_addr;    /* SETUP_NO_MMAP only */
};

/* ---- offsets into the mmapped CQ ring ---- */
struct fio_io_cqring_offsets {
    uint32_t head;         /* user-owned consumer index */
    uint32_t tail;         /* kernel-owned producer index */
    uint32_t ring_mask;
    uint32_t ring_entries;
    uint32_t overflow;     /* completions dropped (kernels without FEAT_NODROP) */
    uint32_t cqes;         /* the CQE array */
    uint32_t flags;        /* IORING_CQ_EVENTFD_DISABLED */
    uint32_t resv1;
    uint64_t user_addr;
};

/* ---- io_uring_setup(2) parameters: 120 bytes ---- */
struct fio_io_uring_params {
    uint32_t sq_entries;     /* out: SQ size (power of two) */
    uint32_t cq_entries;     /* in with SETUP_CQSIZE, out always */
    uint32_t flags;          /* in: IORING_SETUP_* */
    uint32_t sq_thread_cpu;  /* in with SETUP_SQ_AFF */
    uint32_t sq_thread_idle; /* in with SETUP_SQPOLL: ms before the thread sleeps */
    uint32_t features;       /* out: IORING_FEAT_* */
    uint32_t wq_fd;          /* in with SETUP_ATTACH_WQ */
    uint32_t resv[3];
    struct fio_io_sqring_offsets sq_off;
    struct fio_io_cqring_offsets cq_off;
};

/* ---- IORING_REGISTER_PROBE ---- */
struct fio_io_uring_probe_op {
    uint8_t op;
    uint8_t resv;
    uint16_t flags;          /* IO_URING_OP_SUPPORTED */
    uint32_t resv2;
};

struct fio_io_uring_probe {
    uint8_t last_op;         /* the last opcode this kernel knows */
    uint8_t ops_len;         /* entries filled in ops[] */
    uint16_t resv;
    uint32_t resv2[3];
    struct fio_io_uring_probe_op ops[];
};

/* ---- provided buffer rings (IORING_REGISTER_PBUF_RING, 5.19) ---- */
struct fio_io_uring_buf {
    uint64_t addr;           /* buffer address */
    uint32_t len;            /* buffer length */
    uint16_t bid;            /* buffer id, reported in cqe->flags >> 16 */
    uint16_t resv;           /* in entry 0: the ring's tail (user-owned) */
};

struct fio_io_uring_buf_reg {
    uint64_t ring_addr;      /* page-aligned ring memory */
    uint32_t ring_entries;   /* power of two, <= 32768 */
    uint16_t bgid;           /* buffer group id */
    uint16_t flags;
    uint64_t resv[3];
};

/* ---- IORING_REGISTER_FILES_UPDATE ---- */
struct fio_io_uring_rsrc_update {
    uint32_t offset;         /* first fixed-file slot to replace */
    uint32_t resv;
    uint64_t data;           /* pointer to an int32 array of fds (-1 clears) */
};

/* ---- IORING_ENTER_EXT_ARG (5.11): wait with a timeout ---- */
struct fio_io_uring_getevents_arg {
    uint64_t sigmask;
    uint32_t sigmask_sz;
    uint32_t min_wait_usec;  /* 6.12; "pad" before, must be 0 there */
    uint64_t ts;             /* pointer to a struct fio_kernel_timespec */
};

struct fio_kernel_timespec {
    int64_t tv_sec;
    int64_t tv_nsec;
};

/* ---- mmap offsets of the three regions ---- */
#define FIO_IORING_OFF_SQ_RING 0ULL
#define FIO_IORING_OFF_CQ_RING 0x8000000ULL
#define FIO_IORING_OFF_SQES 0x10000000ULL
#define FIO_IORING_OFF_PBUF_RING 0x80000000ULL

/* ---- the values fastio's C code uses (the full list is in Python) ---- */
#define FIO_IORING_SETUP_SQPOLL (1U << 1)
#define FIO_IORING_SETUP_SQ_AFF (1U << 2)
#define FIO_IORING_SETUP_CQSIZE (1U << 3)
#define FIO_IORING_SETUP_COOP_TASKRUN (1U << 8)
#define FIO_IORING_SETUP_SQE128 (1U << 10)
#define FIO_IORING_SETUP_CQE32 (1U << 11)
#define FIO_IORING_SETUP_SINGLE_ISSUER (1U << 12)
#define FIO_IORING_SETUP_DEFER_TASKRUN (1U << 13)
#define FIO_IORING_SETUP_NO_MMAP (1U << 14)
#define FIO_IORING_SETUP_REGISTERED_FD_ONLY (1U << 15)
#define FIO_IORING_SETUP_NO_SQARRAY (1U << 16)

#define FIO_IORING_FEAT_SINGLE_MMAP (1U << 0)
#define FIO_IORING_FEAT_NODROP (1U << 1)
#define FIO_IORING_FEAT_EXT_ARG (1U << 8)

#define FIO_IORING_SQ_NEED_WAKEUP (1U << 0)
#define FIO_IORING_SQ_CQ_OVERFLOW (1U << 1)
#define FIO_IORING_SQ_TASKRUN (1U << 2)

#define FIO_IORING_ENTER_GETEVENTS (1U << 0)
#define FIO_IORING_ENTER_SQ_WAKEUP (1U << 1)
#define FIO_IORING_ENTER_SQ_WAIT (1U << 2)
#define FIO_IORING_ENTER_EXT_ARG (1U << 3)

#define FIO_IOSQE_IO_LINK (1U << 2)

#define FIO_IORING_CQE_F_BUFFER (1U << 0)
#define FIO_IORING_CQE_F_MORE (1U << 1)
#define FIO_IORING_CQE_BUFFER_SHIFT 16

#define FIO_IORING_ASYNC_CANCEL_ALL (1U << 0)
#define FIO_IORING_ASYNC_CANCEL_FD (1U << 1)
#define FIO_IORING_ASYNC_CANCEL_ANY (1U << 2)

#define FIO_IORING_REGISTER_BUFFERS 0
#define FIO_IORING_UNREGISTER_BUFFERS 1
#define FIO_IORING_REGISTER_FILES 2
#define FIO_IORING_UNREGISTER_FILES 3
#define FIO_IORING_REGISTER_EVENTFD 4
#define FIO_IORING_UNREGISTER_EVENTFD 5
#define FIO_IORING_REGISTER_FILES_UPDATE 6
#define FIO_IORING_REGISTER_PROBE 8
#define FIO_IORING_REGISTER_PBUF_RING 22
#define FIO_IORING_UNREGISTER_PBUF_RING 23

#define FIO_IO_URING_OP_SUPPORTED (1U << 0)

/* ---- layout checks: a wrong field here would corrupt every request ---- */
#define FIO_ABI_OFFSET(type, field, value) \
    FIO_STATIC_ASSERT(offsetof(struct type, field) == (value), #type "." #field " offset")

FIO_STATIC_ASSERT(sizeof(struct fio_io_uring_sqe) == 64, "io_uring_sqe is 64 bytes");
FIO_ABI_OFFSET(fio_io_uring_sqe, opcode, 0);
FIO_ABI_OFFSET(fio_io_uring_sqe, flags, 1);
FIO_ABI_OFFSET(fio_io_uring_sqe, ioprio, 2);
FIO_ABI_OFFSET(fio_io_uring_sqe, fd, 4);
FIO_ABI_OFFSET(fio_io_uring_sqe, off, 8);
FIO_ABI_OFFSET(fio_io_uring_sqe, addr, 16);
FIO_ABI_OFFSET(fio_io_uring_sqe, len, 24);
FIO_ABI_OFFSET(fio_io_uring_sqe, op_flags, 28);
FIO_ABI_OFFSET(fio_io_uring_sqe, user_data, 32);
FIO_ABI_OFFSET(fio_io_uring_sqe, buf_index, 40);
FIO_ABI_OFFSET(fio_io_uring_sqe, personality, 42);
FIO_ABI_OFFSET(fio_io_uring_sqe, splice_fd_in, 44);
FIO_ABI_OFFSET(fio_io_uring_sqe, addr3, 48);
FIO_ABI_OFFSET(fio_io_uring_sqe, __pad2, 56);

FIO_STATIC_ASSERT(sizeof(struct fio_io_uring_cqe) == 16, "io_uring_cqe is 16 bytes");
FIO_ABI_OFFSET(fio_io_uring_cqe, user_data, 0);
FIO_ABI_OFFSET(fio_io_uring_cqe, res, 8);
FIO_ABI_OFFSET(fio_io_uring_cqe, flags, 12);

FIO_STATIC_ASSERT(sizeof(struct fio_io_sqring_offsets) == 40, "io_sqring_offsets is 40 bytes");
FIO_ABI_OFFSET(fio_io_sqring_offsets, head, 0);
FIO_ABI_OFFSET(fio_io_sqring_offsets, tail, 4);
FIO_ABI_OFFSET(fio_io_sqring_offsets, ring_mask, 8);
FIO_ABI_OFFSET(fio_io_sqring_offsets, ring_entries, 12);
FIO_ABI_OFFSET(fio_io_sqring_offsets, flags, 16);
FIO_ABI_OFFSET(fio_io_sqring_offsets, dropped, 20);
FIO_ABI_OFFSET(fio_io_sqring_offsets, array, 24);
FIO_ABI_OFFSET(fio_io_sqring_offsets, user_addr, 32);

FIO_STATIC_ASSERT(sizeof(struct fio_io_cqring_offsets) == 40, "io_cqring_offsets is 40 bytes");
FIO_ABI_OFFSET(fio_io_cqring_offsets, head, 0);
FIO_ABI_OFFSET(fio_io_cqring_offsets, tail, 4);
FIO_ABI_OFFSET(fio_io_cqring_offsets, ring_mask, 8);
FIO_ABI_OFFSET(fio_io_cqring_offsets, ring_entries, 12);
FIO_ABI_OFFSET(fio_io_cqring_offsets, overflow, 16);
FIO_ABI_OFFSET(fio_io_cqring_offsets, cqes, 20);
FIO_ABI_OFFSET(fio_io_cqring_offsets, flags, 24);
FIO_ABI_OFFSET(fio_io_cqring_offsets, user_addr, 32);

FIO_STATIC_ASSERT(sizeof(struct fio_io_uring_params) == 120, "io_uring_params is 120 bytes");
FIO_ABI_OFFSET(fio_io_uring_params, sq_entries, 0);
FIO_ABI_OFFSET(fio_io_uring_params, cq_entries, 4);
FIO_ABI_OFFSET(fio_io_uring_params, flags, 8);
FIO_ABI_OFFSET(fio_io_uring_params, sq_thread_cpu, 12);
FIO_ABI_OFFSET(fio_io_uring_params, sq_thread_idle, 16);
FIO_ABI_OFFSET(fio_io_uring_params, features, 20);
FIO_ABI_OFFSET(fio_io_uring_params, wq_fd, 24);
FIO_ABI_OFFSET(fio_io_uring_params, sq_off, 40);
FIO_ABI_OFFSET(fio_io_uring_params, cq_off, 80);

FIO_STATIC_ASSERT(sizeof(struct fio_io_uring_probe_op) == 8, "io_uring_probe_op is 8 bytes");
FIO_STATIC_ASSERT(sizeof(struct fio_io_uring_probe) == 16, "io_uring_probe header is 16 bytes");
FIO_ABI_OFFSET(fio_io_uring_probe, ops_len, 1);
FIO_ABI_OFFSET(fio_io_uring_probe, ops, 16);

FIO_STATIC_ASSERT(sizeof(struct fio_io_uring_buf) == 16, "io_uring_buf is 16 bytes");
FIO_ABI_OFFSET(fio_io_uring_buf, len, 8);
FIO_ABI_OFFSET(fio_io_uring_buf, bid, 12);
FIO_ABI_OFFSET(fio_io_uring_buf, resv, 14);
FIO_STATIC_ASSERT(sizeof(struct fio_io_uring_buf_reg) == 40, "io_uring_buf_reg is 40 bytes");
FIO_ABI_OFFSET(fio_io_uring_buf_reg, ring_entries, 8);
FIO_ABI_OFFSET(fio_io_uring_buf_reg, bgid, 12);

FIO_STATIC_ASSERT(sizeof(struct fio_io_uring_rsrc_update) == 16, "io_uring_rsrc_update is 16 bytes");
FIO_ABI_OFFSET(fio_io_uring_rsrc_update, data, 8);
FIO_STATIC_ASSERT(sizeof(struct fio_io_uring_getevents_arg) == 24, "io_uring_getevents_arg is 24 bytes");
FIO_ABI_OFFSET(fio_io_uring_getevents_arg, ts, 16);
FIO_STATIC_ASSERT(sizeof(struct fio_kernel_timespec) == 16, "__kernel_timespec is 16 bytes");

#endif /* FIO_URING_ABI_H */
