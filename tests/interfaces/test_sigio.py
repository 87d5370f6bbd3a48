"""Signal-driven IO on both backends: real sockets, pipes and ptys armed with
O_ASYNC + F_SETOWN_EX + F_SETSIG, readiness read only through SignalIO.wait();
restoration of every fd and of the thread's signal mask; the real-time queue
overflow provoked for real; wrong thread, fork, EINTR, bad input."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import gc
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from support import UNDER_VALGRIND, Interrupted, in_child, interval_timer, raise_interrupted

from fastio import sigio as fsigio

F_SETSIG = 10
F_GETSIG = 11
F_SETOWN_EX = 15
F_GETOWN_EX = 16
F_OWNER_TID = 0
F_OWNER_PID = 1
OWNER = struct.Struct("ii")


def get_owner(fd: int) -> tuple[int, int]:
    return OWNER.unpack(fcntl.fcntl(fd, F_GETOWN_EX, bytes(8)))


def fd_state(fd: int) -> tuple[int, tuple[int, int], int]:
    """What SignalIO must restore: (flags, (owner type, owner id), signal)."""
    return fcntl.fcntl(fd, fcntl.F_GETFL), get_owner(fd), fcntl.fcntl(fd, F_GETSIG)


def thread_mask() -> set:
    return set(signal.pthread_sigmask(signal.SIG_BLOCK, []))


@pytest.fixture(autouse=True)
def mask_is_restored():
    """Every test leaves the thread's signal mask as it found it."""
    before = thread_mask()
    yield
    after = thread_mask()
    signal.pthread_sigmask(signal.SIG_SETMASK, before)
    assert after == before


def wait_until(sio, want, timeout=5.0, **kw) -> dict:
    """Call wait() until every fd of `want` was reported with its bits;
    returns the union of bands. Bounded in time."""
    got: dict[int, int] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for fd, band in sio.wait(0.5, **kw):
            got[fd] = got.get(fd, 0) | band
        if all(got.get(fd, 0) & bits == bits for fd, bits in want.items()):
            return got
    raise AssertionError(f"wanted {want}, got {got}")


def tcp_pairs(n):
    """n connected TCP pairs on 127.0.0.1 (client, server side)."""
    pairs = []
    with socket.create_server(("127.0.0.1", 0), backlog=n) as server:
        for _ in range(n):
            c = socket.create_connection(server.getsockname())
            s, _ = server.accept()
            pairs.append((c, s))
    return pairs


# ---------------------------------------------------------------- creation, signal choice, mask


def test_free_signal_picked_blocked_and_restored(backend):
    before = thread_mask()
    with backend.SignalIO() as sio:
        assert signal.SIGRTMIN <= sio.signum <= signal.SIGRTMAX
        assert signal.getsignal(sio.signum) in (signal.SIG_DFL, None)
        assert {sio.signum, signal.SIGIO} <= thread_mask()
        assert sio.signum not in before
        assert not sio.closed and sio.fileno() >= 0
        assert not os.get_inheritable(sio.fileno())
        assert os.get_blocking(sio.fileno()) is False
    assert sio.closed
    assert thread_mask() == before


@pytest.mark.skipif(UNDER_VALGRIND, reason="valgrind keeps SIGRTMAX for itself: signal.signal(SIGRTMAX) "
                    "is EINVAL under it")
def test_signal_with_handler_or_blocked_is_not_free(backend):
    top = signal.SIGRTMAX
    old = signal.signal(top, lambda *a: None)
    signal.pthread_sigmask(signal.SIG_BLOCK, [top - 1])
    try:
        with backend.SignalIO() as sio:
            assert sio.signum == top - 2
            # two in one thread get different signals
            with backend.SignalIO() as other:
                assert other.signum not in (top, top - 1, top - 2)
    finally:
        signal.signal(top, old)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [top - 1])


def test_explicit_signum(backend):
    n = signal.SIGRTMIN + 3
    with backend.SignalIO(n) as sio:
        assert sio.signum == n
        with pytest.raises(ValueError, match="already used"):
            backend.SignalIO(n)
    with pytest.raises(ValueError, match="real-time"):
        backend.SignalIO(signal.SIGUSR1)
    with pytest.raises(ValueError, match="real-time"):
        backend.SignalIO(signal.SIGIO)
    with pytest.raises(ValueError, match="real-time"):
        backend.SignalIO(signal.SIGRTMAX + 1)
    with pytest.raises(TypeError):
        backend.SignalIO("34")
    with pytest.raises(TypeError):
        backend.SignalIO(34.0)


