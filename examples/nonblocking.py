"""Non-blocking IO (Stevens, UNP vol. 1, 6.2, figure 6.2).

Phase 1 is polling. With O_NONBLOCK set, a recvfrom(2) on an empty socket
returns at once with EAGAIN (BlockingIOError in Python) instead of sleeping.
The process is free to do something else, but it has to ask again and again.
Phase 2 still blocks: once data is there, the recvfrom(2) that finds it
copies it into the process before it returns.

fastio has nothing to add here (O_NONBLOCK is a flag of the socket), so this
script uses the stdlib socket module only.

Run: python examples/nonblocking.py
"""

import socket
import threading
import time

MESSAGE = b"hello, world"

# A loopback TCP connection: socket(2), bind(2), listen(2), connect(2), accept4(2).
with socket.create_server(("127.0.0.1", 0)) as server:
    client = socket.create_connection(server.getsockname())
    peer, _ = server.accept()

with client, peer:
    client.setblocking(False)  # O_NONBLOCK (CPython sets it with ioctl(FIONBIO))
    sender = threading.Timer(0.2, peer.sendall, (MESSAGE,))  # the peer sends in 0.2 s
    sender.start()

    print("waiting: asking with recvfrom(2) until the data is there ...")
    eagain = 0
    deadline = time.monotonic() + 5.0  # bounded: give up after 5 s
    while True:
        try:
            data = client.recv(1024)  # phase 2 when the data is there: copy it
            break
        except BlockingIOError:  # EAGAIN: nothing yet, the call returned at once
            eagain += 1
            if time.monotonic() > deadline:
                raise TimeoutError("no data within 5 s") from None
            # Free to do other work here. Without this sleep the loop would
            # spin a whole CPU asking the kernel.
            time.sleep(0.01)
    print(f"recvfrom(2) answered EAGAIN {eagain} times, then found data")
    print(f"copied {len(data)} bytes: {data!r}")
    sender.join()
