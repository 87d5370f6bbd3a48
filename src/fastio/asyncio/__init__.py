"""asyncio on fastio: ``new_event_loop()``, ``run(main)`` and
``EventLoopPolicy``, used the way uvloop's are::

    import fastio.asyncio
    fastio.asyncio.run(main())

or, for code that creates its loops through the policy::

    asyncio.set_event_loop_policy(fastio.asyncio.EventLoopPolicy())

or ``asyncio.run(main(), loop_factory=fastio.asyncio.Loop)`` (3.12+), or
``asyncio.Runner(loop_factory=fastio.asyncio.Loop)`` (3.11+).

All of them make loops of one default kind, ``Loop``. On the compiled
backend that is a loop whose scheduler (ready queue, timer heap, handles,
``call_soon``/``call_later``), fd dispatch and socket transport hot paths
are C, on one of two kernel engines: ``uring`` (io_uring: one
``io_uring_enter`` per turn submits and waits) or ``epoll``. A new loop gets
``uring`` where io_uring can be used, else ``epoll``; ``loop.engine`` says
which, ``loop.engine_reason`` why, ``FASTIO_LOOP_ENGINE=uring|epoll`` or
``Loop(engine=...)`` forces one (forcing ``uring`` where it cannot be had
raises ``fastio.UnsupportedError`` with the reason). On the pure backend
``Loop`` is ``SelectorLoop``.

Files: ``await fastio.asyncio.open(...)`` (or ``async with``) gives aiofiles'
file API with the built-in ``open``'s semantics, its reads and writes done
by the kernel through io_uring on any running loop; ``fastio.asyncio.os``
has aiofiles.os' functions.

``SelectorLoop`` is the stdlib's ``asyncio.SelectorEventLoop`` with
``fastio.selectors.DefaultSelector`` in place of the stdlib selector (the
comparison); ``SelectorLoop(selector)`` runs it on any other selector.
"""

from fastio import _backend
from fastio.asyncio._selector import SelectorLoop

if _backend.name() == "c":
    from fastio.asyncio._loop import ENGINES, Loop
else:
    Loop = SelectorLoop
    ENGINES = ()

from fastio.asyncio._run import EventLoopPolicy, new_event_loop, run  # noqa: E402
from fastio.asyncio._files import open  # noqa: E402

__all__ = ["ENGINES", "EventLoopPolicy", "Loop", "SelectorLoop", "new_event_loop", "open", "run"]
