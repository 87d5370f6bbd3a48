"""The asyncio loop's leak soak (soak_core.py explains the method and runs it).

On the compiled backend it drives ``fastio.asyncio.Loop`` on each engine the
kernel allows (uring and epoll, alternately); on the pure backend
``SelectorLoop`` on the pure selector. Each cycle: echoes through ``Protocol``
transports (the uring engine's multishot recv) with a pause and resume, a
connection opened and closed, ``sock_sendall``/``sock_recv``, timers set and
cancelled, and a call from another thread."""

from __future__ import annotations

import asyncio
import socket
import threading

from soak_base import Soak, check

TIMEOUT = 5.0


class _Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


def _loops(ns) -> list:
    if ns.name != "c":
        from fastio.asyncio import SelectorLoop

        return [SelectorLoop(ns.EpollSelector())]
    from fastio.asyncio._loop import Loop

    engines = ["epoll"] + (["uring"] if ns.uring.available() else [])
    return [Loop(engine=engine) for engine in engines]


class AsyncioSoak(Soak):
    PAIRS = 4
    MESSAGES = 4

    def __init__(self, ns, tmp):
        super().__init__(ns, tmp)
        self.loops = _loops(ns)
        self.state = []
        for loop in self.loops:
            pairs = [socket.socketpair() for _ in range(self.PAIRS)]
            transports = [loop.run_until_complete(loop.connect_accepted_socket(_Echo, a))[0]
                          for a, _ in pairs]
            for _, b in pairs:
                b.setblocking(False)
            self.state.append((pairs, transports))

    def cycle(self):
        k = self.cycles % len(self.loops)
        self.cycles += 1
        loop = self.loops[k]
        pairs, transports = self.state[k]
        return loop.run_until_complete(asyncio.wait_for(self._cycle(loop, pairs, transports), TIMEOUT))

    async def _cycle(self, loop, pairs, transports):
        ops = 0
        size = self.rng.randrange(1, 3000)
        for i, (_, b) in enumerate(pairs):
            if i == 0:
                transports[0].pause_reading()
            for _ in range(self.MESSAGES):
                await loop.sock_sendall(b, bytes([i]) * size)
            if i == 0:
                await asyncio.sleep(0)
                transports[0].resume_reading()
            ops += self.MESSAGES
        for i, (_, b) in enumerate(pairs):
            got = bytearray()
            while len(got) < size * self.MESSAGES:
                chunk = await loop.sock_recv(b, 65536)
                check(chunk != b"", "an echo connection closed")
                got += chunk
            check(got == bytes([i]) * (size * self.MESSAGES), f"echo {i} came back wrong")
        # A connection opened and closed.
        a, b = socket.socketpair()
        b.setblocking(False)
        transport, _ = await loop.connect_accepted_socket(_Echo, a)
        await loop.sock_sendall(b, b"ping")
        check(await loop.sock_recv(b, 4) == b"ping", "a new connection did not echo")
        transport.close()
        await asyncio.sleep(0)
        b.close()
        ops += 3
        # sock_* on a pair of their own.
        c, d = socket.socketpair()
        c.setblocking(False)
        d.setblocking(False)
        await loop.sock_sendall(c, b"x" * 1000)
        got = b""
        while len(got) < 1000:
            got += await loop.sock_recv(d, 1000)
        check(got == b"x" * 1000, "sock_recv got the wrong bytes")
        c.close()
        d.close()
        ops += 2
        # Timers, some cancelled, and a call from another thread.
        fired = []
        handles = [loop.call_later(0.0002 * (j % 3), fired.append, j) for j in range(6)]
        for h in handles[::2]:
            h.cancel()
        done = loop.create_future()
        threading.Thread(target=loop.call_soon_threadsafe, args=(done.set_result, None)).start()
        await done
        await asyncio.sleep(0.001)
        check(sorted(fired) == [1, 3, 5], f"timers fired {fired}")
        return ops + 7

    def close(self):
        for loop, (pairs, transports) in zip(self.loops, self.state):
            for t in transports:
                t.close()
            loop.run_until_complete(asyncio.sleep(0))
            loop.close()
            for a, b in pairs:
                a.close()
                b.close()
