"""Regression tests for the signal-driven IO defects A4 and A7 (docs/RELIABILITY.md;
each docstring: the bug, its symptom, the fix). Both backends, the real
kernel, real pipes and FIFOs.

Techniques: a signal handler of the main thread that runs a second thread
while ``wait()`` sleeps (the other thread then certainly calls while the wait
is in progress), a second thread hammering ``add``/``remove`` against waits
that poll, a finalizer run by an allocation inside ``wait()``
(``gc.set_threshold(1, 1, 1)`` and an unreachable cycle with ``__del__``), and
a FIFO closed and opened again at the same fd number."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import gc
import os
import select
import signal
import threading
import time
import warnings

import pytest

from sigio_support import F_OWNER_PID, F_OWNER_TID, F_SETOWN_EX, F_SETSIG, OWNER, fd_state

from fastio import _sigclaim


@pytest.fixture(autouse=True)
def thread_signals_put_back():
    """The SIGIO handler, the thread's mask and fastio's per-thread signal
    table as they were (an fd that could not be restored leaves signals
    blocked, and the textbook handler installed, on purpose)."""
    handler = signal.getsignal(signal.SIGIO)
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    yield
    state = _sigclaim._threads.get(threading.get_ident())
    if state is not None and not state.signums:
        pending = set(state.leftover) | {signal.SIGIO}
        with contextlib.suppress(BlockingIOError, InterruptedError):
            while signal.sigtimedwait(pending, 0) is not None:
                pass
        del _sigclaim._threads[threading.get_ident()]
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    signal.signal(signal.SIGIO, handler)


@pytest.fixture
def pipes():
    """Two pipes (read end, write end), the write ends non-blocking."""
    made = [os.pipe(), os.pipe()]
    for _, w in made:
        os.set_blocking(w, False)
    yield made
    for r, w in made:
        os.close(r)
        os.close(w)


def drain(fd: int) -> None:
    with contextlib.suppress(BlockingIOError):
        while os.read(fd, 65536):
            pass


@contextlib.contextmanager
def one_alarm(handler, after=0.05):
    """SIGALRM once, ``after`` seconds from now, into ``handler``."""
    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, after)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# ---------------------------------------------------------------- A4


class TestTextbookCallsFromAnotherThreadDuringWait:
    def test_refused_while_wait_sleeps(self, backend, pipes):
        """Bug (A4): ``TextbookSignalIO.add()``/``remove()`` from another
        thread rebuilt (freed) the pollfd array that the main thread's
        ``wait()`` hands to ``ppoll`` with the GIL released, and ``close()``
        there tore the object down under the wait. Symptom: a use-after-free
        in the compiled backend; the calls silently went through on both.
        Fix: while a ``wait()`` runs, ``add``/``remove``/``close`` from
        another thread raise RuntimeError, and the compiled ``wait()`` owns
        the array it polls. Here the main thread's SIGALRM handler runs
        inside ``wait()``'s sleep and starts the other thread, so that each
        call certainly meets the wait in progress."""
        (r1, w1), (r2, _) = pipes
        outcome: dict[str, str] = {}
        with backend.TextbookSignalIO() as tb:
            tb.add(r1)
            tb.add(r2)
            assert tb.wait(0) == []

            def other():
                for name, call in (("add", lambda: tb.add(r1)), ("remove", lambda: tb.remove(r2)),
                                   ("close", tb.close)):
                    try:
                        call()
                        outcome[name] = "returned"
                    except Exception as exc:
                        outcome[name] = f"{type(exc).__name__}: {exc}"

            def handler(*args):
                t = threading.Thread(target=other)
                t.start()
                t.join(10)
                os.write(w1, b"x")  # SIGIO: ends the wait

            with one_alarm(handler):
                result = tb.wait(10)
            assert sorted(outcome) == ["add", "close", "remove"]
            for name, got in outcome.items():
                assert got.startswith(f"RuntimeError: TextbookSignalIO.{name}() while wait() runs in another thread")
            assert not tb.closed
            assert result == [(r1, select.POLLIN)]
            # Nothing changed: both fds are still added, and the owner may
            # still add, remove and close.
            tb.remove(r2)
            tb.remove(r1)
            tb.add(r1)
        assert tb.closed

    def test_a_thread_hammering_add_and_remove(self, backend, pipes):
        """Bug (A4), the race itself: a second thread adds and removes an fd
        in a loop while the main thread waits, woken by SIGIO from a pipe the
        second thread writes to, so that many waits reach their poll. Before
        the fix every call went through (and the compiled poll could read
        the array just freed); now each call made while a wait runs raises
        RuntimeError, the others work, nothing crashes, and the waits
        report only fds that were added."""
        (r1, w1), (r2, _) = pipes
        errors: list[tuple[str, str]] = []
        unexpected: list[BaseException] = []
        done = threading.Event()
        with backend.TextbookSignalIO() as tb:
            tb.add(r1)
            tb.wait(0)

            def other():
                deadline = time.monotonic() + 20
                try:
                    for i in range(100_000):
                        if time.monotonic() > deadline or {"add", "remove"} <= {name for name, _ in errors}:
                            break
                        for name, call in (("add", tb.add), ("remove", tb.remove)):
                            try:
                                call(r2)
                            except RuntimeError as exc:
                                errors.append((name, str(exc)))
                            except (FileExistsError, FileNotFoundError):
                                pass    # the other call was refused: r2 is (not) added still
                        # Wake the wait only now and then, and pause between
                        # turns: a write on every turn leaves SIGIO pending,
                        # and an add() that went through makes the next wait
                        # return at once, so without the pause each wait is
                        # over before the next call and every call lands in
                        # a gap (CI runs on 3.9 and 3.13 met no wait at all).
                        if i % 8 == 7:
                            with contextlib.suppress(BlockingIOError):
                                os.write(w1, b"x")
                        time.sleep(0.002)   # longer than the main thread's gap: it goes back to a wait
                except BaseException as exc:
                    unexpected.append(exc)
                finally:
                    done.set()

            t = threading.Thread(target=other)
            t.start()
            waits = 0
            try:
                while not done.is_set() and waits < 100_000:
                    for fd, _ in tb.wait(0.05):
                        assert fd in (r1, r2)
                    drain(r1)
                    time.sleep(0.001)   # a gap between waits, where the calls must work
                    waits += 1
            finally:
                t.join(10)
            assert not t.is_alive() and not unexpected, unexpected
            assert errors, "no call met a wait in progress"
            for name, message in errors:
                assert message.startswith(f"TextbookSignalIO.{name}() while wait() runs in another thread")
            with contextlib.suppress(FileNotFoundError):
                tb.remove(r2)
            drain(r1)
            tb.wait(0)


class TestTextbookReentrantCallsDuringWait:
    def test_handler_removes_during_the_sleep(self, backend, pipes):
        """Guard for A4's fix (it held before and must keep holding): a
        signal handler of the main thread is the same thread, so its
        ``remove()`` during ``wait()``'s sleep is legitimate, and the wait
        then polls the rebuilt array: the removed fd, though readable, is not
        reported; the fd that fired is."""
        (r1, w1), (r2, w2) = pipes
        with backend.TextbookSignalIO() as tb:
            tb.add(r1)
            tb.add(r2)
            assert tb.wait(0) == []
            os.write(w2, b"y")   # r2 readable; its SIGIO is counted at the next wait
            assert tb.wait(5) == [(r2, select.POLLIN)]

            def handler(*args):
                tb.remove(r2)
                os.write(w1, b"x")

            with one_alarm(handler):
                assert tb.wait(10) == [(r1, select.POLLIN)]
            assert fd_state(r2)[1] != (F_OWNER_TID, threading.get_native_id())

    def test_finalizer_rebuilds_the_array_while_wait_reports(self, backend, pipes):
        """Bug (A4), same thread: the compiled ``wait()`` built its result
        from ``self.pfds`` after ``ppoll``; a finalizer run by one of those
        allocations (the first result tuple) could ``remove()`` and ``add()``
        an fd, which freed that array and made a fresh one with no revents.
        Symptom: the fds after the first were read from the new array (a
        readable fd went unreported, or freed memory was read). Fix: the wait
        takes the array for itself while it polls and reports; a rebuild
        meanwhile makes a new one and the wait frees the old one after.
        (Where the finalizer runs depends on the interpreter: inside the
        compiled allocation on 3.9-3.11, at the next bytecode boundary on
        3.12+; either way both readable fds must be reported.)"""
        (r1, w1), (r2, w2) = pipes
        outcome: list[str] = []

        class Rebuild:
            __slots__ = ("cycle",)

            def __init__(self):
                self.cycle = self

            def __del__(self):
                try:
                    tb.remove(r2)
                    tb.add(r2)
                    outcome.append("done")
                except Exception as exc:
                    outcome.append(type(exc).__name__)

        old = gc.get_threshold()
        with backend.TextbookSignalIO() as tb:
            tb.add(r2)
            tb.add(r1)   # the next wait polls at once
            os.write(w1, b"x")
            os.write(w2, b"y")
            try:
                gc.collect()
                gc.disable()
                gc.set_threshold(1, 1, 1)
                Rebuild()     # garbage from here on; collected at the next allocation
                gc.enable()
                result = tb.wait(0)
            finally:
                gc.set_threshold(*old)
                gc.enable()
            gc.collect()
            assert outcome == ["done"]
            assert sorted(result) == [(r1, select.POLLIN), (r2, select.POLLIN)]


# ---------------------------------------------------------------- A7


def reopen_at(path: str, number: int) -> None:
    """Open the FIFO at ``path`` (read end, non-blocking) as fd ``number``,
    which must be free: the lowest free fd, or dup2 onto it."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    if fd != number:
        os.dup2(fd, number, inheritable=False)
        os.close(fd)
    assert os.path.samestat(os.fstat(number), os.stat(path))


