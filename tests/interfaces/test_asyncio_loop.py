"""The compiled ``fastio.asyncio.Loop`` on each of its engines: the
scheduler's rules (FIFO, timers in order, what a turn runs, contextvars, a
raising callback, KeyboardInterrupt), fds (level-triggered readers, reused fd
numbers), wake-ups from other threads, signals, fork, engine choice, and its
socket transport's C paths. CPython's own suites run on it too:
test_asyncio_suites.py.

The compiled loop exists only in the compiled backend (the pure backend's
``Loop`` is ``SelectorLoop``, tested there), so these tests import it
directly."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import logging
import os
import signal
import socket
import threading
import time
import warnings

import pytest
from support import in_child

from fastio import uring
from fastio._errors import UnsupportedError
from fastio.asyncio._loop import ENGINES, Loop

pytestmark = pytest.mark.c_backend

# Upper bound for any single wait in a test, in seconds.
TIMEOUT = 5.0


@pytest.fixture(params=ENGINES)
def engine(request) -> str:
    if request.param == "uring" and not uring.available():
        pytest.skip(f"io_uring unusable here: {uring.why_unavailable()}")
    return request.param


@pytest.fixture
def loop(engine):
    lp = Loop(engine=engine)
    assert lp.engine == engine
    yield lp
    if not lp.is_closed():
        lp.close()


def run(loop, coro):
    return loop.run_until_complete(asyncio.wait_for(coro, TIMEOUT))


# -- the scheduler -------------------------------------------------------------


def test_call_soon_is_fifo_and_callbacks_added_in_a_turn_run_in_the_next(loop):
    order = []

    def first(i):
        order.append((loop._turns, i))
        if i == 0:
            loop.call_soon(first, 100)   # queued behind 1..9, run in the next turn

    for i in range(10):
        loop.call_soon(first, i)
    loop.call_soon(loop.stop)
    loop.run_forever()
    turn = order[0][0]
    assert [i for _, i in order[:10]] == list(range(10))
    assert {t for t, _ in order[:10]} == {turn}
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert order[10] == (turn + 1, 100)


def test_timers_run_in_time_order_and_equal_times_in_scheduling_order(loop):
    order = []
    when = loop.time() + 0.02
    for i in range(20):
        loop.call_at(when, order.append, i)
    loop.call_at(when - 0.01, order.append, "earlier")
    loop.call_later(0.05, loop.stop)
    loop.run_forever()
    assert order == ["earlier", *range(20)]


def test_cancelled_timers_never_run_and_are_purged(loop):
    ran = []
    handles = [loop.call_later(3600, ran.append, i) for i in range(300)]
    for h in handles[:250]:
        h.cancel()
        assert h.cancelled()
    assert loop._timer_cancelled_count == 250
    run(loop, asyncio.sleep(0))
    # More than 100 timers and over half of them cancelled: rebuilt without them.
    assert len(loop._scheduled) == 50 and loop._timer_cancelled_count == 0
    assert ran == []
    assert all(not h._scheduled for h in handles[:250])


def test_call_later_waits_at_least_its_delay(loop):
    t0 = loop.time()
    fired = []
    loop.call_later(0.05, lambda: (fired.append(loop.time()), loop.stop()))
    loop.run_forever()
    assert fired[0] - t0 >= 0.05


def test_each_callback_runs_in_its_context(loop):
    var = contextvars.ContextVar("var", default="unset")
    seen = []
    var.set("at call_soon")
    loop.call_soon(lambda: seen.append(var.get()))
    other = contextvars.copy_context()
    other.run(var.set, "explicit")
    loop.call_soon(lambda: seen.append(var.get()), context=other)
    var.set("later")
    loop.call_soon(lambda: (var.set("leaks?"), seen.append(var.get())))
    loop.call_soon(lambda: seen.append(var.get()))
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert seen == ["at call_soon", "explicit", "leaks?", "later"]


def test_a_raising_callback_goes_to_the_exception_handler_and_the_loop_goes_on(loop):
    contexts, ran = [], []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))

    def boom():
        raise LookupError("from a callback")

    h = loop.call_soon(boom)
    loop.call_soon(ran.append, "after")
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert ran == ["after"]
    assert len(contexts) == 1
    assert isinstance(contexts[0]["exception"], LookupError)
    assert contexts[0]["handle"] is h
    assert contexts[0]["message"].startswith("Exception in callback ")


def test_a_context_already_entered_is_reported_not_crashed(loop):
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))
    ctx = contextvars.copy_context()
    ctx.run(lambda: loop.call_soon(ctx.run, lambda: None, context=ctx))
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert isinstance(contexts[0]["exception"], RuntimeError)


def test_keyboard_interrupt_leaves_the_rest_of_the_turn_queued_in_order(loop):
    ran = []

    def interrupt():
        raise KeyboardInterrupt

    loop.call_soon(ran.append, 1)
    loop.call_soon(interrupt)
    loop.call_soon(ran.append, 2)
    loop.call_soon(ran.append, 3)
    with pytest.raises(KeyboardInterrupt):
        loop.run_forever()
    assert ran == [1]
    assert not loop.is_running()
    loop.call_soon(ran.append, 4)
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert ran == [1, 2, 3, 4]


def test_a_closed_loop_refuses_callbacks(loop):
    loop.close()
    loop.close()
    for call in (lambda: loop.call_soon(print), lambda: loop.call_later(1, print),
                 lambda: loop.call_at(1, print), lambda: loop.call_soon_threadsafe(print)):
        with pytest.raises(RuntimeError, match="closed"):
            call()
    with pytest.raises(RuntimeError, match="closed"):
        loop.run_forever()


def test_bad_arguments_raise_as_the_stdlib_does(loop):
    with pytest.raises(TypeError):
        loop.call_later(None, print)
    with pytest.raises(TypeError):
        loop.call_at(None, print)
    with pytest.raises(TypeError):
        loop.call_later("1", print)
    with pytest.raises(ValueError, match="Invalid file descriptor: -1"):
        loop.add_reader(-1, print)
    with pytest.raises(ValueError, match="Invalid file object"):
        loop.add_reader(object(), print)
    loop.set_debug(True)
    with pytest.raises(TypeError, match="coroutines cannot be used"):
        loop.call_soon(asyncio.sleep)
    with pytest.raises(TypeError, match="a callable object was expected"):
        loop.call_soon(42)


def test_debug_mode_warns_of_slow_callbacks(loop, caplog):
    loop.set_debug(True)
    loop.slow_callback_duration = 0.01
    loop.call_soon(time.sleep, 0.03)
    loop.call_soon(loop.stop)
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        loop.run_forever()
    assert any("took" in r.getMessage() and "sleep" in r.getMessage() for r in caplog.records)


# -- fds, threads, signals, fork ----------------------------------------------


def test_readers_are_level_triggered(loop, sockpair):
    a, b = sockpair
    a.setblocking(False)
    got = []

    def read_one():
        got.append(a.recv(1))
        if len(got) == 3:
            loop.stop()

    loop.add_reader(a, read_one)
    b.send(b"xyz")
    loop.call_later(TIMEOUT, loop.stop)
    loop.run_forever()
    assert got == [b"x", b"y", b"z"]
    assert loop.remove_reader(a) is True
    assert loop.remove_reader(a) is False


def test_writer_and_reader_on_one_fd(loop, sockpair):
    a, b = sockpair
    seen = []
    loop.add_writer(a, lambda: (seen.append("w"), loop.remove_writer(a)))
    loop.add_reader(a, lambda: (seen.append("r"), a.recv(10), loop.remove_reader(a), loop.stop()))
    loop.call_later(0.05, b.send, b"!")
    loop.call_later(TIMEOUT, loop.stop)
    loop.run_forever()
    assert seen == ["w", "r"]


def test_a_reused_fd_number_gets_only_its_own_events(loop):
    a, b = socket.socketpair()
    called = []
    loop.add_reader(a.fileno(), called.append, "old")
    run(loop, asyncio.sleep(0.01))          # the old fd's wait is armed in the kernel
    fd = a.fileno()
    a.close()                                # closed under the loop, still registered
    b.close()                                # (its peer hangs up: the old file is readable)
    c, d = socket.socketpair()
    try:
        if c.fileno() != fd:
            os.dup2(c.fileno(), fd)
            c.close()
            c = socket.socket(fileno=fd)
        loop.add_reader(fd, lambda: (called.append("new"), loop.stop()))
        d.send(b"x")
        loop.call_later(TIMEOUT, loop.stop)
        loop.run_forever()
        assert called == ["new"]
        loop.remove_reader(fd)
    finally:
        c.close()
        d.close()


def test_call_soon_threadsafe_wakes_a_waiting_loop(loop):
    woke = []

    def other_thread():
        time.sleep(0.05)
        loop.call_soon_threadsafe(lambda: (woke.append(threading.get_ident()), loop.stop()))

    t = threading.Thread(target=other_thread)
    guard = loop.call_later(TIMEOUT, loop.stop)
    t.start()
    started = time.monotonic()
    loop.run_forever()
    t.join()
    guard.cancel()
    assert woke == [threading.get_ident()]
    assert time.monotonic() - started < TIMEOUT / 2


def test_many_threads_calling_threadsafe_lose_nothing(loop):
    got = []
    n_threads, per_thread = 4, 500

    def worker(k):
        for i in range(per_thread):
            loop.call_soon_threadsafe(got.append, (k, i))

    async def main():
        threads = [threading.Thread(target=worker, args=(k,)) for k in range(n_threads)]
        for t in threads:
            t.start()
        while len(got) < n_threads * per_thread:
            await asyncio.sleep(0.001)
        for t in threads:
            t.join()

    run(loop, main())
    for k in range(n_threads):
        assert [i for kk, i in got if kk == k] == list(range(per_thread))


def test_a_signal_handler_that_raises_ends_a_blocking_wait(loop):
    def handler(signum, frame):
        raise InterruptedError("from the handler")

    old = signal.signal(signal.SIGALRM, handler)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        guard = loop.call_later(TIMEOUT, loop.stop)
        started = time.monotonic()
        with pytest.raises(InterruptedError, match="from the handler"):
            loop.run_forever()
        assert time.monotonic() - started < TIMEOUT / 2
        guard.cancel()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert run(loop, asyncio.sleep(0.001, result="still usable")) == "still usable"


def test_add_signal_handler_runs_on_the_loop(loop):
    got = []
    loop.add_signal_handler(signal.SIGUSR1, lambda: (got.append("usr1"), loop.stop()))
    try:
        loop.call_later(0.02, os.kill, os.getpid(), signal.SIGUSR1)
        loop.call_later(TIMEOUT, loop.stop)
        loop.run_forever()
    finally:
        assert loop.remove_signal_handler(signal.SIGUSR1)
    assert got == ["usr1"]


def test_a_loop_from_before_fork_refuses_to_run_in_the_child(loop):
    run(loop, asyncio.sleep(0))
    out = in_child(lambda: loop.run_until_complete(asyncio.sleep(0)))
    assert out.startswith("RuntimeError") and "fork" in out, out
    # Closing it in the child only drops the child's copies.
    assert in_child(loop.close) == "ok None"
    assert run(loop, asyncio.sleep(0.001, result=1)) == 1


# -- the stdlib's code on the loop --------------------------------------------


def _unix_server_file_left(lp, path) -> bool:
    """Whether a closed unix server on ``lp`` leaves its socket file."""
    async def serve_and_close():
        server = await asyncio.start_unix_server(lambda r, w: None, path)
        server.close()
        await server.wait_closed()

    try:
        lp.run_until_complete(asyncio.wait_for(serve_and_close(), TIMEOUT))
    finally:
        lp.close()
    return os.path.exists(path)


def test_a_closed_unix_server_leaves_its_socket_file_as_the_stdlib_does(loop, tmp_path):
    # 3.13's unix loop removes the file in a _stop_serving that calls super().
    expected = _unix_server_file_left(asyncio.SelectorEventLoop(), str(tmp_path / "stdlib"))
    assert _unix_server_file_left(loop, str(tmp_path / "fastio")) == expected


# -- engines -------------------------------------------------------------------


def test_engine_can_be_forced_and_an_unknown_one_is_refused(monkeypatch):
    with pytest.raises(ValueError, match="uring, epoll"):
        Loop(engine="kqueue")
    monkeypatch.setenv("FASTIO_LOOP_ENGINE", "epoll")
    lp = Loop()
    assert lp.engine == "epoll" and lp.engine_reason == "FASTIO_LOOP_ENGINE=epoll"
    lp.close()
    monkeypatch.setenv("FASTIO_LOOP_ENGINE", "kqueue")
    with pytest.warns(RuntimeWarning, match="FASTIO_LOOP_ENGINE='kqueue'"):
        lp = Loop()
    assert lp.engine in ENGINES
    lp.close()


def test_forcing_uring_where_it_is_refused_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("FASTIO_DISABLE", "uring")
    with pytest.raises(UnsupportedError, match="FASTIO_DISABLE=uring"):
        Loop(engine="uring")
    monkeypatch.setenv("FASTIO_LOOP_ENGINE", "uring")
    with pytest.raises(UnsupportedError, match="FASTIO_DISABLE=uring"):
        Loop()
    monkeypatch.delenv("FASTIO_LOOP_ENGINE")
    lp = Loop()         # not forced: epoll, and why
    try:
        assert lp.engine == "epoll"
        assert "FASTIO_DISABLE=uring" in lp.engine_reason
        assert run(lp, asyncio.sleep(0, result=3)) == 3
    finally:
        lp.close()


@pytest.mark.skipif(not uring.available(), reason=f"io_uring unusable here: {uring.why_unavailable()}")
def test_uring_engine_removes_the_kernel_side_poll_of_a_removed_reader(sockpair):
    lp = Loop(engine="uring")
    try:
        ring = lp._engine.ring
        run(lp, asyncio.sleep(0))
        base = ring.inflight          # the loop's own wake-up socket's poll
        a, _ = sockpair
        lp.add_reader(a, print)
        run(lp, asyncio.sleep(0))
        assert ring.inflight == base + 1
        lp.remove_reader(a)
        run(lp, asyncio.sleep(0))
        run(lp, asyncio.sleep(0))
        assert ring.inflight == base
    finally:
        lp.close()
    assert ring.closed


# -- the socket transport's C paths ------------------------------------------


class _Collect(asyncio.Protocol):
    def __init__(self):
        self.data = bytearray()
        self.done = asyncio.get_running_loop().create_future()

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        assert type(data) is bytes
        self.data += data

    def connection_lost(self, exc):
        if not self.done.done():
            self.done.set_result(exc)


class _CollectBuffered(asyncio.BufferedProtocol):
    def __init__(self):
        self.data = bytearray()
        self.buf = bytearray(1000)
        self.done = asyncio.get_running_loop().create_future()

    def connection_made(self, transport):
        self.transport = transport

    def get_buffer(self, sizehint):
        return self.buf

    def buffer_updated(self, nbytes):
        self.data += self.buf[:nbytes]

    def connection_lost(self, exc):
        self.done.set_result(exc)


@pytest.mark.parametrize("protocol", [_Collect, _CollectBuffered])
def test_transport_reads_every_byte_in_order(loop, sockpair, protocol):
    a, b = sockpair
    payload = os.urandom(1 << 20)

    async def main():
        transport, proto = await loop.connect_accepted_socket(protocol, a)
        threading.Thread(target=lambda: (b.sendall(payload), b.close())).start()
        assert await proto.done is None
        return bytes(proto.data)

    assert run(loop, main()) == payload


def test_transport_writes_in_order_past_what_the_kernel_buffers(loop, sockpair):
    a, b = sockpair
    chunks = [os.urandom(n) for n in (1, 100, 70000, 3, 1 << 20, 5)]
    received = bytearray()

    def reader():
        b.settimeout(TIMEOUT)
        while len(received) < sum(map(len, chunks)):
            received.extend(b.recv(1 << 16))

    async def main():
        transport, proto = await loop.connect_accepted_socket(_Collect, a)
        t = threading.Thread(target=reader)
        for c in chunks:
            transport.write(c)
        assert transport.get_write_buffer_size() > 0     # the kernel did not take it all
        t.start()
        while transport.get_write_buffer_size():
            await asyncio.sleep(0.001)
        t.join()
        transport.close()

    run(loop, main())
    assert bytes(received) == b"".join(chunks)


def test_an_eof_cut_by_keyboard_interrupt_is_reported_again(loop, sockpair):
    # A KeyboardInterrupt (a signal handler's, say) out of eof_received
    # leaves the loop; the end of the stream is not lost with it: the next
    # run reports it again, as a readiness loop's next recv() does.
    a, b = sockpair
    calls = []

    class Interrupted(asyncio.Protocol):
        def connection_made(self, transport):
            self.lost = loop.create_future()

        def eof_received(self):
            calls.append("eof")
            if len(calls) == 1:
                raise KeyboardInterrupt

        def connection_lost(self, exc):
            self.lost.set_result(exc)

    transport, proto = loop.run_until_complete(loop.connect_accepted_socket(Interrupted, a))
    b.shutdown(socket.SHUT_WR)
    with pytest.raises(KeyboardInterrupt):
        loop.run_until_complete(asyncio.sleep(TIMEOUT))
    assert calls == ["eof"]
    assert run(loop, proto.lost) is None
    assert calls == ["eof", "eof"]


def test_transport_write_to_a_reset_peer_reports_connection_lost(loop):
    async def main():
        server_side = loop.create_future()

        class Keep(_Collect):
            def connection_made(self, transport):
                super().connection_made(transport)
                server_side.set_result(self)

        server = await loop.create_server(Keep, "127.0.0.1", 0)
        client = socket.create_connection(server.sockets[0].getsockname())
        proto = await server_side
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
        client.close()                       # RST
        for _ in range(100):
            proto.transport.write(b"x" * 1000)
            if proto.done.done():
                break
            await asyncio.sleep(0.01)
        exc = await proto.done
        server.close()
        await server.wait_closed()
        return exc

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        exc = run(loop, main())
    assert isinstance(exc, (ConnectionResetError, BrokenPipeError))
    gc.collect()


def test_call_soon_threadsafe_wakes_the_loop_once_per_turn(loop):
    got = []
    for i in range(1000):
        loop.call_soon_threadsafe(got.append, i)
    # One wake-up byte for all of them (the stdlib's loop writes 1000).
    assert len(loop._ssock.recv(4096)) == 1
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert got == list(range(1000))
    # A new turn, a new wake-up: a call from another thread still wakes a waiting loop.
    threading.Timer(0.02, loop.call_soon_threadsafe, args=(loop.stop,)).start()
    guard = loop.call_later(TIMEOUT, loop.stop)
    started = time.monotonic()
    loop.run_forever()
    guard.cancel()
    assert time.monotonic() - started < TIMEOUT / 2
