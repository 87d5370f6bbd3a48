/* SPDX-License-Identifier: MIT */
/*
 * The reference echo server in the blocking model, beside fio_echo.h's epoll
 * one and fio_echo_uring.h's ring: a thread per connection, each a blocking
 * recv of up to FIO_ECHO_BUF bytes answered by a blocking send of all of
 * them, two system calls per request and no wait of its own. What a
 * competent C programmer writes for few connections; with many, the
 * scheduler's wake-ups cost more than epoll's.
 *
 * - the serving thread waits in ppoll on the listener and the wake fd (its
 *   signals let in only there, so each reaches `interrupted`), then accepts
 *   (SOCK_CLOEXEC, blocking sockets; TCP_NODELAY for TCP) up to
 *   FIO_ECHO_ACCEPT_BATCH per wakeup; EMFILE/ENFILE release a spare fd to
 *   accept and close the pending connection, as fio_echo.h does; it joins
 *   the threads of connections that ended at each wakeup;
 * - a connection's thread (every signal blocked) closes its own fd on EOF
 *   or an error, under the server's lock, so the serving thread never
 *   touches an fd number the thread has let go of;
 * - the wake fd becoming readable ends the serving: every live connection
 *   is shut down (SHUT_RDWR, which ends a recv or send blocked on it) under
 *   the lock, every thread joined, then their fds closed. The listener and
 *   the wake fd belong to the caller and stay open.
 */
#ifndef FIO_ECHO_THREADS_H
#define FIO_ECHO_THREADS_H

#define _GNU_SOURCE 1
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fio_common.h"
#include "fio_echo.h"

#define FIO_ET_STACK (256u * 1024u)

struct fio_et;

struct fio_et_conn {
    int fd;                       /* -1 once the thread closed it */
    int done;                     /* the thread has returned (under the lock) */
    int failed;                   /* it ended on an error, not on EOF */
    uint64_t bytes;               /* echoed by it (read once it is joined) */
    pthread_t thread;
    struct fio_et *server;
    struct fio_et_conn *prev, *next;
};

struct fio_et {
    pthread_mutex_t lock;
    pthread_attr_t attr;
    struct fio_et_conn head;      /* circular list of connections not joined yet */
    struct fio_echo_stats *st;
};

static void *fio_et_run(void *arg)
{
    struct fio_et_conn *c = arg;
    unsigned char *buf = malloc(FIO_ECHO_BUF);
    int failed = buf == NULL;
    while (!failed) {
        ssize_t n = recv(c->fd, buf, FIO_ECHO_BUF, 0);
        if (n == 0)
            break;
        if (n < 0) {
            failed = errno != EINTR;
            continue;
        }
        for (ssize_t off = 0; off < n;) {
            ssize_t m = send(c->fd, buf + off, (size_t)(n - off), MSG_NOSIGNAL);
            if (m < 0) {
                if (errno == EINTR)
                    continue;
                failed = 1;
                break;
            }
            off += m;
            c->bytes += (uint64_t)m;
        }
    }
    free(buf);
    pthread_mutex_lock(&c->server->lock);
    (void)close(c->fd);
    c->fd = -1;
    c->failed = failed;
    c->done = 1;
    pthread_mutex_unlock(&c->server->lock);
    return NULL;
}

/* Join every connection thread that has returned (all of them when `all`,
 * after shutting down the live ones), adding its counts to the stats. */
FIO_INLINE void fio_et_reap(struct fio_et *s, int all)
{
    struct fio_et_conn *c, *next;
    pthread_mutex_lock(&s->lock);
    for (c = s->head.next; all && c != &s->head; c = c->next)
        if (c->fd >= 0)
            (void)shutdown(c->fd, SHUT_RDWR); /* an error: the peer already went */
    pthread_mutex_unlock(&s->lock);
    for (c = s->head.next; c != &s->head; c = next) {
        next = c->next;
        pthread_mutex_lock(&s->lock);
        int done = c->done;
        pthread_mutex_unlock(&s->lock);
        if (!done && !all)
            continue;
        (void)pthread_join(c->thread, NULL);
        s->st->bytes += c->bytes;
        if (c->failed)
            s->st->conn_errors++;
        c->prev->next = c->next;
        c->next->prev = c->prev;
        free(c);
    }
}

