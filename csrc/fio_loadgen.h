/* SPDX-License-Identifier: MIT */
/*
 * A closed-loop echo load generator: N non-blocking stream connections (TCP
 * or Unix) driven by one level-triggered epoll loop in the calling thread.
 *
 * Each connection keeps `depth` requests of `size` bytes in flight: as soon
 * as a response is complete, the next request goes out (closed loop). The
 * bytes a connection sends are its own slice of one pseudo-random pattern,
 * indexed by stream offset, so every echoed byte is checked with one memcmp
 * per recv against the bytes that were sent at that offset, no copy kept.
 *
 * Timeline: connect every connection (bounded by `timeout`), then warm up
 * (requests flow but are not counted), then measure for `duration` or until
 * exactly `requests` requests issued after the warmup have completed. At the
 * end no new request is issued and the outstanding ones are drained for at
 * most `timeout`. Latency of a request: from the send(2) that carried its
 * first byte to the recv(2) that delivered its last byte.
 *
 * Faults are counted, never folded into the numbers. A connection that
 * fails is closed and not replaced; it is counted once, under the first
 * fault seen (its other outstanding requests are not counted again):
 *   corrupt  an echoed byte differs from the one sent at that offset, or the
 *            peer sent bytes that were never sent to it;
 *   lost     requests whose response never completed: still outstanding when
 *            the drain timed out, or on a connection that received nothing
 *            for `timeout` while it had requests outstanding;
 *   closed   the peer closed (EOF) or reset the connection before the end;
 *   connect  socket(2)/connect(2) failed, or the connect did not complete
 *            within `timeout`;
 *   other    any other failed call on a connection (the errno is not kept).
 * A failure of the loop itself (epoll, memory) ends the run with -errno.
 *
 * Bounded in time: connect phase <= timeout, then warmup + duration, then a
 * drain <= timeout; a peer that stops answering is abandoned after timeout
 * (request-count mode has no duration: it ends when every connection has
 * finished or stalled).
 */
#ifndef FIO_LOADGEN_H
#define FIO_LOADGEN_H

#define _GNU_SOURCE 1
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fio_common.h"
#include "fio_time.h"

/* ---- latency histogram ------------------------------------------------ */

/*
 * Log-linear: values below 64 ns get a bucket each; above, every power of two
 * [2^k, 2^(k+1)) is split into 64 equal sub-buckets, so a bucket is at most
 * 1/64 (1.6%) of its value wide. Fixed memory (30 KiB), O(1) insert.
 */
#define FIO_HIST_SUB_BITS 6
#define FIO_HIST_SUB (1u << FIO_HIST_SUB_BITS)
#define FIO_HIST_BUCKETS (FIO_HIST_SUB + (64 - FIO_HIST_SUB_BITS) * FIO_HIST_SUB)

struct fio_hist {
    uint64_t count;
    uint64_t sum;
    uint64_t min;
    uint64_t max;
    uint64_t bucket[FIO_HIST_BUCKETS];
};

FIO_INLINE void fio_hist_init(struct fio_hist *h)
{
    memset(h, 0, sizeof(*h));
    h->min = UINT64_MAX;
}

FIO_INLINE unsigned fio_hist_index(uint64_t v)
{
    if (v < FIO_HIST_SUB)
        return (unsigned)v;
    unsigned k = 63u - (unsigned)__builtin_clzll(v); /* >= FIO_HIST_SUB_BITS */
    unsigned shift = k - FIO_HIST_SUB_BITS;
    return FIO_HIST_SUB + shift * FIO_HIST_SUB + (unsigned)((v >> shift) & (FIO_HIST_SUB - 1));
}

/* The middle of bucket i (the value it reports). */
FIO_INLINE uint64_t fio_hist_value(unsigned i)
{
    if (i < FIO_HIST_SUB)
        return i;
    unsigned shift = (i - FIO_HIST_SUB) / FIO_HIST_SUB;
    uint64_t sub = (i - FIO_HIST_SUB) % FIO_HIST_SUB;
    uint64_t low = (FIO_HIST_SUB + sub) << shift;
    return low + (((uint64_t)1 << shift) - 1) / 2;
}

