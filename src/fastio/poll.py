"""poll(2): ``Poll``, a drop-in for ``select.poll`` (timeouts in milliseconds),
and the POLL* constants."""

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

Poll = _backend.load("poll").Poll

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
