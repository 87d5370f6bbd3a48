"""``fastio.asyncio``'s own functions on both backends: ``run`` (result,
exceptions, leftover tasks and async generators, debug, refusals),
``new_event_loop`` and ``EventLoopPolicy``. test_asyncio.py runs asyncio
programs on the loop itself."""

from __future__ import annotations

import asyncio
import gc
import selectors as std_selectors

import pytest
from asyncio_loops import get_policy, set_policy

import fastio.asyncio
import fastio.selectors

# Upper bound for any single wait in a test, in seconds.
TIMEOUT = 5.0


@pytest.fixture
def fastio_default(backend, monkeypatch):
    """Make ``fastio.asyncio.Loop`` (what ``new_event_loop``, ``run`` and the
    policy build) the fixture backend's: the compiled loop on ``c``,
    ``SelectorLoop`` on the pure EpollSelector on ``pure``, so that both
    backends are exercised whatever FASTIO_BACKEND chose."""
    monkeypatch.setattr(fastio.asyncio._selector, "DefaultSelector", backend.EpollSelector)
    if backend.name == "c":
        from fastio.asyncio._loop import Loop
    else:
        Loop = fastio.asyncio.SelectorLoop
    monkeypatch.setattr(fastio.asyncio, "Loop", Loop)
    return backend


def _kernel_side(lp, backend):
    """What the loop waits on: its selector (pure) or its engine's name (c)."""
    if backend.name == "c":
        assert lp.engine in ("uring", "epoll")
        return lp.engine
    assert isinstance(lp._selector, backend.EpollSelector)
    return lp._selector


# -- fastio.asyncio.run --------------------------------------------------------


def test_run_returns_result_and_closes_loop(fastio_default):
    seen = {}

    async def main():
        lp = asyncio.get_running_loop()
        seen["loop"] = lp
        seen["kernel"] = _kernel_side(lp, fastio_default)
        await asyncio.sleep(0.001)
        return "result"

    assert fastio.asyncio.run(main()) == "result"
    lp = seen["loop"]
    assert isinstance(lp, fastio.asyncio.Loop)
    assert lp.is_closed()
    if fastio_default.name == "pure":
        assert seen["kernel"].get_map() is None
    assert asyncio._get_running_loop() is None


def test_run_propagates_exception_and_closes_loop(fastio_default):
    seen = {}

    async def main():
        seen["loop"] = asyncio.get_running_loop()
        await asyncio.sleep(0)
        raise LookupError("from main")

    with pytest.raises(LookupError, match="from main"):
        fastio.asyncio.run(main())
    assert seen["loop"].is_closed()


def test_run_cancels_leftover_tasks_and_closes_async_generators(fastio_default):
    events = []
    holder = []

    async def forever():
        try:
            events.append("started")
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            events.append("cancelled")
            raise

    async def agen():
        try:
            yield 1
            yield 2
        finally:
            events.append("agen closed")

    async def main():
        task = asyncio.ensure_future(forever())
        holder.append(task)
        g = agen()
        holder.append(g)
        assert await g.__anext__() == 1
        await asyncio.sleep(0.001)
        return 42

    assert fastio.asyncio.run(main()) == 42
    assert events[0] == "started"
    assert sorted(events[1:]) == ["agen closed", "cancelled"]
    assert holder[0].cancelled()


def test_run_with_debug(fastio_default):
    async def main():
        return asyncio.get_running_loop().get_debug()

    assert fastio.asyncio.run(main(), debug=True) is True
    assert fastio.asyncio.run(main(), debug=False) is False


def test_run_rejects_a_non_coroutine(fastio_default):
    async def main():
        return 1

    with pytest.raises(ValueError):
        fastio.asyncio.run(main)  # the function, not a coroutine
    with pytest.raises(ValueError):
        fastio.asyncio.run(42)
    assert asyncio._get_running_loop() is None


async def _try_nested_run():
    """Call fastio.asyncio.run from inside a running loop; return the message
    of the RuntimeError it raised (None if it raised nothing)."""
    coro = asyncio.sleep(0, result="never")
    try:
        fastio.asyncio.run(coro)
    except RuntimeError as exc:
        return str(exc)
    finally:
        coro.close()
    return None


def test_run_from_a_running_loop_raises_runtime_error(fastio_default):
    async def outer():
        message = await _try_nested_run()
        await asyncio.sleep(0)
        return message, "outer survived"

    message, survived = fastio.asyncio.run(outer())
    gc.collect()  # anything the refused run() leaked is reported in this test
    assert survived == "outer survived"
    assert message is not None and "cannot be called from a running event loop" in message


def test_run_from_a_running_stdlib_loop_raises_runtime_error(fastio_default):
    """Any running loop in the thread, not only a fastio one, forbids run()."""
    lp = asyncio.SelectorEventLoop()  # the stdlib's own selector
    try:
        message = lp.run_until_complete(asyncio.wait_for(_try_nested_run(), TIMEOUT))
    finally:
        lp.close()
    gc.collect()
    assert message is not None and "cannot be called from a running event loop" in message


# -- new_event_loop and EventLoopPolicy -----------------------------------------


def test_new_event_loop_is_the_backends_loop():
    lp = fastio.asyncio.new_event_loop()
    try:
        assert isinstance(lp, fastio.asyncio.Loop)
        assert isinstance(lp, asyncio.AbstractEventLoop)
        if fastio.asyncio.Loop is fastio.asyncio.SelectorLoop:
            assert isinstance(lp._selector, fastio.selectors.DefaultSelector)
        else:
            # The compiled loop is not the stdlib's: no BaseEventLoop under it.
            assert not isinstance(lp, asyncio.BaseEventLoop)
            assert lp.engine in fastio.asyncio.ENGINES
        assert lp.run_until_complete(asyncio.wait_for(asyncio.sleep(0.001, result=5), TIMEOUT)) == 5
    finally:
        lp.close()
    assert lp.is_closed()


def test_new_event_loop_each_call_a_new_loop(fastio_default):
    a = fastio.asyncio.new_event_loop()
    b = fastio.asyncio.new_event_loop()
    try:
        assert a is not b
        if fastio_default.name == "pure":
            assert a._selector is not b._selector
        _kernel_side(a, fastio_default)
    finally:
        a.close()
        b.close()


def test_selector_loop_default_selector_when_none_given(fastio_default):
    lp = fastio.asyncio.SelectorLoop()
    try:
        assert isinstance(lp._selector, fastio_default.EpollSelector)
        assert isinstance(lp._selector, std_selectors.BaseSelector)
        assert type(lp._selector).__module__.startswith("fastio.")
    finally:
        lp.close()


def test_event_loop_policy_makes_asyncio_loops_fastio_loops(fastio_default):
    previous = get_policy()
    set_policy(fastio.asyncio.EventLoopPolicy())
    try:
        policy = get_policy()
        assert isinstance(policy, fastio.asyncio.EventLoopPolicy)
        assert isinstance(policy, asyncio.AbstractEventLoopPolicy)

        lp = asyncio.new_event_loop()
        try:
            assert isinstance(lp, fastio.asyncio.Loop)
            _kernel_side(lp, fastio_default)
            assert lp.run_until_complete(asyncio.wait_for(asyncio.sleep(0, result="x"), TIMEOUT)) == "x"
        finally:
            lp.close()

        # asyncio.run creates its loop through the policy too.
        async def main():
            lp = asyncio.get_running_loop()
            await asyncio.sleep(0.001)
            return type(lp)

        assert asyncio.run(main()) is fastio.asyncio.Loop
    finally:
        set_policy(previous)
    assert get_policy() is previous
