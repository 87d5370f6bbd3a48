/* SPDX-License-Identifier: MIT */
/*
 * The reference echo server on io_uring, beside fio_echo.h's epoll one: what
 * a competent C programmer writes with the ring, nothing exotic. One thread:
 *
 * - the listener is accepted from with IORING_OP_ACCEPT (SOCK_CLOEXEC),
 *   re-armed after each completion; on a non-blocking listener the kernel
 *   may answer -EAGAIN, and a one-shot POLL_ADD waits for the next client;
 *   EMFILE/ENFILE release a spare fd to accept and close the pending
 *   connection, as fio_echo.h does; TCP connections get TCP_NODELAY;
 * - every connection has a RECV of up to FIO_ECHO_BUF bytes into its own
 *   buffer; what comes is echoed by a SEND (MSG_WAITALL) linked to the next
 *   RECV (IOSQE_IO_LINK), so the kernel starts that RECV only once the SEND
 *   has read the buffer, and no submit is needed between them; a short or
 *   failed SEND cancels the linked RECV, and once both are reaped the rest
 *   is sent again (or the connection closed);
 * - one io_uring_enter per turn submits everything the last completions
 *   queued and waits for one completion more than the SENDs it submits
 *   (those mostly complete during the submit), with a 1 ms bound so that a
 *   SEND waiting for room cannot hold the loop;
 * - EOF, a reset or any other error closes that connection only;
 * - a POLL_ADD on the wake fd ends the loop (the fd is not drained): every
 *   request left is cancelled by its user_data and reaped before any buffer
 *   is freed, then every connection is closed. The listener and the wake fd
 *   belong to the caller and stay open.
 */
#ifndef FIO_ECHO_URING_H
#define FIO_ECHO_URING_H

#define _GNU_SOURCE 1
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fio_common.h"
#include "fio_echo.h"
#include "fio_uring_prep.h"
#include "fio_uring_ring.h"

#define FIO_EU_ENTRIES 1024u
#define FIO_EU_CQES 256u

/* user_data of the requests that are not a connection's (no malloc'd
 * pointer is this small). */
enum { FIO_EU_ACCEPT = 1, FIO_EU_ACCEPT_POLL = 2, FIO_EU_WAKE = 3, FIO_EU_CANCEL = 4 };

/* A connection's receive-side request; its SEND has user_data | FIO_EU_TX. */
enum fio_eu_op { FIO_EU_RECV, FIO_EU_POLL_IN, FIO_EU_POLL_OUT };
#define FIO_EU_TX ((uint64_t)1)

struct fio_eu_conn {
    int fd;
    enum fio_eu_op op;            /* the receive-side request in flight */
    uint8_t inflight;             /* its requests not yet reaped (0-2) */
    uint8_t dead;                 /* EOF or error: close once inflight is 0 */
    uint8_t need_room;            /* the SEND answered -EAGAIN: poll for POLLOUT */
    uint32_t off, len;            /* buf[off, len) is still to be sent */
    unsigned char *buf;           /* FIO_ECHO_BUF bytes */
    struct fio_eu_conn *prev, *next;
};

struct fio_eu {
    struct fio_ring ring;
    int listen_fd, spare_fd, tcp, stopping, timed;
    uint32_t inflight;            /* requests submitted or queued, not yet completed */
    uint32_t sends;               /* SENDs queued since the last io_uring_enter */
    struct fio_eu_conn head;      /* circular list of live connections */
    struct fio_echo_stats *st;
};

/* Room for n SQEs, submitting what is queued when the SQ is short: 0, or
 * the error of a submit the kernel refused. */
FIO_INLINE int fio_eu_room(struct fio_eu *s, uint32_t n)
{
    while (fio_ring_sq_space(&s->ring) < n) {
        int ret = fio_sys_io_uring_enter(s->ring.fd, fio_ring_flush_sq(&s->ring), 0, 0, NULL, 0);
        if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY)
            return ret;
    }
    return 0;
}

