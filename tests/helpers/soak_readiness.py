"""The leak soaks of the readiness interfaces: selectors, epoll, poll and
signal-driven IO (soak_core.py explains the method and runs them)."""

from __future__ import annotations

import errno
import os
import select
import socket
import time

from soak_base import BADFD, Soak, check, closed_fd_number, data_file, raises


# ---- selectors -----------------------------------------------------------------

class SelectorsSoak(Soak):
    """register/modify/unregister/select/get_key/get_map on the three fastio
    selector classes in turn, over socketpairs made readable and drained,
    with the errors the stdlib raises (KeyError, ValueError) mixed in."""

    PAIRS = 8

    def __init__(self, ns, tmp):
        super().__init__(ns, tmp)
        self.pairs = [socket.socketpair() for _ in range(self.PAIRS)]
        for a, b in self.pairs:
            a.setblocking(False)
            b.setblocking(False)
        mod = ns.selectors
        self.classes = [mod.EpollSelector, mod.PollSelector, mod.SelectSelector]
        self.dead = socket.socket()
        self.dead.close()

    def cycle(self):
        import selectors as std

        R, W = std.EVENT_READ, std.EVENT_WRITE
        sel = self.classes[self.cycles % 3]()
        self.cycles += 1
        ops = 1
        try:
            for i, (a, _) in enumerate(self.pairs):
                key = sel.register(a, R, i)
                check(key.fd == a.fileno() and key.data == i, f"register returned {key}")
            ops += self.PAIRS
            ready = sel.select(0)
            ops += 1
            check(ready == [], f"nothing was sent, yet select() says {ready}")
            for _, b in self.pairs[::2]:
                b.send(b"x")
            ready = sel.select(0)
            ops += 1
            check(sorted(k.data for k, ev in ready) == list(range(0, self.PAIRS, 2)), f"select() said {ready}")
            check(all(ev == R for _, ev in ready), f"select() events {ready}")
            for i, (a, _) in enumerate(self.pairs):
                sel.modify(a, R | W, ("m", i))
            ops += self.PAIRS
            ready = sel.select(0)
            ops += 1
            check(len(ready) == self.PAIRS, f"every socket is writable, yet select() said {ready}")
            for a, _ in self.pairs[::2]:
                a.recv(16)
            check(len(sel.get_map()) == self.PAIRS, "get_map() lost keys")
            check(sel.get_key(self.pairs[1][0]).data == ("m", 1), "get_key() data")
            ops += 2
            # the errors, as the stdlib raises them
            a0 = self.pairs[0][0]
            raises(KeyError, sel.register, a0, R)
            raises(ValueError, sel.unregister, self.dead)
            raises(ValueError, sel.register, -1, R)
            raises(ValueError, sel.register, self.dead, R)
            raises(ValueError, sel.register, self.pairs[1][1], 1 << 5)
            raises(KeyError, sel.get_key, self.pairs[1][1])
            raises(KeyError, sel.modify, BADFD, R)
            ops += 7
            for a, _ in self.pairs:
                sel.unregister(a)
            ops += self.PAIRS
            check(not sel.get_map(), "keys left after unregistering all")
        finally:
            sel.close()
        check(sel.get_map() is None, "get_map() of a closed selector")
        ops += 1
        return ops

    def close(self):
        for a, b in self.pairs:
            a.close()
            b.close()


# ---- epoll -------------------------------------------------------------------

