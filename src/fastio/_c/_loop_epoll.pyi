"""Stubs for fastio._c._loop_epoll: the compiled loop's epoll engine."""

from typing_extensions import disjoint_base

from fastio._c._loop_engine import Engine

@disjoint_base
class EpollEngine(Engine): ...