/* A free SQE; NULL only if the kernel refused a submit (its error in *err). */
FIO_INLINE struct fio_io_uring_sqe *fio_eu_sqe(struct fio_eu *s, int *err)
{
    struct fio_io_uring_sqe *sqe;
    if ((*err = fio_eu_room(s, 1)) < 0)
        return NULL;
    if ((sqe = fio_ring_get_sqe(&s->ring)) == NULL) {
        *err = -EBUSY;   /* (not after fio_eu_room) */
        return NULL;
    }
    s->inflight++;
    return sqe;
}

FIO_INLINE int fio_eu_accept(struct fio_eu *s)
{
    int err = 0;
    struct fio_io_uring_sqe *sqe = fio_eu_sqe(s, &err);
    if (sqe == NULL)
        return err;
    fio_prep_accept(sqe, s->listen_fd, SOCK_CLOEXEC, 0);
    sqe->user_data = FIO_EU_ACCEPT;
    return 0;
}

FIO_INLINE int fio_eu_poll(struct fio_eu *s, int fd, uint32_t mask, uint64_t user_data)
{
    int err = 0;
    struct fio_io_uring_sqe *sqe = fio_eu_sqe(s, &err);
    if (sqe == NULL)
        return err;
    fio_prep_poll_add(sqe, fd, mask, 0);
    sqe->user_data = user_data;
    return 0;
}

/* The connection's next receive-side request: op, on its buffer. */
FIO_INLINE int fio_eu_issue(struct fio_eu *s, struct fio_eu_conn *c, enum fio_eu_op op)
{
    int err = 0;
    struct fio_io_uring_sqe *sqe = fio_eu_sqe(s, &err);
    if (sqe == NULL)
        return err;
    c->op = op;
    c->inflight++;
    switch (op) {
    case FIO_EU_RECV:
        fio_prep_sendrecv(sqe, FIO_OP_RECV, c->fd, c->buf, FIO_ECHO_BUF, 0);
        break;
    case FIO_EU_POLL_IN:
        fio_prep_poll_add(sqe, c->fd, POLLIN, 0);
        break;
    case FIO_EU_POLL_OUT:
        fio_prep_poll_add(sqe, c->fd, POLLOUT, 0);
        break;
    }
    sqe->user_data = (uint64_t)(uintptr_t)c;
    return 0;
}

/* Send buf[off, len) and receive again after it: two SQEs of one submit
 * (the kernel ends a link chain at the end of a submit, so room for both
 * is made first). */
FIO_INLINE int fio_eu_echo(struct fio_eu *s, struct fio_eu_conn *c)
{
    int err = fio_eu_room(s, 2);
    if (err < 0)
        return err;
    struct fio_io_uring_sqe *sqe = fio_ring_get_sqe(&s->ring);
    if (sqe == NULL)
        return -EBUSY;   /* (not after fio_eu_room) */
    fio_prep_sendrecv(sqe, FIO_OP_SEND, c->fd, c->buf + c->off, c->len - c->off, MSG_NOSIGNAL | MSG_WAITALL);
    sqe->flags |= FIO_IOSQE_IO_LINK;
    sqe->user_data = (uint64_t)(uintptr_t)c | FIO_EU_TX;
    s->inflight++;
    c->inflight++;
    s->sends++;
    return fio_eu_issue(s, c, FIO_EU_RECV);
}

/* Only once the connection has nothing in flight. */
FIO_INLINE void fio_eu_close(struct fio_eu *s, struct fio_eu_conn *c, int error)
{
    if (error)
        s->st->conn_errors++;
    c->prev->next = c->next;
    c->next->prev = c->prev;
    (void)close(c->fd);
    free(c->buf);
    free(c);
}

