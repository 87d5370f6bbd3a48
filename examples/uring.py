"""Asynchronous IO (Stevens, UNP vol. 1, 6.2, figure 6.5), with fastio.uring.

The process blocks in neither phase. It asks for a read and goes on; the
kernel waits for the data (phase 1) *and* copies it into the process's
buffer (phase 2), then posts a completion. Only collecting that completion
is left to the process.

Syscalls: io_uring_setup(2) makes the ring, and mmap(2) shares its
submission and completion queues with the process. prep_recv() writes a
request (an SQE) into shared memory without a syscall. submit() is one
io_uring_enter(2), which returns at once. wait() first looks at the
completion queue, also shared memory; only when it is empty does it sleep in
io_uring_enter(2) with IORING_ENTER_GETEVENTS. Here the completion is
already there, so reaping it takes no syscall at all.

Run: python examples/uring.py
"""

import socket
import threading
import time

from fastio import uring

MESSAGE = b"hello, world"

if not uring.available():  # e.g. kernel.io_uring_disabled, or a container's seccomp profile
    print(f"skipped: io_uring is not available here: {uring.why_unavailable()}")
    raise SystemExit(0)

a, peer = socket.socketpair()
buf = bytearray(1024)  # the kernel will copy into this buffer
with a, peer, uring.Ring(8) as ring:  # io_uring_setup(2) + mmap(2)
    ring.prep_recv(a, buf, user_data="recv on a")  # IORING_OP_RECV: queued, no syscall yet
    print(f"submitted {ring.submit()} request; io_uring_enter(2) returned at once")

    sender = threading.Timer(0.2, peer.sendall, (MESSAGE,))  # the peer sends in 0.2 s
    sender.start()
    print("waiting: not us, the kernel waits for the data and copies it into buf ...")
    time.sleep(0.5)  # the process is free: this stands for other work; no read is called
    sender.join()
    print(f"meanwhile: buf starts with {bytes(buf[:len(MESSAGE)])!r}, "
          f"completions in the ring: {ring.cq_ready}")

    done = ring.wait(1, timeout=5.0)  # reap the completion (a CQE)
    if not done:
        raise TimeoutError("no completion within 5 s")
    n = done[0].result()  # res: bytes received (a negative errno would raise here)
    print(f"completion {done[0].user_data!r}: res={done[0].res}")
    print(f"copied {n} bytes: {bytes(buf[:n])!r}")
