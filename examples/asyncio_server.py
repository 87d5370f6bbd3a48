"""An asyncio echo server written the ordinary way, on fastio.asyncio.Loop.

The server is a plain asyncio.Protocol whose data_received calls
transport.write; nothing in it names fastio except the call that runs it.
On the "uring" engine each turn of the loop is one io_uring_enter(2): the
connection's bytes arrive through a multishot recv into the loop's provided
buffers (no recv(2) per read) and the reply is one sendto(2). On "epoll" the
loop waits in epoll_pwait2(2) and the transport calls recvfrom(2). Three
clients, run as asyncio streams on the same loop, each send a few messages
and check the echo; then the server closes.

Run: python examples/asyncio_server.py     (FASTIO_LOOP_ENGINE=epoll for the other engine)
"""

import asyncio

import fastio.asyncio


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


async def client(port, name):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for i in range(3):
        message = f"{name} says {i}".encode()
        writer.write(message)
        await writer.drain()
        echoed = await asyncio.wait_for(reader.readexactly(len(message)), timeout=5.0)
        assert echoed == message, (echoed, message)
    writer.close()
    await writer.wait_closed()
    return name


async def main():
    loop = asyncio.get_running_loop()
    engine = getattr(loop, "engine", None)
    print(f"event loop: {type(loop).__module__}.{type(loop).__qualname__}"
          + (f", engine {engine} ({loop.engine_reason})" if engine else ""))
    server = await loop.create_server(Echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print(f"serving on 127.0.0.1:{port}")
    done = await asyncio.gather(*(client(port, f"client {k}") for k in range(3)))
    print(f"echoed 3 messages to each of: {', '.join(done)}")
    server.close()
    await server.wait_closed()
    print("server closed")


fastio.asyncio.run(main())