/* An accepted connection (fd >= 0), or the kernel's refusal (-errno). */
FIO_INLINE int fio_eu_accepted(struct fio_eu *s, int res)
{
    if (res < 0 && s->stopping)
        return 0;   /* (cancelled) */
    if (res == -EAGAIN)
        return fio_eu_poll(s, s->listen_fd, POLLIN, FIO_EU_ACCEPT_POLL);
    if (res < 0) {
        switch (res) {
        case -EMFILE:
        case -ENFILE:
            /* Out of fds: the pending client would be offered again at once.
             * Take it with the spare fd's slot and close it. */
            s->st->accept_errors++;
            if (s->spare_fd >= 0) {
                int fd;
                (void)close(s->spare_fd);
                fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
                if (fd >= 0)
                    (void)close(fd);
                s->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
            }
            break;
        case -ENOBUFS:
        case -ENOMEM:
        case -ECONNABORTED:
        case -EPROTO:
        case -EPERM:
        case -EINTR:
        case -ECANCELED:
            s->st->accept_errors++;
            break;
        default:
            return res;  /* the listener is unusable */
        }
        return fio_eu_accept(s);
    }
    if (s->stopping) {
        (void)close(res);
        return 0;
    }
    struct fio_eu_conn *c = malloc(sizeof(*c));
    unsigned char *buf = malloc(FIO_ECHO_BUF);
    if (c == NULL || buf == NULL) {
        free(c);
        free(buf);
        (void)close(res);
        s->st->accept_errors++;
        return fio_eu_accept(s);
    }
    if (s->tcp) {
        int one = 1;
        /* Only a latency matter: a failure leaves Nagle on. */
        (void)setsockopt(res, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    }
    c->fd = res;
    c->buf = buf;
    c->off = c->len = 0;
    c->inflight = c->dead = c->need_room = 0;
    c->next = s->head.next;
    c->prev = &s->head;
    s->head.next->prev = c;
    s->head.next = c;
    s->st->accepted++;
    int ret = fio_eu_issue(s, c, FIO_EU_RECV);
    if (ret < 0)
        return ret;
    return fio_eu_accept(s);
}

/* What a connection does once none of its requests is in flight. */
FIO_INLINE int fio_eu_settle(struct fio_eu *s, struct fio_eu_conn *c)
{
    if (c->inflight > 0)
        return 0;
    if (c->dead || s->stopping) {
        fio_eu_close(s, c, c->dead > 1);
        return 0;
    }
    if (c->need_room) {
        c->need_room = 0;
        return fio_eu_issue(s, c, FIO_EU_POLL_OUT);
    }
    return fio_eu_echo(s, c);   /* after a short SEND: the rest */
}

/* The completion of connection c's SEND. */
FIO_INLINE int fio_eu_sent(struct fio_eu *s, struct fio_eu_conn *c, int res)
{
    c->inflight--;
    if (res == -EAGAIN)
        c->need_room = 1;
    else if (res <= 0)
        c->dead = 2;
    else
        c->off += (uint32_t)res;
    /* A full SEND leaves its linked RECV running; anything else cancelled it. */
    return fio_eu_settle(s, c);
}

/* The completion of connection c's receive-side request. */
FIO_INLINE int fio_eu_done(struct fio_eu *s, struct fio_eu_conn *c, int res)
{
    c->inflight--;
    if (s->stopping || c->dead)
        return fio_eu_settle(s, c);
    switch (c->op) {
    case FIO_EU_POLL_IN:
        if (res < 0) {
            c->dead = 2;
            return fio_eu_settle(s, c);
        }
        return fio_eu_issue(s, c, FIO_EU_RECV);
    case FIO_EU_POLL_OUT:
        if (res < 0) {
            c->dead = 2;
            return fio_eu_settle(s, c);
        }
        return fio_eu_echo(s, c);
    case FIO_EU_RECV:
        if (res == -ECANCELED && c->off < c->len)
            return fio_eu_settle(s, c);   /* its SEND fell short */
        if (res == -EAGAIN)
            return fio_eu_issue(s, c, FIO_EU_POLL_IN);
        if (res <= 0) {
            c->dead = res < 0 ? 2 : 1;   /* 0: EOF */
            return fio_eu_settle(s, c);
        }
        s->st->bytes += (uint64_t)res;
        c->off = 0;
        c->len = (uint32_t)res;
        return fio_eu_echo(s, c);
    }
    return 0;
}

/* One completion; *woken set by the wake fd's. */
FIO_INLINE int fio_eu_handle(struct fio_eu *s, const struct fio_io_uring_cqe *cqe, int *woken)
{
    s->inflight--;
    switch (cqe->user_data) {
    case FIO_EU_ACCEPT:
        return fio_eu_accepted(s, cqe->res);
    case FIO_EU_ACCEPT_POLL:
        if (s->stopping)
            return 0;
        if (cqe->res < 0 && cqe->res != -EINTR)
            return cqe->res;
        return fio_eu_accept(s);
    case FIO_EU_WAKE:
        *woken = 1;
        return 0;
    case FIO_EU_CANCEL:
        return 0;
    default:
        if (cqe->user_data & FIO_EU_TX)
            return fio_eu_sent(s, (struct fio_eu_conn *)(uintptr_t)(cqe->user_data & ~FIO_EU_TX), cqe->res);
        return fio_eu_done(s, (struct fio_eu_conn *)(uintptr_t)cqe->user_data, cqe->res);
    }
}

/* Cancel every request still in flight, by its user_data. */
FIO_INLINE int fio_eu_cancel_all(struct fio_eu *s)
{
    static const uint64_t own[] = {FIO_EU_ACCEPT, FIO_EU_ACCEPT_POLL, FIO_EU_WAKE};
    struct fio_io_uring_sqe *sqe;
    int err = 0;
    for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++) {
        if ((sqe = fio_eu_sqe(s, &err)) == NULL)
            return err;
        fio_prep_target(sqe, FIO_OP_ASYNC_CANCEL, -1, own[i], 0);
        sqe->user_data = FIO_EU_CANCEL;
    }
    for (struct fio_eu_conn *c = s->head.next; c != &s->head; c = c->next) {
        /* The SEND first: cancelling it cancels the RECV linked behind it,
         * which no cancel by user_data finds before it starts. */
        const uint64_t targets[] = {(uint64_t)(uintptr_t)c | FIO_EU_TX, (uint64_t)(uintptr_t)c};
        for (size_t i = 0; i < 2; i++) {
            if ((sqe = fio_eu_sqe(s, &err)) == NULL)
                return err;
            fio_prep_target(sqe, FIO_OP_ASYNC_CANCEL, -1, targets[i], 0);
            sqe->user_data = FIO_EU_CANCEL;
        }
    }
    return 0;
}