def test_signal_blocked_before_stays_blocked(backend):
    n = signal.SIGRTMIN + 4
    signal.pthread_sigmask(signal.SIG_BLOCK, [n, signal.SIGIO])
    try:
        with backend.SignalIO(n):
            pass
        assert {n, signal.SIGIO} <= thread_mask()
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [n, signal.SIGIO])


def test_close_drains_queued_signals(backend, sockpair):
    a, b = sockpair
    sio = backend.SignalIO()
    sio.add(a)
    b.send(b"x")
    deadline = time.monotonic() + 5
    while sio.signum not in signal.sigpending() and time.monotonic() < deadline:
        time.sleep(0.001)
    assert sio.signum in signal.sigpending()  # queued, not yet read
    sio.close()
    # drained before unblocking: the process is alive and nothing is left
    assert sio.signum not in signal.sigpending()
    assert signal.SIGIO not in signal.sigpending()


# ---------------------------------------------------------------- events


def test_socketpair_band_and_initial_readiness(backend, sockpair):
    a, b = sockpair
    with backend.SignalIO() as sio:
        sio.add(a)
        # a connected socket is writable when added: reported once, at once
        [(fd, band)] = sio.wait(0)
        assert fd == a.fileno() and band & fsigio.POLLOUT and not band & fsigio.POLLIN
        assert sio.wait(0) == []
        b.send(b"ping")
        [(fd, band)] = sio.wait(5)
        assert fd == a.fileno()
        assert band & fsigio.POLLIN and band & fsigio.POLLRDNORM
        assert a.recv(10) == b"ping"
        assert sio.wait(0.01) == []


def test_signals_for_one_fd_are_merged(backend, sockpair):
    a, b = sockpair
    with backend.SignalIO() as sio:
        sio.add(a)
        sio.wait(0)
        for _ in range(10):
            b.send(b"x")
        time.sleep(0.05)
        events = sio.wait(0)
        assert events == [(a.fileno(), fsigio.POLLIN | fsigio.POLLRDNORM)]


def test_already_readable_fd_is_reported_at_add(backend, sockpair):
    a, b = sockpair
    b.send(b"early")
    with backend.SignalIO() as sio:
        sio.add(a)
        [(fd, band)] = sio.wait(0)
        assert fd == a.fileno() and band & fsigio.POLLIN


@pytest.mark.parametrize("kind", ["tcp", "unix"])
def test_echo_over_many_sockets_driven_by_wait(backend, kind):
    """Clients send, the server side echoes, clients check: every step waits
    in SignalIO.wait() alone, on 40 sockets in one set."""
    n, rounds = 20, 5
    pairs = tcp_pairs(n) if kind == "tcp" else [socket.socketpair() for _ in range(n)]
    clients = {c.fileno(): c for c, _ in pairs}
    servers = {s.fileno(): s for _, s in pairs}
    received = {fd: b"" for fd in clients}
    try:
        with backend.SignalIO() as sio:
            for sock in list(clients.values()) + list(servers.values()):
                sio.add(sock)
            assert not any(os.get_blocking(fd) for fd in clients)  # O_NONBLOCK set
            for r in range(rounds):
                for fd, c in clients.items():
                    c.send(b"m%d-%d;" % (fd, r))
            expected = {fd: b"".join(b"m%d-%d;" % (fd, r) for r in range(rounds)) for fd in clients}
            deadline = time.monotonic() + 10
            while received != expected and time.monotonic() < deadline:
                for fd, band in sio.wait(1.0):
                    if not band & fsigio.POLLIN:
                        continue
                    if fd in servers:
                        with contextlib.suppress(BlockingIOError):
                            while True:
                                data = servers[fd].recv(65536)
                                if not data:
                                    break
                                servers[fd].sendall(data)
                    else:
                        with contextlib.suppress(BlockingIOError):
                            while True:
                                data = clients[fd].recv(65536)
                                if not data:
                                    break
                                received[fd] += data
            assert received == expected
    finally:
        for c, s in pairs:
            c.close()
            s.close()


