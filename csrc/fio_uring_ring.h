/* SPDX-License-Identifier: MIT */
/*
 * The SQ and CQ of one io_uring instance, mapped from the ring fd, and the
 * few operations on them: init/exit, get an SQE, publish and submit, copy
 * ready CQEs out. No Python here; every function returns 0/count or -errno.
 *
 * Threading: the caller serialises every call that touches ring memory (the
 * Cython layer holds the GIL for them); only fio_sys_io_uring_enter itself
 * runs without it.
 */
#ifndef FIO_URING_RING_H
#define FIO_URING_RING_H

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "fio_barrier.h"
#include "fio_common.h"
#include "fio_syscall.h"
#include "fio_uring_abi.h"

struct fio_sq {
    uint32_t *khead;          /* kernel-owned head */
    uint32_t *ktail;          /* user-owned tail, read by the kernel */
    uint32_t *kflags;         /* IORING_SQ_* */
    uint32_t *kdropped;
    uint32_t *array;          /* NULL with SETUP_NO_SQARRAY */
    struct fio_io_uring_sqe *sqes;
    uint32_t ring_mask;
    uint32_t ring_entries;
    uint32_t sqe_tail;        /* our next free SQE; published to *ktail on flush */
    void *ring_ptr;
    size_t ring_sz;
    size_t sqes_sz;
};

struct fio_cq {
    uint32_t *khead;          /* user-owned head, read by the kernel */
    uint32_t *ktail;          /* kernel-owned tail */
    uint32_t *koverflow;
    uint32_t *kflags;
    struct fio_io_uring_cqe *cqes;
    uint32_t ring_mask;
    uint32_t ring_entries;
    void *ring_ptr;           /* == sq.ring_ptr with FEAT_SINGLE_MMAP */
    size_t ring_sz;
};

struct fio_ring {
    int fd;                   /* -1 when not set up */
    uint32_t flags;           /* the IORING_SETUP_* it was made with */
    uint32_t features;        /* IORING_FEAT_* the kernel reported */
    struct fio_sq sq;
    struct fio_cq cq;
};

#define FIO_RING_PTR(base, off) ((void *)((char *)(base) + (off)))

/* Zero state that fio_ring_exit accepts (nothing mapped, no fd). */
FIO_INLINE void fio_ring_clear(struct fio_ring *r)
{
    memset(r, 0, sizeof(*r));
    r->fd = -1;
    r->sq.ring_ptr = MAP_FAILED;
    r->sq.sqes = MAP_FAILED;
    r->cq.ring_ptr = MAP_FAILED;
}

/* Unmap the CQ ring (if separate), then the SQ ring and SQE array, then close
 * the fd. Safe on a cleared or partly set up ring; leaves it cleared. The
 * kernel keeps the rings alive until its last reference goes, so in-flight
 * requests must have been reaped by the caller before this. */
FIO_INLINE void fio_ring_exit(struct fio_ring *r)
{
    if (r->cq.ring_ptr != MAP_FAILED && r->cq.ring_ptr != r->sq.ring_ptr)
        munmap(r->cq.ring_ptr, r->cq.ring_sz);
    if (r->sq.ring_ptr != MAP_FAILED)
        munmap(r->sq.ring_ptr, r->sq.ring_sz);
    if (r->sq.sqes != MAP_FAILED)
        munmap(r->sq.sqes, r->sq.sqes_sz);
    if (r->fd >= 0)
        close(r->fd);
    fio_ring_clear(r);
}

/* io_uring_setup(entries, p) and map the rings. On success 0 and *r is live;
 * on failure -errno and *r is cleared (nothing leaks). p->flags must not ask
 * for SQE128, CQE32 or NO_MMAP (the caller refuses those). */
