"""Signal-driven IO (Stevens, UNP vol. 1, 6.2, figure 6.4), with fastio.sigio.

Phase 1 does not need a blocked read or a poll loop: the kernel queues a
signal when the socket becomes readable. SignalIO.add() arms the fd with
fcntl(2): F_SETOWN_EX (this thread), F_SETSIG (a real-time signal, which
carries the fd and the poll band in its siginfo) and O_ASYNC | O_NONBLOCK in
F_SETFL. The signal is blocked with rt_sigprocmask(2) and read from a
signalfd(2) instead of a handler. This script has nothing else to do, so it
sleeps in wait(): ppoll(2) on the signalfd, then read(2) of the queued
siginfo records (the pure backend: poll(2) and readv(2)). Phase 2 blocks as
usual: recvfrom(2) copies the data.

Run: python examples/signal_driven.py
"""

import socket
import threading

from fastio import sigio

MESSAGE = b"hello, world"


def bits(band):
    """The poll(2) bits of a band, by name."""
    names = ("POLLIN", "POLLPRI", "POLLOUT", "POLLERR", "POLLHUP",
             "POLLRDNORM", "POLLWRNORM", "POLLWRBAND")
    return "|".join(n for n in names if band & getattr(sigio, n)) or "0"


a, peer = socket.socketpair()
with a, peer, sigio.SignalIO() as sio:  # signalfd(2), rt_sigprocmask(2)
    sio.add(a)  # fcntl(2): F_SETOWN_EX, F_SETSIG, F_SETFL O_ASYNC|O_NONBLOCK
    a.setblocking(False)  # tell Python's socket object that the fd is non-blocking now
    # The kernel signals changes, not states; add() reports the state the fd
    # had when added (writable, nothing to read) at the next wait().
    for fd, band in sio.wait(0):
        print(f"armed fd {fd} with signal {sio.signum}; state when added: {bits(band)}")

    sender = threading.Timer(0.2, peer.sendall, (MESSAGE,))  # the peer sends in 0.2 s
    sender.start()
    print("waiting: SignalIO.wait() sleeps until the kernel queues the signal ...")
    data = None
    while data is None:
        events = sio.wait(timeout=5.0)  # each entry is (fd, band) from one signal's siginfo
        if not events:
            raise TimeoutError("no signal within 5 s")
        for fd, band in events:
            print(f"signal: fd {fd}, band {band:#x} = {bits(band)}")
            if fd == a.fileno() and band & sigio.POLLIN:
                data = a.recv(1024)  # phase 2: recvfrom(2) copies
    print(f"copied {len(data)} bytes: {data!r}")
    sender.join()
    sio.remove(a)  # flags, owner and signal of the fd back as they were
