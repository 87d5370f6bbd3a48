"""atheris harness: random calls on Epoll, Poll and the three selectors, both backends."""

import importlib

from _driver import ALLOWED_MUX, main

KINDS = [("epoll", "Epoll"), ("poll", "Poll"), ("selectors", "EpollSelector"), ("selectors", "PollSelector"),
         ("selectors", "SelectSelector")]
METHODS = sorted({m for mod, cls in KINDS for m in dir(getattr(importlib.import_module(f"fastio._c.{mod}"), cls))
                  if not m.startswith("_")})


def make(backend, fdp):
    mod, cls = fdp.PickValueInList(KINDS)
    return getattr(importlib.import_module(f"fastio._{backend}.{mod}"), cls)()


def finish(obj):
    if hasattr(obj, "close"):
        obj.close()


if __name__ == "__main__":
    main(make, METHODS, finish, ALLOWED_MUX)
