"""asyncio: an event loop runs callbacks when sockets are ready.

How a read happens: underneath, this is IO multiplexing. The loop blocks in
its selector (epoll here) until some sockets are ready (phase 1, waiting),
then, for each, the transport does a non-blocking ``recv`` (phase 2, copying)
and calls the protocol's ``data_received`` with the bytes. What asyncio adds
is the programming model: callbacks and coroutines instead of a hand-written
loop, at the price of more Python per event.

The echo is a protocol (not streams) whose callback calls
``transport.write``, which sends at once and buffers only what the kernel did
not take (sending it when the socket is writable, in order). When that buffer
passes the transport's high-water mark the loop calls ``pause_writing`` and
the protocol stops reading the connection until ``resume_writing``. On the
standard library's loop the protocol is a ``BufferedProtocol``: the loop
reads into the server's buffer (``get_buffer``/``buffer_updated``) and the
echo writes a copy of the bytes read. With a plain ``Protocol`` the loop
would allocate ``max_size`` (256 KiB) for every ``recv``, which glibc serves
with ``mmap``/``mremap``/``munmap``: three more system calls per read, more
than doubling the cost of an echo. uvloop reads into its own buffer and
hands over exact-size bytes, so it keeps the plain ``Protocol``
(``data_received``), its fastest path.

Servers: ``asyncio`` (the default ``SelectorEventLoop`` with the standard
library's epoll selector), ``asyncio-fastio`` (``fastio.asyncio.SelectorLoop``: the
same loop on ``fastio.selectors.EpollSelector``), ``asyncio-fastio-uring`` and
``asyncio-fastio-epoll`` (``fastio.asyncio.Loop``, the compiled loop, on each of
its engines), ``uvloop`` (libuv's loop,
written in Cython; only when uvloop is installed, which fastio never needs).
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any, Optional, Set

from fastio.models._base import BUFFER_SIZE, EchoServer

__all__ = ["AsyncioServer", "AsyncioFastioServer", "AsyncioCompiledServer", "AsyncioCompiledEpollServer",
           "UvloopServer"]


class _Echo(asyncio.Protocol):
    """Every byte back, as it comes (``data_received``)."""

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


class _BufferedEcho(asyncio.BufferedProtocol):
    """Every byte back, as it comes, read into a buffer of the server's
    (``get_buffer``/``buffer_updated``): no per-read allocation of
    ``max_size`` (256 KiB) bytes, which glibc serves with mmap/munmap."""

    __slots__ = ("transport", "write", "conns", "buf")

    def __init__(self, conns: Set[asyncio.BaseTransport], buf: bytearray) -> None:
        self.conns = conns
        self.buf = buf

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.write = transport.write
        self.conns.add(transport)

    def get_buffer(self, sizehint: int) -> bytearray:
        return self.buf

    def buffer_updated(self, nbytes: int) -> None:
        # a copy: the transport may keep what it could not send yet, and
        # the buffer is reused by the next read
        self.write(self.buf[:nbytes])

    def eof_received(self) -> None:
        return None

    def pause_writing(self) -> None:
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.transport.resume_reading()

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self.conns.discard(self.transport)


class AsyncioServer(EchoServer):
    name = "asyncio"
    model = "asyncio"
    summary = "asyncio default loop (SelectorEventLoop, stdlib epoll selector), BufferedProtocol echo"
    #: BufferedProtocol (True) or Protocol (False); see the module docstring
    buffered = True

    def _new_loop(self) -> asyncio.AbstractEventLoop:
        return asyncio.SelectorEventLoop()

    def _serve(self) -> None:
        loop = self._new_loop()
        conns: Set[asyncio.BaseTransport] = set()
        try:
            loop.run_until_complete(self._main(loop, conns))
        finally:
            try:
                # Interrupted (Ctrl-C in serve_forever): _main is still
                # pending; cancelling it runs its finally (server closed).
                tasks = asyncio.all_tasks(loop)
                for task in tasks:
                    task.cancel()
                if tasks:
                    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
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
        if self.buffered:
            buf = bytearray(BUFFER_SIZE)      # one for all: the loop reads one at a time

            def factory() -> asyncio.BaseProtocol:
                return _BufferedEcho(conns, buf)
        else:
            def factory() -> asyncio.BaseProtocol:
                return _Echo(conns)
        try:
            if sock.family == socket.AF_UNIX:
                server = await loop.create_unix_server(factory, sock=sock, backlog=self.backlog)
            else:
                server = await loop.create_server(factory, sock=sock, backlog=self.backlog)
        except BaseException:
            sock.close()
            raise
        loop.add_reader(self._wake_r, wake)
        self._serving()
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
    summary = "fastio.asyncio.SelectorLoop (SelectorEventLoop on fastio.selectors.EpollSelector), BufferedProtocol echo"
    requires = ("selectors",)

    def _new_loop(self) -> asyncio.AbstractEventLoop:
        from fastio.asyncio import SelectorLoop

        return SelectorLoop(self._load("selectors").EpollSelector())


class AsyncioCompiledServer(AsyncioServer):
    """``fastio.asyncio.Loop``, the compiled loop, on one engine. Its transport
    reads into the loop's own buffers (uring: provided buffers of a multishot
    recv; epoll: one buffer of the loop's) and hands over exact-size bytes,
    so the echo is the plain ``Protocol``, as for uvloop."""

    name = "asyncio-fastio-uring"
    summary = "fastio.asyncio.Loop (compiled scheduler) on its io_uring engine, Protocol echo"
    buffered = False
    engine = "uring"
    backends = ("c",)

    @classmethod
    def why_unavailable(cls, backend: Optional[str] = None) -> Optional[str]:
        from fastio import _backend

        if (backend or _backend.name()) not in cls.backends:
            return "the compiled loop is part of the compiled backend"
        if cls.engine == "uring":
            from fastio import uring

            if not uring.available():
                return uring.why_unavailable()
        return None

    def _new_loop(self) -> asyncio.AbstractEventLoop:
        from fastio.asyncio._loop import Loop

        return Loop(engine=self.engine)


class AsyncioCompiledEpollServer(AsyncioCompiledServer):
    name = "asyncio-fastio-epoll"
    summary = "fastio.asyncio.Loop (compiled scheduler) on its epoll engine, Protocol echo"
    engine = "epoll"


class UvloopServer(AsyncioServer):
    name = "uvloop"
    summary = "uvloop (libuv) event loop, Protocol echo; only when uvloop is installed"
    buffered = False

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