def test_accepting_server(backend):
    n = 15
    accepted = {}
    messages = {}
    clients = []
    try:
        with socket.create_server(("127.0.0.1", 0), backlog=n) as server, backend.SignalIO() as sio:
            server.setblocking(False)
            sio.add(server)
            assert sio.wait(0) == []  # a listening socket with no client is not ready
            for i in range(n):
                c = socket.create_connection(server.getsockname())
                c.sendall(b"hello %d" % i)
                clients.append(c)
            deadline = time.monotonic() + 10
            while len(messages) < n and time.monotonic() < deadline:
                for fd, band in sio.wait(1.0):
                    if fd == server.fileno():
                        assert band & fsigio.POLLIN
                        with contextlib.suppress(BlockingIOError):
                            while True:
                                conn, _ = server.accept()
                                accepted[conn.fileno()] = conn
                                sio.add(conn)
                    elif band & fsigio.POLLIN:
                        with contextlib.suppress(BlockingIOError):
                            messages[fd] = messages.get(fd, b"") + accepted[fd].recv(100)
                        if not messages[fd]:
                            del messages[fd]
            assert len(accepted) == n
            assert sorted(messages.values()) == sorted(b"hello %d" % i for i in range(n))
    finally:
        for s in clients + list(accepted.values()):
            s.close()


def test_pipe_read_and_write_ends(backend):
    r, w = os.pipe()
    try:
        with backend.SignalIO() as sio:
            sio.add(r)
            sio.add(w)
            initial = dict(sio.wait(0))  # an empty pipe: writable, not readable
            assert list(initial) == [w] and initial[w] & fsigio.POLLOUT
            # fill the pipe: the write end stops being writable
            os.write(w, b"x")
            got = wait_until(sio, {r: fsigio.POLLIN})
            assert w not in got or not got[w] & fsigio.POLLIN
            with contextlib.suppress(BlockingIOError):
                for _ in range(100_000):
                    os.write(w, b"y" * 4096)
            sio.wait(0)
            # drain it: the kernel signals the write end (POLL_OUT)
            with contextlib.suppress(BlockingIOError):
                for _ in range(100_000):
                    os.read(r, 65536)
            got = wait_until(sio, {w: fsigio.POLLOUT})
            assert got[w] & fsigio.POLLOUT
            # the writer's close: pipe_release signals the reader POLL_IN, and
            # the read then sees end of file
            sio.remove(w)
            os.close(w)
            w = -1
            wait_until(sio, {r: fsigio.POLLIN})
            assert os.read(r, 10) == b""
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


def test_pty(backend):
    try:
        master, slave = os.openpty()
    except OSError as exc:  # pragma: no cover - no /dev/ptmx in this sandbox
        pytest.skip(f"openpty failed: {exc}")
    try:
        with backend.SignalIO() as sio:
            sio.add(master)
            # tty_fasync resets the owner when O_ASYNC turns on; add() re-aims it
            assert get_owner(master) == (F_OWNER_TID, threading.get_native_id())
            sio.wait(0)
            os.write(slave, b"typed\n")
            got = wait_until(sio, {master: fsigio.POLLIN})
            assert got[master] & fsigio.POLLIN
    finally:
        os.close(master)
        os.close(slave)


def test_regular_files_and_directories_are_refused(backend, tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"data")
    fd = os.open(path, os.O_RDONLY)
    dfd = os.open(tmp_path, os.O_RDONLY)
    try:
        before = fd_state(fd)
        with backend.SignalIO() as sio:
            with pytest.raises(PermissionError, match="regular file") as info:
                sio.add(fd)
            assert info.value.errno == errno.EPERM
            with pytest.raises(PermissionError, match="directory"):
                sio.add(dfd)
        assert fd_state(fd) == before
    finally:
        os.close(fd)
        os.close(dfd)


def test_fileno_sits_in_an_epoll_set(backend, sockpair):
    a, b = sockpair
    with backend.SignalIO() as sio, select.epoll() as ep:
        sio.add(a)
        sio.wait(0)
        ep.register(sio.fileno(), select.EPOLLIN)
        assert ep.poll(0) == []
        b.send(b"x")
        assert ep.poll(5) == [(sio.fileno(), select.EPOLLIN)]
        assert sio.wait(0) == [(a.fileno(), fsigio.POLLIN | fsigio.POLLRDNORM)]
        assert ep.poll(0) == []


