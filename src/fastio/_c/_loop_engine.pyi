"""Stubs for fastio._c._loop_engine: what the compiled loop asks of an engine."""

from typing_extensions import disjoint_base

@disjoint_base
class FdEntry:
    fd: int

@disjoint_base
class Engine:
    name: str