FIO_INLINE int fio_ring_init(struct fio_ring *r, unsigned entries, struct fio_io_uring_params *p)
{
    int fd, err;
    uint32_t i;
    void *ptr;

    fio_ring_clear(r);
    fd = fio_sys_io_uring_setup(entries, p);
    if (fd < 0)
        return fd;
    r->fd = fd;
    r->flags = p->flags;
    r->features = p->features;

    r->sq.ring_sz = p->sq_off.array + p->sq_entries * sizeof(uint32_t);
    if (p->flags & FIO_IORING_SETUP_NO_SQARRAY)
        r->sq.ring_sz = p->sq_off.ring_entries + sizeof(uint32_t) * 4;
    r->cq.ring_sz = p->cq_off.cqes + p->cq_entries * sizeof(struct fio_io_uring_cqe);
    if (r->features & FIO_IORING_FEAT_SINGLE_MMAP) {
        /* One mapping serves both rings (5.4): map the larger size once. */
        if (r->cq.ring_sz > r->sq.ring_sz)
            r->sq.ring_sz = r->cq.ring_sz;
        r->cq.ring_sz = r->sq.ring_sz;
    }
    ptr = mmap(NULL, r->sq.ring_sz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd,
               (off_t)FIO_IORING_OFF_SQ_RING);
    if (ptr == MAP_FAILED)
        goto fail;
    r->sq.ring_ptr = ptr;
    if (r->features & FIO_IORING_FEAT_SINGLE_MMAP) {
        r->cq.ring_ptr = ptr;
    } else {
        ptr = mmap(NULL, r->cq.ring_sz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd,
                   (off_t)FIO_IORING_OFF_CQ_RING);
        if (ptr == MAP_FAILED)
            goto fail;
        r->cq.ring_ptr = ptr;
    }
    r->sq.sqes_sz = p->sq_entries * sizeof(struct fio_io_uring_sqe);
    ptr = mmap(NULL, r->sq.sqes_sz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd,
               (off_t)FIO_IORING_OFF_SQES);
    if (ptr == MAP_FAILED)
        goto fail;
    r->sq.sqes = ptr;

    r->sq.khead = FIO_RING_PTR(r->sq.ring_ptr, p->sq_off.head);
    r->sq.ktail = FIO_RING_PTR(r->sq.ring_ptr, p->sq_off.tail);
    r->sq.kflags = FIO_RING_PTR(r->sq.ring_ptr, p->sq_off.flags);
    r->sq.kdropped = FIO_RING_PTR(r->sq.ring_ptr, p->sq_off.dropped);
    r->sq.ring_mask = *(uint32_t *)FIO_RING_PTR(r->sq.ring_ptr, p->sq_off.ring_mask);
    r->sq.ring_entries = *(uint32_t *)FIO_RING_PTR(r->sq.ring_ptr, p->sq_off.ring_entries);
    r->sq.sqe_tail = *r->sq.ktail;
    r->sq.array = NULL;
    if (!(p->flags & FIO_IORING_SETUP_NO_SQARRAY)) {
        /* SQE i always sits in slot i: fill the index array once. */
        r->sq.array = FIO_RING_PTR(r->sq.ring_ptr, p->sq_off.array);
        for (i = 0; i < r->sq.ring_entries; i++)
            r->sq.array[i] = i;
    }

    r->cq.khead = FIO_RING_PTR(r->cq.ring_ptr, p->cq_off.head);
    r->cq.ktail = FIO_RING_PTR(r->cq.ring_ptr, p->cq_off.tail);
    r->cq.koverflow = FIO_RING_PTR(r->cq.ring_ptr, p->cq_off.overflow);
    r->cq.kflags = p->cq_off.flags ? FIO_RING_PTR(r->cq.ring_ptr, p->cq_off.flags) : NULL;
    r->cq.cqes = FIO_RING_PTR(r->cq.ring_ptr, p->cq_off.cqes);
    r->cq.ring_mask = *(uint32_t *)FIO_RING_PTR(r->cq.ring_ptr, p->cq_off.ring_mask);
    r->cq.ring_entries = *(uint32_t *)FIO_RING_PTR(r->cq.ring_ptr, p->cq_off.ring_entries);
    return 0;

fail:
    err = -errno;
    fio_ring_exit(r);
    return err;
}

/* SQEs queued by us and not yet consumed by the kernel (published or not). */
FIO_INLINE uint32_t fio_ring_sq_ready(const struct fio_ring *r)
{
    /* acquire: pairs with the kernel's store-release of the head (SQPOLL
     * consumes on another CPU); after it we may reuse the consumed slots. */
    return r->sq.sqe_tail - fio_load_acquire(r->sq.khead);
}

/* Free SQE slots. */
FIO_INLINE uint32_t fio_ring_sq_space(const struct fio_ring *r)
{
    return r->sq.ring_entries - fio_ring_sq_ready(r);
}

/* The next free SQE, or NULL when the SQ is full. The SQE is not zeroed: the
 * fio_prep_* helpers write all 64 bytes. It is published by fio_ring_flush_sq. */
FIO_INLINE struct fio_io_uring_sqe *fio_ring_get_sqe(struct fio_ring *r)
{
    struct fio_io_uring_sqe *sqe;
    if (fio_ring_sq_ready(r) >= r->sq.ring_entries)
        return NULL;
    sqe = &r->sq.sqes[r->sq.sqe_tail & r->sq.ring_mask];
    r->sq.sqe_tail++;
    return sqe;
}

/* The SQE at ring position `index` (for inspection before submit). */
FIO_INLINE struct fio_io_uring_sqe *fio_ring_sqe_at(struct fio_ring *r, uint32_t index)
{
    return &r->sq.sqes[index & r->sq.ring_mask];
}

