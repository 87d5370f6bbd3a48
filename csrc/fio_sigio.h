/* SPDX-License-Identifier: MIT */
/*
 * Signal-driven IO: arm an fd so the kernel queues a real-time signal, aimed
 * at one thread, whenever the fd's readiness changes (fcntl(2): O_ASYNC,
 * F_SETOWN_EX with F_OWNER_TID, F_SETSIG), put it back exactly as it was, and
 * read the queued signals in batches through a signalfd(2).
 *
 * Every helper returns 0 (or a count) or -errno and never touches Python, so
 * callers may run them without the GIL.
 */
#ifndef FIO_SIGIO_H
#define FIO_SIGIO_H

#define _GNU_SOURCE 1
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "fio_common.h"

/* fcntl commands from include/uapi/asm-generic/fcntl.h, for libcs that hide
 * them without _GNU_SOURCE; the values are the same on every architecture. */
#ifndef F_SETSIG
#define F_SETSIG 10
#endif
#ifndef F_GETSIG
#define F_GETSIG 11
#endif
#ifndef F_SETOWN_EX
#define F_SETOWN_EX 15
#endif
#ifndef F_GETOWN_EX
#define F_GETOWN_EX 16
#endif
#ifndef F_OWNER_TID
#define F_OWNER_TID 0
#endif

/* struct f_owner_ex (include/uapi/asm-generic/fcntl.h): who gets the signal. */
struct fio_owner_ex {
    int type; /* F_OWNER_TID 0, F_OWNER_PID 1, F_OWNER_PGRP 2 */
    int pid;  /* the thread, process or group id; 0: no owner */
};
FIO_STATIC_ASSERT(sizeof(struct fio_owner_ex) == 8, "struct f_owner_ex is 8 bytes");

/* struct signalfd_siginfo (include/uapi/linux/signalfd.h): 128 bytes per
 * signal read. Only the fields fastio reads are named; the rest is padding. */
struct fio_signalfd_siginfo {
    uint32_t ssi_signo; /* the signal number */
    int32_t ssi_errno;  /* unused by SIGIO */
    int32_t ssi_code;   /* POLL_IN..POLL_HUP for an F_SETSIG signal; SI_KERNEL for the fallback SIGIO */
    uint32_t ssi_pid;   /* sender pid (0 from the kernel) */
    uint32_t ssi_uid;   /* sender uid */
    int32_t ssi_fd;     /* the fd that became ready (F_SETSIG signals only) */
    uint32_t ssi_tid;   /* timer id, unused */
    uint32_t ssi_band;  /* the poll(2) event bits of the change */
    uint8_t ssi_rest[96];
};
FIO_STATIC_ASSERT(sizeof(struct fio_signalfd_siginfo) == 128, "signalfd_siginfo is 128 bytes");
FIO_STATIC_ASSERT(offsetof(struct fio_signalfd_siginfo, ssi_code) == 8, "ssi_code at 8");
FIO_STATIC_ASSERT(offsetof(struct fio_signalfd_siginfo, ssi_fd) == 20, "ssi_fd at 20");
FIO_STATIC_ASSERT(offsetof(struct fio_signalfd_siginfo, ssi_band) == 28, "ssi_band at 28");
FIO_STATIC_ASSERT(sizeof(struct fio_signalfd_siginfo) == sizeof(struct signalfd_siginfo),
                  "our signalfd_siginfo matches the libc one");

/* What fio_sigio_arm() changed and fio_sigio_restore() puts back. */
struct fio_sigio_saved {
    int flags;                  /* F_GETFL before arming */
    struct fio_owner_ex owner;  /* F_GETOWN_EX before arming */
    int sig;                    /* F_GETSIG before arming (0: plain SIGIO) */
};

/* The calling thread's kernel id (what F_OWNER_TID takes). */
FIO_INLINE int fio_gettid(void)
{
    return (int)syscall(SYS_gettid);
}

FIO_INLINE int fio_fcntl_int(int fd, int cmd, long arg)
{
    int ret = fcntl(fd, cmd, arg);
    return ret < 0 ? -errno : ret;
}

FIO_INLINE int fio_fcntl_owner(int fd, int cmd, struct fio_owner_ex *owner)
{
    int ret = fcntl(fd, cmd, owner);
    return ret < 0 ? -errno : ret;
}

/* Put fd back as `saved` describes. If the saved flags had O_ASYNC off, it is
 * turned off first so that no signal of ours fires while owner and signal
 * change; otherwise owner and signal go back first and the flags last.
 * Every step is tried; returns 0 or the first -errno. */
FIO_INLINE int fio_sigio_restore(int fd, const struct fio_sigio_saved *saved)
{
    struct fio_owner_ex owner = saved->owner;
    int err = 0, ret;
    if (!(saved->flags & O_ASYNC)) {
        ret = fio_fcntl_int(fd, F_SETFL, saved->flags);
        err = err ? err : (ret < 0 ? ret : 0);
    }
    ret = fio_fcntl_owner(fd, F_SETOWN_EX, &owner);
    err = err ? err : (ret < 0 ? ret : 0);
    ret = fio_fcntl_int(fd, F_SETSIG, saved->sig);
    err = err ? err : (ret < 0 ? ret : 0);
    if (saved->flags & O_ASYNC) {
        ret = fio_fcntl_int(fd, F_SETFL, saved->flags);
        err = err ? err : (ret < 0 ? ret : 0);
    }
    return err;
}

