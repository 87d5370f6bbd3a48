# cython: language_level=3, embedsignature=True
"""Signal-driven IO for Python: the kernel names the ready fd in a queued signal.

``SignalIO`` arms each fd (``O_ASYNC``, ``F_SETOWN_EX`` aimed at the creating
thread, ``F_SETSIG`` with a real-time signal), blocks that signal and ``SIGIO``
in the thread and reads them in batches through a ``signalfd``; ``remove()``
and ``close()`` put each fd back. ``TextbookSignalIO`` is the textbook loop
(a ``SIGIO`` handler, then a poll over every fd), for comparison. The kernel
facts this relies on (what signals and when, thread-directed delivery, the
queue-overflow rule, what is covered, ttys, restoring, fork) are written down
in ``docs/sigio.md``.
"""

from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.exc cimport PyErr_CheckSignals
from libc.errno cimport EAGAIN, EBADF, EEXIST, EINTR, ENOENT, EPERM, errno
from libc.stdint cimport int64_t
from posix.stat cimport S_ISDIR, S_ISREG, fstat, struct_stat
from posix.unistd cimport close as c_close

from fastio._c._common cimport (
    as_c_int, as_fd, check_fork, deadline_for, raise_errno, remaining_after_eintr, timeout_to_ns,
)
from fastio._c._sys cimport fio_fork_generation, fio_fork_init, fio_monotonic_ns, fio_ns_to_timespec, pollfd, timespec

import os as _os
import signal as _signal
import warnings as _warnings

# The per-thread table of blocked signals is one per process: a thread has one
# signal mask, whichever backend blocked its signals. It lives in the pure module.
from fastio._sigclaim import claim_signal, refuse_if_armed, release_signal

cdef extern from "<poll.h>":
    int POLLIN, POLLPRI, POLLOUT, POLLRDNORM, POLLRDBAND, POLLWRNORM, POLLWRBAND

cdef enum:
    # Signals read by one wait() when max_events is None.
    DEFAULT_MAX_EVENTS = 1024
    MAX_READ = 65536   # signals one wait() reads at most, whatever max_events says
    # Reads of a full batch while draining; bounds the loop.
    DRAIN_READS = 64
    # si_code of an F_SETSIG signal: POLL_IN (1) .. POLL_HUP (6).
    POLL_IN_CODE = 1
    POLL_HUP_CODE = 6

cdef int POLL_ASK = POLLIN | POLLPRI | POLLOUT | POLLRDNORM | POLLRDBAND | POLLWRNORM | POLLWRBAND

if fio_fork_init() != 0:
    raise ImportError("pthread_atfork failed: fastio cannot detect fork()")


cdef tuple file_id(int fd, bint refuse_files):
    """(st_dev, st_ino) of fd; OSError if fd is not open; with refuse_files,
    PermissionError for a regular file or a directory."""
    cdef struct_stat st
    if fstat(fd, &st) < 0:
        raise_errno(errno)
    if refuse_files and (S_ISREG(st.st_mode) or S_ISDIR(st.st_mode)):
        kind = "a regular file" if S_ISREG(st.st_mode) else "a directory"
        raise PermissionError(
            EPERM,
            f"fd {fd} is {kind}: the kernel never raises a signal for it (always ready, no fasync hook); "
            "read it directly or through fastio.uring / fastio.aio")
    return (st.st_dev, st.st_ino)


cdef tuple arm(int fd, int tid, int signum):
    """fio_sigio_arm: (what it saved as a tuple, whether O_ASYNC took); OSError
    on failure."""
    cdef fio_sigio_saved saved
    cdef int ret
    with nogil:
        ret = fio_sigio_arm(fd, tid, signum, &saved)
    if ret < 0:
        raise_errno(-ret)
    return (saved.flags, saved.owner.type, saved.owner.pid, saved.sig), ret == 1


