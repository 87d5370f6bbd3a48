"""atheris harness: random sequences of fastio.aio.Context calls, both backends."""

import importlib

from _driver import main

METHODS = [m for m in dir(importlib.import_module("fastio._c.aio").Context) if not m.startswith("_")]


def make(backend, fdp):
    return importlib.import_module(f"fastio._{backend}.aio").Context(fdp.PickValueInList([1, 2, 8, 32]))


if __name__ == "__main__":
    main(make, METHODS)