def test_max_events(backend):
    pairs = [socket.socketpair() for _ in range(8)]
    try:
        with backend.SignalIO() as sio:
            for a, _ in pairs:
                sio.add(a)
            sio.wait(0)
            for _, b in pairs:
                b.send(b"x")
            time.sleep(0.05)
            first = sio.wait(0, max_events=3)
            assert len(first) == 3
            rest = sio.wait(0, max_events=2000)  # above the default buffer
            assert sorted(fd for fd, _ in first + rest) == sorted(a.fileno() for a, _ in pairs)
            for bad in (0, -1):
                with pytest.raises(ValueError, match="max_events must be greater than 0"):
                    sio.wait(0, max_events=bad)
            with pytest.raises(TypeError):
                sio.wait(0, max_events="3")
    finally:
        for a, b in pairs:
            a.close()
            b.close()


def test_timeout_values(backend):
    with backend.SignalIO() as sio:
        assert sio.wait(0) == []
        assert sio.wait(0.0) == []
        start = time.monotonic()
        assert sio.wait(0.05) == []
        assert time.monotonic() - start >= 0.05
        with pytest.raises(TypeError, match="timeout must be an integer or None"):
            sio.wait("x")
        with pytest.raises(ValueError, match="NaN"):
            sio.wait(float("nan"))


def test_gil_released_while_waiting(backend, sockpair):
    a, b = sockpair
    with backend.SignalIO() as sio:
        sio.add(a)
        sio.wait(0)
        t = threading.Thread(target=lambda: (time.sleep(0.05), b.send(b"x")))
        t.start()
        events = sio.wait(5)  # forever would do too: the sender must run meanwhile
        t.join(5)
        assert events == [(a.fileno(), fsigio.POLLIN | fsigio.POLLRDNORM)]


def test_blocking_wait_forever(backend, sockpair):
    a, b = sockpair
    with backend.SignalIO() as sio:
        sio.add(a)
        sio.wait(0)
        timer = threading.Timer(0.05, b.send, (b"x",))
        timer.start()
        try:
            assert sio.wait() == [(a.fileno(), fsigio.POLLIN | fsigio.POLLRDNORM)]
        finally:
            timer.join(5)


# ---------------------------------------------------------------- restoring fds


def test_remove_restores_flags_owner_and_signal(backend, sockpair):
    a, b = sockpair
    # a prior owner and signal of the user's, O_NONBLOCK off, O_ASYNC off
    fcntl.fcntl(a, F_SETOWN_EX, OWNER.pack(F_OWNER_PID, os.getpid()))
    fcntl.fcntl(a, F_SETSIG, signal.SIGRTMIN + 7)
    before = fd_state(a.fileno())
    assert not before[0] & (os.O_ASYNC | os.O_NONBLOCK)
    with backend.SignalIO() as sio:
        sio.add(a)
        flags, owner, sig = fd_state(a.fileno())
        assert flags & os.O_ASYNC and flags & os.O_NONBLOCK
        assert owner == (F_OWNER_TID, threading.get_native_id())
        assert sig == sio.signum
        sio.remove(a)
        assert fd_state(a.fileno()) == before
        # a removed fd no longer signals, and its queued signals are dropped
        sio.add(b)
        sio.wait(0)
        sio.remove(b)
        a.send(b"x")
        time.sleep(0.02)
        assert sio.wait(0) == []


def test_close_restores_every_fd(backend):
    pairs = [socket.socketpair() for _ in range(4)]
    r, w = os.pipe()
    fds = [s.fileno() for pair in pairs for s in pair] + [r, w]
    os.set_blocking(w, False)
    try:
        before = {fd: fd_state(fd) for fd in fds}
        sio = backend.SignalIO()
        for fd in fds:
            sio.add(fd)
        assert all(fd_state(fd)[0] & os.O_ASYNC for fd in fds)
        sio.close()
        assert {fd: fd_state(fd) for fd in fds} == before
    finally:
        for a, b in pairs:
            a.close()
            b.close()
        os.close(r)
        os.close(w)


