/* SPDX-License-Identifier: MIT */
/*
 * Memory ordering for the rings shared with the kernel, on the compiler's
 * C11-style atomics (GCC/Clang __atomic builtins), so it is right on weakly
 * ordered CPUs (aarch64) as well as x86-64.
 *
 * Pairings (kernel side in io_uring/io_uring.c):
 *  - user store-release of the SQ tail  <->  kernel load-acquire of it: the
 *    SQEs written before are visible when the kernel sees the new tail.
 *  - user load-acquire of the CQ tail   <->  kernel store-release of it: the
 *    CQEs are complete when we see the tail that covers them.
 *  - user store-release of the CQ head  <->  kernel load-acquire of it: our
 *    reads of the CQEs finish before the kernel may overwrite those slots.
 *  - user load-acquire of the SQ head   <->  kernel store-release (SQPOLL):
 *    the kernel is done reading the SQEs we are about to reuse.
 *  - SQ flags (NEED_WAKEUP, CQ_OVERFLOW, TASKRUN) are read with an acquire
 *    after a full fence when the SQ tail was just published (SQPOLL wakeup).
 */
#ifndef FIO_BARRIER_H
#define FIO_BARRIER_H

#include <stdint.h>

#include "fio_common.h"

/* Load a ring index the kernel writes, ordering later reads after it. */
FIO_INLINE uint32_t fio_load_acquire(const uint32_t *p)
{
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

/* Store a ring index the kernel reads, ordering earlier accesses before it. */
FIO_INLINE void fio_store_release(uint32_t *p, uint32_t v)
{
    __atomic_store_n(p, v, __ATOMIC_RELEASE);
}

/* A single, untorn read of a value the kernel may change (no ordering). */
FIO_INLINE uint32_t fio_read_once(const uint32_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

/* Full fence: the SQ tail store is visible before the SQ flags are read, so a
 * sleeping SQPOLL thread is never missed (pairs with the kernel's smp_mb()
 * after it sets IORING_SQ_NEED_WAKEUP). */
FIO_INLINE void fio_smp_mb(void)
{
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
}

/* Store the 16-bit tail of a provided-buffer ring (kernel: smp_load_acquire). */
FIO_INLINE void fio_store_release16(uint16_t *p, uint16_t v)
{
    __atomic_store_n(p, v, __ATOMIC_RELEASE);
}

#endif /* FIO_BARRIER_H */
