"""The compiled backend: one Cython extension per kernel interface."""

from fastio._api import PUBLIC_API
from fastio._c import aio, epoll, poll, selectors, sigio, uring

__all__ = ["epoll", "poll", "selectors", "sigio", "uring", "aio"]

for _module, _names in PUBLIC_API.items():
    for _name in _names:
        if not hasattr(globals()[_module], _name):
            raise ImportError(f"fastio._c.{_module} lacks {_name}: the build is stale, reinstall fastio")
del _module, _names, _name