/* Submit what is queued and wait for one completion at least, then handle
 * every completion there is. */
FIO_INLINE int fio_eu_turn(struct fio_eu *s, const sigset_t *waitmask, int *woken,
                           struct fio_io_uring_cqe *cqes, int (*interrupted)(void *arg), void *arg)
{
    int ret;
    if (s->sends > 0 && s->timed) {
        /* One completion more than the SENDs: those mostly complete during
         * the submit. A SEND that must wait for room would hold that wait:
         * 1 ms bounds it (the next turn waits for one). */
        struct fio_kernel_timespec ts = {0, 1000000};
        struct fio_io_uring_getevents_arg ea;
        memset(&ea, 0, sizeof(ea));
        ea.sigmask = (uint64_t)(uintptr_t)waitmask;
        ea.sigmask_sz = waitmask != NULL ? _NSIG / 8 : 0;
        ea.ts = (uint64_t)(uintptr_t)&ts;
        ret = fio_sys_io_uring_enter(s->ring.fd, fio_ring_flush_sq(&s->ring), s->sends + 1,
                                     FIO_IORING_ENTER_GETEVENTS | FIO_IORING_ENTER_EXT_ARG, &ea, sizeof(ea));
    } else {
        ret = fio_sys_io_uring_enter(s->ring.fd, fio_ring_flush_sq(&s->ring), 1, FIO_IORING_ENTER_GETEVENTS,
                                     waitmask, waitmask != NULL ? _NSIG / 8 : 0);
    }
    s->sends = 0;
    /* A wait cut short by a signal answers -EINTR only when nothing was
     * submitted; otherwise it answers the submit count, and only the empty
     * CQ tells. The hook runs in both cases (a spurious call finds nothing). */
    if (ret == -EINTR || (ret >= 0 && fio_ring_cq_ready(&s->ring) == 0)) {
        if (interrupted != NULL && interrupted(arg))
            return -EINTR;
    } else if (ret < 0 && ret != -EAGAIN && ret != -EBUSY && ret != -ETIME) {
        return ret;
    }
    uint32_t n;
    while ((n = fio_ring_cq_copy(&s->ring, cqes, FIO_EU_CQES)) > 0) {
        for (uint32_t i = 0; i < n; i++)
            if ((ret = fio_eu_handle(s, &cqes[i], woken)) < 0)
                return ret;
    }
    return 0;
}

