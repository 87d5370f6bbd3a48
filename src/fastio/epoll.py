"""epoll(7): ``Epoll``, a drop-in for ``select.epoll``, and every EPOLL* constant.

``Epoll.poll`` honours sub-millisecond timeouts where the kernel has
``epoll_pwait2(2)`` (Linux 5.11); ``epoll_pwait2_available()`` says whether it does.
"""

from typing import TYPE_CHECKING

from fastio import _backend
from fastio._consts import (
    EPOLL_CLOEXEC,
    EPOLL_CTL_ADD,
    EPOLL_CTL_DEL,
    EPOLL_CTL_MOD,
    EPOLL_URING_WAKE,
    EPOLLERR,
    EPOLLET,
    EPOLLEXCLUSIVE,
    EPOLLHUP,
    EPOLLIN,
    EPOLLMSG,
    EPOLLNVAL,
    EPOLLONESHOT,
    EPOLLOUT,
    EPOLLPRI,
    EPOLLRDBAND,
    EPOLLRDHUP,
    EPOLLRDNORM,
    EPOLLWAKEUP,
    EPOLLWRBAND,
    EPOLLWRNORM,
)

if TYPE_CHECKING:
    from fastio._c.epoll import Epoll, epoll_pwait2_available
else:
    _impl = _backend.load("epoll")
    Epoll = _impl.Epoll
    epoll_pwait2_available = _impl.epoll_pwait2_available

__all__ = [
    "Epoll",
    "epoll_pwait2_available",
    "EPOLL_CLOEXEC",
    "EPOLL_CTL_ADD",
    "EPOLL_CTL_DEL",
    "EPOLL_CTL_MOD",
    "EPOLL_URING_WAKE",
    "EPOLLERR",
    "EPOLLET",
    "EPOLLEXCLUSIVE",
    "EPOLLHUP",
    "EPOLLIN",
    "EPOLLMSG",
    "EPOLLNVAL",
    "EPOLLONESHOT",
    "EPOLLOUT",
    "EPOLLPRI",
    "EPOLLRDBAND",
    "EPOLLRDHUP",
    "EPOLLRDNORM",
    "EPOLLWAKEUP",
    "EPOLLWRBAND",
    "EPOLLWRNORM",
]
