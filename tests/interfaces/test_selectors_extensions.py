"""What fastio's selectors do beyond the stdlib's, on both backends:
EpollSelector's ``flags`` (EPOLLONESHOT, EPOLLET, EPOLLEXCLUSIVE), which the
stdlib lacks, and the deliberate differences and regressions that have no
stdlib twin to compare with (test_selectors.py compares call by call)."""

from __future__ import annotations

import select
import selectors
import socket

import pytest

from fastio.selectors import EPOLLET, EPOLLEXCLUSIVE, EPOLLONESHOT, EVENT_READ, EVENT_WRITE

BOTH = EVENT_READ | EVENT_WRITE


def readable(pair):
    """Make ``pair[0]`` readable by sending it a byte."""
    pair[1].send(b"x")


# -- EpollSelector's flags (fastio only) ---------------------------------------


@pytest.fixture
def esel(backend):
    sel = backend.EpollSelector()
    yield sel
    sel.close()


def _ready(sel):
    return sorted((key.data, events) for key, events in sel.select(0))


def test_oneshot(esel, pairs):
    a, b = pairs()
    key = esel.register(a, EVENT_READ, "a", flags=EPOLLONESHOT)
    assert key == (a, a.fileno(), EVENT_READ, "a")
    assert _ready(esel) == []
    readable((a, b))
    assert _ready(esel) == [("a", EVENT_READ)]
    assert _ready(esel) == []  # disarmed, though still readable
    assert esel.get_key(a) == key
    # re-armed by modify with unchanged events and data
    assert esel.modify(a, EVENT_READ, "a") == key
    assert _ready(esel) == [("a", EVENT_READ)]
    assert _ready(esel) == []
    # modify keeps the flag when flags is not given
    esel.modify(a, BOTH, "both")
    assert _ready(esel) == [("both", BOTH)]
    assert _ready(esel) == []
    assert esel.unregister(a).data == "both"


def test_edge_triggered(esel, pairs):
    a, b = pairs()
    esel.register(a, EVENT_READ, "a", flags=EPOLLET)
    assert _ready(esel) == []
    readable((a, b))
    assert _ready(esel) == [("a", EVENT_READ)]
    assert _ready(esel) == []  # still readable, no new edge
    readable((a, b))
    assert _ready(esel) == [("a", EVENT_READ)]
    assert _ready(esel) == []
    assert a.recv(10) == b"xx"


def test_level_triggered_by_default(esel, pairs):
    a, b = pairs()
    esel.register(a, EVENT_READ, "a")
    readable((a, b))
    assert _ready(esel) == [("a", EVENT_READ)]
    assert _ready(esel) == [("a", EVENT_READ)]


def test_exclusive(esel, pairs):
    a, b = pairs()
    key = esel.register(a, EVENT_READ, "a", flags=EPOLLEXCLUSIVE)
    assert key == (a, a.fileno(), EVENT_READ, "a")
    assert _ready(esel) == []
    readable((a, b))
    assert _ready(esel) == [("a", EVENT_READ)]
    # EPOLL_CTL_MOD is refused for an exclusive registration; modify still works
    assert esel.modify(a, BOTH, "both") == (a, a.fileno(), BOTH, "both")
    assert _ready(esel) == [("both", BOTH)]
    assert esel.modify(a, EVENT_WRITE, "w", flags=EPOLLEXCLUSIVE).events == EVENT_WRITE
    assert _ready(esel) == [("w", EVENT_WRITE)]
    # dropping the flag
    assert esel.modify(a, EVENT_READ, "r", flags=0).data == "r"
    assert _ready(esel) == [("r", EVENT_READ)]
    assert esel.unregister(a).data == "r"
    assert _ready(esel) == []
    # and registering again is allowed: nothing left in the kernel
    esel.register(a, EVENT_READ, "again")
    assert _ready(esel) == [("again", EVENT_READ)]


def test_exclusive_with_oneshot_refused_by_kernel(esel, pairs):
    """EPOLLEXCLUSIVE | EPOLLONESHOT is EINVAL (epoll_ctl(2)); the key is rolled back."""
    a, _ = pairs()
    with pytest.raises(OSError) as info:
        esel.register(a, EVENT_READ, flags=EPOLLEXCLUSIVE | EPOLLONESHOT)
    assert info.value.errno == 22
    assert len(esel.get_map()) == 0
    esel.register(a, EVENT_WRITE, "w")
    assert _ready(esel) == [("w", EVENT_WRITE)]


@pytest.mark.parametrize("flags", [select.EPOLLIN, select.EPOLLOUT, -1, "x", 1.5, None, EPOLLET | select.EPOLLIN])
def test_invalid_flags(esel, pairs, flags):
    a, b = pairs()
    with pytest.raises(ValueError, match="invalid epoll flags"):
        esel.register(a, EVENT_READ, flags=flags)
    assert len(esel.get_map()) == 0
    key = esel.register(a, EVENT_READ, "a", flags=EPOLLONESHOT)
    if flags is None:
        # None means "keep" in modify
        assert esel.modify(a, EVENT_READ, "a", flags=flags) == key
        return
    with pytest.raises(ValueError, match="invalid epoll flags"):
        esel.modify(a, EVENT_WRITE, "b", flags=flags)
    assert esel.get_key(a) == key
    readable((a, b))
    assert _ready(esel) == [("a", EVENT_READ)]
    assert _ready(esel) == []  # still one-shot


