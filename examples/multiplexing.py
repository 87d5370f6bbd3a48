"""IO multiplexing (Stevens, UNP vol. 1, 6.2, figure 6.3), with fastio.epoll.

Phase 1 blocks, but in one wait over many fds: the process sleeps in
epoll_pwait2(2) (epoll_wait(2) on kernels before 5.11) until any registered
socket is readable. Phase 2 is a separate call and blocks too: recvfrom(2)
copies the data of the socket the wait named. Two syscalls per read instead
of one, but one thread serves any number of connections.

Run: python examples/multiplexing.py
"""

import socket
import threading

from fastio import epoll, selectors

MESSAGE = b"hello, world"

# Two connections. The peer writes to one of them: the second in part 1, the
# first in part 2.
a, a_peer = socket.socketpair()
b, b_peer = socket.socketpair()
socks = {a.fileno(): a, b.fileno(): b}

with a, a_peer, b, b_peer:
    # 1. fastio.epoll.Epoll: a drop-in for select.epoll.
    with epoll.Epoll() as ep:  # epoll_create1(2)
        ep.register(a, epoll.EPOLLIN)  # epoll_ctl(2) EPOLL_CTL_ADD, once per fd
        ep.register(b, epoll.EPOLLIN)
        sender = threading.Timer(0.2, b_peer.sendall, (MESSAGE,))
        sender.start()
        print("waiting: Epoll.poll() blocks in epoll_pwait2(2) over 2 sockets ...")
        events = ep.poll(timeout=5.0)  # phase 1: the one wait
        sender.join()
        if not events:
            raise TimeoutError("nothing readable within 5 s")
        for fd, mask in events:
            which = "second" if fd == b.fileno() else "first"
            print(f"ready: fd {fd}, the {which} socket, events {mask:#x} (EPOLLIN)")
            data = socks[fd].recv(1024)  # phase 2: recvfrom(2) copies
            print(f"copied {len(data)} bytes: {data!r}")

    # 2. fastio.selectors: the drop-in for the stdlib module. Same epoll
    # syscalls, with the stdlib's SelectorKey API on top.
    with selectors.DefaultSelector() as sel:  # EpollSelector
        sel.register(a, selectors.EVENT_READ, data="first")
        sel.register(b, selectors.EVENT_READ, data="second")
        sender = threading.Timer(0.2, a_peer.sendall, (MESSAGE,))
        sender.start()
        print("waiting: DefaultSelector.select() blocks in epoll_pwait2(2) ...")
        ready = sel.select(timeout=5.0)
        sender.join()
        if not ready:
            raise TimeoutError("nothing readable within 5 s")
        for key, _ in ready:
            data = key.fileobj.recv(1024)  # phase 2
            print(f"ready: the {key.data} socket; copied {len(data)} bytes: {data!r}")
