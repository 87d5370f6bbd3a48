/* SPDX-License-Identifier: MIT */
/*
 * The reference echo server: what a competent C programmer writes with epoll,
 * nothing exotic. One thread, level-triggered, non-blocking sockets:
 *
 * - the listener is accepted from with accept4(SOCK_NONBLOCK | SOCK_CLOEXEC),
 *   up to FIO_ECHO_ACCEPT_BATCH per wakeup; TCP connections get TCP_NODELAY;
 *   when the process runs out of fds (EMFILE/ENFILE) a spare fd is released
 *   to accept and close the pending connection, so the listener does not spin;
 * - a readable connection gets one recv of up to FIO_ECHO_BUF bytes into a
 *   shared buffer, sent straight back; what the socket does not take is kept
 *   in the connection's own buffer and the connection switches to EPOLLOUT
 *   only (no reading until it is flushed: the peer is slowed, not buffered
 *   without bound);
 * - EOF, a reset or any other error closes that connection only;
 * - the wake fd (an eventfd or a pipe's read end) becoming readable ends the
 *   loop; every connection is then closed. The listener and the wake fd
 *   belong to the caller and stay open.
 */
#ifndef FIO_ECHO_H
#define FIO_ECHO_H

#define _GNU_SOURCE 1
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fio_common.h"

#define FIO_ECHO_BUF (64u * 1024u)
#define FIO_ECHO_EVENTS 256
#define FIO_ECHO_ACCEPT_BATCH 64

struct fio_echo_stats {
    uint64_t accepted;      /* connections accepted */
    uint64_t accept_errors; /* connections refused for lack of fds or memory */
    uint64_t conn_errors;   /* connections closed on an error (reset, ...), not on EOF */
    uint64_t bytes;         /* bytes echoed */
};

struct fio_echo_conn {
    int fd;
    uint32_t pend_off, pend_len; /* unsent bytes: pend[pend_off, pend_len) */
    unsigned char *pend;         /* FIO_ECHO_BUF bytes, allocated on first need */
    struct fio_echo_conn *prev, *next;
};

struct fio_echo {
    int epfd, listen_fd, wake_fd, spare_fd, tcp;
    unsigned char *buf;
    struct fio_echo_conn head; /* circular list of live connections */
    struct fio_echo_stats *st;
};

FIO_INLINE void fio_echo_close(struct fio_echo *s, struct fio_echo_conn *c, int error)
{
    if (error)
        s->st->conn_errors++;
    c->prev->next = c->next;
    c->next->prev = c->prev;
    /* close(2) also drops the fd from the epoll set; its error changes nothing. */
    (void)close(c->fd);
    free(c->pend);
    free(c);
}

FIO_INLINE int fio_echo_mod(struct fio_echo *s, struct fio_echo_conn *c, uint32_t events)
{
    struct epoll_event ev;
    ev.events = events;
    ev.data.ptr = c;
    return epoll_ctl(s->epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Send what is pending; back to reading once it is all gone. */
FIO_INLINE void fio_echo_flush(struct fio_echo *s, struct fio_echo_conn *c)
{
    while (c->pend_off < c->pend_len) {
        ssize_t n = send(c->fd, c->pend + c->pend_off, c->pend_len - c->pend_off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                fio_echo_close(s, c, 1);
            return;
        }
        c->pend_off += (uint32_t)n;
        s->st->bytes += (uint64_t)n;
    }
    c->pend_off = c->pend_len = 0;
    if (fio_echo_mod(s, c, EPOLLIN) < 0)
        fio_echo_close(s, c, 1);
}

FIO_INLINE void fio_echo_read(struct fio_echo *s, struct fio_echo_conn *c)
{
    ssize_t n = recv(c->fd, s->buf, FIO_ECHO_BUF, 0);
    if (n <= 0) {
        if (n == 0)
            fio_echo_close(s, c, 0);
        else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            fio_echo_close(s, c, 1);
        return;
    }
    ssize_t m = send(c->fd, s->buf, (size_t)n, MSG_NOSIGNAL);
    if (m < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            fio_echo_close(s, c, 1);
            return;
        }
        m = 0;
    }
    s->st->bytes += (uint64_t)m;
    if (m == n)
        return;
    /* The socket took part of it: keep the rest, wait until it can take more. */
    if (c->pend == NULL && (c->pend = malloc(FIO_ECHO_BUF)) == NULL) {
        fio_echo_close(s, c, 1);
        return;
    }
    memcpy(c->pend, s->buf + m, (size_t)(n - m));
    c->pend_off = 0;
    c->pend_len = (uint32_t)(n - m);
    if (fio_echo_mod(s, c, EPOLLOUT) < 0)
        fio_echo_close(s, c, 1);
}

/* 0, or -errno when the listener itself is unusable. */
FIO_INLINE int fio_echo_accept(struct fio_echo *s)
{
    for (int i = 0; i < FIO_ECHO_ACCEPT_BATCH; i++) {
        int fd = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            int err = errno;
            switch (err) {
            case EAGAIN:
#if EWOULDBLOCK != EAGAIN
            case EWOULDBLOCK:
#endif
                return 0;
            case EINTR:
            case ECONNABORTED:
            case EPROTO:
            case EPERM: /* refused by a firewall rule */
                continue;
            case EMFILE:
            case ENFILE:
                /* Out of fds: the connection would stay queued and the
                 * listener readable forever. Use the spare fd to take it
                 * and close it at once. */
                s->st->accept_errors++;
                if (s->spare_fd >= 0) {
                    (void)close(s->spare_fd);
                    fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC);
                    if (fd >= 0)
                        (void)close(fd);
                    s->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
                }
                return 0;
            case ENOBUFS:
            case ENOMEM:
                s->st->accept_errors++;
                return 0;
            default:
                /* Network errors of the new connection (Linux passes them
                 * through accept) are the peer's; anything else is ours. */
                if (err == ENETDOWN || err == ENOPROTOOPT || err == EHOSTDOWN || err == ENONET ||
                    err == EHOSTUNREACH || err == EOPNOTSUPP || err == ENETUNREACH)
                    continue;
                return -err;
            }
        }
        if (s->tcp) {
            int one = 1;
            if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0) {
                s->st->accept_errors++;
                (void)close(fd);
                continue;
            }
        }
        struct fio_echo_conn *c = calloc(1, sizeof(*c));
        if (c == NULL) {
            s->st->accept_errors++;
            (void)close(fd);
            continue;
        }
        c->fd = fd;
        struct epoll_event ev;
        ev.events = EPOLLIN;
        ev.data.ptr = c;
        if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
            s->st->accept_errors++;
            (void)close(fd);
            free(c);
            continue;
        }
        c->next = s->head.next;
        c->prev = &s->head;
        s->head.next->prev = c;
        s->head.next = c;
        s->st->accepted++;
    }
    return 0;
}