@pytest.fixture
def fifo(tmp_path):
    """A FIFO's read end whose open file carries settings of the user's
    (blocking, owner this process, signal SIGRTMIN+7, O_ASYNC off), so that
    restoring them onto another open file would show; and a writer."""
    path = str(tmp_path / "fifo")
    os.mkfifo(path)
    r = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    w = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
    os.set_blocking(r, True)
    fcntl.fcntl(r, F_SETOWN_EX, OWNER.pack(F_OWNER_PID, os.getpid()))
    fcntl.fcntl(r, F_SETSIG, signal.SIGRTMIN + 7)
    yield path, r
    for fd in (r, w):
        with contextlib.suppress(OSError):
            os.close(fd)


CLASSES = ["SignalIO", "TextbookSignalIO"]


class TestReopenedFdIsToldApart:
    @pytest.mark.parametrize("cls", CLASSES)
    @pytest.mark.parametrize("how", ["remove", "close"])
    def test_fifo_reopened_at_the_same_number(self, backend, fifo, cls, how):
        """Bug (A7): ``remove()``/``close()`` restored the saved flags, owner
        and signal onto an fd after checking only its file's (st_dev,
        st_ino). A FIFO closed and opened again at the same number has the
        same pair, so the new open file got the old one's settings (here:
        blocking again, owner this process, SIGRTMIN+7) and ``remove()``
        reported success. Fix: the open file must also still carry what
        ``add()`` set (owner this thread by F_OWNER_TID, the signal, O_ASYNC
        if it took); a new open file has none of that. It is left untouched,
        a RuntimeWarning says so, and the entry is dropped (the old open file
        may live on in a dup, armed: the signals stay blocked)."""
        path, r = fifo
        sio = getattr(backend, cls)()
        try:
            sio.add(r)
            armed = fd_state(r)
            assert armed[0] & os.O_ASYNC and armed[1] == (F_OWNER_TID, threading.get_native_id())
            os.close(r)
            reopen_at(path, r)
            fresh = fd_state(r)
            assert not fresh[0] & os.O_ASYNC and fresh[0] & os.O_NONBLOCK
            with pytest.warns(RuntimeWarning, match=f"fd {r} .*another open file"):
                if how == "remove":
                    sio.remove(r)
                else:
                    sio.close()
            assert fd_state(r) == fresh
            if how == "remove":
                with pytest.raises(FileNotFoundError):
                    sio.remove(r)   # forgotten
                sio.add(r)          # the new open file may be added
                sio.remove(r)
                assert fd_state(r) == fresh
        finally:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                sio.close()

    @pytest.mark.parametrize("cls", CLASSES)
    def test_closed_fd_still_raises_ebadf(self, backend, fifo, cls):
        """Unchanged by A7's fix: an fd not open at all at ``remove()`` is an
        OSError(EBADF), no warning, and forgotten."""
        _, r = fifo
        with getattr(backend, cls)() as sio:
            sio.add(r)
            os.close(r)
            with pytest.raises(OSError) as info:
                sio.remove(r)
            assert info.value.errno == errno.EBADF
            with pytest.raises(FileNotFoundError):
                sio.remove(r)

    @pytest.mark.parametrize("cls", CLASSES)
    def test_same_open_file_is_restored(self, backend, fifo, cls):
        """Unchanged by A7's fix: the fd number closed and pointed again at the
        same open file (dup2 of a dup) is the file ``add()`` armed, and is
        restored exactly."""
        _, r = fifo
        before = fd_state(r)
        with getattr(backend, cls)() as sio:
            sio.add(r)
            keep = os.dup(r)
            os.close(r)
            os.dup2(keep, r, inheritable=False)
            os.close(keep)
            sio.remove(r)
            assert fd_state(r) == before
