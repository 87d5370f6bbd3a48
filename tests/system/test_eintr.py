"""PEP 475 in every wait: an interval timer interrupts the wait many times;
handlers run, the wait resumes with the time left, and a handler's exception
propagates out of the wait (so Ctrl-C works)."""

from __future__ import annotations

import time

import pytest
from support import Interrupted, interval_timer, raise_interrupted


def _waits(backend):
    """Each kind of wait, returning what it returned, with nothing ever ready."""
    ep = backend.Epoll()
    poll = backend.Poll()
    selectors = [backend.EpollSelector(), backend.PollSelector(), backend.SelectSelector()]
    waits = {
        "Epoll.poll": lambda t: ep.poll(t),
        "Poll.poll": lambda t: poll.poll(None if t is None else t * 1000),
        **{f"{type(s).__name__}.select": (lambda s: lambda t: s.select(t))(s) for s in selectors},
    }

    def close():
        ep.close()
        for s in selectors:
            s.close()

    return waits, close


@pytest.mark.parametrize("kind", ["Epoll.poll", "Poll.poll", "EpollSelector.select", "PollSelector.select",
                                  "SelectSelector.select"])
def test_wait_resumes_after_signals(backend, kind):
    waits, close = _waits(backend)
    fired = []
    try:
        with interval_timer(lambda *a: fired.append(1)):
            start = time.monotonic()
            result = waits[kind](0.2)
            elapsed = time.monotonic() - start
    finally:
        close()
    assert result == []
    assert len(fired) >= 5  # the wait really was interrupted, repeatedly
    assert elapsed >= 0.2  # ... and resumed until the whole timeout had passed
    # ... with the time left, not the whole timeout again after each signal
    # (that would take >= 40 x 0.2 s); the bound is loose for a busy machine.
    assert elapsed < 3


@pytest.mark.parametrize("kind", ["Epoll.poll", "Poll.poll", "EpollSelector.select", "PollSelector.select",
                                  "SelectSelector.select"])
def test_handler_exception_ends_an_infinite_wait(backend, kind):
    waits, close = _waits(backend)
    try:
        with interval_timer(raise_interrupted, 0.05), pytest.raises(Interrupted):
            waits[kind](None)
    finally:
        close()
