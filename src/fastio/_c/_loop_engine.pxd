# cython: language_level=3
# What the compiled loop's scheduler asks of a kernel engine: wait for fds,
# change what is watched. Two engines implement it: _loop_epoll (readiness,
# epoll) and _loop_uring (io_uring).
from libc.stdint cimport int64_t, uint32_t, uint64_t


cdef class FdEntry:
    cdef readonly int fd
    cdef object reader          # Handle or None
    cdef object writer
    cdef uint32_t events        # wanted: EPOLLIN | EPOLLOUT (the POLLIN/POLLOUT bits)
    cdef uint32_t revents       # what this wait reported so far (0: not in `fired`)
    # io_uring only: the one-shot poll in flight for this fd
    cdef uint64_t armed_ud      # its request id, 0 for none
    cdef uint32_t armed_events  # the events it waits for
    cdef bint dirty             # to re-arm (or cancel) before the next wait
    cdef object recv            # io_uring: the transport's receive state when its reads are recvs


cdef inline int fire(list fired, FdEntry entry, uint32_t events) except -1:
    # Report `events` (not 0) of `entry` in this wait: an entry is listed
    # once however many completions name it (a poll's POLLOUT and a recv's
    # data, say), with their events or-ed, so none is overwritten. The
    # scheduler sets revents back to 0 once it has read them.
    if entry.revents == 0:
        fired.append(entry)
    entry.revents |= events
    return 0


cdef class Engine:
    cdef readonly str name

    cdef int wait(self, int64_t timeout_ns, list fired) except -1
    cdef int watch(self, FdEntry entry, uint32_t events) except -1
    cdef int rewatch(self, FdEntry entry) except -1
    cdef object recv_reader(self, FdEntry entry, object transport, object loop, bint debug)
    cdef int detach_recv(self, FdEntry entry) except -1
    cdef int close_engine(self) except -1
