"""atheris harness: random sequences of fastio.aio.Context calls, both backends."""

import importlib

from _driver import main

METHODS = [m for m in dir(importlib.import_module("fastio._c.aio").Context) if not m.startswith("_")]


_live = {}


def make(backend, fdp):
    # io_destroy waits for an RCU grace period (~10 ms), so a Context per
    # input would run ~15 inputs/s: one lives across inputs (per backend)
    # until a fuzzed close() ends it. Inputs are then not independent: a
    # finding is replayed with its predecessors (the log shows them).
    ctx = _live.get(backend)
    if ctx is None or ctx.closed:
        ctx = _live[backend] = importlib.import_module(f"fastio._{backend}.aio").Context(
            fdp.PickValueInList([1, 2, 8, 32]))
    return ctx


def finish(ctx):
    # reap what completed so pins do not pile up; keep the context
    ctx.getevents(0, timeout=0) if not ctx.closed else None


if __name__ == "__main__":
    main(make, METHODS, finish)
