/* SPDX-License-Identifier: MIT */
/*
 * The system call entries fastio waits in, each returning the kernel's result
 * or -errno, so callers can release the GIL without reading errno later.
 * epoll_pwait2 goes through syscall(2): manylinux2014's glibc 2.17 lacks it.
 */
#ifndef FIO_SYSCALL_H
#define FIO_SYSCALL_H

#define _GNU_SOURCE 1
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/uio.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "fio_common.h"

/* io_uring(7) entries, Linux 5.1; the same numbers on every architecture
 * (the unified syscall table), absent from old libc headers. */
#ifndef __NR_io_uring_setup
#define __NR_io_uring_setup 425
#endif
#ifndef __NR_io_uring_enter
#define __NR_io_uring_enter 426
#endif
#ifndef __NR_io_uring_register
#define __NR_io_uring_register 427
#endif

/* epoll_pwait2(2), Linux 5.11: epoll_wait with a timespec timeout. The number
 * is the same on every architecture (the unified syscall table). */
#ifndef __NR_epoll_pwait2
#define __NR_epoll_pwait2 441
#endif

/* Wait on epfd for at most `timeout` (NULL: forever). Returns the number of
 * ready events written to `events`, or -errno (-ENOSYS on kernels before 5.11,
 * -EPERM where a seccomp filter refuses it). */
FIO_INLINE int fio_sys_epoll_pwait2(int epfd, struct epoll_event *events, int maxevents,
                                    const struct timespec *timeout)
{
    long ret = syscall(__NR_epoll_pwait2, epfd, events, maxevents, timeout, NULL, (size_t)0);
    return ret < 0 ? -errno : (int)ret;
}

/* epoll_wait(2) with a millisecond timeout (-1: forever); -errno on failure. */
FIO_INLINE int fio_sys_epoll_wait(int epfd, struct epoll_event *events, int maxevents, int timeout_ms)
{
    int ret = epoll_wait(epfd, events, maxevents, timeout_ms);
    return ret < 0 ? -errno : ret;
}

/* ppoll(2) with no signal mask: poll with a timespec timeout (NULL: forever). */
FIO_INLINE int fio_sys_ppoll(struct pollfd *fds, nfds_t nfds, const struct timespec *timeout)
{
    int ret = ppoll(fds, nfds, timeout, NULL);
    return ret < 0 ? -errno : ret;
}

/* pselect(2) with no signal mask and no exception set (NULL timeout: forever). */
FIO_INLINE int fio_sys_pselect(int nfds, fd_set *readers, fd_set *writers, const struct timespec *timeout)
{
    int ret = pselect(nfds, readers, writers, NULL, timeout, NULL);
    return ret < 0 ? -errno : ret;
}

/* io_uring_setup(2): a new ring fd, or -errno (-ENOSYS: kernel without
 * io_uring or kernel.io_uring_disabled=2; -EPERM: disabled for this user or
 * refused by seccomp; -ENOMEM: RLIMIT_MEMLOCK on kernels before 5.12). */
FIO_INLINE int fio_sys_io_uring_setup(unsigned entries, void *params)
{
    long ret = syscall(__NR_io_uring_setup, entries, params);
    return ret < 0 ? -errno : (int)ret;
}

/* io_uring_enter(2): submit `to_submit` SQEs and/or wait for `min_complete`
 * CQEs. Returns the number of SQEs consumed, or -errno (-EINTR, -ETIME when an
 * EXT_ARG timeout expired, -EBUSY/-EAGAIN under CQ backpressure). */
FIO_INLINE int fio_sys_io_uring_enter(int fd, unsigned to_submit, unsigned min_complete, unsigned flags,
                                      const void *arg, size_t argsz)
{
    long ret = syscall(__NR_io_uring_enter, fd, to_submit, min_complete, flags, arg, argsz);
    return ret < 0 ? -errno : (int)ret;
}

/* io_uring_register(2): the opcode's result (>= 0) or -errno. */
FIO_INLINE int fio_sys_io_uring_register(int fd, unsigned opcode, const void *arg, unsigned nr_args)
{
    long ret = syscall(__NR_io_uring_register, fd, opcode, arg, nr_args);
    return ret < 0 ? -errno : (int)ret;
}

