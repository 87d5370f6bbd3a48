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

#endif /* FIO_SYSCALL_H */
