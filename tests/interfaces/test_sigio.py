"""Signal-driven IO on both backends: real sockets, pipes and ptys armed with
O_ASYNC + F_SETOWN_EX + F_SETSIG, readiness read only through SignalIO.wait();
the signal chosen and the thread's signal mask; restoration of every fd;
TextbookSignalIO (plain SIGIO, then a poll). Bad input, wrong thread, fork,
EINTR, the real-time queue overflow provoked for real and the misuse found
in review are in test_sigio_safety.py; the shared helpers in
tests/helpers/sigio_support.py."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import gc
import os
import select
import signal
import socket
import threading
import time

import pytest
# mask_is_restored: an autouse fixture; imported, it checks every test here.
from sigio_support import F_OWNER_PID, F_OWNER_TID, F_SETOWN_EX, F_SETSIG, OWNER, fd_state, get_owner, \
    mask_is_restored, tcp_pairs, thread_mask, wait_until
from support import UNDER_VALGRIND

from fastio import sigio as fsigio


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