FIO_INLINE void fio_hist_add(struct fio_hist *h, uint64_t v)
{
    h->bucket[fio_hist_index(v)]++;
    h->count++;
    h->sum += v;
    if (v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
}

/* The value at quantile q (0 < q <= 1): the smallest bucket holding at least
 * ceil(q * count) values, reported as its middle clamped to [min, max], so
 * quantiles never decrease with q and never exceed max. 0 when empty. */
FIO_INLINE uint64_t fio_hist_quantile(const struct fio_hist *h, double q)
{
    if (h->count == 0)
        return 0;
    double want = q * (double)h->count;
    uint64_t rank = (uint64_t)want;
    if ((double)rank < want)
        rank++;
    if (rank < 1)
        rank = 1;
    if (rank > h->count)
        rank = h->count;
    uint64_t seen = 0;
    for (unsigned i = 0; i < FIO_HIST_BUCKETS; i++) {
        seen += h->bucket[i];
        if (seen >= rank) {
            uint64_t v = fio_hist_value(i);
            if (v < h->min)
                v = h->min;
            if (v > h->max)
                v = h->max;
            return v;
        }
    }
    return h->max;
}

/* ---- parameters and result ------------------------------------------ */

enum { FIO_LG_CORRUPT, FIO_LG_LOST, FIO_LG_CLOSED, FIO_LG_CONNECT, FIO_LG_OTHER, FIO_LG_NERRORS };

struct fio_lg_params {
    const struct sockaddr *addr; /* AF_INET, AF_INET6 or AF_UNIX */
    socklen_t addrlen;
    uint32_t connections;        /* >= 1 */
    uint32_t depth;              /* requests in flight per connection, >= 1 */
    uint64_t size;               /* bytes per request, >= 1 */
    uint64_t requests;           /* > 0: request-count mode; 0: run for duration_ns */
    int64_t duration_ns;         /* > 0 in duration mode */
    int64_t warmup_ns;           /* >= 0 */
    int64_t timeout_ns;          /* > 0: connect, stall and drain limit */
    /* Called (without any lock) when epoll_wait is interrupted by a signal;
     * nonzero ends the run with -EINTR. NULL: keep going. */
    int (*interrupted)(void *arg);
    void *arg;
};

struct fio_lg_result {
    uint64_t requests;   /* verified request/response pairs in the measured window */
    uint64_t bytes;      /* verified echoed bytes received in the measured window */
    int64_t elapsed_ns;  /* length of the measured window */
    uint64_t errors[FIO_LG_NERRORS];
    struct fio_hist latency; /* ns, one value per counted request */
};

/* ---- the run ---------------------------------------------------------- */

/* Pattern period: a power of two, also the largest single send and recv. */
#define FIO_LG_PATTERN (64u * 1024u)
#define FIO_LG_EVENTS 512

enum { FIO_LG_S_CLOSED, FIO_LG_S_RETRY, FIO_LG_S_CONNECTING, FIO_LG_S_OPEN };
enum { FIO_LG_P_CONNECT, FIO_LG_P_WARMUP, FIO_LG_P_MEASURE, FIO_LG_P_DRAIN, FIO_LG_P_DONE };

struct fio_lg_conn {
    int fd;
    uint8_t state;
    uint8_t out_armed;       /* EPOLLOUT is in the registered events */
    uint32_t base;           /* pattern offset of stream byte 0 */
    uint64_t want;           /* requests committed to (their bytes are due) */
    uint64_t stamped;        /* requests whose first byte has been sent */
    uint64_t done;           /* requests whose last byte has arrived */
    uint64_t sent, rcvd;     /* stream bytes */
    uint64_t first_measured; /* request-count mode: first counted request */
    int64_t last_progress;   /* last time bytes arrived (or work began) */
    int64_t *ts;             /* depth send times, indexed by request % depth */
};

struct fio_lg_run {
    const struct fio_lg_params *p;
    struct fio_lg_result *r;
    struct fio_lg_conn *conns;
    int64_t *ts;
    unsigned char *pattern; /* 2 * FIO_LG_PATTERN: any slice up to the period is contiguous */
    unsigned char *buf;     /* FIO_LG_PATTERN */
    struct epoll_event *events;
    const sigset_t *waitmask; /* the mask to wait with (signals blocked otherwise), or NULL */
    int epfd;
    int phase;
    int count_mode;         /* p->requests > 0 */
    uint64_t budget;        /* count mode: counted requests still to issue */
    uint64_t counted_done;  /* count mode: counted requests completed */
    uint64_t outstanding;   /* sum of want - done over open connections */
    uint32_t open;          /* connections in FIO_LG_S_OPEN */
    uint32_t pending;       /* connections in RETRY or CONNECTING */
    int64_t t0, t_end;
};

FIO_INLINE void fio_lg_close(struct fio_lg_run *run, struct fio_lg_conn *c)
{
    if (c->state == FIO_LG_S_OPEN) {
        run->open--;
        run->outstanding -= c->want - c->done;
    } else if (c->state == FIO_LG_S_RETRY || c->state == FIO_LG_S_CONNECTING) {
        run->pending--;
    }
    c->state = FIO_LG_S_CLOSED;
    c->want = c->done;
    if (c->fd >= 0) {
        /* close(2) removes the fd from the epoll set (we never dup it). */
        if (close(c->fd) < 0 && errno == EBADF)
            run->r->errors[FIO_LG_OTHER]++;
        c->fd = -1;
    }
}

FIO_INLINE void fio_lg_fail(struct fio_lg_run *run, struct fio_lg_conn *c, int key)
{
    run->r->errors[key]++;
    fio_lg_close(run, c);
}

FIO_INLINE int fio_lg_ctl(struct fio_lg_run *run, struct fio_lg_conn *c, int op, uint32_t events)
{
    struct epoll_event ev;
    ev.events = events;
    ev.data.u64 = (uint64_t)(c - run->conns);
    return epoll_ctl(run->epfd, op, c->fd, &ev) < 0 ? -errno : 0;
}

/* A peer that went away: an error unless the run is over for this connection. */
FIO_INLINE void fio_lg_gone(struct fio_lg_run *run, struct fio_lg_conn *c)
{
    if (c->want > c->done || run->phase < FIO_LG_P_DRAIN)
        fio_lg_fail(run, c, FIO_LG_CLOSED);
    else
        fio_lg_close(run, c);
}

/* Send what is due (bytes of requests in `want`), as few calls as possible. */
FIO_INLINE void fio_lg_send(struct fio_lg_run *run, struct fio_lg_conn *c, int64_t now)
{
    const uint64_t size = run->p->size, depth = run->p->depth;
    const uint64_t end = c->want * size;
    while (c->sent < end) {
        uint64_t off = (c->base + c->sent) & (FIO_LG_PATTERN - 1);
        uint64_t len = end - c->sent;
        if (len > FIO_LG_PATTERN)
            len = FIO_LG_PATTERN;
        ssize_t n = send(c->fd, run->pattern + off, (size_t)len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            int err = errno;
            if (err == EINTR)
                continue;
            if (err == EAGAIN || err == EWOULDBLOCK) {
                if (!c->out_armed) {
                    if (fio_lg_ctl(run, c, EPOLL_CTL_MOD, EPOLLIN | EPOLLOUT) < 0) {
                        fio_lg_fail(run, c, FIO_LG_OTHER);
                        return;
                    }
                    c->out_armed = 1;
                }
                return;
            }
            if (err == EPIPE || err == ECONNRESET)
                fio_lg_gone(run, c);
            else
                fio_lg_fail(run, c, FIO_LG_OTHER);
            return;
        }
        c->sent += (uint64_t)n;
        while (c->stamped < c->want && c->stamped * size < c->sent) {
            c->ts[c->stamped % depth] = now;
            c->stamped++;
        }
    }
    if (c->out_armed) {
        if (fio_lg_ctl(run, c, EPOLL_CTL_MOD, EPOLLIN) < 0) {
            fio_lg_fail(run, c, FIO_LG_OTHER);
            return;
        }
        c->out_armed = 0;
    }
}

/* Commit to as many new requests as the depth (and the budget) allow, then send. */
FIO_INLINE void fio_lg_issue(struct fio_lg_run *run, struct fio_lg_conn *c, int64_t now)
{
    if (run->phase == FIO_LG_P_WARMUP || run->phase == FIO_LG_P_MEASURE) {
        uint64_t target = c->done + run->p->depth;
        if (target > c->want) {
            uint64_t n = target - c->want;
            if (run->count_mode && run->phase == FIO_LG_P_MEASURE) {
                if (n > run->budget)
                    n = run->budget;
                run->budget -= n;
            }
            if (n > 0) {
                if (c->want == c->done)
                    c->last_progress = now;
                c->want += n;
                run->outstanding += n;
            }
        }
    }
    /* With EPOLLOUT armed the socket buffer is full: the event resumes. */
    if (!c->out_armed && c->sent < c->want * run->p->size)
        fio_lg_send(run, c, now);
}

FIO_INLINE void fio_lg_recv(struct fio_lg_run *run, struct fio_lg_conn *c)
{
    struct fio_lg_result *r = run->r;
    const uint64_t size = run->p->size, depth = run->p->depth;
    ssize_t n = recv(c->fd, run->buf, FIO_LG_PATTERN, MSG_DONTWAIT);
    if (n < 0) {
        int err = errno;
        if (err == EAGAIN || err == EWOULDBLOCK || err == EINTR)
            return;
        if (err == ECONNRESET || err == EPIPE)
            fio_lg_gone(run, c);
        else
            fio_lg_fail(run, c, FIO_LG_OTHER);
        return;
    }
    if (n == 0) {
        fio_lg_gone(run, c);
        return;
    }
    int64_t now = fio_monotonic_ns();
    uint64_t from = c->rcvd, to = c->rcvd + (uint64_t)n;
    if (to > c->sent ||
        memcmp(run->buf, run->pattern + ((c->base + from) & (FIO_LG_PATTERN - 1)), (size_t)n) != 0) {
        fio_lg_fail(run, c, FIO_LG_CORRUPT);
        return;
    }
    c->rcvd = to;
    c->last_progress = now;
    if (run->count_mode) {
        /* Bytes of the counted requests (those issued after the warmup). */
        if (c->first_measured != UINT64_MAX) {
            uint64_t lo = c->first_measured * size;
            if (to > lo)
                r->bytes += to - (from > lo ? from : lo);
        }
    } else if (run->phase == FIO_LG_P_MEASURE) {
        r->bytes += (uint64_t)n;
    }
    uint64_t completed = to / size;
    if (completed > c->stamped)
        completed = c->stamped; /* cannot happen: rcvd <= sent */
    while (c->done < completed) {
        uint64_t k = c->done++;
        run->outstanding--;
        int counted;
        if (run->count_mode)
            counted = k >= c->first_measured && c->first_measured != UINT64_MAX;
        else
            counted = run->phase == FIO_LG_P_MEASURE;
        if (counted) {
            int64_t lat = now - c->ts[k % depth];
            fio_hist_add(&r->latency, lat > 0 ? (uint64_t)lat : 0);
            r->requests++;
            if (run->count_mode && ++run->counted_done == run->p->requests)
                run->t_end = now;
        }
    }
    fio_lg_issue(run, c, now);
}

/* Start (or retry) a connect; the socket already exists. */
FIO_INLINE void fio_lg_connect(struct fio_lg_run *run, struct fio_lg_conn *c)
{
    int was_retry = c->state == FIO_LG_S_RETRY;
    int ret = connect(c->fd, run->p->addr, run->p->addrlen);
    int err = ret < 0 ? errno : 0;
    if (ret == 0 || err == EISCONN) {
        if (was_retry)
            run->pending--;
        c->state = FIO_LG_S_OPEN;
        run->open++;
        if (fio_lg_ctl(run, c, EPOLL_CTL_ADD, EPOLLIN) < 0)
            fio_lg_fail(run, c, FIO_LG_OTHER);
        return;
    }
    if (err == EINPROGRESS || err == EALREADY || err == EINTR) {
        /* After EINTR the connect goes on asynchronously, as after EINPROGRESS. */
        if (!was_retry)
            run->pending++;
        c->state = FIO_LG_S_CONNECTING;
        if (fio_lg_ctl(run, c, EPOLL_CTL_ADD, EPOLLOUT) < 0)
            fio_lg_fail(run, c, FIO_LG_CONNECT);
        return;
    }
    if (err == EAGAIN) {
        /* AF_UNIX: the listener's backlog is full; try again shortly. */
        if (!was_retry)
            run->pending++;
        c->state = FIO_LG_S_RETRY;
        return;
    }
    if (!was_retry) {
        c->state = FIO_LG_S_CLOSED; /* not counted in open or pending */
        run->r->errors[FIO_LG_CONNECT]++;
        if (close(c->fd) < 0 && errno == EBADF)
            run->r->errors[FIO_LG_OTHER]++;
        c->fd = -1;
    } else {
        fio_lg_fail(run, c, FIO_LG_CONNECT);
    }
}

FIO_INLINE void fio_lg_open(struct fio_lg_run *run, struct fio_lg_conn *c)
{
    int family = run->p->addr->sa_family;
    c->fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        run->r->errors[FIO_LG_CONNECT]++;
        return;
    }
    if (family == AF_INET || family == AF_INET6) {
        /* Requests are small and answered at once: never wait for Nagle. */
        int one = 1;
        if (setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0) {
            run->r->errors[FIO_LG_CONNECT]++;
            if (close(c->fd) < 0 && errno == EBADF)
                run->r->errors[FIO_LG_OTHER]++;
            c->fd = -1;
            return;
        }
    }
    fio_lg_connect(run, c);
}