/*
 * Serve echo on the listening socket listen_fd until wake_fd is readable,
 * as fio_echo_serve does, on an io_uring of this thread. Returns 0 when
 * woken, or -errno: io_uring could not be set up (-EPERM when
 * kernel.io_uring_disabled says so, -ENOSYS without it), the listener
 * failed, io_uring_enter failed, or -EINTR when `interrupted` (called on a
 * signal, may be NULL) returned nonzero. Every request is reaped and every
 * connection closed on return; listen_fd and wake_fd stay open.
 */
FIO_INLINE int fio_echo_uring_serve(int listen_fd, int wake_fd, struct fio_echo_stats *st,
                                    int (*interrupted)(void *arg), void *arg)
{
    struct fio_eu s;
    struct fio_io_uring_params p;
    struct fio_io_uring_cqe *cqes;
    sigset_t all, orig;
    const sigset_t *waitmask = NULL;
    int ret, woken = 0;
    int domain = 0;
    socklen_t len = sizeof(domain);

    memset(st, 0, sizeof(*st));
    memset(&s, 0, sizeof(s));
    s.listen_fd = listen_fd;
    s.spare_fd = -1;
    s.st = st;
    s.head.next = s.head.prev = &s.head;
    if (getsockopt(listen_fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) < 0)
        return -errno;
    s.tcp = domain == AF_INET || domain == AF_INET6;
    cqes = calloc(FIO_EU_CQES, sizeof(*cqes));
    if (cqes == NULL)
        return -ENOMEM;

    /* This thread alone submits and reaps, and the completions' work may
     * wait until it enters the kernel (6.0; not DEFER_TASKRUN, with which
     * that work would itself wait for the SENDs + 1 completions the turn
     * asks for); older kernels refuse the flags (EINVAL) and get a plain ring. */
    memset(&p, 0, sizeof(p));
    p.flags = FIO_IORING_SETUP_SINGLE_ISSUER | FIO_IORING_SETUP_COOP_TASKRUN;
    ret = fio_ring_init(&s.ring, FIO_EU_ENTRIES, &p);
    if (ret == -EINVAL) {
        memset(&p, 0, sizeof(p));
        ret = fio_ring_init(&s.ring, FIO_EU_ENTRIES, &p);
    }
    if (ret < 0) {
        free(cqes);
        return ret;
    }
    s.timed = (p.features & FIO_IORING_FEAT_EXT_ARG) != 0;
    /* Not having a spare fd only loses the EMFILE remedy. */
    s.spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    /* Signals are let in only while waiting, as in fio_echo_serve. */
    sigfillset(&all);
    if (pthread_sigmask(SIG_BLOCK, &all, &orig) == 0)
        waitmask = &orig;

    if ((ret = fio_eu_poll(&s, wake_fd, POLLIN, FIO_EU_WAKE)) == 0)
        ret = fio_eu_accept(&s);
    while (ret == 0 && !woken)
        ret = fio_eu_turn(&s, waitmask, &woken, cqes, interrupted, arg);

    /* Nothing may be freed while the kernel can still write into it: cancel
     * what is left and reap until nothing is in flight. */
    s.stopping = 1;
    int cancelled = fio_eu_cancel_all(&s);
    while (s.inflight > 0 && cancelled == 0) {
        woken = 0;
        int r = fio_eu_turn(&s, NULL, &woken, cqes, NULL, NULL);
        if (r < 0 && r != -EINTR)
            cancelled = r;
    }
    if (waitmask != NULL)
        (void)pthread_sigmask(SIG_SETMASK, &orig, NULL); /* cannot fail: orig came from it */
    if (cancelled == 0) {
        while (s.head.next != &s.head)
            fio_eu_close(&s, s.head.next, 0);
        fio_ring_exit(&s.ring);
        free(cqes);
    } else {
        /* The kernel refused even the cancels: the buffers it may still
         * write stay allocated (leaked, never reused), the sockets closed. */
        for (struct fio_eu_conn *c = s.head.next; c != &s.head; c = c->next)
            (void)close(c->fd);
        fio_ring_exit(&s.ring);
        free(cqes);
        if (ret == 0)
            ret = cancelled;
    }
    if (s.spare_fd >= 0)
        (void)close(s.spare_fd);
    return ret;
}

#endif /* FIO_ECHO_URING_H */
