"""How fastio.asyncio makes its loops: ``new_event_loop`` (the one place
the default loop is chosen; ``run`` and ``EventLoopPolicy`` both call it),
``run`` and the policy."""

import asyncio as _asyncio
import sys



def new_event_loop() -> _asyncio.AbstractEventLoop:
    """A new ``fastio.asyncio.Loop``: the compiled loop on the compiled
    backend, ``SelectorLoop`` on the pure one."""
    from fastio.asyncio import Loop

    return Loop()


class EventLoopPolicy(_asyncio.DefaultEventLoopPolicy):
    """An event loop policy whose loops are ``new_event_loop()``'s."""

    def _loop_factory(self):
        return new_event_loop()


def run(main, *, debug=None):
    """Run coroutine ``main`` on a new fastio loop and return its result, as
    ``asyncio.run`` does (remaining tasks cancelled, async generators and the
    default executor shut down, the loop closed)."""
    # Before any loop is made: asyncio.Runner (3.11) would build one first and
    # then leave its shutdown coroutines unawaited.
    if _asyncio.events._get_running_loop() is not None:
        raise RuntimeError("fastio.asyncio.run() cannot be called from a running event loop")
    if sys.version_info >= (3, 12):
        return _asyncio.run(main, debug=debug, loop_factory=new_event_loop)
    if sys.version_info >= (3, 11):
        with _asyncio.Runner(debug=debug, loop_factory=new_event_loop) as runner:
            return runner.run(main)
    return _run_legacy(main, debug)


def _run_legacy(main, debug):
    """``asyncio.run`` with a loop factory, for Python 3.9 and 3.10."""
    if not _asyncio.iscoroutine(main):
        raise ValueError(f"a coroutine was expected, got {main!r}")
    loop = new_event_loop()
    try:
        _asyncio.set_event_loop(loop)
        if debug is not None:
            loop.set_debug(debug)
        return loop.run_until_complete(main)
    finally:
        try:
            _cancel_all_tasks(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            _asyncio.set_event_loop(None)
            loop.close()


def _cancel_all_tasks(loop):
    tasks = _asyncio.all_tasks(loop)
    if not tasks:
        return
    for task in tasks:
        task.cancel()
    loop.run_until_complete(_asyncio.gather(*tasks, return_exceptions=True))
    for task in tasks:
        if task.cancelled():
            continue
        if task.exception() is not None:
            loop.call_exception_handler(
                {
                    "message": "unhandled exception during fastio.asyncio.run() shutdown",
                    "exception": task.exception(),
                    "task": task,
                }
            )