class EpollSoak(Soak):
    """Epoll register/modify/unregister/poll with traffic and every errno the
    kernel gives (EEXIST, ENOENT, EBADF, EPERM), close and fromfd."""

    PAIRS = 8

    def __init__(self, ns, tmp):
        super().__init__(ns, tmp)
        self.pairs = [socket.socketpair() for _ in range(self.PAIRS)]
        for a, b in self.pairs:
            a.setblocking(False)
            b.setblocking(False)
        self.regular, _ = data_file(tmp, 16, 1)
        self.ep = ns.Epoll()

    def cycle(self):
        ep = self.ep
        self.cycles += 1
        IN, OUT = select.EPOLLIN, select.EPOLLOUT
        for a, _ in self.pairs:
            ep.register(a, IN)
        ops = self.PAIRS
        check(ep.poll(0) == [], "nothing was sent")
        for _, b in self.pairs[1::2]:
            b.send(b"y")
        got = ep.poll(0)
        ops += 2
        want = {a.fileno() for a, _ in self.pairs[1::2]}
        check({fd for fd, _ in got} == want and all(ev == IN for _, ev in got), f"poll() said {got}")
        got = ep.poll(0, 2)
        ops += 1
        check(len(got) == 2, f"maxevents=2 gave {got}")
        for a, _ in self.pairs:
            ep.modify(a.fileno(), IN | OUT)
        ops += self.PAIRS
        got = ep.poll(0.0)
        ops += 1
        check(len(got) == self.PAIRS, f"all writable, poll() said {got}")
        for a, _ in self.pairs[1::2]:
            a.recv(16)
        a0 = self.pairs[0][0]
        raises(FileExistsError, ep.register, a0, IN)
        raises(FileNotFoundError, ep.modify, self.pairs[0][1], IN)
        raises(FileNotFoundError, ep.unregister, self.pairs[0][1])
        raises(OSError, ep.register, BADFD, IN, errno_=errno.EBADF)
        raises(OSError, ep.register, closed_fd_number(), IN, errno_=errno.EBADF)
        raises(PermissionError, ep.register, self.regular, IN)
        raises(ValueError, ep.register, -1, IN)
        raises(TypeError, ep.register, "3", IN)
        raises(OverflowError, ep.register, 2**40, IN)
        raises(ValueError, ep.poll, 0, 0)
        ops += 10
        for a, _ in self.pairs:
            ep.unregister(a)
        ops += self.PAIRS
        check(ep.poll(0) == [], "events after unregister")
        ops += 1
        if self.cycles % 64 == 0:
            ep.close()
            raises(ValueError, ep.poll, 0)
            raises(ValueError, ep.register, a0, IN)
            raises(ValueError, ep.fileno)
            self.ep = self.ns.Epoll()
            ops += 5
        return ops

    def close(self):
        self.ep.close()
        os.close(self.regular)
        for a, b in self.pairs:
            a.close()
            b.close()


# ---- poll --------------------------------------------------------------------

class PollSoak(Soak):
    """Poll register/modify/unregister/poll with traffic, a closed fd
    (POLLNVAL) and the errors of select.poll (KeyError, FileNotFoundError,
    ValueError, OverflowError, TypeError)."""

    PAIRS = 8

    def __init__(self, ns, tmp):
        super().__init__(ns, tmp)
        self.pairs = [socket.socketpair() for _ in range(self.PAIRS)]
        for a, b in self.pairs:
            a.setblocking(False)
            b.setblocking(False)
        self.p = ns.Poll()

    def cycle(self):
        p = self.p
        self.cycles += 1
        IN, OUT = select.POLLIN, select.POLLOUT
        for a, _ in self.pairs:
            p.register(a, IN)
        ops = self.PAIRS
        check(p.poll(0) == [], "nothing was sent")
        for _, b in self.pairs[::2]:
            b.send(b"z")
        got = p.poll(0)
        ops += 2
        want = {a.fileno() for a, _ in self.pairs[::2]}
        check({fd for fd, _ in got} == want, f"poll() said {got}")
        for a, _ in self.pairs:
            p.modify(a, IN | OUT)
        got = p.poll(0)
        ops += self.PAIRS + 1
        check(len(got) == self.PAIRS, f"all writable: {got}")
        for a, _ in self.pairs[::2]:
            a.recv(16)
        dead = closed_fd_number()
        p.register(dead, IN)
        got = p.poll(0)
        ops += 2
        check((dead, select.POLLNVAL) in got, f"a closed fd gives POLLNVAL: {got}")
        p.unregister(dead)
        raises(FileNotFoundError, p.modify, self.pairs[0][1], IN)
        raises(KeyError, p.unregister, self.pairs[0][1])
        raises(ValueError, p.register, -1, IN)
        raises(OverflowError, p.register, self.pairs[0][1], 1 << 16)
        raises(TypeError, p.register, None, IN)
        raises(TypeError, p.poll, "0")
        ops += 7
        for a, _ in self.pairs:
            p.unregister(a.fileno())
        ops += self.PAIRS
        check(p.poll(0) == [], "events after unregister")
        ops += 1
        if self.cycles % 64 == 0:
            self.p = self.ns.Poll()
            ops += 1
        return ops

    def close(self):
        for a, b in self.pairs:
            a.close()
            b.close()


