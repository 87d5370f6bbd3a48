"""``SelectorLoop``: the stdlib's ``asyncio.SelectorEventLoop`` on
``fastio.selectors.DefaultSelector`` (epoll with its hot paths in C) in place
of the stdlib selector. Everything else is asyncio's own code, so streams,
protocols, ``sock_*`` calls, timers, signal handlers and subprocesses work
unchanged."""

import asyncio as _asyncio

from fastio.selectors import DefaultSelector


class SelectorLoop(_asyncio.SelectorEventLoop):
    """``asyncio.SelectorEventLoop`` on ``fastio.selectors.DefaultSelector``,
    or on ``selector`` when one is given (any ``selectors.BaseSelector``)."""

    def __init__(self, selector=None):
        super().__init__(selector if selector is not None else DefaultSelector())


# Shown (repr, tracebacks, the examples) under the name users import it by.
SelectorLoop.__module__ = "fastio.asyncio"
