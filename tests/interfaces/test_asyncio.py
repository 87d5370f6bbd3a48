"""asyncio on fastio's selectors: ``asyncio.SelectorEventLoop(<fastio selector>)``
and ``fastio.asyncio`` (``SelectorLoop``, ``new_event_loop``, ``run``,
``EventLoopPolicy``) run real asyncio programs on both backends: streams and
protocols over TCP and Unix sockets, ``sock_*`` calls, timers, sleeps, signal
handlers, ``add_reader``/``add_writer``, subprocesses. ``run``,
``new_event_loop`` and the policy themselves: test_asyncio_api.py.

Every wait is bounded by ``asyncio.wait_for`` so a broken selector fails a test
instead of hanging the suite."""

from __future__ import annotations

import asyncio
import os
import random
import selectors as std_selectors
import signal
import socket
import sys
import threading

import pytest

import fastio.asyncio
import fastio.selectors

SELECTORS = ("EpollSelector", "PollSelector", "SelectSelector")

# Upper bound for any single wait in a test, in seconds.
TIMEOUT = 5.0


# -- fixtures and helpers ------------------------------------------------------


@pytest.fixture(params=SELECTORS)
def selector_name(request) -> str:
    return request.param


@pytest.fixture
def selector(backend, selector_name):
    """A fresh fastio selector of the parametrised kind, on the fixture's backend."""
    sel = getattr(backend, selector_name)()
    yield sel
    sel.close()


@pytest.fixture
def loop(selector):
    """A ``fastio.asyncio.SelectorLoop`` on ``selector``, closed after the test."""
    lp = fastio.asyncio.SelectorLoop(selector)
    yield lp
    if not lp.is_closed():
        try:
            lp.run_until_complete(lp.shutdown_asyncgens())
        finally:
            lp.close()


def run(loop, coro, timeout=TIMEOUT):
    """Run ``coro`` on ``loop``, failing (not hanging) after ``timeout`` seconds."""
    return loop.run_until_complete(asyncio.wait_for(coro, timeout))


def payload(cid: int, i: int) -> bytes:
    """A deterministic message of varying size (1..~4 KiB) for client ``cid``."""
    rnd = random.Random(cid * 100003 + i)
    size = rnd.randrange(1, 4096)
    return f"{cid}:{i}:".encode() + bytes(rnd.getrandbits(8) for _ in range(size))


def big_payload(seed: int, size: int) -> bytes:
    rnd = random.Random(seed)
    return rnd.getrandbits(8 * size).to_bytes(size, "little")


async def stream_echo_handler(reader, writer):
    """Echo everything until EOF, then close."""
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (ConnectionError, BrokenPipeError):
            pass


async def stream_echo_client(open_connection, cid: int, n_messages: int, big: int = 0) -> int:
    """Send ``n_messages`` messages (plus one of ``big`` bytes, sent while the
    echo is read concurrently), checking every byte echoed; returns bytes checked."""
    reader, writer = await open_connection()
    checked = 0
    try:
        for i in range(n_messages):
            msg = payload(cid, i)
            writer.write(msg)
            await writer.drain()
            echoed = await reader.readexactly(len(msg))
            assert echoed == msg, f"client {cid} message {i}: echo differs"
            checked += len(msg)
        if big:
            msg = big_payload(cid, big)

            async def send():
                writer.write(msg)
                await writer.drain()

            _, echoed = await asyncio.gather(send(), reader.readexactly(len(msg)))
            assert echoed == msg, f"client {cid} big message: echo differs"
            checked += len(msg)
        writer.write_eof()
        assert await reader.read() == b"", "server sent more than it was sent"
    finally:
        writer.close()
        await writer.wait_closed()
    return checked


async def run_stream_echo(start_server, open_connection, n_clients=20, n_messages=50, big=0):
    server = await start_server()
    try:
        results = await asyncio.gather(
            *(stream_echo_client(open_connection, cid, n_messages, big) for cid in range(n_clients))
        )
    finally:
        server.close()
        await server.wait_closed()
    expected = [sum(len(payload(cid, i)) for i in range(n_messages)) + big for cid in range(n_clients)]
    assert results == expected
    return sum(results)