/* Publish the queued SQEs to the kernel; returns how many are pending. */
FIO_INLINE uint32_t fio_ring_flush_sq(struct fio_ring *r)
{
    /* release: the SQE contents are visible before the kernel sees the tail
     * (pairs with the kernel's smp_load_acquire of sq.tail). */
    fio_store_release(r->sq.ktail, r->sq.sqe_tail);
    return fio_ring_sq_ready(r);
}

/* Where the link chain left open at the end of the queued SQEs starts: the
 * index of its first SQE, or sqe_tail when the last queued SQE has neither
 * IOSQE_IO_LINK (1 << 2) nor IOSQE_IO_HARDLINK (1 << 3). The kernel ends a
 * chain at the end of each submission, so an automatic submit must stop
 * before this index to keep the chain whole. The walk stops at the tail
 * already published: SQEs below it belong to the kernel (an SQPOLL thread,
 * or an io_uring_enter running in another thread, may be reading them right
 * now), so a chain that began there is already split and the new part
 * starts at the published tail. Walking down to the kernel's head instead
 * would let fio_ring_flush_sq_to store a lower tail than the kernel has seen,
 * and the kernel would then run stale SQEs again. */
FIO_INLINE uint32_t fio_ring_open_chain_start(const struct fio_ring *r)
{
    uint32_t published = *r->sq.ktail;   /* ours: only we store it */
    uint32_t i = r->sq.sqe_tail;
    while (i != published && (r->sq.sqes[(i - 1) & r->sq.ring_mask].flags & ((1u << 2) | (1u << 3))))
        i--;
    return i;
}

/* Publish the queued SQEs before index `upto` only; returns how many
 * published SQEs the kernel has not consumed yet. The tail never moves back:
 * an `upto` below the published tail (or beyond the queued SQEs) publishes
 * nothing new, since the kernel may already have read the SQEs up to the old
 * tail, and a lower tail would make it count (tail - head) as ~4e9 SQEs. */
FIO_INLINE uint32_t fio_ring_flush_sq_to(struct fio_ring *r, uint32_t upto)
{
    uint32_t published = *r->sq.ktail;
    if (upto - published <= r->sq.sqe_tail - published && upto != published)
        fio_store_release(r->sq.ktail, upto);
    else
        upto = published;
    return upto - fio_load_acquire(r->sq.khead);
}

/* Whether submitting needs io_uring_enter, and with which extra flags.
 * Without SQPOLL: always. With SQPOLL: only to wake a sleeping thread. */
FIO_INLINE int fio_ring_needs_enter(const struct fio_ring *r, unsigned *flags)
{
    if (!(r->flags & FIO_IORING_SETUP_SQPOLL))
        return 1;
    /* Full fence: the tail store is visible before we read NEED_WAKEUP (pairs
     * with the kernel's smp_mb() after setting it), else a wakeup is lost. */
    fio_smp_mb();
    if (fio_read_once(r->sq.kflags) & FIO_IORING_SQ_NEED_WAKEUP) {
        *flags |= FIO_IORING_ENTER_SQ_WAKEUP;
        return 1;
    }
    return 0;
}

/* SQ ring flags (IORING_SQ_CQ_OVERFLOW / TASKRUN tell a reaper to enter). */
FIO_INLINE uint32_t fio_ring_sq_flags(const struct fio_ring *r)
{
    return fio_load_acquire(r->sq.kflags);
}

/* CQEs ready to be copied. */
FIO_INLINE uint32_t fio_ring_cq_ready(const struct fio_ring *r)
{
    /* acquire: pairs with the kernel's store-release of cq.tail, so the CQEs
     * below the tail we see are fully written. The head is ours. */
    return fio_load_acquire(r->cq.ktail) - *r->cq.khead;
}

/* Copy up to `max` ready CQEs into out[] and advance the head once. Returns
 * the count. (Zig's copy_cqes: no per-CQE "seen" step.) */
FIO_INLINE uint32_t fio_ring_cq_copy(struct fio_ring *r, struct fio_io_uring_cqe *out, uint32_t max)
{
    uint32_t head = *r->cq.khead;
    uint32_t ready = fio_load_acquire(r->cq.ktail) - head;
    uint32_t n = ready < max ? ready : max;
    uint32_t i;
    for (i = 0; i < n; i++)
        out[i] = r->cq.cqes[(head + i) & r->cq.ring_mask];
    if (n)
        /* release: our reads of those CQEs complete before the kernel sees
         * the slots free (pairs with its load-acquire of cq.head). */
        fio_store_release(r->cq.khead, head + n);
    return n;
}

#endif /* FIO_URING_RING_H */
