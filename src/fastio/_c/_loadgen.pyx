# cython: language_level=3, embedsignature=True
"""The C load generator (``csrc/fio_loadgen.h``) and the reference C epoll
echo server (``csrc/fio_echo.h``), for ``fastio.loadgen``.

Private: ``fastio.loadgen`` validates the arguments, resolves the address and
builds the results; this module only converts and runs. Both calls release
the GIL for their whole run. A signal that arrives while they wait in
``epoll_wait`` runs the Python handlers (main thread only, as always); an
exception from a handler (``KeyboardInterrupt``) ends the run, closes what it
opened and propagates.
"""

from cpython.exc cimport PyErr_Occurred
from libc.errno cimport EINTR
from libc.stdint cimport INT64_MAX, int64_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset

from fastio._c._common cimport as_fd, raise_errno

import os as _os
import socket as _socket


cdef extern from "<sys/socket.h>" nogil:
    ctypedef unsigned int socklen_t
    ctypedef unsigned short sa_family_t
    struct sockaddr:
        sa_family_t sa_family
    struct sockaddr_storage:
        sa_family_t ss_family
    int AF_INET, AF_INET6, AF_UNIX


cdef extern from "<netinet/in.h>" nogil:
    struct in_addr:
        pass
    struct in6_addr:
        pass
    struct sockaddr_in:
        sa_family_t sin_family
        uint16_t sin_port
        in_addr sin_addr
    struct sockaddr_in6:
        sa_family_t sin6_family
        uint16_t sin6_port
        uint32_t sin6_flowinfo
        in6_addr sin6_addr
        uint32_t sin6_scope_id
    uint16_t htons(uint16_t)
    uint32_t htonl(uint32_t)


cdef extern from "<arpa/inet.h>" nogil:
    int inet_pton(int af, const char *src, void *dst)


cdef extern from "<sys/un.h>" nogil:
    struct sockaddr_un:
        sa_family_t sun_family
        char sun_path[108]


cdef extern from "<stddef.h>" nogil:
    size_t offsetof_sun_path "offsetof(struct sockaddr_un, sun_path)"


cdef extern from "fio_loadgen.h" nogil:
    enum:
        FIO_LG_CORRUPT
        FIO_LG_LOST
        FIO_LG_CLOSED
        FIO_LG_CONNECT
        FIO_LG_OTHER
        FIO_LG_NERRORS

    struct fio_hist:
        uint64_t count
        uint64_t sum
        uint64_t min
        uint64_t max

    uint64_t fio_hist_quantile(const fio_hist *h, double q)

    struct fio_lg_params:
        const sockaddr *addr
        socklen_t addrlen
        uint32_t connections
        uint32_t depth
        uint64_t size
        uint64_t requests
        int64_t duration_ns
        int64_t warmup_ns
        int64_t timeout_ns
        int (*interrupted)(void *arg) noexcept nogil
        void *arg

    struct fio_lg_result:
        uint64_t requests
        uint64_t bytes
        int64_t elapsed_ns
        uint64_t errors[5]
        fio_hist latency

    int fio_lg_run(const fio_lg_params *p, fio_lg_result *r)


cdef extern from "fio_echo.h" nogil:
    struct fio_echo_stats:
        uint64_t accepted
        uint64_t accept_errors
        uint64_t conn_errors
        uint64_t bytes

    int fio_echo_serve(int listen_fd, int wake_fd, fio_echo_stats *st,
                       int (*interrupted)(void *arg) noexcept nogil, void *arg)


cdef extern from "fio_echo_uring.h" nogil:
    int fio_echo_uring_serve(int listen_fd, int wake_fd, fio_echo_stats *st,
                             int (*interrupted)(void *arg) noexcept nogil, void *arg)


cdef extern from "fio_echo_threads.h" nogil:
    int fio_echo_threads_serve(int listen_fd, int wake_fd, fio_echo_stats *st,
                               int (*interrupted)(void *arg) noexcept nogil, void *arg)


cdef extern from "Python.h":
    # Declared without an exception spec: called under `with gil` from C,
    # the exception it may set stays pending and is raised once the run
    # has returned (see reraise).
    int check_signals_raw "PyErr_CheckSignals" ()


# The interrupted() hook of both loops: on EINTR, run the Python signal
# handlers; a handler's exception stops the loop (-EINTR) and stays set.
cdef int interrupted(void *arg) noexcept nogil:
    cdef int failed
    with gil:
        failed = check_signals_raw()
    return failed != 0


