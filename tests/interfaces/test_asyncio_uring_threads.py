"""The io_uring engine's ring and threads. Where the kernel allows it (6.1)
the loop's ring is ``SINGLE_ISSUER | DEFER_TASKRUN``, made ``R_DISABLED`` so
that the thread which first runs the loop becomes its only issuer. What a
user of asyncio may do must still work: make a loop in one thread and run it
in another (a background loop thread), close it from the first once that
thread is done, with nothing kept for ever; what the kernel cannot allow
(running it in a second thread) is a clear RuntimeError, not a hang or a
lost event."""

from __future__ import annotations

import asyncio
import os
import socket
import threading

import pytest

from fastio import uring
from fastio.asyncio._loop import Loop

pytestmark = [
    pytest.mark.c_backend,
    pytest.mark.skipif(not uring.available(), reason=f"io_uring unusable here: {uring.why_unavailable()}"),
]

TIMEOUT = 5.0


def _kernel() -> tuple:
    release = os.uname().release.split(".")
    return int(release[0]), int(release[1].split("-")[0])


@pytest.fixture
def deferred_loop():
    lp = Loop(engine="uring")
    if not lp._engine.ring.setup_flags & uring.SETUP_DEFER_TASKRUN:
        lp.close()
        pytest.skip("this kernel refuses SINGLE_ISSUER | DEFER_TASKRUN rings (Linux 6.1)")
    yield lp
    lp.close()


def in_thread(func):
    """func() in a new thread; its result, or the exception it raised."""
    out: list = []

    def body():
        try:
            out.append(func())
        except BaseException as exc:    # (handed to the test)
            out.append(exc)

    t = threading.Thread(target=body)
    t.start()
    t.join(TIMEOUT * 2)
    assert not t.is_alive(), "the thread did not finish"
    return out[0]


async def echo_once(payload: bytes) -> bytes:
    """A server and a client on the running loop: one echo through a
    Protocol (a multishot recv) and streams (polls and recvs in flight)."""
    loop = asyncio.get_running_loop()

    class Echo(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data):
            self.transport.write(data)

    server = await loop.create_server(Echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    got = await reader.readexactly(len(payload))
    writer.close()
    await writer.wait_closed()
    server.close()
    await server.wait_closed()
    return got


def test_the_ring_defers_its_work_to_the_loops_wait_where_the_kernel_allows():
    lp = Loop(engine="uring")
    try:
        flags = lp._engine.ring.setup_flags
        if _kernel() >= (6, 1):
            assert flags & uring.SETUP_SINGLE_ISSUER and flags & uring.SETUP_DEFER_TASKRUN
            assert flags & uring.SETUP_R_DISABLED      # no issuer until the loop first runs
        assert lp.run_until_complete(asyncio.wait_for(echo_once(b"x" * 100), TIMEOUT)) == b"x" * 100
    finally:
        lp.close()


def test_a_loop_made_here_runs_in_another_thread_and_closes_here(deferred_loop):
    payload = os.urandom(50_000)
    got = in_thread(lambda: deferred_loop.run_until_complete(asyncio.wait_for(echo_once(payload), TIMEOUT)))
    assert got == payload
    ring = deferred_loop._engine.ring
    assert ring.inflight > 0         # the loop's own polls: its self-pipe's at least
    deferred_loop.close()            # (the issuer is another thread, gone by now)
    assert ring.closed and deferred_loop.is_closed()


def test_a_loop_closed_from_another_thread_keeps_nothing(deferred_loop):
    """Each loop's ring and its 4 MiB of recv buffers are given back when
    the loop is closed by a thread that may not enter its ring: the loop's
    own requests (polls, recvs into its buffers) cannot write once the ring
    is closed, so they are not a reason to keep the memory for ever."""
    def vm_kib() -> int:
        # Writable mappings only: a new thread's malloc arena reserves 64 MiB
        # of address space, but inaccessible (---p) until used.
        total = 0
        with open("/proc/self/maps") as f:
            for line in f:
                span, perms = line.split()[:2]
                if perms.startswith("rw"):
                    lo, hi = (int(x, 16) for x in span.split("-"))
                    total += hi - lo
        return total // 1024

    def one_loop():
        lp = Loop(engine="uring")
        assert in_thread(lambda: lp.run_until_complete(asyncio.wait_for(echo_once(b"abc"), TIMEOUT))) == b"abc"
        lp.close()

    one_loop()                       # (thread stacks and arenas settle)
    before = vm_kib()
    rounds = 20
    for _ in range(rounds):
        one_loop()
    grown = vm_kib() - before
    assert grown < rounds * 4096 // 2, f"{grown} KiB more mapped after {rounds} loops"


def test_a_loop_refuses_to_run_in_a_second_thread_and_goes_on_in_its_own(deferred_loop):
    assert deferred_loop.run_until_complete(asyncio.wait_for(echo_once(b"one"), TIMEOUT)) == b"one"
    err = in_thread(lambda: deferred_loop.run_until_complete(asyncio.sleep(0)))
    assert isinstance(err, RuntimeError) and "SINGLE_ISSUER" in str(err) and "epoll" in str(err)
    assert not deferred_loop.is_running()
    assert deferred_loop.run_until_complete(asyncio.wait_for(echo_once(b"two"), TIMEOUT)) == b"two"


def test_a_closed_server_refuses_connections_at_once(deferred_loop):
    """A poll holds its file, and under DEFER_TASKRUN even a poll whose
    readiness came keeps it until the loop's next wait runs its work:
    Server.close() removes the listening socket's poll in the kernel before
    it closes the socket, so the next connect is refused."""
    async def main():
        server = await asyncio.get_running_loop().create_server(asyncio.Protocol, "127.0.0.1", 0)
        await asyncio.sleep(0.01)                   # its poll is armed
        return server
    server = deferred_loop.run_until_complete(asyncio.wait_for(main(), TIMEOUT))
    port = server.sockets[0].getsockname()[1]
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT):
        pass        # the poll's readiness: its work waits for the loop's next wait
    server.close()
    probe = socket.socket()
    try:
        with pytest.raises(ConnectionRefusedError):
            probe.connect(("127.0.0.1", port))
    finally:
        probe.close()
    deferred_loop.run_until_complete(asyncio.wait_for(server.wait_closed(), TIMEOUT))
