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

#endif /* FIO_SYSCALL_H */