cdef int reraise() except -1:
    """Propagate the exception a signal handler left set."""
    return -1


cdef int64_t seconds_to_ns(object seconds, str name) except -1:
    cdef double d = seconds
    if not d >= 0 or d * 1e9 >= <double>INT64_MAX:
        raise ValueError(f"{name} out of range: {seconds!r}")
    return <int64_t>(d * 1e9 + 0.5)


cdef socklen_t pack_sockaddr(int family, object address, sockaddr_storage *ss) except 0:
    """address as returned by getaddrinfo (numeric host) or a Unix path."""
    cdef sockaddr_in *sin = <sockaddr_in *>ss
    cdef sockaddr_in6 *sin6 = <sockaddr_in6 *>ss
    cdef sockaddr_un *sun = <sockaddr_un *>ss
    cdef bytes raw
    cdef int port
    cdef Py_ssize_t room
    memset(ss, 0, sizeof(sockaddr_storage))
    if family == AF_UNIX:
        raw = _os.fsencode(address)
        # sun_path holds a path and its NUL, or an abstract name's bytes.
        room = <Py_ssize_t>sizeof(sun.sun_path) - (1 if raw[:1] != b"\0" else 0)
        if len(raw) == 0 or len(raw) > room:
            raise ValueError(f"bad Unix socket path {address!r}")
        sun.sun_family = AF_UNIX
        memcpy(sun.sun_path, <char *>raw, len(raw))
        # A path gets its terminating NUL; an abstract name (leading NUL) is
        # exactly its bytes.
        return <socklen_t>(offsetof_sun_path + len(raw) + (raw[0] != 0))
    if family == AF_INET or family == AF_INET6:
        host = address[0].split("%", 1)[0].encode("ascii")
        port = address[1]
        if not 0 < port < 65536:
            raise ValueError(f"port out of range: {port}")
        if family == AF_INET:
            sin.sin_family = AF_INET
            sin.sin_port = htons(<uint16_t>port)
            if inet_pton(AF_INET, host, &sin.sin_addr) != 1:
                raise ValueError(f"not a numeric IPv4 address: {address[0]!r}")
            return sizeof(sockaddr_in)
        sin6.sin6_family = AF_INET6
        sin6.sin6_port = htons(<uint16_t>port)
        if len(address) >= 4:
            sin6.sin6_flowinfo = htonl(<uint32_t>address[2])
            sin6.sin6_scope_id = <uint32_t>address[3]
        if inet_pton(AF_INET6, host, &sin6.sin6_addr) != 1:
            raise ValueError(f"not a numeric IPv6 address: {address[0]!r}")
        return sizeof(sockaddr_in6)
    raise ValueError(f"unsupported address family {family}")


