"""The kinds of fastio event loop that CPython's asyncio suites are run on
(tests/interfaces/test_asyncio_suites.py), by name.

A kind says how to make one of its loops on a backend, which backends have
it (``backends``: the compiled loop exists only in the compiled one), when it
cannot run here (``skip_reason``), and which stdlib tests it is known to fail
(``pending``: each is an xfail(strict=True), so the list can only shrink and
a fix that makes one pass must remove it) or has no part in (``not_ours``:
tests of CPython internals the kind does not have; skipped with the reason).
Keys of both are ``<suite>.<class>.<method>``, the test id without the kind
and backend. A new kind is one more entry in ``LOOP_KINDS``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import types
import warnings
from typing import Callable, Mapping, Optional

import fastio.asyncio


def get_policy() -> asyncio.AbstractEventLoopPolicy:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the policy API, 3.14+
        return asyncio.get_event_loop_policy()


def set_policy(policy: Optional[asyncio.AbstractEventLoopPolicy]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the policy API, 3.14+
        asyncio.set_event_loop_policy(policy)


def _always_available(backend: types.SimpleNamespace) -> Optional[str]:
    return None


@dataclasses.dataclass(frozen=True)
class LoopKind:
    new_loop: Callable[[types.SimpleNamespace], asyncio.AbstractEventLoop]
    backends: tuple = ("c", "pure")
    skip_reason: Callable[[types.SimpleNamespace], Optional[str]] = _always_available
    pending: Mapping[str, str] = dataclasses.field(default_factory=dict)
    not_ours: Mapping[str, str] = dataclasses.field(default_factory=dict)


def _selector_loop(backend: types.SimpleNamespace) -> asyncio.AbstractEventLoop:
    # The backend's EpollSelector is what fastio.selectors.DefaultSelector names.
    return fastio.asyncio.SelectorLoop(backend.EpollSelector())


def _compiled_loop(engine: str) -> Callable[[types.SimpleNamespace], asyncio.AbstractEventLoop]:
    def new_loop(backend: types.SimpleNamespace) -> asyncio.AbstractEventLoop:
        from fastio.asyncio._loop import Loop

        return Loop(engine=engine)
    return new_loop


def _uring_refused(backend: types.SimpleNamespace) -> Optional[str]:
    if backend.uring.available():
        return None
    return f"io_uring cannot be used here: {backend.uring.why_unavailable()}"


LOOP_KINDS: dict[str, LoopKind] = {
    "selector": LoopKind(new_loop=_selector_loop),
    # fastio.asyncio.Loop on each of its engines.
    "uring": LoopKind(new_loop=_compiled_loop("uring"), backends=("c",), skip_reason=_uring_refused),
    "epoll": LoopKind(new_loop=_compiled_loop("epoll"), backends=("c",)),
}