/* An EPOLLOUT (or error) on a connection in progress. */
FIO_INLINE void fio_lg_connected(struct fio_lg_run *run, struct fio_lg_conn *c)
{
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err == EINPROGRESS || err == EALREADY)
        return;
    if (err != 0) {
        fio_lg_fail(run, c, FIO_LG_CONNECT);
        return;
    }
    run->pending--;
    c->state = FIO_LG_S_OPEN;
    run->open++;
    if (fio_lg_ctl(run, c, EPOLL_CTL_MOD, EPOLLIN) < 0)
        fio_lg_fail(run, c, FIO_LG_OTHER);
}

FIO_INLINE void fio_lg_event(struct fio_lg_run *run, const struct epoll_event *ev)
{
    uint64_t i = ev->data.u64;
    if (i >= run->p->connections)
        return;
    struct fio_lg_conn *c = &run->conns[i];
    if (c->state == FIO_LG_S_CONNECTING) {
        fio_lg_connected(run, c);
        return;
    }
    if (c->state != FIO_LG_S_OPEN)
        return; /* closed earlier in this batch */
    if (ev->events & (EPOLLIN | EPOLLERR | EPOLLHUP))
        fio_lg_recv(run, c);
    if (c->state == FIO_LG_S_OPEN && (ev->events & EPOLLOUT))
        fio_lg_send(run, c, fio_monotonic_ns());
}