def run(family, address, connections, size, depth, duration, requests, warmup, timeout):
    """run(family, address, connections, size, depth, duration, requests, warmup, timeout) -> dict

    One load run, the GIL released throughout. ``family`` is ``AF_INET``,
    ``AF_INET6`` or ``AF_UNIX``; ``address`` a ``getaddrinfo`` sockaddr with
    a numeric host, or a Unix path (str or bytes; a leading NUL: abstract).
    ``requests`` > 0 selects request-count mode (``duration`` is then
    ignored). Seconds as floats. Returns the raw counts and the latency
    quantiles in nanoseconds.

    :raises ValueError: an argument out of range.
    :raises OSError: the generator itself failed (epoll, memory).
    """
    cdef sockaddr_storage ss
    cdef fio_lg_params p
    cdef fio_lg_result *r
    cdef int ret
    memset(&p, 0, sizeof(p))
    p.addrlen = pack_sockaddr(family, address, &ss)
    p.addr = <sockaddr *>&ss
    if not 1 <= connections <= 1 << 20:
        raise ValueError(f"connections out of range: {connections!r}")
    if not 1 <= depth <= 1 << 20:
        raise ValueError(f"depth out of range: {depth!r}")
    if not 1 <= size <= 1 << 40:
        raise ValueError(f"size out of range: {size!r}")
    if not 0 <= requests <= 1 << 50:
        raise ValueError(f"requests out of range: {requests!r}")
    p.connections = connections
    p.depth = depth
    p.size = size
    p.requests = requests
    p.duration_ns = seconds_to_ns(duration, "duration")
    p.warmup_ns = seconds_to_ns(warmup, "warmup")
    p.timeout_ns = seconds_to_ns(timeout, "timeout")
    if p.timeout_ns <= 0 or (p.requests == 0 and p.duration_ns <= 0):
        raise ValueError("timeout and duration must be positive")
    p.interrupted = interrupted
    p.arg = NULL
    r = <fio_lg_result *>malloc(sizeof(fio_lg_result))
    if r == NULL:
        raise MemoryError()
    try:
        with nogil:
            ret = fio_lg_run(&p, r)
        if ret == -EINTR and PyErr_Occurred() != NULL:
            reraise()
        if ret < 0:
            raise_errno(-ret)
        h = &r.latency
        return {
            "requests": r.requests,
            "bytes": r.bytes,
            "elapsed_ns": r.elapsed_ns,
            "corrupt": r.errors[<int>FIO_LG_CORRUPT],
            "lost": r.errors[<int>FIO_LG_LOST],
            "closed": r.errors[<int>FIO_LG_CLOSED],
            "connect": r.errors[<int>FIO_LG_CONNECT],
            "other": r.errors[<int>FIO_LG_OTHER],
            "p50_ns": fio_hist_quantile(h, 0.5),
            "p90_ns": fio_hist_quantile(h, 0.9),
            "p99_ns": fio_hist_quantile(h, 0.99),
            "p99.9_ns": fio_hist_quantile(h, 0.999),
            "max_ns": h.max if h.count else 0,
            "mean_ns": h.sum / <double>h.count if h.count else 0.0,
        }
    finally:
        free(r)


def serve(listen_fd, wake_fd):
    """serve(listen_fd, wake_fd) -> dict

    Run the reference echo server on the non-blocking listening socket
    ``listen_fd`` (an int or an object with ``fileno()``) until ``wake_fd``
    becomes readable, the GIL released throughout. Every connection is closed
    on return; the two fds stay open (and ``wake_fd`` is not drained).
    Returns the server's counters.

    :raises OSError: setup failed or the listener became unusable.
    """
    return run_server(fio_echo_serve, listen_fd, wake_fd)


def serve_uring(listen_fd, wake_fd):
    """serve_uring(listen_fd, wake_fd) -> dict

    ``serve`` on io_uring (``csrc/fio_echo_uring.h``): each connection's
    recv is answered by a send linked to its next recv, and one
    ``io_uring_enter`` per turn submits and waits. Every request is
    reaped and every connection closed on return; the two fds stay open.
    Returns the server's counters.

    :raises OSError: io_uring could not be set up (EPERM where
        ``kernel.io_uring_disabled`` refuses it), or the listener became
        unusable.
    """
    return run_server(fio_echo_uring_serve, listen_fd, wake_fd)


def serve_threads(listen_fd, wake_fd):
    """serve_threads(listen_fd, wake_fd) -> dict

    ``serve`` in the blocking model (``csrc/fio_echo_threads.h``): a thread
    per connection, each a blocking recv answered by a blocking send. Every
    connection is closed and every thread joined on return; the two fds
    stay open. Returns the server's counters.

    :raises OSError: setup failed or the listener became unusable.
    """
    return run_server(fio_echo_threads_serve, listen_fd, wake_fd)


ctypedef int (*serve_fn)(int listen_fd, int wake_fd, fio_echo_stats *st,
                        int (*interrupted)(void *arg) noexcept nogil, void *arg) noexcept nogil


cdef dict run_server(serve_fn serve, listen_fd, wake_fd):
    """One of the C servers on ``listen_fd`` until ``wake_fd`` is readable,
    the GIL released: its counters, or its error raised."""
    cdef int lfd = as_fd(listen_fd)
    cdef int wfd = as_fd(wake_fd)
    cdef fio_echo_stats st
    cdef int ret
    with nogil:
        ret = serve(lfd, wfd, &st, interrupted, NULL)
    return served(ret, &st)


cdef dict served(int ret, fio_echo_stats *st):
    """The counters of a server run that returned ``ret``, or its error raised."""
    if ret == -EINTR and PyErr_Occurred() != NULL:
        reraise()
    if ret < 0:
        raise_errno(-ret)
    return {
        "accepted": st.accepted,
        "accept_errors": st.accept_errors,
        "conn_errors": st.conn_errors,
        "bytes": st.bytes,
    }