/* Linux native AIO, io_setup(2) and friends (2.6). <sys/syscall.h> defines
 * their numbers on every architecture; glibc has no wrappers (libaio does). */

/* io_setup(2): a context for nr_events requests in *ctx (which must be 0 on
 * entry), or -errno (-EAGAIN: fs.aio-max-nr would be exceeded; -ENOSYS:
 * CONFIG_AIO off or hidden by seccomp; -EINVAL: nr_events out of range). */
FIO_INLINE int fio_sys_io_setup(unsigned nr_events, unsigned long *ctx)
{
    long ret = syscall(__NR_io_setup, nr_events, ctx);
    return ret < 0 ? -errno : (int)ret;
}

/* io_destroy(2): cancel what can be cancelled, wait for every request of the
 * context to finish, free it. 0 or -errno. */
FIO_INLINE int fio_sys_io_destroy(unsigned long ctx)
{
    long ret = syscall(__NR_io_destroy, ctx);
    return ret < 0 ? -errno : (int)ret;
}

/* io_submit(2): the number of iocbs the kernel took (from the front of
 * iocbpp), or -errno when it took none (-EAGAIN: no room now). Buffered IO
 * runs inside this call, so it can block. */
FIO_INLINE long fio_sys_io_submit(unsigned long ctx, long nr, void **iocbpp)
{
    long ret = syscall(__NR_io_submit, ctx, nr, iocbpp);
    return ret < 0 ? -errno : ret;
}

/* io_getevents(2): wait for at least min_nr events (at most `timeout`, NULL:
 * forever), copy up to nr into events. The count, or -errno (-EINTR when a
 * signal arrived before any event). */
FIO_INLINE long fio_sys_io_getevents(unsigned long ctx, long min_nr, long nr, void *events,
                                     struct timespec *timeout)
{
    long ret = syscall(__NR_io_getevents, ctx, min_nr, nr, events, timeout);
    return ret < 0 ? -errno : ret;
}

/* io_cancel(2): ask the kernel to cancel the request submitted from `iocb`.
 * Since 4.19 the event always comes through the ring and success is
 * -EINPROGRESS; older kernels return 0 and write it into *result. -EINVAL:
 * not found, or the request cannot be cancelled (file reads and writes). */
FIO_INLINE int fio_sys_io_cancel(unsigned long ctx, void *iocb, void *result)
{
    long ret = syscall(__NR_io_cancel, ctx, iocb, result);
    return ret < 0 ? -errno : (int)ret;
}

/* preadv2(2), Linux 4.6, through syscall(2): manylinux2014's glibc 2.17 has
 * no wrapper, and its kernel headers no number, so the number is spelled out
 * where the headers lack it (it differs between architectures); elsewhere the
 * call is -ENOSYS and the caller reads another way. */
#ifndef __NR_preadv2
#if defined(__x86_64__) && !defined(__ILP32__)
#define __NR_preadv2 327
#elif defined(__aarch64__)
#define __NR_preadv2 286
#elif defined(__i386__)
#define __NR_preadv2 378
#endif
#endif

/* One preadv2 of `n` bytes at `offset` into `buf` with the RWF_* `flags`:
 * the count read (0 at the end of the file), or -errno (-EAGAIN for
 * RWF_NOWAIT when the page cache does not hold the first page). The offset
 * goes as the kernel's pos_l/pos_h pair: pos_h is the high half on 32-bit
 * and shifted out on 64-bit, as the kernel joins them. */
FIO_INLINE long fio_sys_preadv2(int fd, void *buf, size_t n, long long offset, unsigned int flags)
{
#ifdef __NR_preadv2
    struct iovec iov = {buf, n};
    unsigned long long pos = (unsigned long long)offset;
    unsigned long lo = (unsigned long)pos;
    unsigned long hi = (unsigned long)((pos >> (sizeof(long) * 4)) >> (sizeof(long) * 4));
    long ret = syscall(__NR_preadv2, fd, &iov, 1, lo, hi, flags);
    return ret < 0 ? -errno : ret;
#else
    (void)fd; (void)buf; (void)n; (void)offset; (void)flags;
    return -ENOSYS;
#endif
}

#endif /* FIO_SYSCALL_H */
