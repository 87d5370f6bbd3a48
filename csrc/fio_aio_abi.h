/* SPDX-License-Identifier: MIT */
/*
 * The subset of the Linux native AIO UAPI (include/uapi/linux/aio_abi.h and
 * the RWF_* flags of include/uapi/linux/fs.h) that fastio.aio uses, under a
 * fio_/FIO_ prefix so that no system header is needed. Sizes and the offsets
 * we touch are checked below; tests/interfaces/test_abi.py checks them again against the
 * ctypes mirror (fastio/_pure/_aio_abi.py) and literal numbers.
 */
#ifndef FIO_AIO_ABI_H
#define FIO_AIO_ABI_H

#include <stddef.h>
#include <stdint.h>

#include "fio_common.h"

/* io_setup(2) hands back an opaque context id (the address of the ring the
 * kernel maps into this process). */
typedef unsigned long fio_aio_context_t;

/* aio_lio_opcode values. */
#define FIO_IOCB_CMD_PREAD 0
#define FIO_IOCB_CMD_PWRITE 1
#define FIO_IOCB_CMD_FSYNC 2
#define FIO_IOCB_CMD_FDSYNC 3
#define FIO_IOCB_CMD_POLL 5   /* Linux 4.18 */
#define FIO_IOCB_CMD_NOOP 6
#define FIO_IOCB_CMD_PREADV 7
#define FIO_IOCB_CMD_PWRITEV 8

/* aio_flags bits. */
#define FIO_IOCB_FLAG_RESFD (1U << 0)  /* signal the eventfd aio_resfd on completion */
#define FIO_IOCB_FLAG_IOPRIO (1U << 1) /* aio_reqprio is an ioprio value (4.18) */

/* aio_rw_flags bits (include/uapi/linux/fs.h), per-request preadv2 flags. */
#define FIO_RWF_HIPRI 0x00000001U
#define FIO_RWF_DSYNC 0x00000002U
#define FIO_RWF_SYNC 0x00000004U
#define FIO_RWF_NOWAIT 0x00000008U
#define FIO_RWF_APPEND 0x00000010U

/* struct iocb: one request. The kernel copies it in io_submit(2); io_cancel(2)
 * finds a request by the address of the iocb it was submitted from, so that
 * memory must stay put while the request is in flight. Field order is for a
 * little-endian machine (aio_key precedes aio_rw_flags there). */
struct fio_iocb {
    uint64_t aio_data;       /* returned unchanged in io_event.data */
    uint32_t aio_key;        /* the kernel writes 0 (KIOCB_KEY); io_cancel checks it */
    uint32_t aio_rw_flags;   /* RWF_* */
    uint16_t aio_lio_opcode; /* IOCB_CMD_* */
    int16_t aio_reqprio;     /* ioprio, used with IOCB_FLAG_IOPRIO */
    uint32_t aio_fildes;     /* the file descriptor */
    uint64_t aio_buf;        /* buffer address; iovec array for PREADV/PWRITEV; poll mask for POLL */
    uint64_t aio_nbytes;     /* byte count; iovec count for PREADV/PWRITEV */
    int64_t aio_offset;      /* file offset */
    uint64_t aio_reserved2;  /* must be 0 */
    uint32_t aio_flags;      /* IOCB_FLAG_* */
    uint32_t aio_resfd;      /* eventfd for IOCB_FLAG_RESFD */
};

/* struct io_event: one completion. */
struct fio_io_event {
    uint64_t data; /* the iocb's aio_data */
    uint64_t obj;  /* the address of the iocb it was submitted from */
    int64_t res;   /* bytes moved, a poll mask, or -errno */
    int64_t res2;  /* secondary result (0 for every file and socket op) */
};

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "fio_iocb is laid out for little-endian machines (aio_key/aio_rw_flags order)"
#endif

FIO_STATIC_ASSERT(sizeof(struct fio_iocb) == 64, "struct iocb is 64 bytes");
FIO_STATIC_ASSERT(offsetof(struct fio_iocb, aio_data) == 0, "iocb.aio_data");
FIO_STATIC_ASSERT(offsetof(struct fio_iocb, aio_key) == 8, "iocb.aio_key");
FIO_STATIC_ASSERT(offsetof(struct fio_iocb, aio_rw_flags) == 12, "iocb.aio_rw_flags");
FIO_STATIC_ASSERT(offsetof(struct fio_iocb, aio_lio_opcode) == 16, "iocb.aio_lio_opcode");
FIO_STATIC_ASSERT(offsetof(struct fio_iocb, aio_reqprio) == 18, "iocb.aio_reqprio");
FIO_STATIC_ASSERT(offsetof(struct fio_iocb, aio_fildes) == 20, "iocb.aio_fildes");
FIO_STATIC_ASSERT(offsetof(struct fio_iocb, aio_buf) == 24, "iocb.aio_buf");
FIO_STATIC_ASSERT(offsetof(struct fio_iocb, aio_nbytes) == 32, "iocb.aio_nbytes");
FIO_STATIC_ASSERT(offsetof(struct fio_iocb, aio_offset) == 40, "iocb.aio_offset");
FIO_STATIC_ASSERT(offsetof(struct fio_iocb, aio_reserved2) == 48, "iocb.aio_reserved2");
FIO_STATIC_ASSERT(offsetof(struct fio_iocb, aio_flags) == 56, "iocb.aio_flags");
FIO_STATIC_ASSERT(offsetof(struct fio_iocb, aio_resfd) == 60, "iocb.aio_resfd");
FIO_STATIC_ASSERT(sizeof(struct fio_io_event) == 32, "struct io_event is 32 bytes");
FIO_STATIC_ASSERT(offsetof(struct fio_io_event, data) == 0, "io_event.data");
FIO_STATIC_ASSERT(offsetof(struct fio_io_event, obj) == 8, "io_event.obj");
FIO_STATIC_ASSERT(offsetof(struct fio_io_event, res) == 16, "io_event.res");
FIO_STATIC_ASSERT(offsetof(struct fio_io_event, res2) == 24, "io_event.res2");

#endif /* FIO_AIO_ABI_H */
