"""Stubs for fastio._c._loop_uring: the compiled loop's io_uring engine."""

from typing import Callable, Optional

from typing_extensions import disjoint_base

from fastio._c._loop_engine import Engine
from fastio._c._uring_types import Completion
from fastio._c.uring import Ring

@disjoint_base
class RecvState: ...

def deliver(st: RecvState) -> None: ...

@disjoint_base
class LoopRing(Ring): ...

@disjoint_base
class UringEngine(Engine):
    recv_mode: bool
    def __new__(cls, entries: int = 256, recv: bool = True) -> UringEngine: ...
    @property
    def held_recv_buffers(self) -> int: ...
    @property
    def ring(self) -> LoopRing: ...
    def set_completion_handler(self, handler: Optional[Callable[[list[Completion]], object]]) -> None: ...
