"""Signal-driven IO through ctypes and the stdlib: the pure twin of ``fastio._c.sigio``.

The kernel facts are in ``docs/sigio.md``. ``signalfd(2)``
and ``sigaction(2)`` go through ctypes; ``fcntl(2)`` through the stdlib ``fcntl``
module; the thread's signal mask through ``signal.pthread_sigmask``.

The per-thread table of the signals signal-driven IO has blocked is in
``fastio._sigclaim``, shared with the compiled backend.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import select
import signal
import stat
import struct
import threading
import warnings

from fastio._consts import (
    POLLIN,
    POLLOUT,
    POLLPRI,
    POLLRDBAND,
    POLLRDNORM,
    POLLWRBAND,
    POLLWRNORM,
)
from fastio._abi import libc as _libc
from fastio._sigclaim import claim_signal, refuse_if_armed, release_signal
from fastio._util import as_c_int, as_fd, check_fork, deadline_for, fork_generation, remaining, timeout_to_ns

__all__ = ["SignalIO", "TextbookSignalIO"]

# fcntl(2) commands and the owner type, from include/uapi/asm-generic/fcntl.h
# (the stdlib has F_SETSIG but not the F_*OWN_EX pair before Python 3.12).
F_SETSIG = 10
F_GETSIG = 11
F_SETOWN_EX = 15
F_GETOWN_EX = 16
F_OWNER_TID = 0
_OWNER = struct.Struct("ii")  # struct f_owner_ex {int type; pid_t pid;}

# si_code of a signal queued by F_SETSIG: POLL_IN (1) .. POLL_HUP (6).
POLL_IN = 1
POLL_HUP = 6

# struct signalfd_siginfo, 128 bytes: ssi_signo @0, ssi_code @8, ssi_fd @20, ssi_band @28.
SIGINFO_SIZE = 128
_SIGINFO = struct.Struct("=I4xi8xi4xI96x")
assert _SIGINFO.size == SIGINFO_SIZE

SFD_CLOEXEC = os.O_CLOEXEC
SFD_NONBLOCK = os.O_NONBLOCK

# Everything a readiness signal's band can hold, asked of poll(2) when fastio
# looks for itself (at add() and after a queue overflow).
POLL_ASK = POLLIN | POLLPRI | POLLOUT | POLLRDNORM | POLLRDBAND | POLLWRNORM | POLLWRBAND

DEFAULT_MAX_EVENTS = 1024
MAX_READ = 65536  # signals one wait() reads at most, whatever max_events says
# Reads of a full batch while draining after an overflow or at close; bounds
# the loop even if signals keep arriving.
DRAIN_READS = 64

_sigset_t = ctypes.c_ubyte * 128  # glibc's and musl's sigset_t: 1024 bits

_signalfd = _libc.libc.signalfd
_signalfd.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
_signalfd.restype = ctypes.c_int
_sigemptyset = _libc.libc.sigemptyset
_sigemptyset.argtypes = [ctypes.c_void_p]
_sigaddset = _libc.libc.sigaddset
_sigaddset.argtypes = [ctypes.c_void_p, ctypes.c_int]
_ppoll = _libc.libc.ppoll
_ppoll.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_void_p]
_ppoll.restype = ctypes.c_int


def _sigset(signums) -> ctypes.Array:
    mask = _sigset_t()
    _sigemptyset(mask)
    for n in signums:
        if _sigaddset(mask, n) < 0:
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    return mask


# ---------------------------------------------------------------- fcntl helpers


def file_id(fd: int) -> tuple[int, int]:
    """(st_dev, st_ino): tells a reused fd number from the file that was added."""
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def check_signalable(fd: int) -> tuple[int, int]:
    """fstat the fd; refuse regular files and directories, whose open files
    have no fasync hook: O_ASYNC is accepted but the kernel never signals."""
    st = os.fstat(fd)
    if stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode):
        kind = "a regular file" if stat.S_ISREG(st.st_mode) else "a directory"
        raise PermissionError(
            errno.EPERM,
            f"fd {fd} is {kind}: the kernel never raises a signal for it (always ready, no fasync hook); "
            "read it directly or through fastio.uring / fastio.aio",
        )
    return st.st_dev, st.st_ino


def arm(fd: int, tid: int, signum: int) -> tuple[tuple[int, bytes, int], bool]:
    """fio_sigio_arm: save flags, owner and signal; aim signum at thread tid;
    turn on O_ASYNC | O_NONBLOCK; re-aim if a tty reset the owner. Returns
    what was saved and whether O_ASYNC took (a file without a fasync hook
    keeps it off); on an error restores fd and raises the OSError."""
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    owner = fcntl.fcntl(fd, F_GETOWN_EX, bytes(_OWNER.size))
    sig = fcntl.fcntl(fd, F_GETSIG)
    saved = (flags, owner, sig)
    mine = _OWNER.pack(F_OWNER_TID, tid)
    try:
        fcntl.fcntl(fd, F_SETOWN_EX, mine)
        fcntl.fcntl(fd, F_SETSIG, signum)
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_ASYNC | os.O_NONBLOCK)
        if fcntl.fcntl(fd, F_GETOWN_EX, bytes(_OWNER.size)) != mine:
            fcntl.fcntl(fd, F_SETOWN_EX, mine)  # tty_fasync reset it
        async_on = bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ASYNC)
    except OSError:
        try:
            restore(fd, saved)
        except OSError:
            pass
        raise
    return saved, async_on


def is_armed(fd: int, tid: int, signum: int, async_on: bool) -> bool:
    """fio_sigio_is_armed: whether fd's open file is as arm() left it (owner
    thread tid, signal signum, O_ASYNC if it took); a file opened anew at the
    same number is not. OSError if fd is not open."""
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    sig = fcntl.fcntl(fd, F_GETSIG)
    owner = fcntl.fcntl(fd, F_GETOWN_EX, bytes(_OWNER.size))
    if async_on and not flags & os.O_ASYNC:
        return False
    return sig == signum and owner == _OWNER.pack(F_OWNER_TID, tid)


def restore(fd: int, saved: tuple[int, bytes, int]) -> None:
    """fio_sigio_restore: O_ASYNC off first if it was off, else last; every
    step tried; the first OSError raised."""
    flags, owner, sig = saved
    steps: list[tuple[int, int | bytes]] = [(F_SETOWN_EX, owner), (F_SETSIG, sig)]
    if flags & os.O_ASYNC:
        steps.append((fcntl.F_SETFL, flags))
    else:
        steps.insert(0, (fcntl.F_SETFL, flags))
    first = None
    for cmd, arg in steps:
        try:
            fcntl.fcntl(fd, cmd, arg)
        except OSError as exc:
            first = first or exc
    if first is not None:
        raise first


def restore_entry(fd: int, entry, tid: int, signum: int) -> bool:
    """Restore an added fd from its (saved, file id, O_ASYNC took) entry and
    return True. OSError(EBADF) if fd is not open. False, fd untouched, if its
    number now names another open file than the one add() armed: another
    (st_dev, st_ino), or not as arming left it (owner, signal, O_ASYNC), which
    tells a FIFO or tty opened again (same st_dev, st_ino) from the old one."""
    saved, ident, async_on = entry
    try:
        same = file_id(fd) == ident
    except OSError:
        raise OSError(errno.EBADF, f"fd {fd} was closed before remove(): its flags cannot be restored") from None
    if not same or not is_armed(fd, tid, signum, async_on):
        return False
    restore(fd, saved)
    return True


def warn_strangers(where: str, fds) -> None:
    """The RuntimeWarning for fds that restore_entry() left alone."""
    for fd in fds:
        warnings.warn(
            f"{where}: fd {fd} now names another open file than the one add() armed (closed, and the "
            "number reused): left untouched and forgotten; the armed file may live on in a dup",
            RuntimeWarning, stacklevel=3)


def poll_now(fds, events: int) -> list[tuple[int, int]]:
    """The readiness of fds right now: poll(2) with a zero timeout."""
    p = select.poll()
    for fd in fds:
        p.register(fd, events)
    return p.poll(0)


# ---------------------------------------------------------------- SignalIO


class SignalIO:
    """SignalIO(signum=None)

    Signal-driven IO for the fds of one thread; see ``fastio._c.sigio.SignalIO``.
    """

    def __init__(self, signum=None):
        self._sfd = -1
        self._bfd = -1
        self._fork_gen = fork_generation()
        self._owner = threading.get_ident()
        self._tid = threading.get_native_id()
        self._fds: dict[int, tuple] = {}
        self._pending: dict[int, int] = {}
        self._unrestored = False
        self._seen_gen = 0
        self._buf = bytearray(DEFAULT_MAX_EVENTS * SIGINFO_SIZE)
        self._waiting = False
        self._overflowed = False
        self._overflows = 0
        state, signum, was_blocked = claim_signal(signum)
        self._state, self._signum, self._was_blocked = state, signum, was_blocked
        self._seen_gen = state.overflow_gen
        try:
            mask = _sigset([signum, signal.SIGIO])
            for attr, flags in (("_sfd", SFD_NONBLOCK | SFD_CLOEXEC), ("_bfd", SFD_CLOEXEC)):
                fd = _signalfd(-1, mask, flags)
                if fd < 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"signalfd: {os.strerror(err)}")
                setattr(self, attr, fd)
        except BaseException:
            self._close_fds()
            release_signal(state, signum, was_blocked, False)
            raise

    def __del__(self):
        if getattr(self, "_sfd", -1) >= 0:
            self.close()

    @property
    def signum(self) -> int:
        """The real-time signal the kernel queues for the fds of this object."""
        return self._signum

    @property
    def closed(self) -> bool:
        """True once close() ran."""
        return self._sfd < 0

    @property
    def overflowed(self) -> bool:
        """True if the last wait() met a real-time queue overflow (and so polled
        every added fd)."""
        return self._overflowed

    @property
    def overflows(self) -> int:
        """How many wait() calls met an overflow since creation."""
        return self._overflows

    def fileno(self) -> int:
        """The non-blocking signalfd: readable while a signal is queued."""
        if self._sfd < 0:
            raise ValueError("I/O operation on closed SignalIO object")
        return self._sfd

    def _check(self) -> None:
        if self._sfd < 0:
            raise ValueError("I/O operation on closed SignalIO object")
        check_fork(self._fork_gen, "SignalIO")

    def add(self, fd):
        """Arm ``fd``; see ``fastio._c.sigio.SignalIO.add``."""
        cfd = as_fd(fd)
        self._check()
        if cfd in self._fds:
            raise FileExistsError(errno.EEXIST, f"fd {cfd} is already added")
        ident = check_signalable(cfd)
        refuse_if_armed(cfd)
        saved, async_on = arm(cfd, self._tid, self._signum)
        self._fds[cfd] = (saved, ident, async_on)
        ready = poll_now([cfd], POLL_ASK)
        if ready and ready[0][1]:
            self._pending[cfd] = self._pending.get(cfd, 0) | ready[0][1]

    def remove(self, fd):
        """Disarm ``fd``; see ``fastio._c.sigio.SignalIO.remove``."""
        cfd = as_fd(fd)
        self._check()
        entry = self._fds.pop(cfd, None)
        if entry is None:
            raise FileNotFoundError(errno.ENOENT, f"fd {cfd} was not added")
        self._pending.pop(cfd, None)
        if self._restore_one(cfd, entry, raise_errors=True):
            warn_strangers("SignalIO.remove()", [cfd])

    def _restore_one(self, fd: int, entry, raise_errors: bool) -> bool:
        """restore_entry(); True if fd names another open file now."""
        try:
            restored = restore_entry(fd, entry, self._tid, self._signum)
        except OSError:
            self._unrestored = True
            if raise_errors:
                raise
            return False
        self._unrestored = self._unrestored or not restored
        return not restored

    def _read(self, fd: int, limit: int) -> int:
        """One read of at most limit signals into self._buf; 0 on EAGAIN."""
        try:
            n = os.readv(fd, [memoryview(self._buf)[: limit * SIGINFO_SIZE]])
        except BlockingIOError:
            return 0
        return n // SIGINFO_SIZE

    def _collect(self, count: int, events: dict) -> bool:
        """Merge count signals from self._buf into events; True if the
        fallback SIGIO was among them."""
        overflow = False
        mine = self._signum
        fds = self._fds
        for signo, code, fd, band in _SIGINFO.iter_unpack(memoryview(self._buf)[: count * SIGINFO_SIZE]):
            if signo == mine:
                if POLL_IN <= code <= POLL_HUP and fd in fds:
                    events[fd] = events.get(fd, 0) | band
            elif signo == signal.SIGIO:
                overflow = True
        return overflow

    def wait(self, timeout=None, max_events=None):
        """Wait for readiness; see ``fastio._c.sigio.SignalIO.wait``."""
        if self._waiting:
            raise RuntimeError(
                "SignalIO.wait() is already running in this thread (called again from a "
                "signal handler?); it cannot be re-entered")
        self._waiting = True
        try:
            return self._wait(timeout, max_events)
        finally:
            self._waiting = False

    def _wait(self, timeout, max_events):
        timeout_ns = timeout_to_ns(timeout, 1_000_000_000)
        if max_events is None:
            limit = DEFAULT_MAX_EVENTS
        else:
            limit = min(as_c_int(max_events), MAX_READ)   # one read takes at most MAX_READ
            if limit <= 0:
                raise ValueError(f"max_events must be greater than 0, got {max_events}")
        self._check()
        if threading.get_ident() != self._owner:
            raise RuntimeError(
                "SignalIO.wait() called from a thread other than the one that created the SignalIO: its "
                "signals are aimed at and blocked in that thread only; wait there, or create one per thread"
            )
        if len(self._buf) < limit * SIGINFO_SIZE:
            self._buf = bytearray(limit * SIGINFO_SIZE)
        state = self._state
        deadline = deadline_for(timeout_ns)
        while True:
            if self._pending or state.overflow_gen != self._seen_gen:
                timeout_ns = 0
            count = self._read_wait(limit, timeout_ns)
            events = self._pending
            self._pending = {}
            if count and self._collect(count, events):
                state.overflow_gen += 1
            if state.overflow_gen != self._seen_gen:
                self._seen_gen = state.overflow_gen
                self._recover(events)
            else:
                self._overflowed = False
            if events or count == 0 or timeout_ns == 0:
                return list(events.items())
            # Only signals of removed fds (or not from F_SETSIG): wait on.
            timeout_ns = remaining(deadline)

    def _read_wait(self, limit: int, timeout_ns: int) -> int:
        if timeout_ns < 0:
            # os.readv on the blocking signalfd: GIL released, PEP 475 retry.
            n = os.readv(self._bfd, [memoryview(self._buf)[: limit * SIGINFO_SIZE]])
            return n // SIGINFO_SIZE
        count = self._read(self._sfd, limit)
        if count or timeout_ns == 0:
            return count
        deadline = deadline_for(timeout_ns)
        p = select.poll()
        p.register(self._sfd, POLLIN)
        while True:
            # select.poll retries EINTR itself with the time left (PEP 475).
            p.poll(-(-timeout_ns // 1_000_000))
            self._check()
            count = self._read(self._sfd, limit)
            timeout_ns = remaining(deadline)
            if count or timeout_ns == 0:
                return count

    def _recover(self, events: dict) -> None:
        """After the kernel fell back to plain SIGIO (real-time queue full):
        drain the signalfd, then poll every added fd and merge its readiness."""
        self._overflowed = True
        self._overflows += 1
        for _ in range(DRAIN_READS):
            count = self._read(self._sfd, DEFAULT_MAX_EVENTS)
            if not count:
                break
            self._collect(count, events)
        for fd, revents in poll_now(self._fds, POLL_ASK):
            if revents:
                events[fd] = events.get(fd, 0) | revents

    def _drain(self) -> None:
        for _ in range(DRAIN_READS):
            try:
                n = os.readv(self._sfd, [self._buf])
            except BlockingIOError:
                return
            for signo, *_rest in _SIGINFO.iter_unpack(memoryview(self._buf)[: n - n % SIGINFO_SIZE]):
                if signo == signal.SIGIO:
                    self._state.overflow_gen += 1

    def _close_fds(self) -> None:
        for attr in ("_sfd", "_bfd"):
            fd = getattr(self, attr)
            setattr(self, attr, -1)
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass

    def close(self) -> None:
        """Restore every fd, drain and close; see ``fastio._c.sigio.SignalIO.close``."""
        if self._sfd < 0:
            return
        if self._waiting:
            raise RuntimeError("cannot close a SignalIO while its wait() runs; close it in "
                               "the owner thread once wait() has returned")
        if self._fork_gen != fork_generation():
            # A forked child shares the fds' open files with the parent:
            # touching their flags would disarm the parent's. Close ours only.
            self._fds.clear()
            self._close_fds()
            return
        fds, self._fds = self._fds, {}
        strangers = [fd for fd, entry in fds.items() if self._restore_one(fd, entry, raise_errors=False)]
        self._pending.clear()
        if threading.get_ident() == self._owner:
            self._drain()
        self._close_fds()
        release_signal(self._state, self._signum, self._was_blocked, self._unrestored)
        warn_strangers("SignalIO.close()", strangers)

    def __enter__(self):
        if self._sfd < 0:
            raise ValueError("I/O operation on closed SignalIO object")
        return self

    def __exit__(self, *args):
        self.close()


# ---------------------------------------------------------------- textbook mode


class _Counter:
    """The textbook SIGIO handler: counts signals (kept apart from the
    TextbookSignalIO so that the handler does not keep it alive)."""

    __slots__ = ("count",)

    def __init__(self):
        self.count = 0

    def __call__(self, signum, frame):
        self.count += 1


class TextbookSignalIO:
    """TextbookSignalIO()

    The textbook signal-driven loop, for comparison; see
    ``fastio._c.sigio.TextbookSignalIO``.
    """

    def __init__(self):
        self._closed = True
        self._fork_gen = fork_generation()
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError(
                "TextbookSignalIO needs the main thread: Python runs signal handlers only there"
            )
        self._owner = threading.get_ident()
        self._tid = threading.get_native_id()
        self._fds: dict[int, tuple] = {}
        self._poll = select.poll()
        self._unrestored = False
        self._counter = _Counter()
        self._seen = 0
        self._need_poll = False
        self._waiting = 0
        old = signal.signal(signal.SIGIO, self._counter)
        self._old_handler = signal.SIG_DFL if old is None else old
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGIO])
        self._sigio_was_blocked = signal.SIGIO in blocked
        self._wait_mask = _sigset(set(blocked) - {signal.SIGIO})
        self._closed = False

    def __del__(self):
        if not getattr(self, "_closed", True):
            self.close()

    @property
    def closed(self) -> bool:
        """True once close() ran."""
        return self._closed

    def _check(self) -> None:
        if self._closed:
            raise ValueError("I/O operation on closed TextbookSignalIO object")
        check_fork(self._fork_gen, "TextbookSignalIO")

    def _refuse_during_wait(self, call: str) -> None:
        if self._waiting and threading.get_ident() != self._owner:
            raise RuntimeError(
                f"TextbookSignalIO.{call}() while wait() runs in another thread; "
                "call it between waits, or from the main thread")

    def add(self, fd, events=POLLIN | POLLPRI):
        """Arm ``fd`` for plain SIGIO; see ``fastio._c.sigio.TextbookSignalIO.add``."""
        cfd = as_fd(fd)
        mask = as_c_int(events)
        if not 0 <= mask <= 0xFFFF:
            raise ValueError(f"events must be poll(2) bits in 0..0xFFFF, got {mask:#x}")
        self._check()
        self._refuse_during_wait("add")
        if cfd in self._fds:
            raise FileExistsError(errno.EEXIST, f"fd {cfd} is already added")
        ident = check_signalable(cfd)
        refuse_if_armed(cfd)
        saved, async_on = arm(cfd, self._tid, 0)
        self._fds[cfd] = (saved, ident, async_on)
        self._poll.register(cfd, mask)
        self._need_poll = True

    def remove(self, fd):
        """Disarm ``fd`` and restore it; see ``fastio._c.sigio.TextbookSignalIO.remove``."""
        cfd = as_fd(fd)
        self._check()
        self._refuse_during_wait("remove")
        entry = self._fds.pop(cfd, None)
        if entry is None:
            raise FileNotFoundError(errno.ENOENT, f"fd {cfd} was not added")
        self._poll.unregister(cfd)
        if self._restore_one(cfd, entry, raise_errors=True):
            warn_strangers("TextbookSignalIO.remove()", [cfd])

    def wait(self, timeout=None):
        """Sleep until SIGIO's handler ran, then poll every fd; see
        ``fastio._c.sigio.TextbookSignalIO.wait``."""
        timeout_ns = timeout_to_ns(timeout, 1_000_000_000)
        self._check()
        if threading.get_ident() != self._owner:
            raise RuntimeError("TextbookSignalIO.wait() called from a thread other than the main thread")
        self._waiting += 1
        try:
            return self._poll.poll(0) if self._sleep(timeout_ns) else []
        finally:
            self._waiting -= 1

    def _sleep(self, timeout_ns: int) -> bool:
        """Wait with SIGIO unblocked until the counter moved (True) or the
        time passed (False); True at once after an add()."""
        deadline = deadline_for(timeout_ns)
        while self._counter.count == self._seen and not self._need_poll:
            if timeout_ns == 0:
                return False
            ts = None if timeout_ns < 0 else _libc.Timespec(*divmod(timeout_ns, 1_000_000_000))
            # sigsuspend with a timeout: SIGIO unblocked only while asleep.
            ret = _ppoll(None, 0, None if ts is None else ctypes.byref(ts), self._wait_mask)
            if ret < 0 and ctypes.get_errno() != errno.EINTR:
                err = ctypes.get_errno()
                raise OSError(err, os.strerror(err))
            # Python ran the handlers (the counter's too) when ppoll returned.
            self._check()
            timeout_ns = remaining(deadline)
        self._seen = self._counter.count
        self._need_poll = False
        return True

    def _restore_one(self, fd: int, entry, raise_errors: bool) -> bool:
        """restore_entry(); True if fd names another open file now."""
        try:
            restored = restore_entry(fd, entry, self._tid, 0)
        except OSError:
            self._unrestored = True
            if raise_errors:
                raise
            return False
        self._unrestored = self._unrestored or not restored
        return not restored

    def close(self) -> None:
        """Restore every fd, the SIGIO mask and the old handler; see
        ``fastio._c.sigio.TextbookSignalIO.close``."""
        if self._closed:
            return
        self._refuse_during_wait("close")
        self._closed = True
        if self._fork_gen != fork_generation():
            return
        fds, self._fds = self._fds, {}
        strangers = [fd for fd, entry in fds.items() if self._restore_one(fd, entry, raise_errors=False)]
        if threading.get_ident() == self._owner and not self._sigio_was_blocked and not self._unrestored:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGIO])
        if not self._unrestored:
            signal.signal(signal.SIGIO, self._old_handler)
        warn_strangers("TextbookSignalIO.close()", strangers)

    def __enter__(self):
        if self._closed:
            raise ValueError("I/O operation on closed TextbookSignalIO object")
        return self

    def __exit__(self, *args):
        self.close()