/* Give up on connections that received nothing for timeout while owed responses. */
FIO_INLINE void fio_lg_reap_stalled(struct fio_lg_run *run, int64_t now)
{
    for (uint32_t i = 0; i < run->p->connections; i++) {
        struct fio_lg_conn *c = &run->conns[i];
        if (c->state == FIO_LG_S_OPEN && c->want > c->done &&
            now - c->last_progress >= run->p->timeout_ns) {
            run->r->errors[FIO_LG_LOST] += c->want - c->done;
            fio_lg_close(run, c);
        }
    }
}

/* Wait for events until `deadline` (or less) and dispatch them.
 * 0, or -errno when the loop itself failed (-EINTR: interrupted). */
FIO_INLINE int fio_lg_poll(struct fio_lg_run *run, int64_t now, int64_t deadline)
{
    int64_t wait = deadline - now;
    int n = epoll_pwait(run->epfd, run->events, FIO_LG_EVENTS, wait > 0 ? fio_ns_to_ms_ceil(wait) : 0,
                        run->waitmask);
    if (n < 0) {
        n = -errno;
        if (n != -EINTR)
            return n;
        if (run->p->interrupted != NULL && run->p->interrupted(run->p->arg))
            return -EINTR;
        return 0;
    }
    for (int i = 0; i < n; i++)
        fio_lg_event(run, &run->events[i]);
    return 0;
}

