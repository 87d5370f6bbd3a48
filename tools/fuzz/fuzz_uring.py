"""atheris harness: random sequences of fastio.uring.Ring calls, both backends."""

import importlib

from _driver import main

METHODS = [m for m in dir(importlib.import_module("fastio._c.uring").Ring) if not m.startswith("_")
           and m != "close"] + ["close"]


def make(backend, fdp):
    Ring = importlib.import_module(f"fastio._{backend}.uring").Ring
    return Ring(fdp.PickValueInList([1, 2, 4, 8, 16]), cq_entries=fdp.PickValueInList([None, 2, 4, 64]))


if __name__ == "__main__":
    main(make, METHODS)
