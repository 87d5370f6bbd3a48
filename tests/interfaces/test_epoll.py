"""Epoll as a drop-in for select.epoll: CPython's test_epoll cases restated on
both backends, plus error parity with the stdlib and sub-millisecond timeouts."""

from __future__ import annotations

import os
import select
import socket
import time

import pytest

from fastio import epoll as fepoll


def _connected_pair():
    server = socket.create_server(("127.0.0.1", 0))
    client = socket.socket()
    client.setblocking(False)
    try:
        client.connect(server.getsockname())
    except BlockingIOError:
        pass
    peer, _ = server.accept()
    server.close()
    return client, peer


@pytest.fixture
def pairs():
    made = []

    def make():
        pair = _connected_pair()
        made.extend(pair)
        return pair

    yield make
    for s in made:
        s.close()


def test_create(backend):
    ep = backend.Epoll(16)
    assert ep.fileno() > 0
    assert not ep.closed
    ep.close()
    assert ep.closed
    with pytest.raises(ValueError, match="closed epoll"):
        ep.fileno()
    with backend.Epoll(flags=fepoll.EPOLL_CLOEXEC) as ep2:
        assert not os.get_inheritable(ep2.fileno())


@pytest.mark.parametrize(
    "args, exc",
    [
        ((-2,), ValueError),
        ((0,), ValueError),
        ((1, 5), OSError),
        (("x",), TypeError),
        ((2**40,), OverflowError),
    ],
)
def test_create_errors_match_stdlib(backend, args, exc):
    with pytest.raises(exc) as std:
        select.epoll(*args)
    with pytest.raises(exc) as ours:
        backend.Epoll(*args)
    assert type(ours.value) is type(std.value)
    if exc in (ValueError, OSError):  # TypeError/OverflowError texts vary across CPython versions
        assert str(ours.value) == str(std.value)


def test_badcreate_keywords(backend):
    with backend.Epoll(sizehint=3, flags=0) as ep:
        assert not ep.closed


def test_context_manager(backend):
    with backend.Epoll(16) as ep:
        assert ep.fileno() > 0
    assert ep.closed
    with pytest.raises(ValueError):
        ep.__enter__()


def test_add_and_errors(backend, pairs):
    client, server = pairs()
    ep = backend.Epoll(2)
    try:
        ep.register(server.fileno(), fepoll.EPOLLIN | fepoll.EPOLLOUT)
        ep.register(client.fileno(), fepoll.EPOLLIN | fepoll.EPOLLOUT)
        # objects with fileno() are accepted too
        c2, s2 = pairs()
        ep.register(s2, fepoll.EPOLLIN)
        with pytest.raises(FileExistsError):
            ep.register(s2)
        with pytest.raises(TypeError, match="fileno"):
            ep.register(object(), fepoll.EPOLLIN)
        with pytest.raises(TypeError):
            ep.register(1.5)
        with pytest.raises(ValueError, match="negative"):
            ep.register(-1, fepoll.EPOLLIN)
        with pytest.raises(TypeError):
            ep.register(c2, "x")
        with pytest.raises(OverflowError):
            ep.register(2**40)
        with pytest.raises(OSError) as info:
            ep.register(10000)
        assert info.value.errno == 9  # EBADF
    finally:
        ep.close()
    with pytest.raises(ValueError, match="closed epoll"):
        ep.register(server.fileno(), fepoll.EPOLLIN)


def test_regular_file_is_refused(backend, tmp_path):
    with open(tmp_path / "f", "w") as f, backend.Epoll() as ep:
        with pytest.raises(PermissionError):
            ep.register(f)


def test_eventmask_is_masked_to_32_bits_like_stdlib(backend, pairs):
    client, _ = pairs()
    with backend.Epoll() as ep:
        ep.register(client, 2**32)  # wraps to 0, as select.epoll does
        ep.modify(client, 2**32 + fepoll.EPOLLOUT)
        assert ep.poll(0) == [(client.fileno(), fepoll.EPOLLOUT)]
        ep.unregister(client)
        with pytest.raises(OSError) as info:
            ep.register(client, -1)  # every bit set: EINVAL from the kernel
        assert info.value.errno == 22


def test_fromfd(backend):
    ep = backend.Epoll(2)
    try:
        ep2 = backend.Epoll.fromfd(ep.fileno())
        assert ep2.fileno() == ep.fileno()
        assert isinstance(ep2, backend.Epoll)
        ep2.close()
        with pytest.raises(OSError) as info:
            ep.poll(1, 4)
        assert info.value.errno == 9
    finally:
        ep.close()


def test_control_and_wait(backend, pairs):
    client, server = pairs()
    with backend.Epoll(16) as ep:
        ep.register(server.fileno(), fepoll.EPOLLIN | fepoll.EPOLLOUT | fepoll.EPOLLET)
        ep.register(client.fileno(), fepoll.EPOLLIN | fepoll.EPOLLOUT | fepoll.EPOLLET)
        events = ep.poll(1, 4)
        expected = [(client.fileno(), fepoll.EPOLLOUT), (server.fileno(), fepoll.EPOLLOUT)]
        assert sorted(events) == sorted(expected)

        # edge-triggered: nothing new until something changes
        assert ep.poll(0.01, 4) == []

        client.send(b"Hello!")
        server.send(b"world!!!")
        time.sleep(0.05)
        events = ep.poll(1, 4)
        expected = [
            (client.fileno(), fepoll.EPOLLIN | fepoll.EPOLLOUT),
            (server.fileno(), fepoll.EPOLLIN | fepoll.EPOLLOUT),
        ]
        assert sorted(events) == sorted(expected)

        ep.unregister(client.fileno())
        ep.modify(server.fileno(), fepoll.EPOLLOUT)
        events = ep.poll(1, 4)
        assert events == [(server.fileno(), fepoll.EPOLLOUT)]


