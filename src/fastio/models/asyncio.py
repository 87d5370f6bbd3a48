"""asyncio: an event loop runs callbacks when sockets are ready.

How a read happens: underneath, this is IO multiplexing. The loop blocks in
its selector (epoll here) until some sockets are ready (phase 1, waiting),
then, for each, the transport does a non-blocking ``recv`` (phase 2, copying)
and calls the protocol's ``data_received`` with the bytes. What asyncio adds
is the programming model: callbacks and coroutines instead of a hand-written
loop, at the price of more Python per event.

The echo is a ``Protocol`` (not streams): ``data_received`` calls
``transport.write``, which sends at once and buffers only what the kernel did
not take (sending it when the socket is writable, in order). When that buffer
passes the transport's high-water mark the loop calls ``pause_writing`` and
the protocol stops reading the connection until ``resume_writing``.

Servers: ``asyncio`` (the default ``SelectorEventLoop`` with the standard
library's epoll selector), ``asyncio-fastio`` (``fastio.asyncio.Loop``: the
same loop on ``fastio.selectors.EpollSelector``), ``uvloop`` (libuv's loop,
written in Cython; only when uvloop is installed, which fastio never needs).
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any, Optional, Set

from fastio.models._base import EchoServer

__all__ = ["AsyncioServer", "AsyncioFastioServer", "UvloopServer"]


class _Echo(asyncio.Protocol):
    """Every byte back, as it comes."""

    __slots__ = ("transport", "write", "conns")

    def __init__(self, conns: Set[asyncio.BaseTransport]) -> None:
        self.conns = conns

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.write = transport.write
        self.conns.add(transport)

    def data_received(self, data: bytes) -> None:
        self.write(data)

    def eof_received(self) -> None:
        return None      # close once what is buffered has been sent

    def pause_writing(self) -> None:
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.transport.resume_reading()

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self.conns.discard(self.transport)


class AsyncioServer(EchoServer):
    name = "asyncio"
    model = "asyncio"
    summary = "asyncio default loop (SelectorEventLoop, stdlib epoll selector), Protocol echo"

    def _new_loop(self) -> asyncio.AbstractEventLoop:
        return asyncio.SelectorEventLoop()

    def _serve(self) -> None:
        loop = self._new_loop()
        conns: Set[asyncio.BaseTransport] = set()
        try:
            loop.run_until_complete(self._main(loop, conns))
        finally:
            try:
                for transport in list(conns):
                    transport.abort()
                # let the aborts run their connection_lost (which closes the sockets)
                for _ in range(10):
                    if not conns:
                        break
                    loop.run_until_complete(asyncio.sleep(0))
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    async def _main(self, loop: asyncio.AbstractEventLoop, conns: Set[asyncio.BaseTransport]) -> None:
        listener = self._listener
        assert listener is not None
        stopped = loop.create_future()

        def wake() -> None:
            if not stopped.done():
                stopped.set_result(None)

        # The loop owns a duplicate of the listener (it closes it), the
        # server object keeps the original (closed by stop()).
        sock = listener.dup()
        try:
            if sock.family == socket.AF_UNIX:
                server = await loop.create_unix_server(lambda: _Echo(conns), sock=sock,
                                                       backlog=self.backlog)
            else:
                server = await loop.create_server(lambda: _Echo(conns), sock=sock, backlog=self.backlog)
        except BaseException:
            sock.close()
            raise
        loop.add_reader(self._wake_r, wake)
        try:
            await stopped
        finally:
            loop.remove_reader(self._wake_r)
            server.close()
            for transport in list(conns):
                transport.abort()
            await server.wait_closed()


class AsyncioFastioServer(AsyncioServer):
    name = "asyncio-fastio"
    summary = "fastio.asyncio.Loop (SelectorEventLoop on fastio.selectors.EpollSelector), Protocol echo"
    requires = ("selectors",)

    def _new_loop(self) -> asyncio.AbstractEventLoop:
        from fastio.asyncio import Loop

        return Loop(self._load("selectors").EpollSelector())


class UvloopServer(AsyncioServer):
    name = "uvloop"
    summary = "uvloop (libuv) event loop, Protocol echo; only when uvloop is installed"

    @classmethod
    def why_unavailable(cls, backend: Optional[str] = None) -> Optional[str]:
        try:
            import uvloop  # noqa: F401
        except ImportError:
            return "uvloop is not installed (pip install uvloop; fastio itself never needs it)"
        return None

    def _new_loop(self) -> asyncio.AbstractEventLoop:
        import uvloop

        return uvloop.new_event_loop()
