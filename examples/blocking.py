"""Blocking IO (Stevens, UNP vol. 1, 6.2, figure 6.1).

The process blocks in both phases of the read. One recvfrom(2) puts the
thread to sleep until data arrives (phase 1, wait for the data). The kernel
then copies the data from the socket buffer into the process (phase 2), and
only after that does the call return.

fastio has nothing to add here: blocking is the default of every socket. So
this script uses the stdlib socket module only, as the baseline the other
models are compared with.

Run: python examples/blocking.py
"""

import signal
import socket
import threading
import time

MESSAGE = b"hello, world"

# Safety net: a blocking recv() has no timeout. If the peer never sent,
# SIGALRM would end the script after 10 s instead of letting it hang.
signal.alarm(10)

# A loopback TCP connection: socket(2), bind(2), listen(2), connect(2), accept4(2).
with socket.create_server(("127.0.0.1", 0)) as server:
    client = socket.create_connection(server.getsockname())
    peer, _ = server.accept()

with client, peer:
    # The peer: another thread sends the message 0.2 s from now.
    sender = threading.Timer(0.2, peer.sendall, (MESSAGE,))
    sender.start()

    # Phases 1 and 2 in one call. Without a socket timeout, CPython issues a
    # single recvfrom(2) and the kernel keeps the thread asleep until the
    # data is there and copied.
    print("waiting: recv() blocks in recvfrom(2) until the peer sends ...")
    start = time.monotonic()
    data = client.recv(1024)
    print(f"recv() returned after {time.monotonic() - start:.2f} s, both phases done")
    print(f"copied {len(data)} bytes: {data!r}")
    sender.join()

signal.alarm(0)