# -- the loop and its selector -------------------------------------------------


def test_loop_runs_on_the_given_fastio_selector(loop, selector, backend, selector_name):
    assert isinstance(loop, asyncio.SelectorEventLoop)
    assert isinstance(loop, asyncio.AbstractEventLoop)
    assert loop._selector is selector
    assert isinstance(selector, getattr(backend, selector_name))
    assert isinstance(selector, std_selectors.BaseSelector)
    assert run(loop, asyncio.sleep(0, result="done")) == "done"


def test_closing_the_loop_closes_its_selector(backend, selector_name):
    sel = getattr(backend, selector_name)()
    lp = fastio.asyncio.SelectorLoop(sel)
    # The loop's self-pipe is registered with the selector.
    assert len(sel.get_map()) == 1
    lp.close()
    assert lp.is_closed()
    assert sel.get_map() is None


# -- streams -------------------------------------------------------------------


def test_tcp_streams_echo_many_clients(loop):
    async def main():
        server = None

        async def start_server():
            nonlocal server
            server = await asyncio.start_server(stream_echo_handler, "127.0.0.1", 0)
            return server

        async def open_connection():
            port = server.sockets[0].getsockname()[1]
            return await asyncio.open_connection("127.0.0.1", port)

        return await run_stream_echo(start_server, open_connection, 20, 50, big=256 * 1024)

    total = run(loop, main(), timeout=20)
    assert total > 20 * 256 * 1024


def test_unix_streams_echo_many_clients(loop, tmp_path):
    path = str(tmp_path / "echo.sock")

    async def main():
        async def start_server():
            return await asyncio.start_unix_server(stream_echo_handler, path)

        async def open_connection():
            return await asyncio.open_unix_connection(path)

        return await run_stream_echo(start_server, open_connection, 20, 50, big=256 * 1024)

    total = run(loop, main(), timeout=20)
    assert total > 20 * 256 * 1024


@pytest.mark.parametrize("selector_name", SELECTORS)
def test_stdlib_selector_event_loop_on_fastio_selector(backend, selector_name):
    """``asyncio.SelectorEventLoop`` itself, handed a fastio selector."""
    sel = getattr(backend, selector_name)()
    lp = asyncio.SelectorEventLoop(sel)
    try:
        assert lp._selector is sel

        async def main():
            server = None

            async def start_server():
                nonlocal server
                server = await asyncio.start_server(stream_echo_handler, "127.0.0.1", 0)
                return server

            async def open_connection():
                return await asyncio.open_connection("127.0.0.1", server.sockets[0].getsockname()[1])

            return await run_stream_echo(start_server, open_connection, 10, 20, big=64 * 1024)

        assert run(lp, main(), timeout=20) > 10 * 64 * 1024
    finally:
        lp.run_until_complete(lp.shutdown_asyncgens())
        lp.close()
    assert sel.get_map() is None


# -- protocols -----------------------------------------------------------------


class EchoServerProtocol(asyncio.Protocol):
    connections = 0

    def connection_made(self, transport):
        type(self).connections += 1
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)

    def eof_received(self):
        # Returning a false value closes the transport once its buffer is flushed.
        return False


class CollectingClientProtocol(asyncio.Protocol):
    def __init__(self, done: asyncio.Future):
        self.done = done
        self.received = bytearray()
        self.got_eof = False

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.received += data

    def eof_received(self):
        self.got_eof = True

    def connection_lost(self, exc):
        if not self.done.done():
            if exc is None:
                self.done.set_result(bytes(self.received))
            else:
                self.done.set_exception(exc)


def test_protocol_echo_server(loop):
    class Server(EchoServerProtocol):
        connections = 0

    async def client(port, seed):
        data = big_payload(seed, 200_000 + seed)
        done = loop.create_future()
        transport, proto = await loop.create_connection(lambda: CollectingClientProtocol(done), "127.0.0.1", port)
        try:
            transport.write(data)
            transport.write_eof()
            echoed = await asyncio.wait_for(done, TIMEOUT)
        finally:
            transport.close()
        assert proto.got_eof
        assert echoed == data
        return len(echoed)

    async def main():
        server = await loop.create_server(Server, "127.0.0.1", 0)
        try:
            port = server.sockets[0].getsockname()[1]
            sizes = await asyncio.gather(*(client(port, seed) for seed in range(10)))
        finally:
            server.close()
            await server.wait_closed()
        return sizes

    sizes = run(loop, main(), timeout=15)
    assert sizes == [200_000 + seed for seed in range(10)]
    assert Server.connections == 10


