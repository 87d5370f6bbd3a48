"""fastio.selectors as a drop-in for the stdlib module, and the epoll flags
the stdlib cannot express (docs/guide/selectors.md)."""

import socket

from fastio import selectors

sel = selectors.DefaultSelector()  # EpollSelector
a, b = socket.socketpair()
with sel, a, b:
    sel.register(a, selectors.EVENT_READ, data="a")
    b.send(b"ping")
    for key, events in sel.select(timeout=1.0):
        print(key.data, key.fileobj.recv(4))  # a b'ping'

    # EPOLLONESHOT: one event, then the fd is disarmed until modify() re-arms it.
    sel.modify(a, selectors.EVENT_READ, data="a", flags=selectors.EPOLLONESHOT)
    b.send(b"one")
    print("first select:", [key.data for key, _ in sel.select(timeout=1.0)])  # ['a']
    print("second select:", [key.data for key, _ in sel.select(timeout=0)])  # []: disarmed, data still unread
    sel.modify(a, selectors.EVENT_READ, data="a")  # re-armed (level-triggered again)
    print("after modify:", [key.data for key, _ in sel.select(timeout=1.0)])  # ['a']
    print("read:", a.recv(3))
