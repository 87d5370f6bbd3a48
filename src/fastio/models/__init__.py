"""The five IO models as echo servers with one interface.

Each server is ordinary Python written against fastio's public API (what a
user would write), one module per model family; the module docstrings tell
how each model waits for data and copies it (the two phases of a read)::

    from fastio import models

    with models.get("epoll")(("127.0.0.1", 0)) as server:
        print(server.address)        # ('127.0.0.1', 41234)
        ...                          # clients connect; every byte comes back
    # stop(): connections, listener and threads all gone

``MODELS`` maps each name to its class, in display order (by model);
``get(name)`` looks one up. ``cls.why_unavailable(backend)`` says why a
model cannot run here (None if it can); its ``start()`` then raises
``fastio.UnsupportedError`` with that reason.
"""

from __future__ import annotations

from typing import Dict, Type

from fastio.models._base import Address, EchoServer
from fastio.models.aio import AioServer
from fastio.models.asyncio import (
    AsyncioCompiledEpollServer,
    AsyncioCompiledServer,
    AsyncioFastioServer,
    AsyncioServer,
    UvloopServer,
)
from fastio.models.blocking import BlockingPoolServer, BlockingServer
from fastio.models.multiplexing import EpollServer, PollServer, SelectServer, StdlibSelectorsServer
from fastio.models.nonblocking import NonBlockingServer
from fastio.models.sigio import SigioServer
from fastio.models.uring import UringMultishotServer, UringServer

__all__ = ["Address", "EchoServer", "MODELS", "get"]

MODELS: Dict[str, Type[EchoServer]] = {
    cls.name: cls
    for cls in (
        BlockingServer,
        BlockingPoolServer,
        NonBlockingServer,
        SelectServer,
        PollServer,
        EpollServer,
        StdlibSelectorsServer,
        SigioServer,
        UringServer,
        UringMultishotServer,
        AioServer,
        AsyncioServer,
        AsyncioFastioServer,
        AsyncioCompiledServer,
        AsyncioCompiledEpollServer,
        UvloopServer,
    )
}


def get(name: str) -> Type[EchoServer]:
    """The server class registered as ``name``; ``KeyError`` lists the names."""
    try:
        return MODELS[name]
    except KeyError:
        raise KeyError(f"no IO model named {name!r}; known: {', '.join(MODELS)}") from None
