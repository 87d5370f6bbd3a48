"""Objects holding a kernel object refuse use in a forked child with a clear
RuntimeError instead of silently sharing the parent's epoll set; close() stays
allowed there."""

from __future__ import annotations

import pytest
from support import in_child


@pytest.mark.parametrize("call", ["register", "poll", "modify", "unregister"])
def test_epoll_refuses_usein_child(backend, sockpair, call):
    a, b = sockpair
    with backend.Epoll() as ep:
        ep.register(a, 4)
        args = {"register": (b,), "poll": (0,), "modify": (a, 1), "unregister": (a,)}[call]
        out = in_child(lambda: getattr(ep, call)(*args))
        assert out.startswith("RuntimeError") and "fork" in out
        # the parent's registrations are untouched
        assert ep.poll(0) == [(a.fileno(), 4)]


def test_epoll_close_allowedin_child(backend):
    with backend.Epoll() as ep:
        assert in_child(lambda: (ep.close(), ep.closed)[1]) == "ok True"
        assert not ep.closed


def test_selector_refuses_usein_child(backend, sockpair):
    a, _ = sockpair
    with backend.EpollSelector() as sel:
        sel.register(a, 2)
        out = in_child(lambda: sel.select(0))
        assert out.startswith("RuntimeError") and "fork" in out
        assert len(sel.select(0)) == 1


def test_new_object_in_child_works(backend, sockpair):
    a, _ = sockpair

    def child():
        with backend.Epoll() as ep:
            ep.register(a, 4)
            return ep.poll(0)

    assert in_child(child) == f"ok {[(a.fileno(), 4)]!r}"