FIO_INLINE int fio_lg_loop(struct fio_lg_run *run)
{
    const struct fio_lg_params *p = run->p;
    const uint32_t nconn = p->connections;
    int ret;
    int64_t now = fio_monotonic_ns();

    /* Connect phase. */
    int64_t deadline = now + p->timeout_ns;
    run->phase = FIO_LG_P_CONNECT;
    for (uint32_t i = 0; i < nconn; i++)
        fio_lg_open(run, &run->conns[i]);
    while (run->pending > 0) {
        now = fio_monotonic_ns();
        if (now >= deadline) {
            for (uint32_t i = 0; i < nconn; i++) {
                struct fio_lg_conn *c = &run->conns[i];
                if (c->state == FIO_LG_S_RETRY || c->state == FIO_LG_S_CONNECTING)
                    fio_lg_fail(run, c, FIO_LG_CONNECT);
            }
            break;
        }
        int retrying = 0;
        for (uint32_t i = 0; i < nconn; i++) {
            if (run->conns[i].state == FIO_LG_S_RETRY) {
                fio_lg_connect(run, &run->conns[i]);
                retrying |= run->conns[i].state == FIO_LG_S_RETRY;
            }
        }
        int64_t until = retrying && deadline - now > FIO_NS_PER_MS ? now + FIO_NS_PER_MS : deadline;
        if ((ret = fio_lg_poll(run, now, until)) < 0)
            return ret;
    }

    /* Load: warmup, measured window, drain. */
    now = fio_monotonic_ns();
    int64_t start = now;
    int64_t drain_deadline = INT64_MAX;
    int64_t scan_every = p->timeout_ns / 8;
    if (scan_every > 50 * FIO_NS_PER_MS)
        scan_every = 50 * FIO_NS_PER_MS;
    if (scan_every < FIO_NS_PER_MS)
        scan_every = FIO_NS_PER_MS;
    int64_t next_scan = now + scan_every;
    run->phase = FIO_LG_P_WARMUP;
    run->t0 = run->t_end = -1;
    for (uint32_t i = 0; i < nconn; i++)
        run->conns[i].first_measured = UINT64_MAX;

    for (int first = 1;; first = 0) {
        if (!first)
            now = fio_monotonic_ns();
        if (run->phase == FIO_LG_P_WARMUP && now - start >= p->warmup_ns) {
            run->phase = FIO_LG_P_MEASURE;
            run->t0 = now;
            if (run->count_mode) {
                run->budget = p->requests;
                for (uint32_t i = 0; i < nconn; i++)
                    run->conns[i].first_measured = run->conns[i].want;
            }
        }
        if (run->phase == FIO_LG_P_MEASURE &&
            (run->count_mode ? run->budget == 0 : now - run->t0 >= p->duration_ns)) {
            /* Stop issuing. Duration mode: the window ends now; requests
             * committed but not yet started are dropped. */
            run->phase = FIO_LG_P_DRAIN;
            if (!run->count_mode) {
                run->t_end = now;
                drain_deadline = now + p->timeout_ns;
                for (uint32_t i = 0; i < nconn; i++) {
                    struct fio_lg_conn *c = &run->conns[i];
                    if (c->state == FIO_LG_S_OPEN && c->want > c->stamped) {
                        run->outstanding -= c->want - c->stamped;
                        c->want = c->stamped;
                    }
                }
            }
        }
        if (first) {
            for (uint32_t i = 0; i < nconn; i++)
                if (run->conns[i].state == FIO_LG_S_OPEN)
                    fio_lg_issue(run, &run->conns[i], now);
        }
        if (run->open == 0 || (run->phase == FIO_LG_P_DRAIN && run->outstanding == 0))
            break;
        if (now >= drain_deadline) {
            for (uint32_t i = 0; i < nconn; i++) {
                struct fio_lg_conn *c = &run->conns[i];
                if (c->state == FIO_LG_S_OPEN && c->want > c->done) {
                    run->r->errors[FIO_LG_LOST] += c->want - c->done;
                    fio_lg_close(run, c);
                }
            }
            break;
        }
        if (now >= next_scan) {
            fio_lg_reap_stalled(run, now);
            next_scan = now + scan_every;
            continue;
        }
        int64_t until = next_scan;
        if (run->phase == FIO_LG_P_WARMUP && start + p->warmup_ns < until)
            until = start + p->warmup_ns;
        if (run->phase == FIO_LG_P_MEASURE && !run->count_mode && run->t0 + p->duration_ns < until)
            until = run->t0 + p->duration_ns;
        if (drain_deadline < until)
            until = drain_deadline;
        if ((ret = fio_lg_poll(run, now, until)) < 0)
            return ret;
    }

    /* The measured window. */
    if (run->t0 < 0)
        run->t0 = now; /* every connection died during warmup */
    if (run->t_end < 0)
        run->t_end = now; /* count mode that did not complete, or no connection left */
    run->phase = FIO_LG_P_DONE;
    return 0;
}

