"""fastio.models: every echo server, on both backends, driven by a small
pipelining client written here (one thread, non-blocking sockets, a stdlib
selector): many connections, messages of several sizes (some above 64 KiB,
so sends are partial), byte-for-byte checks; Unix sockets; stop() with
connections open leaves no fd and no thread; cpu_time(); availability."""

from __future__ import annotations

import os
import random
import selectors
import shutil
import signal
import socket
import struct
import sys
import tempfile
import threading
import time

import pytest

import fastio
from fastio import models
from fastio.models import EchoServer

NAMES = list(models.MODELS)
SIZES = (1, 64, 1500, 70_000, 200_000)
DEADLINE = 20.0


@pytest.fixture(params=NAMES)
def model(request):
    return request.param


def server_for(model: str, backend, address=("127.0.0.1", 0), **kwargs) -> EchoServer:
    """The server class for ``model``, or a skip with the reason it cannot run here."""
    cls = models.get(model)
    reason = cls.why_unavailable(backend.name)
    if reason is not None:
        pytest.skip(f"{model} is unavailable on the {backend.name} backend: {reason}")
    return cls(address, backend=backend.name, **kwargs)


def connect(address, rcvbuf: int | None = None) -> socket.socket:
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(5.0)
    sock.connect(address)
    return sock


def payload(seed: int, sizes) -> bytes:
    """Random messages, different for every connection (a crossed stream or
    a reordering is seen)."""
    rng = random.Random(seed)
    return b"".join(rng.getrandbits(8 * size).to_bytes(size, "little") for size in sizes)


def exchange(socks, blobs, *, hold: float = 0.0, deadline: float = DEADLINE) -> None:
    """Send each blob on its socket, pipelined, while reading the echo back;
    assert every byte came back in order. With ``hold`` the client writes
    for that long without reading (the server meets a full socket)."""
    sel = selectors.DefaultSelector()
    state = {}
    try:
        for sock, blob in zip(socks, blobs):
            sock.setblocking(False)
            state[sock] = [memoryview(blob), 0, bytearray()]
            sel.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE)
        start = time.monotonic()
        end = start + deadline
        holding = hold > 0
        left = len(state)
        while left:
            now = time.monotonic()
            if now > end:
                got = {i: (s[1], len(s[2])) for i, s in enumerate(state.values())}
                pytest.fail(f"echo incomplete after {deadline} s (sent, received): {got}")
            if holding and now - start > hold:
                holding = False
            for key, events in sel.select(0.05):
                sock = key.fileobj
                blob, sent, got = state[sock]
                if events & selectors.EVENT_WRITE and sent < len(blob):
                    try:
                        state[sock][1] = sent = sent + sock.send(blob[sent:sent + 262144])
                    except BlockingIOError:
                        pass
                    if sent == len(blob):
                        sel.modify(sock, selectors.EVENT_READ)
                if events & selectors.EVENT_READ and not holding:
                    data = sock.recv(262144)
                    assert data, f"the server closed a connection after {len(got)} of {len(blob)} bytes"
                    got += data
                    assert len(got) <= len(blob), "more bytes came back than were sent"
                    if len(got) == len(blob):
                        assert bytes(got) == blob, "the echo differs from what was sent"
                        sel.unregister(sock)
                        left -= 1
                if holding:
                    time.sleep(0.001)
        for sock, (blob, _, got) in state.items():
            assert bytes(got) == blob.tobytes()
    finally:
        sel.close()
        for sock in socks:
            sock.setblocking(True)
            sock.settimeout(5.0)