def test_datagram_endpoint_echo(loop):
    class EchoDatagram(asyncio.DatagramProtocol):
        def connection_made(self, transport):
            self.transport = transport

        def datagram_received(self, data, addr):
            self.transport.sendto(data, addr)

    class Collect(asyncio.DatagramProtocol):
        def __init__(self):
            self.queue = asyncio.Queue()

        def datagram_received(self, data, addr):
            self.queue.put_nowait(data)

    async def main():
        server, _ = await loop.create_datagram_endpoint(EchoDatagram, local_addr=("127.0.0.1", 0))
        try:
            addr = server.get_extra_info("sockname")
            client, proto = await loop.create_datagram_endpoint(Collect, remote_addr=addr)
            try:
                got = []
                for i in range(20):
                    msg = payload(99, i)[:1400]
                    client.sendto(msg)
                    got.append(await asyncio.wait_for(proto.queue.get(), TIMEOUT) == msg)
            finally:
                client.close()
        finally:
            server.close()
        return got

    assert run(loop, main()) == [True] * 20


# -- sock_* calls --------------------------------------------------------------


def test_sock_connect_accept_sendall_recv(loop):
    async def recv_exactly(sock, n):
        buf = bytearray()
        while len(buf) < n:
            chunk = await loop.sock_recv(sock, 65536)
            if not chunk:
                break
            buf += chunk
        return bytes(buf)

    async def main():
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        conn = None
        try:
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            listener.setblocking(False)
            client.setblocking(False)
            accepting = asyncio.ensure_future(loop.sock_accept(listener))
            await asyncio.sleep(0)  # the accept waits in the selector first
            assert not accepting.done()
            await loop.sock_connect(client, listener.getsockname())
            conn, addr = await asyncio.wait_for(accepting, TIMEOUT)
            assert addr == client.getsockname()
            assert conn.getblocking() is False

            # Far more than the socket buffers hold: sendall must wait for writability.
            data = big_payload(7, 4 * 1024 * 1024)
            _, received = await asyncio.gather(loop.sock_sendall(client, data), recv_exactly(conn, len(data)))
            assert received == data

            # The other way, and into a buffer.
            await loop.sock_sendall(conn, b"pong!")
            buf = bytearray(5)
            n = 0
            while n < 5:
                got = await loop.sock_recv_into(client, memoryview(buf)[n:])
                assert got > 0
                n += got
            assert bytes(buf) == b"pong!"

            # A recv waiting in the selector sees the peer's EOF.
            pending = asyncio.ensure_future(loop.sock_recv(conn, 100))
            await asyncio.sleep(0.01)
            assert not pending.done()
            client.shutdown(socket.SHUT_WR)
            assert await asyncio.wait_for(pending, TIMEOUT) == b""
        finally:
            if conn is not None:
                conn.close()
            client.close()
            listener.close()
        return True

    assert run(loop, main(), timeout=15) is True


def test_sock_calls_over_unix_socket(loop, tmp_path):
    path = str(tmp_path / "s.sock")

    async def main():
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        conn = None
        try:
            listener.bind(path)
            listener.listen()
            listener.setblocking(False)
            client.setblocking(False)
            accepting = asyncio.ensure_future(loop.sock_accept(listener))
            await loop.sock_connect(client, path)
            conn, _ = await asyncio.wait_for(accepting, TIMEOUT)
            await loop.sock_sendall(client, b"hello over unix")
            data = b""
            while len(data) < 15:
                data += await loop.sock_recv(conn, 100)
            return data
        finally:
            if conn is not None:
                conn.close()
            client.close()
            listener.close()

    assert run(loop, main()) == b"hello over unix"


# -- timers and sleeps ---------------------------------------------------------


