"""poll(2): ``Poll``, a drop-in for ``select.poll`` (timeouts in milliseconds),
and the POLL* constants."""

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
    from fastio._c.poll import Poll
else:
    _impl = _backend.load("poll")
    Poll = _impl.Poll

__all__ = [
    "Poll",
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