cdef bint restore_entry(int fd, tuple entry, int tid, int signum) except -1:
    """Restore an added fd from its (saved, file id, O_ASYNC took) entry and
    return True. OSError(EBADF) if fd is not open. False, fd untouched, if its
    number now names another open file than the one add() armed: another
    (st_dev, st_ino), or not as arming left it (owner, signal, O_ASYNC), which
    tells a FIFO or tty opened again (same st_dev, st_ino) from the old one."""
    cdef fio_sigio_saved saved
    cdef int ret, async_on = entry[2]
    try:
        same = file_id(fd, False) == entry[1]
    except OSError:
        raise OSError(EBADF, f"fd {fd} was closed before remove(): its flags cannot be restored") from None
    if not same:
        return False
    with nogil:
        ret = fio_sigio_is_armed(fd, tid, signum, async_on)
    if ret < 0:
        raise_errno(-ret)
    if ret == 0:
        return False
    saved.flags, saved.owner.type, saved.owner.pid, saved.sig = entry[0]
    with nogil:
        ret = fio_sigio_restore(fd, &saved)
    if ret < 0:
        raise_errno(-ret)
    return True


cdef int warn_strangers(str where, list fds) except -1:
    """The RuntimeWarning for fds that restore_entry() left alone."""
    for fd in fds:
        _warnings.warn(
            f"{where}: fd {fd} now names another open file than the one add() armed (closed, and the "
            "number reused): left untouched and forgotten; the armed file may live on in a dup",
            RuntimeWarning, stacklevel=1)
    return 0


cdef list poll_array(pollfd *p, Py_ssize_t n):
    """[(fd, revents)] of the n entries of p ready right now (revents != 0);
    the GIL is released around the poll, so p must not be freed meanwhile."""
    cdef Py_ssize_t i
    cdef int ret
    cdef list out = []
    with nogil:
        ret = fio_poll_now(p, <unsigned long>n)
    if ret < 0:
        raise_errno(-ret)
    for i in range(n):
        if p[i].revents:
            out.append((p[i].fd, <unsigned short>p[i].revents))
    return out


cdef list poll_now(object fds, int events):
    """[(fd, revents)] of the fds ready right now (revents != 0)."""
    cdef Py_ssize_t n = len(fds), i = 0
    cdef pollfd *p
    if n == 0:
        return []
    p = <pollfd *>PyMem_Malloc(n * sizeof(pollfd))
    if p == NULL:
        raise MemoryError()
    try:
        for fd in fds:
            p[i].fd = fd
            p[i].events = <short>events
            p[i].revents = 0
            i += 1
        return poll_array(p, n)
    finally:
        PyMem_Free(p)