def test_signals_of_removed_fds_do_not_end_a_wait(backend, sockpair):
    a, b = sockpair
    with backend.SignalIO() as sio:
        sio.add(a)
        sio.wait(0)
        b.send(b"x")  # queues a signal for a ...
        time.sleep(0.01)
        sio.remove(a)  # ... which is no longer added when it is read
        start = time.monotonic()
        assert sio.wait(0.1) == []
        assert time.monotonic() - start >= 0.1


def test_fd_already_async_is_restored_async(backend, sockpair):
    a, _ = sockpair
    fcntl.fcntl(a, F_SETOWN_EX, OWNER.pack(F_OWNER_TID, threading.get_native_id()))
    fcntl.fcntl(a, F_SETSIG, signal.SIGRTMIN + 9)
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGRTMIN + 9])
    try:
        fcntl.fcntl(a, fcntl.F_SETFL, fcntl.fcntl(a, fcntl.F_GETFL) | os.O_ASYNC)
        before = fd_state(a.fileno())
        with backend.SignalIO() as sio:
            sio.add(a)
            assert fd_state(a.fileno())[2] == sio.signum
        assert fd_state(a.fileno()) == before
        fcntl.fcntl(a, fcntl.F_SETFL, before[0] & ~os.O_ASYNC)
    finally:
        with contextlib.suppress(BlockingIOError, InterruptedError):
            while signal.sigtimedwait([signal.SIGRTMIN + 9], 0) is not None:
                pass
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGRTMIN + 9])


def test_gc_closes_and_restores(backend, sockpair):
    a, _ = sockpair
    before = fd_state(a.fileno())
    mask = thread_mask()
    sio = backend.SignalIO()
    sio.add(a)
    del sio
    gc.collect()
    assert fd_state(a.fileno()) == before
    assert thread_mask() == mask


def test_fd_closed_before_remove(backend, sockpair):
    """The open file may live on (here: a dup) still armed, so the signal must
    stay blocked after close(): unblocked, it would kill the process."""
    a, b = sockpair
    dup = a.dup()
    sio = backend.SignalIO()
    signum = sio.signum
    try:
        sio.add(a)
        fd = a.fileno()
        a.close()
        with pytest.raises(OSError) as info:
            sio.remove(fd)
        assert info.value.errno == errno.EBADF
        with pytest.raises(FileNotFoundError):
            sio.remove(fd)  # forgotten
        sio.close()
        assert {signum, signal.SIGIO} <= thread_mask()
        b.send(b"x")  # the dup's file is still armed: a signal is queued, harmlessly
        # the next SignalIO of the thread takes the leftover signal first, and
        # a clean close leaves it blocked (the dup is still armed)
        with backend.SignalIO() as again:
            assert again.signum == signum
        assert {signum, signal.SIGIO} <= thread_mask()
    finally:
        dup.close()
        sio.close()
        with contextlib.suppress(BlockingIOError, InterruptedError):
            while signal.sigtimedwait([signum, signal.SIGIO], 0) is not None:
                pass
        # forget the leftover, so that the mask fixture sees the mask as before
        from fastio import _sigclaim

        _sigclaim._threads.pop(threading.get_ident(), None)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [signum, signal.SIGIO])


# ---------------------------------------------------------------- bad input, closed, threads, fork


def test_bad_fds_and_types(backend, sockpair):
    a, _ = sockpair
    with backend.SignalIO() as sio:
        sio.add(a)
        with pytest.raises(FileExistsError):
            sio.add(a.fileno())
        with pytest.raises(FileNotFoundError):
            sio.remove(12345)
        r, w = os.pipe()
        os.close(r)
        os.close(w)
        with pytest.raises(OSError) as info:
            sio.add(r)
        assert info.value.errno == errno.EBADF
        with pytest.raises(ValueError, match="negative"):
            sio.add(-1)
        with pytest.raises(TypeError):
            sio.add("3")
        with pytest.raises(TypeError):
            sio.add(object())
        with pytest.raises(TypeError):
            sio.add(1.5)
        with pytest.raises(OverflowError):
            sio.add(2**40)


def test_closed_object_raises_value_error(backend, sockpair):
    a, _ = sockpair
    sio = backend.SignalIO()
    sio.close()
    sio.close()
    for call in (lambda: sio.add(a), lambda: sio.remove(a), lambda: sio.wait(0), sio.fileno, sio.__enter__):
        with pytest.raises(ValueError, match="closed SignalIO"):
            call()


