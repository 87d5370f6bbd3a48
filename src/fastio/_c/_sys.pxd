# cython: language_level=3
# The libc and csrc declarations the compiled backend uses. Declarations only.

from libc.stdint cimport int64_t, uint32_t, uint64_t


cdef extern from "<sys/epoll.h>" nogil:
    ctypedef union epoll_data_t:
        void *ptr
        int fd
        uint32_t u32
        uint64_t u64

    struct epoll_event:
        uint32_t events
        epoll_data_t data

    int epoll_create1(int flags)
    int epoll_ctl(int epfd, int op, int fd, epoll_event *event)
    int EPOLL_CTL_ADD
    int EPOLL_CTL_DEL
    int EPOLL_CTL_MOD
    int EPOLL_CLOEXEC


cdef extern from "<poll.h>" nogil:
    struct pollfd:
        int fd
        short events
        short revents
    ctypedef unsigned long nfds_t


cdef extern from "<sys/select.h>" nogil:
    ctypedef struct fd_set:
        pass
    int FD_SETSIZE
    void FD_SET(int fd, fd_set *s)
    void FD_CLR(int fd, fd_set *s)
    int FD_ISSET(int fd, fd_set *s)
    void FD_ZERO(fd_set *s)


cdef extern from "<time.h>" nogil:
    struct timespec:
        long tv_sec
        long tv_nsec


cdef extern from "fio_syscall.h" nogil:
    int fio_sys_epoll_pwait2(int epfd, epoll_event *events, int maxevents, const timespec *timeout)
    int fio_sys_epoll_wait(int epfd, epoll_event *events, int maxevents, int timeout_ms)
    int fio_sys_ppoll(pollfd *fds, nfds_t n, const timespec *timeout)
    int fio_sys_pselect(int nfds, fd_set *readers, fd_set *writers, const timespec *timeout)


cdef extern from "fio_time.h" nogil:
    int64_t fio_monotonic_ns()
    timespec fio_ns_to_timespec(int64_t ns)
    int fio_ns_to_ms_ceil(int64_t ns)


cdef extern from "fio_fork.h" nogil:
    int fio_fork_init()
    unsigned long fio_fork_generation()