def fd_table() -> dict:
    out = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            out[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            pass   # the listdir's own fd
    return out


@pytest.fixture
def short_dir():
    """A directory with a short path (Unix socket paths are limited to 107 bytes)."""
    path = tempfile.mkdtemp(prefix="fio-", dir="/tmp")
    yield path
    shutil.rmtree(path, ignore_errors=True)


# ---- the registry ----------------------------------------------------------


def test_registry():
    assert NAMES == [
        "blocking", "blocking-pool", "nonblocking", "select", "poll", "epoll", "selectors-stdlib",
        "sigio", "uring", "uring-multishot", "aio", "asyncio", "asyncio-fastio", "asyncio-fastio-uring",
        "asyncio-fastio-epoll", "uvloop",
    ]
    allowed = {"blocking", "non-blocking", "multiplexing", "signal-driven", "asynchronous", "asyncio",
               "reference"}
    for name, cls in models.MODELS.items():
        assert cls.name == name
        assert cls.model in allowed
        assert cls.summary and "\n" not in cls.summary
        assert issubclass(cls, EchoServer)
        assert models.get(name) is cls
        module = sys.modules[cls.__module__]
        assert module.__doc__ and "phase" in module.__doc__, f"{cls.__module__} tells no read phases"
    with pytest.raises(KeyError, match="epoll"):
        models.get("nope")


def test_bad_arguments():
    with pytest.raises(ValueError):
        models.get("epoll")(backend="fast")
    server = models.get("epoll")()
    with pytest.raises(RuntimeError, match="not bound"):
        server.address
    server.stop()          # never started: nothing to do
    server.stop()
    with pytest.raises(TypeError):
        models.get("epoll")(("127.0.0.1", 0, 0)).start()


# ---- echo --------------------------------------------------------------------


def test_echo_one_connection(model, backend):
    with server_for(model, backend) as server:
        host, port = server.address
        assert host == "127.0.0.1" and port > 0
        sock = connect(server.address)
        try:
            exchange([sock], [payload(1, SIZES)])
            exchange([sock], [b"x"])        # the connection still serves afterwards
        finally:
            sock.close()


def test_echo_many_connections(model, backend):
    with server_for(model, backend) as server:
        socks = [connect(server.address) for _ in range(32)]
        try:
            exchange(socks, [payload(i, (1, 64, 1500, 70_000)) for i in range(32)])
        finally:
            for sock in socks:
                sock.close()


def test_partial_sends_slow_reader(model, backend):
    """The client writes 1.5 MB without reading for a while, through a small
    receive buffer: the server's sends come up short or block, it must keep
    the tail, in order, and lose nothing."""
    with server_for(model, backend) as server:
        socks = [connect(server.address, rcvbuf=4096) for _ in range(2)]
        try:
            exchange(socks, [payload(10 + i, (300_000,) * 5) for i in range(2)], hold=0.3)
        finally:
            for sock in socks:
                sock.close()



@pytest.mark.parametrize("name", ["uring", "uring-multishot"])
def test_uring_stops_reading_a_peer_that_does_not_read(name, backend):
    """With a small pending_limit the io_uring servers stop the recv of a
    connection whose echo piles up (multishot: cancel it) and re-arm it
    once the peer reads; nothing is lost or reordered."""
    server = server_for(name, backend)
    server.pending_limit = 32768
    with server:
        socks = [connect(server.address, rcvbuf=4096) for _ in range(2)]
        try:
            exchange(socks, [payload(80 + i, (300_000,) * 5) for i in range(2)], hold=0.3)
            exchange(socks, [b"after", b"pause"])
        finally:
            for sock in socks:
                sock.close()

def test_unix_socket(model, backend, short_dir):
    path = os.path.join(short_dir, "echo.sock")
    server = server_for(model, backend, path)
    with server:
        assert server.address == path
        socks = [connect(path) for _ in range(3)]
        try:
            exchange(socks, [payload(20 + i, SIZES) for i in range(3)])
        finally:
            for sock in socks:
                sock.close()
    assert not os.path.exists(path), "stop() leaves the socket file behind"


def test_unix_socket_stale_file_replaced(backend, short_dir):
    path = os.path.join(short_dir, "stale.sock")
    old = socket.socket(socket.AF_UNIX)
    old.bind(path)
    old.close()            # the file stays, nobody listens
    with server_for("epoll", backend, path) as server:
        sock = connect(server.address)
        with sock:
            exchange([sock], [b"again"])


def test_half_close_gets_every_echo(model, backend):
    """A peer that shuts down its sending side still receives every echo,
    then the server closes."""
    with server_for(model, backend) as server:
        sock = connect(server.address)
        with sock:
            blob = payload(30, (100_000,))
            sender = threading.Thread(target=lambda: (sock.sendall(blob), sock.shutdown(socket.SHUT_WR)))
            sender.start()
            got = bytearray()
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                got += data
            sender.join()
            assert bytes(got) == blob


def test_reset_connection_leaves_others_alone(model, backend):
    with server_for(model, backend) as server:
        keep = connect(server.address)
        victim = connect(server.address)
        try:
            exchange([keep, victim], [b"a" * 100, b"b" * 100])
            victim.sendall(b"c" * 200_000)
            # close with RST (SO_LINGER 0), unread data and echo in flight
            victim.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            victim.close()
            time.sleep(0.05)
            exchange([keep], [payload(40, SIZES)])
            late = connect(server.address)        # still accepting
            with late:
                exchange([late], [b"late"])
        finally:
            keep.close()
            victim.close()


def test_ipv6(backend):
    if not socket.has_ipv6:
        pytest.skip("no IPv6 in this Python")
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    with server_for("epoll", backend, ("::1", 0)) as server:
        host, port = server.address
        assert host == "::1" and port > 0
        with socket.create_connection(server.address, timeout=5) as sock:
            exchange([sock], [b"six"])


# ---- stop, leaks, cpu time ---------------------------------------------------


def _run_once(model, backend, n_conns: int, keep_open: bool):
    server = server_for(model, backend)
    server.start()
    socks = [connect(server.address) for _ in range(n_conns)]
    try:
        exchange(socks, [payload(50 + i, (64, 4000)) for i in range(n_conns)])
        # one connection mid-stream: bytes sent, echo not read
        socks[0].sendall(b"z" * 100_000)
        t0 = time.monotonic()
        server.stop()
        took = time.monotonic() - t0
        server.stop()                           # idempotent
        assert took < 3.0, f"stop() took {took:.2f} s with connections open"
        for sock in socks:                      # the server's ends are gone
            sock.settimeout(5.0)
            try:
                while sock.recv(65536):
                    pass
            except (ConnectionResetError, BrokenPipeError):
                pass
    finally:
        if not keep_open:
            for sock in socks:
                sock.close()
    return server, socks


def test_stop_with_connections_open_leaks_nothing(model, backend):
    warm_up(model, backend)
    fds = fd_table()
    threads = set(threading.enumerate())
    server, socks = _run_once(model, backend, 6, keep_open=True)
    try:
        leaked = {fd: what for fd, what in fd_table().items() if fd not in fds}
        # the client sockets are still open: they are ours, not the server's
        ours = {sock.fileno() for sock in socks}
        assert {fd: what for fd, what in leaked.items() if fd not in ours} == {}
        assert set(threading.enumerate()) <= threads, "stop() left a thread running"
    finally:
        for sock in socks:
            sock.close()
    with pytest.raises(RuntimeError):
        server.start()                          # a server runs once


def test_stop_idle_is_prompt(model, backend):
    server = server_for(model, backend)
    server.start()
    time.sleep(0.05)                            # the loop is waiting now
    t0 = time.monotonic()
    server.stop()
    assert time.monotonic() - t0 < 1.0


def warm_up(model, backend) -> None:
    """Start and stop a server once, so that one-time, process-wide set-up
    (uvloop keeps a pipe open for the life of the process) is not counted as
    a leak."""
    server = server_for(model, backend)
    server.start()
    server.stop()


def test_serve_forever(model, backend):
    warm_up(model, backend)
    server = server_for(model, backend)
    fds = fd_table()
    thread = threading.Thread(target=server.serve_forever)
    thread.start()
    deadline = time.monotonic() + 5
    while server._address is None and time.monotonic() < deadline:
        time.sleep(0.005)
    sock = connect(server.address)
    with sock:
        exchange([sock], [payload(60, (64, 70_000))])
        server.stop()
    thread.join(5)
    assert not thread.is_alive()
    assert set(fd_table()) <= set(fds)


def test_cpu_time(model, backend):
    server = server_for(model, backend)
    assert server.cpu_time() == 0.0
    with server:
        sock = connect(server.address)
        with sock:
            exchange([sock], [payload(70, (64, 100_000))])
            first = server.cpu_time()
            assert first > 0
            exchange([sock], [payload(71, (64, 100_000))])
            second = server.cpu_time()
            assert second > first
    stopped = server.cpu_time()
    assert stopped >= second
    time.sleep(0.01)
    assert server.cpu_time() == stopped         # frozen at stop()


# ---- availability --------------------------------------------------------------


def test_why_unavailable_uvloop_absent(monkeypatch):
    monkeypatch.setitem(sys.modules, "uvloop", None)     # import uvloop -> ImportError
    cls = models.get("uvloop")
    reason = cls.why_unavailable()
    assert reason is not None and "uvloop is not installed" in reason
    server = cls()
    with pytest.raises(fastio.UnsupportedError, match="uvloop is not installed"):
        server.start()
    server.stop()
    with pytest.raises(fastio.UnsupportedError, match="uvloop is not installed"):
        cls().serve_forever()


@pytest.mark.parametrize("name,switch", [("uring", "uring"), ("uring-multishot", "uring"), ("aio", "aio")])
def test_switched_off_model_refuses_to_start(name, switch, backend, monkeypatch):
    monkeypatch.setenv("FASTIO_DISABLE", switch)
    cls = models.get(name)
    reason = cls.why_unavailable(backend.name)
    assert reason is not None and "FASTIO_DISABLE" in reason
    fds = fd_table()
    with pytest.raises(fastio.UnsupportedError, match="FASTIO_DISABLE"):
        cls(backend=backend.name).start()
    assert set(fd_table()) <= set(fds), "a refused start() left its listener open"


def test_available_everywhere_here(backend):
    """Models that need nothing beyond the kernel basics run on any Linux."""
    for name in ("blocking", "blocking-pool", "nonblocking", "select", "poll", "epoll",
                 "selectors-stdlib", "asyncio", "asyncio-fastio"):
        assert models.get(name).why_unavailable(backend.name) is None, name


def test_reasons_are_strings(backend):
    for name, cls in models.MODELS.items():
        reason = cls.why_unavailable(backend.name)
        assert reason is None or (isinstance(reason, str) and reason), name


def test_uring_model_unavailable_matches_uring(backend):
    reason = backend.uring.why_unavailable()
    if reason is not None:
        assert models.get("uring").why_unavailable(backend.name) == reason
    else:
        assert models.get("uring").why_unavailable(backend.name) is None



def test_ctrl_c_ends_serve_forever(model, backend):
    """SIGINT while serve_forever() waits in the main thread: the loop ends
    with KeyboardInterrupt (PEP 475: the wait runs the handler), connections
    and listener closed, threads joined."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals are delivered to the main thread only")
    warm_up(model, backend)
    server = server_for(model, backend)
    fds = fd_table()
    threads = set(threading.enumerate())
    main = threading.get_ident()
    problems = []

    def client() -> None:
        try:
            deadline = time.monotonic() + 5
            while server._address is None and time.monotonic() < deadline:
                time.sleep(0.005)
            sock = connect(server.address)
            with sock:
                exchange([sock], [b"before ctrl-c"])
                time.sleep(0.05)            # the loop is waiting again
                signal.pthread_kill(main, signal.SIGINT)
                time.sleep(0.2)
        except BaseException as exc:      # reported by the main thread
            problems.append(exc)
            signal.pthread_kill(main, signal.SIGINT)

    helper = threading.Thread(target=client)
    helper.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            server.serve_forever()
    finally:
        helper.join()
    assert not problems, problems
    server.stop()                           # already stopped: nothing to do
    assert set(fd_table()) <= set(fds)
    assert set(threading.enumerate()) <= threads


def test_a_failed_set_up_is_raised_by_start(backend):
    """start() returns once the loop made its kernel objects; if making them
    fails (a ring refused, fs.aio-max-nr reached ...) start() raises that,
    with everything closed."""
    class Broken(models.get("epoll")):
        def _make_poller(self):
            raise fastio.UnsupportedError(24, "pretend: the kernel says no")

    fds = fd_table()
    threads = set(threading.enumerate())
    server = Broken(backend=backend.name)
    with pytest.raises(fastio.UnsupportedError, match="the kernel says no"):
        server.start()
    assert set(fd_table()) <= set(fds)
    assert set(threading.enumerate()) <= threads
    server.stop()                               # nothing left to do


def test_a_failed_loop_is_reported_by_stop(backend):
    class Broken(models.get("epoll")):
        def _serve(self):
            self._serving()
            raise OSError(24, "pretend: too many open files")

    fds = fd_table()
    server = Broken(backend=backend.name)
    server.start()
    server._done.wait(5)
    with pytest.raises(RuntimeError, match="too many open files"):
        server.stop()
    server.stop()                               # reported once; stopped
    assert set(fd_table()) <= set(fds)