def test_call_later_and_call_at_fire_in_order(loop):
    fired = []
    handles = {}

    def cb(tag):
        fired.append((tag, loop.time()))

    async def main():
        done = loop.create_future()
        t0 = loop.time()
        handles["later-40"] = loop.call_later(0.040, cb, "later-40")
        handles["at-10"] = loop.call_at(t0 + 0.010, cb, "at-10")
        handles["later-20"] = loop.call_later(0.020, cb, "later-20")
        handles["at-30"] = loop.call_at(t0 + 0.030, cb, "at-30")
        cancelled = loop.call_later(0.015, cb, "cancelled")
        cancelled.cancel()
        loop.call_soon(cb, "soon")
        loop.call_later(0.060, done.set_result, None)
        await asyncio.wait_for(done, TIMEOUT)

    run(loop, main())
    assert [tag for tag, _ in fired] == ["soon", "at-10", "later-20", "at-30", "later-40"]
    for tag, when in fired[1:]:
        # asyncio runs a timer once loop.time() is within clock resolution of it.
        assert when >= handles[tag].when() - loop._clock_resolution, tag


def test_timer_wakes_a_loop_blocked_in_select(loop):
    """No fd activity at all: only the select timeout can wake the loop."""

    async def main():
        fut = loop.create_future()
        start = loop.time()
        loop.call_later(0.05, fut.set_result, "woke")
        result = await asyncio.wait_for(fut, TIMEOUT)
        return result, loop.time() - start

    result, elapsed = run(loop, main())
    assert result == "woke"
    assert elapsed >= 0.05 - loop._clock_resolution


def test_asyncio_sleep_small_timeouts(loop):
    async def sleeper(delay, tag, order):
        await asyncio.sleep(delay)
        order.append(tag)

    async def main():
        start = loop.time()
        await asyncio.sleep(0.005)
        slept = loop.time() - start
        assert await asyncio.sleep(0.001, result="r") == "r"
        order = []
        await asyncio.gather(
            sleeper(0.050, "c", order),
            sleeper(0.001, "a", order),
            sleeper(0.025, "b", order),
            sleeper(0, "zero", order),
        )
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.sleep(10), 0.02)
        return slept, order

    slept, order = run(loop, main())
    assert slept >= 0.005 - loop._clock_resolution
    assert order == ["zero", "a", "b", "c"]


def test_many_concurrent_sleeps_all_wake_after_their_delay(loop):
    async def main():
        woke = []

        async def sleeper(i):
            delay = 0.001 * (i % 20)
            start = loop.time()
            await asyncio.sleep(delay)
            woke.append((i, loop.time() - start - delay))

        await asyncio.gather(*(sleeper(i) for i in range(200)))
        return woke

    woke = run(loop, main())
    assert sorted(i for i, _ in woke) == list(range(200))
    # None wakes early (asyncio allows one clock resolution of slack).
    assert min(late for _, late in woke) >= -loop._clock_resolution - 1e-9


# -- signals -------------------------------------------------------------------


@pytest.fixture
def sigusr1_restored():
    previous = signal.getsignal(signal.SIGUSR1)
    yield
    signal.signal(signal.SIGUSR1, previous)


def test_add_signal_handler_receives_sigusr1(loop, sigusr1_restored):
    async def main():
        got = loop.create_future()

        def handler(tag):
            if not got.done():
                got.set_result((tag, threading.current_thread() is threading.main_thread()))

        loop.add_signal_handler(signal.SIGUSR1, handler, "usr1")
        try:
            os.kill(os.getpid(), signal.SIGUSR1)
            return await asyncio.wait_for(got, TIMEOUT)
        finally:
            assert loop.remove_signal_handler(signal.SIGUSR1) is True
            assert loop.remove_signal_handler(signal.SIGUSR1) is False

    assert run(loop, main()) == ("usr1", True)