/* A thread for the accepted connection fd (closed on failure). */
FIO_INLINE void fio_et_start(struct fio_et *s, int fd, int tcp)
{
    int one = 1;
    struct fio_et_conn *c = calloc(1, sizeof(*c));
    /* TCP_NODELAY is only a latency matter: a failure leaves Nagle on. */
    if (tcp)
        (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (c == NULL) {
        s->st->accept_errors++;
        (void)close(fd);
        return;
    }
    c->fd = fd;
    c->server = s;
    /* Linked in before the thread starts: it may end before we go on. */
    c->next = s->head.next;
    c->prev = &s->head;
    s->head.next->prev = c;
    s->head.next = c;
    if (pthread_create(&c->thread, &s->attr, fio_et_run, c) != 0) {
        c->prev->next = c->next;
        c->next->prev = c->prev;
        (void)close(fd);
        free(c);
        s->st->accept_errors++;
        return;
    }
    s->st->accepted++;
}

/*
 * Serve echo on the listening socket listen_fd (blocking or not) until
 * wake_fd is readable: 0 when woken, -errno when the setup or the listener
 * failed, or -EINTR when `interrupted` (called on a signal, may be NULL)
 * returned nonzero. Every connection is closed and every thread joined on
 * return; listen_fd and wake_fd stay open (wake_fd is not drained).
 */
FIO_INLINE int fio_echo_threads_serve(int listen_fd, int wake_fd, struct fio_echo_stats *st,
                                      int (*interrupted)(void *arg), void *arg)
{
    struct fio_et s;
    struct pollfd pfd[2];
    sigset_t all, orig;
    const sigset_t *waitmask = NULL;
    int ret = 0, domain = 0, spare_fd;
    socklen_t len = sizeof(domain);

    memset(st, 0, sizeof(*st));
    memset(&s, 0, sizeof(s));
    s.st = st;
    s.head.next = s.head.prev = &s.head;
    if (getsockopt(listen_fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) < 0)
        return -errno;
    int tcp = domain == AF_INET || domain == AF_INET6;
    if ((ret = pthread_mutex_init(&s.lock, NULL)) != 0)
        return -ret;
    if ((ret = pthread_attr_init(&s.attr)) != 0) {
        (void)pthread_mutex_destroy(&s.lock);
        return -ret;
    }
    (void)pthread_attr_setstacksize(&s.attr, FIO_ET_STACK); /* (a failure keeps the default) */
    /* Not having a spare fd only loses the EMFILE remedy. */
    spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    /* Blocked here, so the connection threads start with every signal
     * blocked and the process's signals reach this thread's ppoll. */
    sigfillset(&all);
    if (pthread_sigmask(SIG_BLOCK, &all, &orig) == 0)
        waitmask = &orig;
    pfd[0].fd = listen_fd;
    pfd[1].fd = wake_fd;
    pfd[0].events = pfd[1].events = POLLIN;

    for (;;) {
        if (ppoll(pfd, 2, NULL, waitmask) < 0) {
            if (errno != EINTR) {
                ret = -errno;
                break;
            }
            if (interrupted != NULL && interrupted(arg)) {
                ret = -EINTR;
                break;
            }
            continue;
        }
        if (pfd[1].revents)
            break;
        fio_et_reap(&s, 0);
        if (pfd[0].revents & (POLLERR | POLLNVAL)) {
            ret = -EBADF;
            break;
        }
        /* The listener may be blocking: accept only what poll announced,
         * then up to the batch while more are queued (MSG_DONTWAIT has no
         * accept4 flag; a non-blocking listener answers EAGAIN). */
        for (int i = 0; i < FIO_ECHO_ACCEPT_BATCH; i++) {
            struct pollfd more = {listen_fd, POLLIN, 0};
            if (i > 0 && poll(&more, 1, 0) <= 0)
                break;
            int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
            if (fd >= 0) {
                /* (blocking, whatever the listener is: Linux does not pass
                 * O_NONBLOCK on to an accepted socket) */
                fio_et_start(&s, fd, tcp);
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            if (errno == EMFILE || errno == ENFILE) {
                st->accept_errors++;
                if (spare_fd >= 0) {
                    (void)close(spare_fd);
                    fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
                    if (fd >= 0)
                        (void)close(fd);
                    spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
                }
                break;
            }
            if (errno == ENOBUFS || errno == ENOMEM) {
                st->accept_errors++;
                break;
            }
            if (errno != EINTR && errno != ECONNABORTED && errno != EPROTO && errno != EPERM) {
                ret = -errno; /* the listener is unusable */
                goto out;
            }
        }
    }

out:
    fio_et_reap(&s, 1);
    if (waitmask != NULL)
        (void)pthread_sigmask(SIG_SETMASK, &orig, NULL); /* cannot fail: orig came from it */
    if (spare_fd >= 0)
        (void)close(spare_fd);
    (void)pthread_attr_destroy(&s.attr);
    (void)pthread_mutex_destroy(&s.lock);
    return ret;
}

#endif /* FIO_ECHO_THREADS_H */