def test_wait_from_another_thread_is_an_error(backend, sockpair):
    a, _ = sockpair
    with backend.SignalIO() as sio:
        sio.add(a)
        errors = []

        def other():
            try:
                sio.wait(1)
            except RuntimeError as exc:
                errors.append(str(exc))

        t = threading.Thread(target=other)
        t.start()
        t.join(5)
        assert not t.is_alive()
        assert len(errors) == 1 and "thread other than the one that created" in errors[0]
        assert sio.wait(0)  # the owner still can


def test_signal_reaches_the_owner_not_threads_that_do_not_block_it(backend, sockpair):
    """A thread started before the SignalIO does not block its signal. Aimed
    at the process (F_OWNER_PID), the signal would be delivered there and
    kill the process (the default action); aimed at the owner's thread id it
    is queued for the owner only."""
    a, b = sockpair
    go, done = threading.Event(), threading.Event()
    seen = {}

    def helper():
        go.wait(5)
        seen["mask"] = thread_mask()
        for _ in range(20):
            b.send(b"x")
            time.sleep(0.002)
        done.set()

    t = threading.Thread(target=helper)
    t.start()
    try:
        with backend.SignalIO() as sio:
            sio.add(a)
            sio.wait(0)
            go.set()
            got = wait_until(sio, {a.fileno(): fsigio.POLLIN})
            done.wait(5)
            assert sio.signum not in seen["mask"]
            assert got[a.fileno()] & fsigio.POLLIN
    finally:
        go.set()
        t.join(5)


def test_close_from_another_thread(backend, sockpair):
    """Only the owner can change its mask: closed elsewhere, the fds are
    restored and the signal stays blocked in the owner as a leftover."""
    a, _ = sockpair
    before = fd_state(a.fileno())
    sio = backend.SignalIO()
    signum = sio.signum
    sio.add(a)
    t = threading.Thread(target=sio.close)
    t.start()
    t.join(5)
    try:
        assert sio.closed
        assert fd_state(a.fileno()) == before
        assert signum in thread_mask()
        with backend.SignalIO() as again:  # the leftover is taken first
            assert again.signum == signum
    finally:
        from fastio import _sigclaim

        _sigclaim._threads.pop(threading.get_ident(), None)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [signum, signal.SIGIO])


def test_one_per_thread_works(backend):
    """Each thread its own SignalIO: signals go to the owning thread only."""
    results = {}

    def worker(i):
        a, b = socket.socketpair()
        try:
            with backend.SignalIO() as sio:
                sio.add(a)
                sio.wait(0)
                b.send(b"x")
                results[i] = sio.wait(5) == [(a.fileno(), fsigio.POLLIN | fsigio.POLLRDNORM)]
        finally:
            a.close()
            b.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == {i: True for i in range(4)}


@pytest.mark.parametrize("call", ["add", "remove", "wait"])
def test_use_in_forked_child_is_refused(backend, sockpair, call):
    a, b = sockpair
    with backend.SignalIO() as sio:
        sio.add(a)
        sio.wait(0)
        args = {"add": (b,), "remove": (a,), "wait": (0,)}[call]
        out = in_child(lambda: getattr(sio, call)(*args))
        assert out.startswith("RuntimeError") and "fork" in out
        # close() in the child must not disarm the parent's fds
        assert in_child(lambda: (sio.close(), sio.closed)[1]) == "ok True"
        assert fd_state(a.fileno())[0] & os.O_ASYNC
        b.send(b"x")
        assert sio.wait(5) == [(a.fileno(), fsigio.POLLIN | fsigio.POLLRDNORM)]


# ---------------------------------------------------------------- EINTR


@pytest.mark.parametrize("cls", ["SignalIO", "TextbookSignalIO"])
def test_wait_resumes_after_other_signals(backend, sockpair, cls):
    a, _ = sockpair
    fired = []
    with getattr(backend, cls)() as sio:
        sio.add(a)
        sio.wait(0)
        with interval_timer(lambda *args: fired.append(1)):
            start = time.monotonic()
            result = sio.wait(0.2)
            elapsed = time.monotonic() - start
    assert result == []
    assert len(fired) >= 5
    assert elapsed >= 0.2


