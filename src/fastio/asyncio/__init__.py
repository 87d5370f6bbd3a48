"""asyncio on fastio: ``new_event_loop()``, ``run(main)`` and
``EventLoopPolicy``, used the way uvloop's are::

    import fastio.asyncio
    fastio.asyncio.run(main())

or, for code that creates its loops through the policy::

    asyncio.set_event_loop_policy(fastio.asyncio.EventLoopPolicy())

All three make loops of one default kind, ``Loop``. Today that is
``SelectorLoop``: the stdlib's ``asyncio.SelectorEventLoop`` with
``fastio.selectors.DefaultSelector`` (epoll with its hot paths in C) in place
of the stdlib selector, so everything asyncio offers (streams, protocols,
``sock_*`` calls, timers, signal handlers, subprocesses) works unchanged.
``SelectorLoop(selector)`` runs it on any other selector.
"""

from fastio.asyncio._run import EventLoopPolicy, new_event_loop, run
from fastio.asyncio._selector import SelectorLoop

# The class of the loops new_event_loop() makes.
Loop = SelectorLoop

__all__ = ["EventLoopPolicy", "Loop", "SelectorLoop", "new_event_loop", "run"]
