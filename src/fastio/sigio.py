"""Signal-driven IO: ``SignalIO`` (``O_ASYNC`` + ``F_SETOWN_EX`` + ``F_SETSIG``
real-time signals read in batches through a ``signalfd``), the comparison
``TextbookSignalIO`` (a ``signal.signal(SIGIO, ...)`` handler plus a poll over
every fd), and the poll(2) bits that make up a band.

The kernel facts, what is covered (sockets, pipes, ttys) and what is not
(regular files), and the queue-overflow rule are in ``docs/sigio.md``.
"""

from typing import TYPE_CHECKING

from fastio import _backend
from fastio._consts import (
    POLLERR,
    POLLHUP,
    POLLIN,
    POLLMSG,
    POLLNVAL,
    POLLOUT,
    POLLPRI,
    POLLRDBAND,
    POLLRDHUP,
    POLLRDNORM,
    POLLWRBAND,
    POLLWRNORM,
)

if TYPE_CHECKING:
    from fastio._pure.sigio import SignalIO, TextbookSignalIO
else:
    _impl = _backend.load("sigio")
    SignalIO = _impl.SignalIO
    TextbookSignalIO = _impl.TextbookSignalIO

__all__ = [
    "SignalIO",
    "TextbookSignalIO",
    "POLLERR",
    "POLLHUP",
    "POLLIN",
    "POLLMSG",
    "POLLNVAL",
    "POLLOUT",
    "POLLPRI",
    "POLLRDBAND",
    "POLLRDHUP",
    "POLLRDNORM",
    "POLLWRBAND",
    "POLLWRNORM",
]