@pytest.mark.parametrize("cls", ["SignalIO", "TextbookSignalIO"])
def test_handler_exception_ends_an_infinite_wait(backend, cls):
    with getattr(backend, cls)() as sio:
        with interval_timer(raise_interrupted, 0.05), pytest.raises(Interrupted):
            sio.wait(None)


# ---------------------------------------------------------------- overflow

OVERFLOW_SCRIPT = """
import json, resource, socket, sys
resource.setrlimit(resource.RLIMIT_SIGPENDING, ({limit}, {limit}))
from fastio._{backend}.sigio import SignalIO
n = {n}
pairs = [socket.socketpair() for _ in range(n)]
first = SignalIO()
second = SignalIO()  # another SignalIO of the thread must learn of it too
for a, b in pairs[: n // 2]:
    first.add(a)
for a, b in pairs[n // 2:]:
    second.add(a)
first.wait(0); second.wait(0)
for a, b in pairs:
    b.send(b"x")
one = first.wait(1)
two = second.wait(1)
report = {{
    "first": sorted(fd for fd, band in one if band & 1),
    "second": sorted(fd for fd, band in two if band & 1),
    "want_first": sorted(a.fileno() for a, b in pairs[: n // 2]),
    "want_second": sorted(a.fileno() for a, b in pairs[n // 2:]),
    "overflowed": [first.overflowed, second.overflowed],
    "after": [first.wait(0), second.wait(0), first.overflowed, second.overflowed],
}}
first.close(); second.close()
print(json.dumps(report))
"""


def test_queue_overflow_loses_no_readiness(backend):
    """RLIMIT_SIGPENDING of 8 in a subprocess and 60 fds made ready at once:
    the kernel drops real-time signals and queues plain SIGIO; wait() must
    flag it and report every ready fd, for every SignalIO of the thread."""
    code = OVERFLOW_SCRIPT.format(limit=8, n=60, backend=backend.name)
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["overflowed"] == [True, True]
    assert report["first"] == report["want_first"]
    assert report["second"] == report["want_second"]
    first_after, second_after, *flags = report["after"]
    assert first_after == [] and second_after == []  # everything was reported the first time
    assert flags == [False, False]


def test_a_lone_sigio_triggers_the_poll_rule(backend, sockpair):
    """Whatever the kernel queued before, reading plain SIGIO means some fd's
    signal was lost: wait() polls every added fd (here SIGIO is sent by hand,
    to this thread, as the kernel's fallback would be)."""
    a, b = sockpair
    c, d = socket.socketpair()
    try:
        with backend.SignalIO() as sio:
            sio.add(a)
            sio.add(c)
            sio.wait(0)
            b.send(b"x")
            sio.wait(5)  # its signal is read; the data is still there
            signal.pthread_kill(threading.get_ident(), signal.SIGIO)
            events = dict(sio.wait(5))
            assert sio.overflowed and sio.overflows == 1
            assert events[a.fileno()] & fsigio.POLLIN  # still readable: reported again
            assert events[c.fileno()] & fsigio.POLLOUT and not events[c.fileno()] & fsigio.POLLIN
            assert sio.wait(0) == [] and not sio.overflowed
    finally:
        c.close()
        d.close()


def test_no_overflow_flag_in_normal_operation(backend, sockpair):
    a, b = sockpair
    with backend.SignalIO() as sio:
        sio.add(a)
        sio.wait(0)
        b.send(b"x")
        sio.wait(5)
        assert sio.overflowed is False and sio.overflows == 0


# ---------------------------------------------------------------- textbook mode


def test_textbook_finds_the_fd_by_polling(backend, sockpair):
    a, b = sockpair
    c, d = socket.socketpair()
    before = fd_state(a.fileno())
    old = signal.getsignal(signal.SIGIO)
    try:
        with backend.TextbookSignalIO() as tb:
            assert callable(signal.getsignal(signal.SIGIO))
            tb.add(a)
            tb.add(c)
            assert fd_state(a.fileno())[1] == (F_OWNER_TID, threading.get_native_id())
            assert fd_state(a.fileno())[2] == 0  # plain SIGIO
            assert tb.wait(0) == []  # the first wait polls: nothing to read
            assert tb.wait(0.01) == []
            b.send(b"x")
            assert tb.wait(5) == [(a.fileno(), select.POLLIN)]
            d.send(b"y")
            assert sorted(tb.wait(5)) == sorted([(a.fileno(), select.POLLIN), (c.fileno(), select.POLLIN)])
            tb.remove(c)
            with pytest.raises(FileNotFoundError):
                tb.remove(c)
        assert tb.closed
        assert fd_state(a.fileno()) == before
        assert signal.getsignal(signal.SIGIO) == old
        with pytest.raises(ValueError, match="closed TextbookSignalIO"):
            tb.wait(0)
    finally:
        c.close()
        d.close()


