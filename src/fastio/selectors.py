"""Drop-in replacements for the stdlib ``selectors`` classes.

``EpollSelector``, ``PollSelector`` and ``SelectSelector`` behave as the
stdlib's (keys are ``selectors.SelectorKey``, ``isinstance(sel,
selectors.BaseSelector)`` holds) with their hot paths in C on the ``c``
backend. Two differences: ``select(timeout)`` waits exactly ``timeout``
instead of rounding up to a millisecond, and ``EpollSelector.register`` /
``modify`` take ``flags=`` (``EPOLLET``, ``EPOLLONESHOT``, ``EPOLLEXCLUSIVE``,
``EPOLLWAKEUP``)::

    sel.register(sock, EVENT_READ, data, flags=EPOLLONESHOT)
    ...                                  # one event, then disarmed
    sel.modify(sock, EVENT_READ, data)   # re-arm
"""

from selectors import BaseSelector, SelectorKey

from typing import TYPE_CHECKING

from fastio import _backend
from fastio._consts import (
    EPOLLET,
    EPOLLEXCLUSIVE,
    EPOLLONESHOT,
    EPOLLWAKEUP,
    EVENT_READ,
    EVENT_WRITE,
)

if TYPE_CHECKING:
    from fastio._c.selectors import EpollSelector, PollSelector, SelectSelector
else:
    _impl = _backend.load("selectors")
    EpollSelector = _impl.EpollSelector
    PollSelector = _impl.PollSelector
    SelectSelector = _impl.SelectSelector
DefaultSelector = EpollSelector

__all__ = [
    "BaseSelector",
    "DefaultSelector",
    "EVENT_READ",
    "EVENT_WRITE",
    "EPOLLET",
    "EPOLLEXCLUSIVE",
    "EPOLLONESHOT",
    "EPOLLWAKEUP",
    "EpollSelector",
    "PollSelector",
    "SelectSelector",
    "SelectorKey",
]