cdef class SignalIO:
    """SignalIO(signum=None)

    Signal-driven IO for the fds of the calling thread.

    ``signum`` is the real-time signal to use (``signal.SIGRTMIN`` ..
    ``signal.SIGRTMAX``); ``None`` picks a free one, from ``SIGRTMAX`` down:
    one with no handler (``SIG_DFL``), not blocked in this thread and not used
    by another ``SignalIO`` here. ``signum`` says which was taken. The signal
    and ``SIGIO`` are blocked in this thread, and two signalfds (one blocking
    for ``wait()``, one non-blocking for ``fileno()``) read them.

    :raises ValueError: ``signum`` is not a real-time signal, or another
        ``SignalIO`` of this thread uses it.
    :raises RuntimeError: no real-time signal is free.
    :raises OSError: ``signalfd(2)`` failed (``EMFILE``).

    See ``fcntl(2)`` (``F_SETSIG``, ``F_SETOWN_EX``) and ``signalfd(2)``.
    """

    def __cinit__(self):
        self.sfd = -1
        self.bfd = -1
        self.buf = NULL
        self.capacity = 0
        self.fork_gen = fio_fork_generation()
        self.fds = {}
        self.pending = {}

    def __init__(self, signum=None):
        cdef sigset_t mask
        if self.capacity:
            raise RuntimeError("SignalIO.__init__ called twice")
        self.owner = pthread_self()
        self.tid = fio_gettid()
        self.buf = <fio_signalfd_siginfo *>PyMem_Malloc(DEFAULT_MAX_EVENTS * sizeof(fio_signalfd_siginfo))
        if self.buf == NULL:
            raise MemoryError()
        self.capacity = DEFAULT_MAX_EVENTS
        state, sig, was_blocked = claim_signal(signum)
        self.state = state
        self._signum = sig
        self.was_blocked = was_blocked
        self.seen_gen = state.overflow_gen
        sigemptyset(&mask)
        sigaddset(&mask, self._signum)
        sigaddset(&mask, SIGIO)
        self.sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC)
        if self.sfd >= 0:
            self.bfd = signalfd(-1, &mask, SFD_CLOEXEC)
        if self.bfd < 0:
            err = errno
            self.close_fds()
            release_signal(state, sig, was_blocked, False)
            raise OSError(err, f"signalfd: {_os.strerror(err)}")

    def __del__(self):
        if self.sfd >= 0:
            self.close()

    def __dealloc__(self):
        # __del__ ran close(); this only frees what a failed __init__ left.
        self.close_fds()
        PyMem_Free(self.buf)
        self.buf = NULL

    cdef void close_fds(self) noexcept:
        if self.sfd >= 0:
            c_close(self.sfd)
            self.sfd = -1
        if self.bfd >= 0:
            c_close(self.bfd)
            self.bfd = -1

    cdef int check(self) except -1:
        if self.sfd < 0:
            raise ValueError("I/O operation on closed SignalIO object")
        check_fork(self.fork_gen, "SignalIO")
        return 0

    cdef int check_owner(self) except -1:
        self.check()
        if not pthread_equal(pthread_self(), self.owner):
            raise RuntimeError(
                "SignalIO.wait() called from a thread other than the one that created the SignalIO: its "
                "signals are aimed at and blocked in that thread only; wait there, or create one per thread")
        return 0

    @property
    def signum(self):
        """The real-time signal the kernel queues for the fds of this object."""
        return self._signum

    @property
    def closed(self):
        """True once close() ran."""
        return self.sfd < 0

    @property
    def overflowed(self):
        """True if the last ``wait()`` met a real-time queue overflow (and so
        polled every added fd); see ``docs/sigio.md`` for the rule."""
        return self._overflowed

    @property
    def overflows(self):
        """How many ``wait()`` calls met an overflow since creation."""
        return self._overflows

    def fileno(self):
        """The non-blocking signalfd, readable while a signal is queued: put it
        in an epoll set or ``loop.add_reader`` and call ``wait(0)`` when ready."""
        if self.sfd < 0:
            raise ValueError("I/O operation on closed SignalIO object")
        return self.sfd

    def add(self, fd):
        """Arm ``fd`` (an int or an object with ``fileno()``): the kernel queues
        ``signum`` at the creating thread on each readiness change. The fd
        becomes ``O_ASYNC | O_NONBLOCK``; its flags, owner and signal are saved
        for ``remove()``. Its readiness now (a zero-timeout poll) is reported
        by the next ``wait()``.

        :raises FileExistsError: ``fd`` was already added.
        :raises PermissionError: ``fd`` is a regular file or a directory (the
            kernel never signals those).
        :raises OSError: ``EBADF`` for a closed fd; what ``fcntl(2)`` says.
        :raises ValueError: negative fd, or this object is closed.

        See ``fcntl(2)`` (``F_SETOWN_EX``, ``F_SETSIG``, ``O_ASYNC``).
        """
        cdef int cfd = as_fd(fd)
        cdef tuple ident, saved
        self.check()
        if cfd in self.fds:
            raise FileExistsError(EEXIST, f"fd {cfd} is already added")
        ident = file_id(cfd, True)
        refuse_if_armed(cfd)
        saved, async_on = arm(cfd, self.tid, self._signum)
        self.fds[cfd] = (saved, ident, async_on)
        for rfd, revents in poll_now((cfd,), POLL_ASK):
            self.pending[rfd] = self.pending.get(rfd, 0) | revents

    def remove(self, fd):
        """Disarm ``fd`` and restore its flags, owner and signal exactly. An
        fd closed since ``add()`` is forgotten: ``OSError`` ``EBADF`` if it is
        not open now; if another open file has the number (even the same
        FIFO), that file is left untouched with a ``RuntimeWarning``. Either
        way the signals stay blocked after ``close()`` (``docs/sigio.md``).

        :raises FileNotFoundError: ``fd`` was not added.
        :raises OSError: ``EBADF``, as above.
        """
        cdef int cfd = as_fd(fd)
        self.check()
        entry = self.fds.pop(cfd, None)
        if entry is None:
            raise FileNotFoundError(ENOENT, f"fd {cfd} was not added")
        self.pending.pop(cfd, None)
        if self.restore_one(cfd, entry, True):
            warn_strangers("SignalIO.remove()", [cfd])

    cdef bint restore_one(self, int fd, tuple entry, bint raise_errors) except -1:
        """restore_entry(); True if fd names another open file now."""
        try:
            restored = restore_entry(fd, entry, self.tid, self._signum)
        except OSError:
            self.unrestored = True
            if raise_errors:
                raise
            return False
        self.unrestored = self.unrestored or not restored
        return not restored

    cdef int read_wait(self, int limit, int64_t timeout_ns) except -1:
        """Read up to limit signals into self.buf, waiting up to timeout_ns
        (-1: forever, on the blocking signalfd). Returns the count, 0 on
        timeout. EINTR: handlers run, the wait resumes (PEP 475)."""
        cdef int n, fd
        cdef timespec ts
        cdef int64_t deadline = deadline_for(timeout_ns)
        cdef fio_signalfd_siginfo *buf = self.buf
        while True:
            if timeout_ns < 0:
                fd = self.bfd
                with nogil:
                    n = fio_sigio_read(fd, buf, limit)
            else:
                fd = self.sfd
                with nogil:
                    n = fio_sigio_read(fd, buf, limit)
                if n == -EAGAIN:
                    if timeout_ns == 0:
                        return 0
                    ts = fio_ns_to_timespec(timeout_ns)
                    with nogil:
                        n = fio_sigio_wait_readable(fd, &ts)
                    if n >= 0:
                        if n == 0:
                            return 0
                        timeout_ns = deadline - fio_monotonic_ns()
                        if timeout_ns < 0:
                            timeout_ns = 0
                        continue
            if n >= 0:
                return n
            if n != -EINTR:
                raise_errno(-n)
            timeout_ns = remaining_after_eintr(deadline)
            # The handlers may have closed this object.
            self.check()

    cdef bint collect(self, int count, dict events) except -1:
        """Merge count signals of self.buf into events; True if the fallback
        SIGIO was among them."""
        cdef int i, fd
        cdef bint overflow = False
        cdef fio_signalfd_siginfo *si
        cdef dict fds = self.fds
        for i in range(count):
            si = &self.buf[i]
            if si.ssi_signo == <unsigned int>self._signum:
                if POLL_IN_CODE <= si.ssi_code <= POLL_HUP_CODE:
                    fd = si.ssi_fd
                    if fd in fds:
                        events[fd] = events.get(fd, 0) | si.ssi_band
            elif si.ssi_signo == <unsigned int>SIGIO:
                overflow = True
        return overflow

    cdef int recover(self, dict events) except -1:
        """After the kernel fell back to plain SIGIO: drain, then poll every
        added fd and merge its readiness."""
        cdef int i, n
        self._overflowed = True
        self._overflows += 1
        for i in range(DRAIN_READS):
            with nogil:
                n = fio_sigio_read(self.sfd, self.buf, self.capacity)
            if n <= 0:
                if n < 0 and n != -EAGAIN and n != -EINTR:
                    raise_errno(-n)
                break
            self.collect(n, events)
        for fd, revents in poll_now(self.fds, POLL_ASK):
            events[fd] = events.get(fd, 0) | revents
        return 0

    def wait(self, timeout=None, max_events=None):
        """Wait for readiness and return it as a list of ``(fd, band)``, one
        per fd, ``band`` being poll(2) bits (``POLLIN``, ``POLLOUT``, ...).

        ``timeout`` is in seconds (float or int); ``None`` or a negative value
        waits forever. ``max_events`` bounds the signals consumed by one call
        (default 1024), all read by one ``read(2)`` of the signalfd. After a
        queue overflow (``overflowed`` is then True) the list also holds every
        added fd that a poll finds ready, whatever ``max_events``.

        Only the thread that created this object may wait. The GIL is released
        while waiting; signals run their handlers and the wait resumes with
        the remaining time (PEP 475).

        :raises RuntimeError: called from another thread, or in a forked child.
        :raises ValueError: ``max_events`` below 1, or this object is closed.

        See ``signalfd(2)``.
        """
        if self.waiting:
            raise RuntimeError(
                "SignalIO.wait() is already running in this thread (called again from a "
                "signal handler?); it cannot be re-entered")
        self.waiting = True
        try:
            return self._wait(timeout, max_events)
        finally:
            self.waiting = False

    cdef object _wait(self, object timeout, object max_events):
        cdef int64_t timeout_ns = timeout_to_ns(timeout, 1000000000)
        cdef int64_t deadline
        cdef int limit, count
        cdef void *grown
        cdef dict events
        cdef fio_signalfd_siginfo *si
        if max_events is None:
            limit = DEFAULT_MAX_EVENTS
        else:
            limit = as_c_int(max_events)
            if limit <= 0:
                raise ValueError(f"max_events must be greater than 0, got {limit}")
            # One read(2) takes at most MAX_READ signals (8 MiB of siginfo):
            # a huge max_events must not allocate (or fail to allocate) a
            # buffer the queue, bounded by RLIMIT_SIGPENDING, can never fill.
            if limit > MAX_READ:
                limit = MAX_READ
        self.check_owner()
        if limit > self.capacity:
            grown = PyMem_Realloc(self.buf, limit * sizeof(fio_signalfd_siginfo))
            if grown == NULL:
                raise MemoryError()
            self.buf = <fio_signalfd_siginfo *>grown
            self.capacity = limit
        state = self.state
        deadline = deadline_for(timeout_ns)
        while True:
            gen = state.overflow_gen
            if self.pending or gen != self.seen_gen:
                timeout_ns = 0
            count = self.read_wait(limit, timeout_ns)
            si = &self.buf[0]
            if (count == 1 and si.ssi_signo == <unsigned int>self._signum and not self.pending
                    and gen == state.overflow_gen == self.seen_gen):
                # The common case (ping-pong): one signal of ours, no dict.
                self._overflowed = False
                if POLL_IN_CODE <= si.ssi_code <= POLL_HUP_CODE and si.ssi_fd in self.fds:
                    return [(si.ssi_fd, si.ssi_band)]
                events = {}
            else:
                events = self.pending
                self.pending = {}
                if count and self.collect(count, events):
                    state.overflow_gen += 1
                if state.overflow_gen != self.seen_gen:
                    self.seen_gen = state.overflow_gen
                    self.recover(events)
                else:
                    self._overflowed = False
            if events or count == 0 or timeout_ns == 0:
                return list(events.items())
            # Only signals of removed fds (or not from F_SETSIG): wait on
            # for the time that is left.
            timeout_ns = -1 if deadline < 0 else deadline - fio_monotonic_ns()
            if deadline >= 0 and timeout_ns < 0:
                timeout_ns = 0

    def close(self):
        """Restore every added fd's flags, owner and signal, read what is
        still queued, close the signalfds, and unblock the signal (and, with
        the thread's last ``SignalIO``, ``SIGIO``) unless it was blocked before
        or an fd could not be restored. Closing twice is fine. In a forked
        child only the signalfds are closed. An fd closed since ``add()`` is
        treated as ``remove()`` does, without the ``OSError``; a
        ``RuntimeWarning`` for each one reopened comes once all is done."""
        cdef int i, j, n
        if self.sfd < 0:
            return
        if self.waiting:
            # The owner is inside wait(), maybe blocked in read(2) on the
            # signalfd forever: closing under it would leave it hanging.
            raise RuntimeError("cannot close a SignalIO while its wait() runs; close it in "
                               "the owner thread once wait() has returned")
        if self.fork_gen != fio_fork_generation():
            self.fds.clear()
            self.close_fds()
            return
        fds = self.fds
        self.fds = {}
        strangers = [fd for fd, entry in fds.items() if self.restore_one(fd, entry, False)]
        self.pending.clear()
        if pthread_equal(pthread_self(), self.owner):
            # Read what is queued (ours and SIGIO) before the signal is
            # unblocked: a pending one would then take its default action.
            for i in range(DRAIN_READS):
                with nogil:
                    n = fio_sigio_read(self.sfd, self.buf, self.capacity)
                if n <= 0:
                    break
                for j in range(n):
                    if self.buf[j].ssi_signo == <unsigned int>SIGIO:
                        self.state.overflow_gen += 1
        self.close_fds()
        release_signal(self.state, self._signum, self.was_blocked, self.unrestored)
        warn_strangers("SignalIO.close()", strangers)

    def __enter__(self):
        if self.sfd < 0:
            raise ValueError("I/O operation on closed SignalIO object")
        return self

    def __exit__(self, *args):
        self.close()


