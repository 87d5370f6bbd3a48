"""IO under asyncio, with the fastio.asyncio event loop.

A coroutine that awaits a read does not block: it is suspended, and the
thread goes back to the event loop. The loop is one wait over every socket it
serves. fastio.asyncio.Loop has its scheduler in C and waits on one of two
kernel engines: "uring", where each turn is one io_uring_enter(2) that
submits the turn's requests (a poll of each socket it watches) and waits for
the first completion, or "epoll", where it is one epoll_pwait2(2). When the
socket is readable, the loop's transport calls recvfrom(2) (phase 2, the
copy) and hands the bytes to the waiting coroutine, which resumes. On the
pure-Python backend the loop is SelectorLoop, the stdlib's SelectorEventLoop
on fastio's selector. Stevens' model 3, with the wait and the copy hidden
behind `await`.

Run: python examples/asyncio_loop.py
"""

import asyncio
import socket
import threading
import time

import fastio.asyncio

MESSAGE = b"hello, world"


def peer(listener):
    # The peer, in another thread with plain blocking sockets: accept the
    # connection, send the message 0.2 s later, close.
    conn, _ = listener.accept()
    with conn:
        time.sleep(0.2)
        conn.sendall(MESSAGE)


async def main():
    loop = asyncio.get_running_loop()
    print(f"event loop: {type(loop).__module__}.{type(loop).__qualname__}")
    engine = getattr(loop, "engine", None)
    if engine is not None:
        print(f"engine: {engine} ({loop.engine_reason})")
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(5.0)  # bounds the peer's accept()
        sender = threading.Thread(target=peer, args=(listener,))
        sender.start()
        reader, writer = await asyncio.open_connection(*listener.getsockname())
        print("waiting: the coroutine is suspended; the loop sleeps in the kernel ...")
        data = await asyncio.wait_for(reader.read(1024), timeout=5.0)
        print(f"copied {len(data)} bytes: {data!r}")
        writer.close()
        await writer.wait_closed()
        sender.join()


fastio.asyncio.run(main())