def test_maxevents(backend, pairs):
    with backend.Epoll() as ep:
        socks = [pairs()[0] for _ in range(5)]
        for s in socks:
            ep.register(s, fepoll.EPOLLOUT)
        assert len(ep.poll(0, 2)) == 2
        assert len(ep.poll(0)) == 5
        assert len(ep.poll(0, 600)) == 5  # above the stack buffer
        for bad in (0, -2):
            with pytest.raises(ValueError, match=f"maxevents must be greater than 0, got {bad}"):
                ep.poll(0, bad)


def test_timeout_values(backend):
    with backend.Epoll() as ep:
        assert ep.poll(0) == []
        assert ep.poll(0.0) == []
        assert ep.poll(0.001) == []
        with pytest.raises(TypeError, match="timeout must be an integer or None"):
            ep.poll("x")
        with pytest.raises(ValueError, match="NaN"):
            ep.poll(float("nan"))
        with pytest.raises(OverflowError):
            ep.poll(1e300)


def test_negative_timeout_waits_until_ready(backend, pairs):
    client, server = pairs()
    with backend.Epoll() as ep:
        ep.register(server, fepoll.EPOLLIN)
        client.send(b"x")
        assert ep.poll(-5) == [(server.fileno(), fepoll.EPOLLIN)]
        assert ep.poll(None) == [(server.fileno(), fepoll.EPOLLIN)]


def test_unregister_closed(backend, pairs):
    client, server = pairs()
    fd = server.fileno()
    with backend.Epoll(16) as ep:
        ep.register(server)
        server.close()
        with pytest.raises(OSError) as info:
            ep.unregister(fd)
        assert info.value.errno == 9


def test_unregister_and_modify_unknown(backend, pairs):
    client, _ = pairs()
    with backend.Epoll() as ep:
        with pytest.raises(FileNotFoundError):
            ep.unregister(client)
        with pytest.raises(FileNotFoundError):
            ep.modify(client, fepoll.EPOLLIN)


def test_close_makes_everything_raise(backend, pairs):
    client, _ = pairs()
    ep = backend.Epoll()
    ep.close()
    ep.close()  # idempotent
    for call in (
        lambda: ep.register(client),
        lambda: ep.modify(client, 1),
        lambda: ep.unregister(client),
        lambda: ep.poll(0),
        ep.fileno,
    ):
        with pytest.raises(ValueError, match="I/O operation on closed epoll object"):
            call()


def test_sub_millisecond_timeout(backend):
    """A 0.2 ms timeout must not be rounded up to 1 ms where epoll_pwait2 exists."""
    if not backend.epoll_pwait2_available():
        pytest.skip("epoll_pwait2 is missing (kernel < 5.11) or refused by seccomp here")
    with backend.Epoll() as ep:
        durations = []
        for _ in range(50):
            start = time.perf_counter_ns()
            ep.poll(0.0002)
            durations.append(time.perf_counter_ns() - start)
        durations.sort()
        # the wait happened (at least 0.2 ms) and the best case is well under 1 ms
        assert durations[0] >= 200_000
        assert durations[len(durations) // 4] < 900_000


def test_timeout_is_at_least_asked(backend):
    with backend.Epoll() as ep:
        start = time.monotonic()
        assert ep.poll(0.05) == []
        assert time.monotonic() - start >= 0.05


def test_hup_reported_when_peer_closes(backend, pairs):
    client, server = pairs()
    with backend.Epoll() as ep:
        ep.register(client, fepoll.EPOLLIN | fepoll.EPOLLRDHUP)
        server.close()
        [(fd, events)] = ep.poll(1)
        assert fd == client.fileno()
        assert events & fepoll.EPOLLRDHUP and events & fepoll.EPOLLIN


def test_gil_released_while_waiting(backend, pairs):
    import threading

    client, server = pairs()
    with backend.Epoll() as ep:
        ep.register(server, fepoll.EPOLLIN)
        result = []
        t = threading.Thread(target=lambda: result.append(ep.poll(5)))
        t.start()
        time.sleep(0.05)  # the waiter holds no GIL, or this thread could not run
        client.send(b"x")
        t.join(5)
        assert not t.is_alive()
        assert result == [[(server.fileno(), fepoll.EPOLLIN)]]


def test_constants_match_stdlib():
    for name in dir(select):
        if name.startswith("EPOLL"):
            assert getattr(fepoll, name) == getattr(select, name), name
    for name in ("EPOLLEXCLUSIVE", "EPOLLWAKEUP", "EPOLLONESHOT", "EPOLLET", "EPOLLRDHUP", "EPOLLNVAL"):
        assert name in fepoll.__all__
