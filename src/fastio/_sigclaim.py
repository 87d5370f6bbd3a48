"""The one per-thread table of the real-time signals that signal-driven IO
(``fastio.sigio``) has blocked, shared by both backends: a thread has one
signal mask, so every ``SignalIO`` of a thread, compiled or pure, must count
its users in one place. ``sigaction(2)`` (to see whether a signal has a
handler) goes through ctypes.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import signal
import threading

from fastio._abi import libc as _libc
from fastio._util import as_c_int

__all__ = ["claim_signal", "refuse_if_armed", "release_signal"]

_sigaction = _libc.libc.sigaction
_sigaction.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
_sigaction.restype = ctypes.c_int


def _handler_is_default(signum: int) -> bool:
    """Whether the process-wide disposition of signum is SIG_DFL (no handler
    from Python, C or anyone): sigaction(2) with no new action."""
    old = (ctypes.c_ubyte * 256)()  # larger than any libc's struct sigaction
    if _sigaction(signum, None, old) < 0:
        return False
    return ctypes.c_void_p.from_buffer(old).value is None


# ---------------------------------------------------------------- the thread table


class _ThreadSignals:
    """The signals signal-driven IO has blocked in one thread."""

    __slots__ = ("ident", "signums", "leftover", "sigio_was_blocked", "overflow_gen")

    def __init__(self, ident: int, sigio_was_blocked: bool):
        self.ident = ident
        self.signums: set[int] = set()  # one per open SignalIO of this thread
        # Signals fastio had to leave blocked: a closed SignalIO could not
        # restore an fd (closed first; a dup of its file may still raise the
        # signal), or was closed from another thread. A later SignalIO of this
        # thread takes one of these first. SIGIO stays blocked while any exist.
        self.leftover: set[int] = set()
        self.sigio_was_blocked = sigio_was_blocked
        # Bumped whenever any SignalIO of this thread reads the fallback
        # SIGIO: each remembers the value it saw, so all of them poll.
        self.overflow_gen = 0


_threads: dict[int, _ThreadSignals] = {}
_threads_lock = threading.Lock()


def _check_signum(signum) -> int:
    signum = as_c_int(signum)
    if not signal.SIGRTMIN <= signum <= signal.SIGRTMAX:
        raise ValueError(
            f"signum must be a real-time signal ({signal.SIGRTMIN}..{signal.SIGRTMAX}), got {signum}: "
            "only real-time signals queue one entry per event with the fd in it"
        )
    return signum


def claim_signal(signum) -> tuple[_ThreadSignals, int, bool]:
    """Pick (signum None) or check a real-time signal for a new SignalIO of the
    calling thread, block it and SIGIO in this thread. Returns the thread's
    table, the signal, and whether the signal was already blocked.

    "Free" means: not used by another SignalIO of this thread, not blocked in
    this thread, and SIG_DFL as its disposition (no handler from Python or C);
    a signal an earlier SignalIO here had to leave blocked is taken first.
    The search runs from SIGRTMAX down, away from the SIGRTMIN+n an application
    usually takes.
    """
    ident = threading.get_ident()
    with _threads_lock:
        state = _threads.get(ident)
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, [])
        if signum is None:
            spare = sorted(state.leftover - state.signums) if state is not None else []
            if spare:
                signum = spare[-1]
            else:
                for n in range(signal.SIGRTMAX, signal.SIGRTMIN - 1, -1):
                    if (state is None or n not in state.signums) and n not in blocked and _handler_is_default(n):
                        signum = n
                        break
                else:
                    raise RuntimeError(
                        f"no free real-time signal: each of {signal.SIGRTMIN}..{signal.SIGRTMAX} has a handler, "
                        "is blocked in this thread or is used by another SignalIO here; pass signum= explicitly"
                    )
        else:
            signum = _check_signum(signum)
            if state is not None and signum in state.signums:
                raise ValueError(
                    f"signal {signum} is already used by another SignalIO of this thread; "
                    "each needs its own (leave signum=None to pick a free one)"
                )
        if state is None:
            state = _ThreadSignals(ident, signal.SIGIO in blocked)
            _threads[ident] = state
        signal.pthread_sigmask(signal.SIG_BLOCK, [signum, signal.SIGIO])
        state.signums.add(signum)
        return state, signum, signum in blocked


def release_signal(state: _ThreadSignals, signum: int, was_blocked: bool, unrestored: bool) -> None:
    """Undo claim_signal for one SignalIO; call after draining its signalfd.

    In the thread that claimed it, the signal is unblocked unless it was
    blocked before or an fd could not be restored (then it is kept as a
    leftover); SIGIO likewise once the thread has no SignalIO and no leftover.
    Another thread cannot change that thread's mask: the signal then becomes
    a leftover there."""
    with _threads_lock:
        state.signums.discard(signum)
        if unrestored or state.ident != threading.get_ident():
            if not was_blocked or signum in state.leftover:
                state.leftover.add(signum)
            return
        if signum in state.leftover:
            return  # still blocked on purpose; stays a leftover
        if not was_blocked:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, [signum])
        if not state.signums and not state.leftover:
            if _threads.get(state.ident) is state:
                del _threads[state.ident]
            if not state.sigio_was_blocked:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGIO])


F_GETSIG = 11  # include/uapi/asm-generic/fcntl.h


def refuse_if_armed(fd: int) -> None:
    """FileExistsError if fd's open file is already armed by a SignalIO of this
    process (a dup of an added fd, or one added to another SignalIO). Owner,
    signal and O_ASYNC belong to the open file, not to the fd number, so a
    second arming would save the first one's settings as "the original" and
    restore them, leaving the file raising a signal nobody blocks.

    The signal (F_GETSIG) tells, not O_ASYNC: a file with no fasync hook (an
    eventfd, a timerfd) is armed with its owner and signal set but O_ASYNC
    kept off by the kernel."""
    signum = fcntl.fcntl(fd, F_GETSIG)
    if not signum:
        return
    with _threads_lock:
        in_use = any(signum in state.signums or signum in state.leftover for state in _threads.values())
    if in_use:
        raise FileExistsError(
            errno.EEXIST,
            f"fd {fd} refers to an open file a SignalIO already has armed (signal {signum}): "
            "a dup of an added fd, or an fd added to another SignalIO; the kernel keeps one "
            "owner and signal per open file",
        )
