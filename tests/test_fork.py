"""Objects holding a kernel object refuse use in a forked child with a clear
RuntimeError instead of silently sharing the parent's epoll set; close() stays
allowed there."""

from __future__ import annotations

import os

import pytest


def _in_child(func) -> str:
    """Run func in a forked child; return what it reported through a pipe."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(r)
            try:
                msg = f"ok {func()!r}"
            except BaseException as exc:
                msg = f"{type(exc).__name__}: {exc}"
            os.write(w, msg.encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        out = f.read().decode()
    os.waitpid(pid, 0)
    return out


@pytest.mark.parametrize("call", ["register", "poll", "modify", "unregister"])
def test_epoll_refuses_use_in_child(backend, sockpair, call):
    a, b = sockpair
    with backend.Epoll() as ep:
        ep.register(a, 4)
        args = {"register": (b,), "poll": (0,), "modify": (a, 1), "unregister": (a,)}[call]
        out = _in_child(lambda: getattr(ep, call)(*args))
        assert out.startswith("RuntimeError") and "fork" in out
        # the parent's registrations are untouched
        assert ep.poll(0) == [(a.fileno(), 4)]


def test_epoll_close_allowed_in_child(backend):
    with backend.Epoll() as ep:
        assert _in_child(lambda: (ep.close(), ep.closed)[1]) == "ok True"
        assert not ep.closed


def test_selector_refuses_use_in_child(backend, sockpair):
    a, _ = sockpair
    with backend.EpollSelector() as sel:
        sel.register(a, 2)
        out = _in_child(lambda: sel.select(0))
        assert out.startswith("RuntimeError") and "fork" in out
        assert len(sel.select(0)) == 1


def test_new_object_in_child_works(backend, sockpair):
    a, _ = sockpair

    def child():
        with backend.Epoll() as ep:
            ep.register(a, 4)
            return ep.poll(0)

    assert _in_child(child) == f"ok {[(a.fileno(), 4)]!r}"