/*
 * Run the load described by p; fill r. Returns 0 (errors are counted in r),
 * or -errno when the generator itself failed (-ENOMEM, epoll_create1's
 * errno, -EINTR when p->interrupted asked to stop). Every fd it opened is
 * closed before it returns. The calling thread's signals are blocked while
 * it runs except inside epoll_pwait (so they are delivered there).
 */
FIO_INLINE int fio_lg_run(const struct fio_lg_params *p, struct fio_lg_result *r)
{
    struct fio_lg_run run;
    int ret = 0;

    memset(r, 0, sizeof(*r));
    fio_hist_init(&r->latency);
    if (p->connections < 1 || p->depth < 1 || p->size < 1 || p->timeout_ns <= 0 || p->warmup_ns < 0 ||
        (p->requests == 0 && p->duration_ns <= 0) || p->addr == NULL)
        return -EINVAL;

    memset(&run, 0, sizeof(run));
    run.p = p;
    run.r = r;
    run.epfd = -1;
    run.count_mode = p->requests > 0;
    run.conns = calloc(p->connections, sizeof(*run.conns));
    run.ts = calloc((size_t)p->connections * p->depth, sizeof(*run.ts));
    run.pattern = malloc(2 * (size_t)FIO_LG_PATTERN);
    run.buf = malloc(FIO_LG_PATTERN);
    run.events = calloc(FIO_LG_EVENTS, sizeof(*run.events));
    if (!run.conns || !run.ts || !run.pattern || !run.buf || !run.events) {
        ret = -ENOMEM;
        goto out;
    }
    run.epfd = epoll_create1(EPOLL_CLOEXEC);
    if (run.epfd < 0) {
        ret = -errno;
        goto out;
    }

    /* xorshift64*: the same pattern every run; the second copy makes any
     * slice [off, off + FIO_LG_PATTERN) with off < FIO_LG_PATTERN contiguous. */
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (uint32_t i = 0; i < FIO_LG_PATTERN; i += 8) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        uint64_t v = x * 0x2545F4914F6CDD1Dull;
        memcpy(run.pattern + i, &v, 8);
    }
    memcpy(run.pattern + FIO_LG_PATTERN, run.pattern, FIO_LG_PATTERN);

    for (uint32_t i = 0; i < p->connections; i++) {
        struct fio_lg_conn *c = &run.conns[i];
        c->fd = -1;
        c->state = FIO_LG_S_CLOSED;
        /* Distinct, far apart starting points (odd multiplier: a bijection
         * mod 2^16), so a reply sent on the wrong connection is caught. */
        c->base = (uint32_t)((i * 40503u + 12345u) & (FIO_LG_PATTERN - 1));
        c->ts = run.ts + (size_t)i * p->depth;
    }

    /* Signals are let in only while waiting (epoll_pwait's mask), so one
     * that arrives while the loop works is pending until the next wait,
     * which it interrupts: p->interrupted never misses it. */
    sigset_t all, orig;
    sigfillset(&all);
    if (pthread_sigmask(SIG_BLOCK, &all, &orig) == 0)
        run.waitmask = &orig;
    ret = fio_lg_loop(&run);
    if (run.waitmask != NULL && pthread_sigmask(SIG_SETMASK, &orig, NULL) != 0 && ret == 0)
        ret = -EINVAL; /* cannot happen: orig came from pthread_sigmask */
    if (ret == 0 && run.t_end > run.t0)
        r->elapsed_ns = run.t_end - run.t0;

out:
    if (run.conns) {
        for (uint32_t i = 0; i < p->connections; i++)
            if (run.conns[i].fd >= 0)
                fio_lg_close(&run, &run.conns[i]);
    }
    if (run.epfd >= 0)
        close(run.epfd);
    free(run.events);
    free(run.buf);
    free(run.pattern);
    free(run.ts);
    free(run.conns);
    return ret;
}

#endif /* FIO_LOADGEN_H */