@pytest.mark.parametrize("flag", [EPOLLONESHOT, EPOLLET])
def test_modify_flags_zero_clears_flags(esel, pairs, flag):
    a, b = pairs()
    esel.register(a, EVENT_READ, "a", flags=flag)
    readable((a, b))
    assert _ready(esel) == [("a", EVENT_READ)]
    assert _ready(esel) == []
    esel.modify(a, EVENT_READ, "a", flags=0)
    assert _ready(esel) == [("a", EVENT_READ)]
    assert _ready(esel) == [("a", EVENT_READ)]  # level-triggered again
    esel.modify(a, EVENT_READ, "a")  # flags=None keeps "no flags"
    assert _ready(esel) == [("a", EVENT_READ)]
    assert _ready(esel) == [("a", EVENT_READ)]


def test_modify_adds_flags(esel, pairs):
    a, b = pairs()
    esel.register(a, EVENT_READ, "a")
    readable((a, b))
    assert _ready(esel) == [("a", EVENT_READ)]
    esel.modify(a, EVENT_READ, "a", flags=EPOLLONESHOT)
    assert _ready(esel) == [("a", EVENT_READ)]
    assert _ready(esel) == []


def test_flags_forgotten_after_unregister(esel, pairs):
    a, b = pairs()
    esel.register(a, EVENT_READ, "a", flags=EPOLLONESHOT)
    esel.unregister(a)
    esel.register(a, EVENT_READ, "a")
    readable((a, b))
    assert _ready(esel) == [("a", EVENT_READ)]
    assert _ready(esel) == [("a", EVENT_READ)]


def test_select_selector_close_forgets_fds(backend):
    """Deliberately unlike the stdlib, whose SelectSelector.close() keeps its
    reader/writer sets: after close() fastio selects nothing, so a registered
    fd closed since cannot make select() fail with EBADF."""
    a, b = socket.socketpair()
    sel = backend.SelectSelector()
    sel.register(a, selectors.EVENT_READ)
    b.send(b"x")
    sel.close()
    a.close()
    b.close()
    assert sel.select(0) == []
    assert sel.get_map() is None


@pytest.mark.parametrize("cls", ["EpollSelector", "PollSelector", "SelectSelector"])
def test_close_from_another_thread_while_select_waits(backend, cls):
    """Regression: PollSelector.close() replaced the Poll object a waiting
    select() was still inside (a use-after-free once ppoll returned). The wait
    must end normally, and the selector is closed."""
    import threading
    import time

    a, b = socket.socketpair()
    sel = getattr(backend, cls)()
    try:
        sel.register(a, selectors.EVENT_READ)
        result = []
        t = threading.Thread(target=lambda: result.append(sel.select(2)))
        t.start()
        time.sleep(0.05)
        sel.close()
        b.send(b"x")  # wakes a poll/select still watching a; epoll keeps its own reference
        t.join(5)
        assert not t.is_alive()
        assert result and all(key.fileobj is a for key, _ in result[0])
        assert sel.get_map() is None
    finally:
        sel.close()
        a.close()
        b.close()


@pytest.mark.parametrize("fd, exc", [(2**31, OverflowError), (10**6, ValueError)])
def test_select_selector_fd_out_of_range_errors_as_the_stdlib(backend, fd, exc):
    """Regression (found by tests/state/test_selectors_state.py): with an fd beyond
    a C int registered, the compiled SelectSelector's select() raised
    ValueError where select.select() raises OverflowError (beyond FD_SETSIZE
    only: ValueError, as before)."""
    for cls in (backend.SelectSelector, selectors.SelectSelector):
        sel = cls()
        try:
            sel.register(fd, EVENT_READ)
            with pytest.raises(exc):
                sel.select(0)
        finally:
            sel.close()


@pytest.mark.parametrize("timeout, exc", [(float("inf"), OverflowError), (float("nan"), ValueError),
                                          ("1", TypeError), (1e20, ValueError)])
def test_closed_epoll_selector_errors_in_the_stdlib_order(backend, timeout, exc):
    """Regression (found by tests/state/test_selectors_state.py): a closed
    EpollSelector judged the timeout before saying it was closed. The stdlib
    first does its own arithmetic on the timeout (TypeError, math.ceil's
    OverflowError or ValueError), then epoll.poll() says closed (ValueError)
    before the kernel's range (1e20 on an open one: OverflowError)."""
    for cls in (backend.EpollSelector, selectors.EpollSelector):
        sel = cls()
        sel.close()
        with pytest.raises(exc):
            sel.select(timeout)
