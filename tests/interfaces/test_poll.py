"""Poll as a drop-in for select.poll, on both backends: the same calls on
fastio and on the stdlib give the same results and exceptions."""

from __future__ import annotations

import os
import select
import threading
import time

import pytest

from fastio import poll as fpoll


def _both(backend):
    return backend.Poll(), select.poll()


def test_register_poll_unregister(backend, sockpair):
    a, b = sockpair
    ours, std = _both(backend)
    for p in (ours, std):
        p.register(a, fpoll.POLLIN | fpoll.POLLOUT)
        p.register(b.fileno(), fpoll.POLLIN)
    assert sorted(ours.poll(0)) == sorted(std.poll(0)) == [(a.fileno(), fpoll.POLLOUT)]
    b.send(b"x")
    assert sorted(ours.poll(0)) == sorted(std.poll(0)) == [(a.fileno(), fpoll.POLLIN | fpoll.POLLOUT)]
    for p in (ours, std):
        p.modify(a, fpoll.POLLIN)
        p.register(b, fpoll.POLLOUT)  # registering again changes the mask
    assert sorted(ours.poll(0)) == sorted(std.poll(0))
    for p in (ours, std):
        p.unregister(a)
    assert ours.poll(0) == std.poll(0) == [(b.fileno(), fpoll.POLLOUT)]


@pytest.mark.parametrize(
    "call",
    [
        lambda p, fd: p.register(fd, -1),
        lambda p, fd: p.register(fd, 65536),
        lambda p, fd: p.register(-1),
        lambda p, fd: p.register("x"),
        lambda p, fd: p.register(fd, "x"),
        lambda p, fd: p.modify(12345, 1),
        lambda p, fd: p.unregister(12345),
        lambda p, fd: p.poll("x"),
        lambda p, fd: p.poll(float("nan")),
    ],
)
def test_errors_match_stdlib(backend, sockpair, call):
    fd = sockpair[0].fileno()
    ours, std = _both(backend)
    with pytest.raises(Exception) as expected:
        call(std, fd)
    with pytest.raises(Exception) as got:
        call(ours, fd)
    assert type(got.value) is type(expected.value)
    assert str(got.value) == str(expected.value)


def test_full_eventmask_range(backend, sockpair):
    a, _ = sockpair
    p = backend.Poll()
    p.register(a, 0xFFFF)
    [(fd, revents)] = p.poll(0)
    assert fd == a.fileno() and revents & fpoll.POLLOUT


def test_closed_fd_reports_pollnval(backend):
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    ours, std = _both(backend)
    for p in (ours, std):
        p.register(r)
    assert ours.poll(0) == std.poll(0) == [(r, fpoll.POLLNVAL)]


def test_pipe_hangup(backend):
    r, w = os.pipe()
    try:
        p = backend.Poll()
        p.register(r, fpoll.POLLIN)
        assert p.poll(0) == []
        os.close(w)
        assert p.poll(0) == [(r, fpoll.POLLHUP)]
    finally:
        os.close(r)


def test_timeouts(backend):
    p = backend.Poll()
    start = time.monotonic()
    assert p.poll(30) == []
    assert time.monotonic() - start >= 0.03
    assert p.poll(0) == []
    assert p.poll(0.5) == []  # fractional milliseconds are accepted


def test_many_fds_and_swap_removal(backend):
    pipes = [os.pipe() for _ in range(40)]
    try:
        p = backend.Poll()
        for r, w in pipes:
            p.register(w, fpoll.POLLOUT)
        for r, w in pipes[::2]:
            p.unregister(w)
        assert sorted(fd for fd, _ in p.poll(0)) == sorted(w for r, w in pipes[1::2])
        with pytest.raises(KeyError):
            p.unregister(pipes[0][1])
    finally:
        for r, w in pipes:
            os.close(r)
            os.close(w)


def test_register_while_another_thread_waits(backend):
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    try:
        p = backend.Poll()
        p.register(r1, fpoll.POLLIN)
        result = []
        t = threading.Thread(target=lambda: result.append(p.poll(5000)))
        t.start()
        time.sleep(0.05)
        p.register(r2, fpoll.POLLIN)  # applies to the next poll()
        with pytest.raises(RuntimeError, match="concurrent poll"):
            p.poll(0)
        os.write(w1, b"x")
        t.join(5)
        assert result == [[(r1, fpoll.POLLIN)]]
        os.write(w2, b"x")
        assert sorted(p.poll(0)) == [(r1, fpoll.POLLIN), (r2, fpoll.POLLIN)]
    finally:
        for fd in (r1, w1, r2, w2):
            os.close(fd)


def test_usable_after_fork_in_child(backend, sockpair):
    """A Poll holds no kernel object, so a forked child may use it (as select.poll)."""
    a, b = sockpair
    p = backend.Poll()
    p.register(a, fpoll.POLLOUT)
    pid = os.fork()
    if pid == 0:
        os._exit(0 if p.poll(0) == [(a.fileno(), fpoll.POLLOUT)] else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_constants_match_stdlib():
    for name in dir(select):
        if name.startswith("POLL"):
            assert getattr(fpoll, name) == getattr(select, name), name