/* Record fd's flags, owner and signal in `saved`, then make the kernel queue
 * `signum` at thread `tid` on every readiness change of fd: owner and signal
 * first, so no signal reaches anyone else, then O_ASYNC | O_NONBLOCK.
 *
 * A tty's fasync hook (tty_fasync, drivers/tty/tty_io.c) resets the owner to
 * the foreground process group or the process when O_ASYNC turns on, so the
 * owner is read back and set again if it changed.
 *
 * Returns 1 if O_ASYNC is now on, 0 if the kernel kept it off (a file with no
 * fasync hook: eventfd, timerfd), or -errno with fd put back as it was (as far
 * as the kernel lets: the rollback's own errors are not reported over the
 * first one). */
FIO_INLINE int fio_sigio_arm(int fd, int tid, int signum, struct fio_sigio_saved *saved)
{
    struct fio_owner_ex owner = {F_OWNER_TID, tid}, check;
    int ret;
    ret = fio_fcntl_int(fd, F_GETFL, 0);
    if (ret < 0)
        return ret;
    saved->flags = ret;
    ret = fio_fcntl_owner(fd, F_GETOWN_EX, &saved->owner);
    if (ret < 0)
        return ret;
    ret = fio_fcntl_int(fd, F_GETSIG, 0);
    if (ret < 0)
        return ret;
    saved->sig = ret;
    ret = fio_fcntl_owner(fd, F_SETOWN_EX, &owner);
    if (ret >= 0)
        ret = fio_fcntl_int(fd, F_SETSIG, signum);
    if (ret >= 0)
        ret = fio_fcntl_int(fd, F_SETFL, saved->flags | O_ASYNC | O_NONBLOCK);
    if (ret >= 0)
        ret = fio_fcntl_owner(fd, F_GETOWN_EX, &check);
    if (ret >= 0 && (check.type != owner.type || check.pid != owner.pid))
        ret = fio_fcntl_owner(fd, F_SETOWN_EX, &owner);
    if (ret >= 0)
        ret = fio_fcntl_int(fd, F_GETFL, 0);
    if (ret < 0) {
        fio_sigio_restore(fd, saved);
        return ret;
    }
    return (ret & O_ASYNC) ? 1 : 0;
}

/* Whether fd's open file is still as fio_sigio_arm(fd, tid, signum) left it:
 * owner (F_OWNER_TID, tid), signal `signum` and, if `async_on` (arm returned 1),
 * O_ASYNC on. The owner, the signal and O_ASYNC belong to the open file, not
 * to the fd number: a file opened anew at the same number (a FIFO reopened:
 * same st_dev and st_ino) has no owner and O_ASYNC off. Returns 1, 0, or
 * -errno (-EBADF: fd is not open). */
FIO_INLINE int fio_sigio_is_armed(int fd, int tid, int signum, int async_on)
{
    struct fio_owner_ex owner;
    int flags, sig, ret;
    flags = fio_fcntl_int(fd, F_GETFL, 0);
    if (flags < 0)
        return flags;
    sig = fio_fcntl_int(fd, F_GETSIG, 0);
    if (sig < 0)
        return sig;
    ret = fio_fcntl_owner(fd, F_GETOWN_EX, &owner);
    if (ret < 0)
        return ret;
    if (async_on && !(flags & O_ASYNC))
        return 0;
    return sig == signum && owner.type == F_OWNER_TID && owner.pid == tid;
}

/* One read(2) of at most `max` signals from a signalfd into `out`. Returns
 * the number read, 0 never (a signalfd read returns at least one or fails),
 * or -errno (-EAGAIN: none pending on a non-blocking signalfd; -EINTR). */
FIO_INLINE int fio_sigio_read(int sfd, struct fio_signalfd_siginfo *out, int max)
{
    ssize_t n = read(sfd, out, (size_t)max * sizeof(*out));
    return n < 0 ? -errno : (int)(n / (ssize_t)sizeof(*out));
}

/* Wait until `sfd` is readable or `timeout` (NULL: forever) passes, with the
 * signal mask left as it is. Returns 1, 0 on timeout, or -errno. */
FIO_INLINE int fio_sigio_wait_readable(int sfd, const struct timespec *timeout)
{
    struct pollfd p = {sfd, POLLIN, 0};
    int ret = ppoll(&p, 1, timeout, NULL);
    return ret < 0 ? -errno : ret;
}

/* sigsuspend(2) with a timeout, for the textbook mode: wait with `mask` as
 * the thread's signal mask until a signal handler runs (-EINTR) or `timeout`
 * passes (0). The old mask is back when it returns. */
FIO_INLINE int fio_sigsuspend_timeout(const sigset_t *mask, const struct timespec *timeout)
{
    int ret = ppoll(NULL, 0, timeout, mask);
    return ret < 0 ? -errno : ret;
}

/* ppoll(2) over an array with a zero timeout: the readiness right now. */
FIO_INLINE int fio_poll_now(struct pollfd *fds, nfds_t n)
{
    struct timespec zero = {0, 0};
    int ret = ppoll(fds, n, &zero, NULL);
    return ret < 0 ? -errno : ret;
}

#endif /* FIO_SIGIO_H */