cdef class _Counter:
    """The textbook SIGIO handler: counts signals (kept apart from the
    TextbookSignalIO so that the handler does not keep it alive)."""

    cdef public unsigned long count

    def __call__(self, signum, frame):
        self.count += 1


cdef class TextbookSignalIO:
    """TextbookSignalIO()

    The textbook signal-driven loop (Stevens, UNP vol. 1, ch. 25), for
    comparison with ``SignalIO``: a Python ``signal.signal(SIGIO, handler)``
    that only counts, fds armed for plain ``SIGIO`` (``F_SETSIG`` 0), and a
    ``wait()`` that sleeps with ``SIGIO`` unblocked until the handler has run
    (``sigsuspend`` with a timeout: ``ppoll(2)`` with a signal mask), then
    polls every added fd to find which one fired, since the handler cannot
    know. ``SIGIO`` is blocked outside that sleep, so none is missed.

    Python runs signal handlers in the main thread only, so this class works
    there only (``RuntimeError`` elsewhere). Do not mix it with a ``SignalIO``
    in one thread: both want ``SIGIO``. The fds are aimed at the main thread
    (``F_OWNER_TID``) rather than the process, so that no other thread takes
    the signal. ``close()`` restores the fds, the mask and the old handler.
    While ``wait()`` runs, ``add()``, ``remove()`` and ``close()`` from
    another thread raise ``RuntimeError``; from the main thread (a signal
    handler during the wait) they work, and the wait polls what is added.
    """

    def __cinit__(self):
        self._closed = True
        self.pfds = NULL
        self.nfds = 0
        self.fork_gen = fio_fork_generation()
        self.fds = {}

    def __init__(self):
        cdef sigset_t block, old
        cdef int ret
        import threading
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("TextbookSignalIO needs the main thread: Python runs signal handlers only there")
        if not self._closed:
            raise RuntimeError("TextbookSignalIO.__init__ called twice")
        self.owner = pthread_self()
        self.tid = fio_gettid()
        self.counter = _Counter()
        self.seen = 0
        self.need_poll = False
        old_handler = _signal.signal(SIGIO, self.counter)
        self.old_handler = _signal.SIG_DFL if old_handler is None else old_handler
        sigemptyset(&block)
        sigaddset(&block, SIGIO)
        ret = pthread_sigmask(SIG_BLOCK, &block, &old)
        if ret != 0:
            _signal.signal(SIGIO, self.old_handler)
            raise_errno(ret)
        self.wait_mask = old
        self.sigio_was_blocked = sigismember(&old, SIGIO) == 1
        sigdelset(&self.wait_mask, SIGIO)
        self._closed = False

    def __del__(self):
        if not self._closed:
            self.close()

    def __dealloc__(self):
        PyMem_Free(self.pfds)
        self.pfds = NULL

    @property
    def closed(self):
        """True once close() ran."""
        return self._closed

    cdef int check(self) except -1:
        if self._closed:
            raise ValueError("I/O operation on closed TextbookSignalIO object")
        check_fork(self.fork_gen, "TextbookSignalIO")
        return 0

    cdef int refuse_during_wait(self, str call) except -1:
        """RuntimeError if wait() runs in another thread: it may be polling
        the array a rebuild would free, or asleep on what close() undoes."""
        if self.waiting and not pthread_equal(pthread_self(), self.owner):
            raise RuntimeError(
                f"TextbookSignalIO.{call}() while wait() runs in another thread; "
                "call it between waits, or from the main thread")
        return 0

    cdef int rebuild(self) except -1:
        """The pollfd array from self.fds (a wait() polling the old one took
        it, and frees it when done)."""
        cdef Py_ssize_t n = len(self.fds), i = 0
        cdef pollfd *p = <pollfd *>PyMem_Malloc((n if n else 1) * sizeof(pollfd))
        if p == NULL:
            raise MemoryError()
        for fd, entry in self.fds.items():
            p[i].fd = fd
            p[i].events = <short>entry[3]
            p[i].revents = 0
            i += 1
        PyMem_Free(self.pfds)
        self.pfds = p
        self.nfds = n
        return 0

    cdef bint restore_one(self, int fd, tuple entry, bint raise_errors) except -1:
        """restore_entry(); True if fd names another open file now."""
        try:
            restored = restore_entry(fd, entry, self.tid, 0)
        except OSError:
            self.unrestored = True
            if raise_errors:
                raise
            return False
        self.unrestored = self.unrestored or not restored
        return not restored

    def add(self, fd, events=POLLIN | POLLPRI):
        """Arm ``fd`` for plain ``SIGIO`` at the main thread; ``events`` is
        what the poll after a signal asks for it (``POLLIN | POLLPRI``).

        :raises FileExistsError: ``fd`` was already added.
        :raises PermissionError: a regular file or a directory.
        :raises RuntimeError: ``wait()`` runs in another thread.
        """
        cdef int cfd = as_fd(fd)
        cdef int mask = as_c_int(events)
        if not 0 <= mask <= 0xFFFF:
            raise ValueError(f"events must be poll(2) bits in 0..0xFFFF, got {mask:#x}")
        self.check()
        self.refuse_during_wait("add")
        if cfd in self.fds:
            raise FileExistsError(EEXIST, f"fd {cfd} is already added")
        ident = file_id(cfd, True)
        refuse_if_armed(cfd)
        saved, async_on = arm(cfd, self.tid, 0)
        self.fds[cfd] = (saved, ident, async_on, mask)
        self.rebuild()
        self.need_poll = True

    def remove(self, fd):
        """Disarm ``fd`` and restore its flags, owner and signal; for an fd
        closed since ``add()`` as ``SignalIO.remove()`` says (``EBADF``, or a
        ``RuntimeWarning`` and the new open file untouched).

        :raises RuntimeError: ``wait()`` runs in another thread.
        """
        cdef int cfd = as_fd(fd)
        self.check()
        self.refuse_during_wait("remove")
        entry = self.fds.pop(cfd, None)
        if entry is None:
            raise FileNotFoundError(ENOENT, f"fd {cfd} was not added")
        self.rebuild()
        if self.restore_one(cfd, entry, True):
            warn_strangers("TextbookSignalIO.remove()", [cfd])

    def wait(self, timeout=None):
        """Sleep until the SIGIO handler has run (or ``timeout`` seconds pass;
        ``None``: forever), then poll every added fd; return ``[(fd, revents)]``
        for the ready ones. The first wait after ``add()`` polls at once.

        :raises RuntimeError: called from another thread, or in a forked child.
        """
        cdef int64_t timeout_ns = timeout_to_ns(timeout, 1000000000)
        self.check()
        if not pthread_equal(pthread_self(), self.owner):
            raise RuntimeError("TextbookSignalIO.wait() called from a thread other than the main thread")
        self.waiting += 1
        try:
            if not self.sleep(timeout_ns):
                return []
            return self.poll()
        finally:
            self.waiting -= 1

    cdef bint sleep(self, int64_t timeout_ns) except -1:
        """Wait with SIGIO unblocked until the counter moved (True) or
        timeout_ns passed (False); True at once after an add()."""
        cdef int64_t deadline = deadline_for(timeout_ns)
        cdef timespec ts
        cdef int ret
        while self.counter.count == self.seen and not self.need_poll:
            if timeout_ns == 0:
                return False
            ts = fio_ns_to_timespec(timeout_ns)
            with nogil:
                ret = fio_sigsuspend_timeout(&self.wait_mask, &ts if timeout_ns > 0 else NULL)
            if ret < 0 and ret != -EINTR:
                raise_errno(-ret)
            if ret < 0:
                # Runs the Python handlers: the counter's, and any other.
                timeout_ns = remaining_after_eintr(deadline)
            else:
                timeout_ns = 0
            self.check()
        self.seen = self.counter.count
        self.need_poll = False
        return True

    cdef list poll(self):
        """[(fd, revents)] of the added fds ready now. The array polled is
        taken from self while in use: a finalizer run by an allocation here,
        or a nested wait(), may rebuild self.pfds, never free this one."""
        cdef pollfd *p
        cdef Py_ssize_t n
        if self.pfds == NULL:
            self.rebuild()
        p, n = self.pfds, self.nfds
        self.pfds = NULL
        try:
            return poll_array(p, n)
        finally:
            if self.pfds == NULL:
                self.pfds = p
            else:
                PyMem_Free(p)

    def close(self):
        """Restore every fd, the SIGIO mask and the old handler. Closed fds
        as ``SignalIO.close()`` says: while one could not be restored,
        ``SIGIO`` stays blocked and the counting handler installed.

        :raises RuntimeError: ``wait()`` runs in another thread.
        """
        cdef sigset_t unblock
        cdef int ret
        if self._closed:
            return
        self.refuse_during_wait("close")
        self._closed = True
        if self.fork_gen != fio_fork_generation():
            return
        fds = self.fds
        self.fds = {}
        strangers = [fd for fd, entry in fds.items() if self.restore_one(fd, entry, False)]
        if self.unrestored:
            warn_strangers("TextbookSignalIO.close()", strangers)
            return
        if pthread_equal(pthread_self(), self.owner) and not self.sigio_was_blocked:
            sigemptyset(&unblock)
            sigaddset(&unblock, SIGIO)
            ret = pthread_sigmask(SIG_UNBLOCK, &unblock, NULL)
            if ret != 0:
                raise_errno(ret)
            # A SIGIO pending until now ran Python's C-level handler as it was
            # unblocked; run our counter for it before the old handler is back.
            PyErr_CheckSignals()
        _signal.signal(SIGIO, self.old_handler)

    def __enter__(self):
        if self._closed:
            raise ValueError("I/O operation on closed TextbookSignalIO object")
        return self

    def __exit__(self, *args):
        self.close()