def test_textbook_needs_the_main_thread(backend):
    errors = []

    def other():
        try:
            backend.TextbookSignalIO()
        except RuntimeError as exc:
            errors.append(str(exc))

    t = threading.Thread(target=other)
    t.start()
    t.join(5)
    assert errors and "main thread" in errors[0]


def test_textbook_refuses_regular_files(backend, tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"")
    with open(path) as f, backend.TextbookSignalIO() as tb:
        with pytest.raises(PermissionError):
            tb.add(f)


# ---------------------------------------------------------------- misuse found in review


def test_wait_cannot_be_reentered_from_a_signal_handler(backend, sockpair):
    """Regression: a handler calling wait(max_events=8192) during a wait grew the
    signalfd buffer under the outer read(2) (a kernel write into freed memory
    on the compiled backend). Re-entry is now a RuntimeError."""
    a, b = sockpair
    with backend.SignalIO() as sio:
        sio.add(a)
        sio.wait(0)
        seen = []

        def handler(*args):
            try:
                sio.wait(0, max_events=8192)
            except RuntimeError as exc:
                seen.append(str(exc))
            b.send(b"x")

        with interval_timer(handler, 0.02):
            events = sio.wait(5)
        assert seen and "re-entered" in seen[0]
        assert events == [(a.fileno(), fsigio.POLLIN | fsigio.POLLRDNORM)]


def test_close_while_waiting_is_refused(backend, sockpair):
    a, b = sockpair
    with backend.SignalIO() as sio:
        sio.add(a)
        sio.wait(0)
        errors = []

        def close_elsewhere():
            time.sleep(0.05)
            try:
                sio.close()
            except RuntimeError as exc:
                errors.append(str(exc))
            b.send(b"x")

        t = threading.Thread(target=close_elsewhere)
        t.start()
        assert sio.wait(5) == [(a.fileno(), fsigio.POLLIN | fsigio.POLLRDNORM)]
        t.join(5)
        assert errors and "while its wait() runs" in errors[0]
        assert not sio.closed


def test_a_dup_or_a_second_signalio_cannot_arm_the_same_file(backend, sockpair):
    """Regression: O_ASYNC, owner and signal belong to the open file. Arming a
    dup saved the first arming as "the original"; close() then left the file
    raising a signal nobody blocked, which killed the process."""
    a, b = sockpair
    dup = os.dup(a.fileno())
    before = fd_state(a.fileno())
    try:
        with backend.SignalIO() as sio, backend.SignalIO() as other:
            sio.add(a)
            with pytest.raises(FileExistsError, match="already has armed"):
                sio.add(dup)
            with pytest.raises(FileExistsError, match="already has armed"):
                other.add(a)
        assert fd_state(a.fileno()) == before
        b.send(b"x")  # would kill the process if the file were still armed
        assert a.recv(1) == b"x"
    finally:
        os.close(dup)


def test_a_file_without_fasync_cannot_be_armed_twice_either(backend):
    """Regression (found by tests/state/test_state_sigio.py): an eventfd (no fasync
    hook: the kernel keeps O_ASYNC off, yet sets its owner and signal) could
    be added to two SignalIO objects, since the check looked for O_ASYNC; the
    second saved the first's owner and signal as "the original" and, removed
    last, left them on the file. The check now reads the file's signal."""
    import ctypes

    efd = ctypes.CDLL(None, use_errno=True).eventfd(0, os.O_NONBLOCK | os.O_CLOEXEC)
    assert efd >= 0
    before = fd_state(efd)
    try:
        with backend.SignalIO() as sio, backend.SignalIO() as other:
            sio.add(efd)
            with pytest.raises(FileExistsError, match="already has armed"):
                other.add(efd)
            sio.remove(efd)
            other.add(efd)                      # free again once removed
        assert fd_state(efd) == before
    finally:
        os.close(efd)