# ---- signal-driven IO --------------------------------------------------------

class SigioSoak(Soak):
    """SignalIO: add sockets and a pipe, write to make them ready, wait (with
    a timeout) until each is reported, drain, remove; the errors (EEXIST,
    ENOENT, EBADF, EPERM for a regular file, ValueError, TypeError); close
    and make a new one every few cycles."""

    PAIRS = 4

    def __init__(self, ns, tmp):
        super().__init__(ns, tmp)
        self.pairs = [socket.socketpair() for _ in range(self.PAIRS)]
        self.r, self.w = os.pipe()
        self.regular, _ = data_file(tmp, 16, 4)
        self.sio = ns.SignalIO()

    def cycle(self):
        sio = self.sio
        self.cycles += 1
        ends = [a for a, _ in self.pairs] + [self.r]
        for end in ends:
            sio.add(end)
        ops = len(ends)
        # Freshly added, nothing to read: add() polled and found them
        # writable (sockets) or not ready (the pipe's read end).
        first = dict(sio.wait(0))
        ops += 1
        check(set(first) <= {a.fileno() for a, _ in self.pairs}, f"first wait {first}")
        for _, b in self.pairs:
            b.send(b"s")
        os.write(self.w, b"p")
        want = {a.fileno() for a, _ in self.pairs} | {self.r}
        seen: set = set()
        deadline = time.monotonic() + 10
        while not want <= seen:
            check(time.monotonic() < deadline, f"after 10 s only {seen} of {want} reported")
            for fd, band in sio.wait(1.0):
                check(band & select.POLLIN or fd not in want, f"fd {fd} band {band:#x}")
                seen.add(fd)
            ops += 1
        check(seen <= want, f"reported fds that were not added: {seen - want}")
        for a, _ in self.pairs:
            check(a.recv(16) == b"s", "socket data")
        check(os.read(self.r, 16) == b"p", "pipe data")
        a0 = self.pairs[0][0]
        raises(FileExistsError, sio.add, a0)
        raises(FileNotFoundError, sio.remove, self.pairs[0][1])
        raises(OSError, sio.add, BADFD, errno_=errno.EBADF)
        raises(OSError, sio.add, closed_fd_number(), errno_=errno.EBADF)
        raises(PermissionError, sio.add, self.regular)
        raises(ValueError, sio.add, -1)
        raises(TypeError, sio.add, "0")
        raises(ValueError, sio.wait, 0, 0)
        ops += 8
        for end in ends:
            sio.remove(end)
        ops += len(ends)
        check(sio.wait(0) == [], "events for removed fds")
        ops += 1
        if self.cycles % 64 == 0:
            sio.close()
            raises(ValueError, sio.add, a0)
            raises(ValueError, sio.wait, 0)
            raises(ValueError, sio.fileno)
            sio.close()
            self.sio = self.ns.SignalIO()
            ops += 6
        return ops

    def close(self):
        self.sio.close()
        for a, b in self.pairs:
            a.close()
            b.close()
        for fd in (self.r, self.w, self.regular):
            os.close(fd)
