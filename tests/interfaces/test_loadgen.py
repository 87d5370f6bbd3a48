"""fastio.loadgen: the C load generator and the reference C echo server.

The load generator is C only (no ``backend`` fixture). It is checked against
the reference server and against small deliberately faulty servers written
here (threads, blocking sockets), one fault each: every fault must land in
its own error key and make ``ok`` False. No timing is asserted beyond "the
run is bounded".
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from fastio import loadgen
from fastio.loadgen import ERROR_KEYS, LATENCY_KEYS, CEchoServer, CThreadsEchoServer, CUringEchoServer, LoadResult

SHORT = dict(duration=0.3, warmup=0.05, timeout=2.0)


# ---------------------------------------------------------------- faulty servers


class ThreadServer:
    """A TCP server on 127.0.0.1 running handler(conn, stopping) in a thread per connection."""

    def __init__(self, handler=None, *, accept=True):
        self.handler = handler
        self.accept = accept
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=128)
        self.sock.settimeout(0.02)
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []
        self.acceptor = threading.Thread(target=self._accept_loop, daemon=True)

    @property
    def address(self):
        return self.sock.getsockname()[:2]

    def _accept_loop(self):
        while not self.stopping.is_set():
            if not self.accept:
                time.sleep(0.02)
                continue
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            conn.settimeout(0.02)
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self.threads.append(t)
            t.start()

    def _serve(self, conn):
        try:
            self.handler(conn, self.stopping)
        except OSError:
            pass  # the load generator closed its side after a fault
        finally:
            conn.close()

    def __enter__(self):
        self.acceptor.start()
        return self

    def __exit__(self, *exc):
        self.stopping.set()
        self.acceptor.join(5)
        for t in self.threads:
            t.join(5)
        self.sock.close()


def recv(conn, stopping):
    """The next chunk, b"" at EOF or when the server stops."""
    while not stopping.is_set():
        try:
            return conn.recv(65536)
        except socket.timeout:
            continue
    return b""


def sendall(conn, data, stopping):
    view = memoryview(data)
    while view and not stopping.is_set():
        try:
            n = conn.send(view)
        except socket.timeout:
            continue
        view = view[n:]


FAULT_AT = 640  # stream offset where the faulty servers misbehave (request 10 at 64 B)


def echo(conn, stopping):
    while data := recv(conn, stopping):
        sendall(conn, data, stopping)


def echo_flipping_a_byte(conn, stopping):
    total = 0
    while data := recv(conn, stopping):
        if total <= FAULT_AT < total + len(data):
            i = FAULT_AT - total
            data = data[:i] + bytes([data[i] ^ 0x5A]) + data[i + 1:]
        total += len(data)
        sendall(conn, data, stopping)


def echo_dropping_a_byte(conn, stopping):
    total = 0
    dropped = False
    while data := recv(conn, stopping):
        total += len(data)
        if not dropped and total > FAULT_AT:
            data = data[:-1]
            dropped = True
        sendall(conn, data, stopping)


def echo_adding_a_byte(conn, stopping):
    total = 0
    added = False
    while data := recv(conn, stopping):
        total += len(data)
        if not added and total > FAULT_AT:
            data += b"!"
            added = True
        sendall(conn, data, stopping)


def echo_then_close(conn, stopping):
    total = 0
    while data := recv(conn, stopping):
        sendall(conn, data, stopping)
        total += len(data)
        if total > FAULT_AT:
            return


def echo_then_reset(conn, stopping):
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    echo_then_close(conn, stopping)


def silent(conn, stopping):
    while recv(conn, stopping):
        pass


def only_errors(result: LoadResult, **expected: int) -> bool:
    return result.errors == {k: expected.get(k, 0) for k in ERROR_KEYS}


# ---------------------------------------------------------------- a correct server


def check_consistent(r: LoadResult, *, duration: float | None = None):
    assert r.ok, r
    assert r.requests > 0
    assert set(r.latency_us) == set(LATENCY_KEYS)
    assert set(r.errors) == set(ERROR_KEYS)
    lat = r.latency_us
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p99.9"] <= lat["max"]
    assert 0 < lat["mean"] <= lat["max"]
    assert r.rps == pytest.approx(r.requests / r.elapsed)
    # Bytes are counted as they arrive, requests as they complete: they
    # differ by at most what is in flight at either end of the window.
    slack = 2 * r.connections * r.depth * r.size
    assert abs(r.throughput * r.elapsed - r.requests * r.size) <= slack
    if duration is not None:
        assert duration <= r.elapsed < duration + 1.0  # ends at the first wakeup past it


@pytest.fixture(scope="module", params=[CEchoServer, CUringEchoServer, CThreadsEchoServer],
                ids=["c-epoll", "c-uring", "c-threads"])
def server_class(request):
    """Each of the C reference servers (epoll, io_uring, a thread per connection)."""
    why = request.param.why_unavailable()
    if why is not None:
        pytest.skip(f"{request.param.name} cannot run here: {why}")
    return request.param


@pytest.fixture(scope="module")
def server(server_class):
    with server_class() as s:
        yield s


def test_reference_server_is_correct(server):
    r = loadgen.run(server.address, connections=4, size=100, depth=3, **SHORT)
    check_consistent(r, duration=SHORT["duration"])
    assert (r.connections, r.size, r.depth) == (4, 100, 3)


def test_large_messages_cross_the_pattern_period(server):
    # 200 kB > the 64 KiB pattern period: sends and checks wrap around it.
    r = loadgen.run(server.address, connections=2, size=200_000, depth=2, **SHORT)
    check_consistent(r)


def test_python_echo_server_with_partial_reads_is_correct():
    with ThreadServer(echo) as s:
        r = loadgen.run(s.address, connections=3, size=3000, depth=4, **SHORT)
    check_consistent(r)


@pytest.mark.parametrize("count,connections,depth", [(1000, 3, 4), (5, 4, 4), (1, 1, 1)])
@pytest.mark.parametrize("warmup", [0.0, 0.05])
def test_request_count_mode_is_exact(server, count, connections, depth, warmup):
    r = loadgen.run(server.address, connections=connections, depth=depth, requests=count, warmup=warmup)
    assert r.ok, r
    assert r.requests == count
    assert r.throughput * r.elapsed == pytest.approx(count * r.size)


def test_unix_socket_path(server_class, tmp_path):
    path = str(tmp_path / "echo.sock")
    with server_class(path) as s:
        assert s.address == path
        r = loadgen.run(path, connections=3, depth=2, **SHORT)
        assert os.path.exists(path)
    assert not os.path.exists(path), "the server removes the socket file it created"
    check_consistent(r)


def test_unix_abstract_name(server_class):
    name = f"\0fastio-loadgen-test-{os.getpid()}"
    with server_class(name) as s:
        r = loadgen.run(s.address, connections=2, requests=100)
    assert r.ok and r.requests == 100


def test_result_round_trips_through_json(server):
    r = loadgen.run(server.address, requests=10)
    d = json.loads(json.dumps(r.to_dict()))
    assert LoadResult.from_dict(d) == r
    assert "req/s" in r.format() and "ok" in r.format()


# ---------------------------------------------------------------- faults


def test_corrupt_byte_is_counted():
    with ThreadServer(echo_flipping_a_byte) as s:
        r = loadgen.run(s.address, connections=2, duration=0.5, warmup=0, timeout=2)
    assert not r.ok
    assert only_errors(r, corrupt=2), r.errors
    assert r.requests > 0  # the requests before the fault


def test_extra_bytes_are_corrupt():
    with ThreadServer(echo_adding_a_byte) as s:
        r = loadgen.run(s.address, connections=2, duration=0.5, warmup=0, timeout=2)
    assert not r.ok
    assert only_errors(r, corrupt=2), r.errors


def test_dropped_byte_is_a_lost_request():
    start = time.monotonic()
    with ThreadServer(echo_dropping_a_byte) as s:
        r = loadgen.run(s.address, connections=2, duration=5, warmup=0, timeout=0.3)
        took = time.monotonic() - start
    assert not r.ok
    assert only_errors(r, lost=2), r.errors
    # Abandoned after `timeout` without progress; the run ends with its last connection.
    assert took < 2.5


@pytest.mark.parametrize("handler", [echo_then_close, echo_then_reset], ids=["fin", "rst"])
def test_closed_connection_is_counted(handler):
    with ThreadServer(handler) as s:
        r = loadgen.run(s.address, connections=3, depth=2, duration=0.5, warmup=0, timeout=2)
    assert not r.ok
    assert only_errors(r, closed=3), r.errors


@pytest.mark.parametrize("accept", [True, False], ids=["reads", "never-accepts"])
def test_server_that_never_answers_is_bounded(accept):
    start = time.monotonic()
    with ThreadServer(silent, accept=accept) as s:
        r = loadgen.run(s.address, connections=3, depth=2, duration=0.3, warmup=0.1, timeout=0.3)
        took = time.monotonic() - start
    assert not r.ok
    assert r.requests == 0
    assert only_errors(r, lost=6), r.errors
    assert took < 0.1 + 0.3 + 0.3 + 1.5


def test_connection_refused_is_counted():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))  # bound, not listening: connects are refused
        r = loadgen.run(s.getsockname(), connections=3, **SHORT)
    assert not r.ok
    assert only_errors(r, connect=3), r.errors
    assert r.requests == 0 and r.rps == 0 and r.latency_us["max"] == 0


def test_missing_unix_path_is_a_connect_error(tmp_path):
    r = loadgen.run(str(tmp_path / "nobody"), connections=2, **SHORT)
    assert only_errors(r, connect=2), r.errors


def test_server_stopped_mid_run_is_counted(server_class):
    with server_class() as s:
        address = s.address
        threading.Timer(0.15, s.stop).start()
        r = loadgen.run(address, connections=2, duration=0.6, warmup=0, timeout=1)
    assert not r.ok
    assert r.requests > 0
    assert only_errors(r, closed=2), r.errors


@pytest.mark.parametrize("busy", [False, True], ids=["idle", "busy"])
def test_signal_handler_exception_ends_the_run(busy):
    # Idle: the signal interrupts epoll_wait. Busy: it mostly arrives while
    # the loop works and must still be seen at the next wait.
    class Stop(Exception):
        pass

    def handler(signum, frame):
        raise Stop

    main = threading.main_thread().ident
    if threading.current_thread().ident != main:
        pytest.skip("signals are handled in the main thread only")
    old = signal.signal(signal.SIGUSR1, handler)
    timer = threading.Timer(0.2, signal.pthread_kill, (main, signal.SIGUSR1))
    start = time.monotonic()
    try:
        with (CEchoServer() if busy else ThreadServer(silent)) as s:
            timer.start()
            with pytest.raises(Stop):
                loadgen.run(s.address, connections=2, depth=8, duration=10, timeout=10)
            took = time.monotonic() - start
    finally:
        timer.cancel()
        signal.signal(signal.SIGUSR1, old)
    assert took < 3


# ---------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    "kwargs,exc",
    [
        (dict(connections=0), ValueError),
        (dict(connections=10**6), ValueError),
        (dict(connections=1.5), TypeError),
        (dict(connections=True), TypeError),
        (dict(size=0), ValueError),
        (dict(size=1 << 40), ValueError),
        (dict(size="64"), TypeError),
        (dict(depth=0), ValueError),
        (dict(depth=100_000), ValueError),
        (dict(connections=65536, depth=4096), ValueError),
        (dict(duration=1.0, requests=10), ValueError),
        (dict(duration=0), ValueError),
        (dict(duration=-1), ValueError),
        (dict(duration=float("nan")), ValueError),
        (dict(duration=1e9), ValueError),
        (dict(duration="1"), TypeError),
        (dict(requests=0), ValueError),
        (dict(requests=1.0), TypeError),
        (dict(requests=1 << 40, size=1 << 26), ValueError),
        (dict(warmup=-0.1), ValueError),
        (dict(timeout=0), ValueError),
        (dict(timeout=None), TypeError),
    ],
)
@pytest.mark.parametrize("func", [loadgen.run, loadgen.run_process], ids=["run", "run_process"])
def test_bad_arguments(func, kwargs, exc):
    with pytest.raises(exc):
        func(("127.0.0.1", 9), **kwargs)


@pytest.mark.parametrize(
    "address,exc",
    [
        (("127.0.0.1", 0), ValueError),
        (("127.0.0.1", 70000), ValueError),
        (("127.0.0.1", "80"), TypeError),
        ((b"127.0.0.1", 80), TypeError),
        (("127.0.0.1", 80, 0), TypeError),
        ("", ValueError),
        ("x" * 200, ValueError),
        ("a\0b", ValueError),
        (b"/tmp/sock", TypeError),
        (8080, TypeError),
        (None, TypeError),
    ],
)
def test_bad_addresses(address, exc):
    with pytest.raises(exc):
        loadgen.run(address)


def test_run_process_rejects_a_cpu_it_may_not_use():
    with pytest.raises(ValueError, match="cpu"):
        loadgen.run_process(("127.0.0.1", 9), cpu=max(os.sched_getaffinity(0)) + 1)


def test_missing_extension_is_an_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "fastio._c._loadgen", None)
    with pytest.raises(ImportError, match="compiled extension"):
        loadgen.run(("127.0.0.1", 9))
    assert "compiled extension" in CEchoServer.why_unavailable()


# ---------------------------------------------------------------- other processes


def test_run_process_pinned(server):
    cpu = min(os.sched_getaffinity(0))
    r = loadgen.run_process(server.address, cpu=cpu, connections=2, **SHORT)
    check_consistent(r, duration=SHORT["duration"])


def test_command_line_pins_and_prints_json(server):
    cpu = max(os.sched_getaffinity(0))
    host, port = server.address
    proc = subprocess.run(
        [sys.executable, "-m", "fastio.loadgen", f"{host}:{port}", "--requests", "50", "--depth", "2",
         "--cpu", str(cpu), "--json"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["cpus"] == [cpu]
    assert LoadResult.from_dict(out).requests == 50


def test_command_line_in_process(server, capsys):
    host, port = server.address
    assert loadgen.main([f"{host}:{port}", "-c", "2", "--duration", "0.1", "--warmup", "0"]) == 0
    assert "req/s" in capsys.readouterr().out


def test_command_line_exit_status_on_server_errors(capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        host, port = s.getsockname()
        assert loadgen.main([f"{host}:{port}", "--duration", "0.1", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["errors"]["connect"] == 1


@pytest.mark.parametrize("address", ["localhost", "host:port", "::1:80", "unix:", "1.2.3.4:99999"])
def test_command_line_bad_address(address, capsys):
    with pytest.raises(SystemExit) as info:
        loadgen.main([address])
    assert info.value.code == 2


def test_run_process_child_failure_is_a_runtime_error(server, monkeypatch):
    monkeypatch.setattr(sys, "executable", "/bin/false")
    with pytest.raises(RuntimeError, match="load generator process"):
        loadgen.run_process(server.address, **SHORT)


# ---------------------------------------------------------------- the server object


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_runs_leave_no_fd_behind(server, tmp_path):
    before = open_fds()
    loadgen.run(server.address, connections=20, depth=4, duration=0.1, warmup=0)
    loadgen.run(str(tmp_path / "nobody"), connections=5, duration=0.1)
    with ThreadServer(silent) as s:
        loadgen.run(s.address, connections=5, duration=0.1, warmup=0, timeout=0.1)
    assert open_fds() == before


def test_server_interface_and_cleanup(server_class):
    before = open_fds()
    threads = threading.active_count()
    s = server_class(("127.0.0.1", 0))
    assert s.model == "reference"
    assert s.name == {CEchoServer: "c-epoll", CUringEchoServer: "c-uring", CThreadsEchoServer: "c-threads"}[server_class]
    assert s.summary and server_class.why_unavailable() is None
    with pytest.raises(RuntimeError):
        s.address
    s.start()
    with pytest.raises(RuntimeError):
        s.start()
    host, port = s.address
    assert host == "127.0.0.1" and port > 0
    clients = [socket.create_connection((host, port)) for _ in range(3)]
    clients[0].sendall(b"hello")
    assert clients[0].recv(5) == b"hello"
    assert s.cpu_time() >= 0
    s.stop()
    s.stop()  # idempotent
    for c in clients:
        assert c.recv(1) == b""  # the server closed every connection
        c.close()
    assert open_fds() == before
    assert threading.active_count() == threads
    assert s.stats["accepted"] == 3
    with pytest.raises(RuntimeError):
        s.start()


def test_serve_forever_stopped_from_another_thread(server_class):
    s = server_class()
    t = threading.Thread(target=s.serve_forever)
    t.start()
    deadline = time.monotonic() + 5
    while s._sock is None and time.monotonic() < deadline:
        time.sleep(0.01)
    r = loadgen.run(s.address, requests=20)
    s.stop()
    t.join(5)
    assert not t.is_alive()
    assert r.ok and r.requests == 20


def test_serve_forever_stopped_by_a_signal_handler(server_class):
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals are handled in the main thread only")
    before = open_fds()
    s = server_class()
    old = signal.signal(signal.SIGUSR1, lambda signum, frame: s.stop())
    timer = threading.Timer(0.2, signal.pthread_kill, (threading.main_thread().ident, signal.SIGUSR1))
    try:
        timer.start()
        s.serve_forever()  # returns once the handler has stopped it
    finally:
        timer.cancel()
        signal.signal(signal.SIGUSR1, old)
    assert open_fds() == before


def test_uring_server_echoes_a_message_bigger_than_its_buffer_whole():
    # 300 kB against a 64 KiB receive buffer: several recvs, and sends the
    # socket takes in parts, each echoed in order.
    if CUringEchoServer.why_unavailable() is not None:
        pytest.skip(f"c-uring cannot run here: {CUringEchoServer.why_unavailable()}")
    data = os.urandom(300_000)
    with CUringEchoServer() as s:
        with socket.create_connection(s.address) as c:
            c.settimeout(10)
            sender = threading.Thread(target=c.sendall, args=(data,))
            sender.start()
            got = bytearray()
            while len(got) < len(data):
                chunk = c.recv(1 << 20)
                assert chunk
                got += chunk
            sender.join(10)
    assert bytes(got) == data
    assert s.stats["bytes"] == len(data) and s.stats["conn_errors"] == 0



def test_peer_that_stops_reading_gets_every_byte_after_it_reads_again(server_class):
    # The echo of 4 MB cannot fit the socket buffers while the client does
    # not read: the server's send waits for room (c-uring: its linked recv
    # waits behind it), then everything arrives whole and in order.
    data = os.urandom(4 << 20)
    with server_class() as s:
        with socket.create_connection(s.address) as c:
            c.settimeout(10)
            sender = threading.Thread(target=c.sendall, args=(data,), daemon=True)
            sender.start()
            time.sleep(0.3)
            got = bytearray()
            while len(got) < len(data):
                chunk = c.recv(1 << 20)
                assert chunk
                got += chunk
            sender.join(10)
    assert bytes(got) == data
    assert s.stats["conn_errors"] == 0


def test_a_peer_that_never_reads_is_slowed_not_buffered(server_class):
    # A client that sends and never reads: the server stops reading once its
    # send waits for room (c-epoll: it polls for EPOLLOUT only; c-uring: the
    # next recv is linked behind the send; c-threads: the thread blocks in
    # send), so the client stalls once the socket buffers are full, never
    # after all it has to send.
    limit = 256 << 20
    with server_class() as s:
        with socket.create_connection(s.address) as c:
            c.setblocking(False)
            chunk = b"x" * 65536
            sent = stalls = 0
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and sent < limit and stalls < 20:
                try:
                    sent += c.send(chunk)
                    stalls = 0
                except BlockingIOError:
                    stalls += 1
                    time.sleep(0.05)
            assert stalls == 20, f"{sent} bytes taken without a stall of 1 s"
            assert sent < 64 << 20


def test_stop_while_a_send_waits_for_room_is_prompt(server_class):
    # A client that sends and never reads leaves the server's send waiting
    # for room; stop() must still cancel it, reap everything and return.
    before = open_fds()
    s = server_class()
    s.start()
    c = socket.create_connection(s.address)
    c.setblocking(False)
    chunk = b"x" * 65536
    sent = 0
    deadline = time.monotonic() + 5
    try:
        while time.monotonic() < deadline and sent < 64 << 20:
            try:
                sent += c.send(chunk)
            except BlockingIOError:
                break   # both directions full: the server is stuck in its send
        assert sent > 0
        time.sleep(0.1)
        start = time.monotonic()
        s.stop(timeout=5)
        assert time.monotonic() - start < 3
    finally:
        c.close()
    assert open_fds() == before
