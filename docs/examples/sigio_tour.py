"""fastio.sigio.SignalIO: the kernel names the ready fd in a queued
real-time signal (docs/guide/sigio.md)."""

import fcntl
import os
import socket

from fastio import sigio

a, b = socket.socketpair()
with a, b:
    with sigio.SignalIO() as sio:  # picks a free real-time signal: sio.signum
        sio.add(a)  # a is now O_ASYNC | O_NONBLOCK
        print("state when added:", sio.wait(0))  # [(a.fileno(), POLLOUT|...)]
        b.send(b"ping")
        for fd, band in sio.wait(timeout=1.0):
            if band & sigio.POLLIN:
                print(fd == a.fileno(), a.recv(4))  # True b'ping'
        sio.remove(a)
    # flags, owner and signal of `a` and the thread's signal mask are back as they were
    flags = fcntl.fcntl(a, fcntl.F_GETFL)
    print("O_ASYNC and O_NONBLOCK off again:", flags & (os.O_ASYNC | os.O_NONBLOCK) == 0)
