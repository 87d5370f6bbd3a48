# cython: language_level=3
from libc.stdint cimport int64_t

from fastio._c._sys cimport pollfd, timespec


cdef extern from "<signal.h>" nogil:
    ctypedef struct sigset_t:
        pass
    int sigemptyset(sigset_t *s)
    int sigaddset(sigset_t *s, int signum)
    int sigdelset(sigset_t *s, int signum)
    int sigismember(const sigset_t *s, int signum)
    int pthread_sigmask(int how, const sigset_t *s, sigset_t *old)
    int SIG_BLOCK
    int SIG_UNBLOCK
    int SIGIO


cdef extern from "<pthread.h>" nogil:
    ctypedef unsigned long pthread_t
    pthread_t pthread_self()
    int pthread_equal(pthread_t a, pthread_t b)


cdef extern from "<sys/signalfd.h>" nogil:
    int signalfd(int fd, const sigset_t *mask, int flags)
    int SFD_CLOEXEC
    int SFD_NONBLOCK


cdef extern from "fio_sigio.h" nogil:
    struct fio_owner_ex:
        int type
        int pid

    struct fio_signalfd_siginfo:
        unsigned int ssi_signo
        int ssi_code
        int ssi_fd
        unsigned int ssi_band

    struct fio_sigio_saved:
        int flags
        fio_owner_ex owner
        int sig

    int fio_gettid()
    int fio_sigio_arm(int fd, int tid, int signum, fio_sigio_saved *saved)
    int fio_sigio_restore(int fd, const fio_sigio_saved *saved)
    int fio_sigio_is_armed(int fd, int tid, int signum, int async_on)
    int fio_sigio_read(int sfd, fio_signalfd_siginfo *out, int max)
    int fio_sigio_wait_readable(int sfd, const timespec *timeout)
    int fio_sigsuspend_timeout(const sigset_t *mask, const timespec *timeout)
    int fio_poll_now(pollfd *fds, unsigned long n)


cdef class SignalIO:
    cdef int sfd
    cdef int bfd
    cdef int _signum
    cdef int tid
    cdef pthread_t owner
    cdef unsigned long fork_gen
    cdef dict fds
    cdef dict pending
    cdef object state
    cdef object seen_gen
    cdef bint was_blocked
    cdef bint unrestored
    cdef bint _overflowed
    cdef unsigned long _overflows
    cdef fio_signalfd_siginfo *buf
    cdef int capacity
    cdef bint waiting
    cdef object __weakref__

    cdef int check(self) except -1
    cdef int check_owner(self) except -1
    cdef object _wait(self, object timeout, object max_events)
    cdef int read_wait(self, int limit, int64_t timeout_ns) except -1
    cdef bint collect(self, int count, dict events) except -1
    cdef int recover(self, dict events) except -1
    cdef bint restore_one(self, int fd, tuple entry, bint raise_errors) except -1
    cdef void close_fds(self) noexcept


cdef class TextbookSignalIO:
    cdef bint _closed
    cdef int tid
    cdef pthread_t owner
    cdef unsigned long fork_gen
    cdef dict fds
    cdef pollfd *pfds
    cdef Py_ssize_t nfds
    cdef object counter
    cdef object seen
    cdef bint need_poll
    cdef object old_handler
    cdef bint sigio_was_blocked
    cdef bint unrestored
    cdef sigset_t wait_mask
    cdef int waiting
    cdef object __weakref__

    cdef int check(self) except -1
    cdef int refuse_during_wait(self, str call) except -1
    cdef int rebuild(self) except -1
    cdef bint sleep(self, int64_t timeout_ns) except -1
    cdef list poll(self)
    cdef bint restore_one(self, int fd, tuple entry, bint raise_errors) except -1