def test_signal_wakes_a_loop_blocked_in_select(loop, sigusr1_restored):
    """The signal arrives from another thread while the loop sleeps in the
    selector with a long timeout; the handler must still run promptly."""

    async def main():
        got = loop.create_future()
        count = []

        def handler():
            count.append(1)
            if not got.done():
                got.set_result(loop.time())

        loop.add_signal_handler(signal.SIGUSR1, handler)
        timer = threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGUSR1))
        try:
            start = loop.time()
            timer.start()
            when = await asyncio.wait_for(got, TIMEOUT)
            await asyncio.sleep(0.01)
            return when - start, len(count)
        finally:
            timer.cancel()
            timer.join()
            loop.remove_signal_handler(signal.SIGUSR1)

    waited, calls = run(loop, main())
    assert calls == 1
    assert waited < TIMEOUT


# -- add_reader / add_writer ---------------------------------------------------


def test_add_reader_add_writer_socketpair(loop, sockpair):
    a, b = sockpair
    a.setblocking(False)
    b.setblocking(False)

    async def main():
        # A writer callback fires on a writable socket.
        writable = loop.create_future()
        loop.add_writer(a.fileno(), lambda: writable.done() or writable.set_result(True))
        assert await asyncio.wait_for(writable, TIMEOUT) is True
        assert loop.remove_writer(a.fileno()) is True
        assert loop.remove_writer(a.fileno()) is False

        # A reader callback fires for each arrival, and gets every byte.
        received = bytearray()
        complete = loop.create_future()

        def on_readable():
            received.extend(b.recv(4096))
            if bytes(received) == b"hello world" and not complete.done():
                complete.set_result(True)

        loop.add_reader(b.fileno(), on_readable)
        await asyncio.sleep(0.01)
        assert received == b""  # nothing to read yet: no spurious call
        a.send(b"hello ")
        await asyncio.sleep(0.01)
        a.send(b"world")
        assert await asyncio.wait_for(complete, TIMEOUT) is True
        assert loop.remove_reader(b.fileno()) is True
        assert loop.remove_reader(b.fileno()) is False

        # Once removed, readiness calls nothing.
        a.send(b"x")
        await asyncio.sleep(0.02)
        assert bytes(received) == b"hello world"

        # Reader and writer on one fd at once (the selector's modify path);
        # b is readable (the "x") and writable.
        both = {"r": loop.create_future(), "w": loop.create_future()}

        def mark(which):
            if not both[which].done():
                both[which].set_result(which)

        loop.add_reader(b, mark, "r")
        loop.add_writer(b, mark, "w")
        assert loop._selector.get_key(b.fileno()).events == (
            fastio.selectors.EVENT_READ | fastio.selectors.EVENT_WRITE
        )
        assert sorted(await asyncio.wait_for(asyncio.gather(*both.values()), TIMEOUT)) == ["r", "w"]
        assert loop.remove_reader(b) is True
        assert loop._selector.get_key(b.fileno()).events == fastio.selectors.EVENT_WRITE
        assert loop.remove_writer(b) is True
        with pytest.raises(KeyError):
            loop._selector.get_key(b.fileno())
        assert b.recv(10) == b"x"

        # Replacing a reader's callback: only the new one runs.
        calls = []
        second = loop.create_future()
        loop.add_reader(b.fileno(), calls.append, "first")

        def replacement():
            calls.append("second")
            b.recv(10)
            if not second.done():
                second.set_result(True)

        loop.add_reader(b.fileno(), replacement)
        a.send(b"y")
        await asyncio.wait_for(second, TIMEOUT)
        loop.remove_reader(b.fileno())
        return calls

    assert run(loop, main()) == ["second"]


# -- subprocesses --------------------------------------------------------------


def test_create_subprocess_exec(loop):
    async def main():
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "print(1)", stdout=asyncio.subprocess.PIPE
        )
        out, _ = await asyncio.wait_for(proc.communicate(), TIMEOUT)
        return proc.returncode, out

    assert run(loop, main(), timeout=15) == (0, b"1\n")


def test_create_subprocess_exec_pipes_stdin_to_stdout(loop):
    data = b"".join(payload(3, i) for i in range(40)).hex().encode()  # ~160 KiB of text

    async def main():
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "import sys; sys.stdout.buffer.write(sys.stdin.buffer.read().upper())",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(data), TIMEOUT)
        return proc.returncode, out, err

    returncode, out, err = run(loop, main(), timeout=15)
    assert (returncode, err) == (0, b"")
    assert out == data.upper()
