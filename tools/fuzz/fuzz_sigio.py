"""atheris harness: random SignalIO calls (add/remove/wait with any fd), both backends."""

import importlib

from _driver import main

METHODS = [m for m in dir(importlib.import_module("fastio._c.sigio").SignalIO) if not m.startswith("_")]


def make(backend, fdp):
    SignalIO = importlib.import_module(f"fastio._{backend}.sigio").SignalIO
    return SignalIO(fdp.PickValueInList([None, None, None, 34, 40, 64, 0, 10**9]))


if __name__ == "__main__":
    main(make, METHODS)