/*
 * Serve echo on the non-blocking listening socket listen_fd until wake_fd is
 * readable. Returns 0 when woken, or -errno: the setup or the listener failed,
 * epoll_wait failed, or -EINTR when `interrupted` (called on a signal, may be
 * NULL) returned nonzero. Every connection is closed on return; listen_fd and
 * wake_fd are left open (and wake_fd is not drained). The calling thread's
 * signals are blocked while it serves except inside epoll_pwait.
 */
FIO_INLINE int fio_echo_serve(int listen_fd, int wake_fd, struct fio_echo_stats *st,
                              int (*interrupted)(void *arg), void *arg)
{
    struct fio_echo s;
    struct epoll_event ev;
    struct epoll_event *events = NULL;
    sigset_t all, orig;
    const sigset_t *waitmask = NULL;
    int ret = 0;

    memset(st, 0, sizeof(*st));
    memset(&s, 0, sizeof(s));
    s.listen_fd = listen_fd;
    s.wake_fd = wake_fd;
    s.st = st;
    s.head.next = s.head.prev = &s.head;
    s.spare_fd = -1;

    int domain = 0;
    socklen_t len = sizeof(domain);
    if (getsockopt(listen_fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) < 0)
        return -errno;
    s.tcp = domain == AF_INET || domain == AF_INET6;

    s.epfd = epoll_create1(EPOLL_CLOEXEC);
    if (s.epfd < 0)
        return -errno;
    s.buf = malloc(FIO_ECHO_BUF);
    events = calloc(FIO_ECHO_EVENTS, sizeof(*events));
    if (s.buf == NULL || events == NULL) {
        ret = -ENOMEM;
        goto out;
    }
    ev.events = EPOLLIN;
    ev.data.ptr = &s.listen_fd; /* told apart from connections by address */
    if (epoll_ctl(s.epfd, EPOLL_CTL_ADD, listen_fd, &ev) < 0) {
        ret = -errno;
        goto out;
    }
    ev.events = EPOLLIN;
    ev.data.ptr = &s.wake_fd;
    if (epoll_ctl(s.epfd, EPOLL_CTL_ADD, wake_fd, &ev) < 0) {
        ret = -errno;
        goto out;
    }
    /* Not having a spare fd only loses the EMFILE remedy. */
    s.spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    /* Signals are let in only while waiting, so each one interrupts a wait
     * and reaches `interrupted`, even one that came while we were busy. */
    sigfillset(&all);
    if (pthread_sigmask(SIG_BLOCK, &all, &orig) == 0)
        waitmask = &orig;

    for (;;) {
        int n = epoll_pwait(s.epfd, events, FIO_ECHO_EVENTS, -1, waitmask);
        if (n < 0) {
            n = -errno;
            if (n == -EINTR) {
                if (interrupted != NULL && interrupted(arg)) {
                    ret = -EINTR;
                    goto out;
                }
                continue;
            }
            ret = n;
            goto out;
        }
        int woken = 0;
        for (int i = 0; i < n; i++) {
            void *ptr = events[i].data.ptr;
            uint32_t e = events[i].events;
            if (ptr == &s.wake_fd) {
                woken = 1;
            } else if (ptr == &s.listen_fd) {
                if ((ret = fio_echo_accept(&s)) < 0)
                    goto out;
            } else {
                /* A connection appears at most once per batch and only its
                 * own event closes it, so the pointer is still valid. */
                struct fio_echo_conn *c = ptr;
                if (c->pend_len > 0)
                    fio_echo_flush(&s, c); /* EPOLLOUT, or an error/hangup */
                else if (e & (EPOLLIN | EPOLLERR | EPOLLHUP))
                    fio_echo_read(&s, c);
            }
        }
        if (woken)
            break;
    }

out:
    if (waitmask != NULL)
        (void)pthread_sigmask(SIG_SETMASK, &orig, NULL); /* cannot fail: orig came from it */
    while (s.head.next != &s.head)
        fio_echo_close(&s, s.head.next, 0);
    if (s.spare_fd >= 0)
        (void)close(s.spare_fd);
    (void)close(s.epfd);
    free(events);
    free(s.buf);
    return ret;
}

#endif /* FIO_ECHO_H */
