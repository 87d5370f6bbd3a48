"""Stubs for fastio._c._uring_types: what a completion and a provided-buffer
ring look like (re-exported by fastio._c.uring)."""

from typing import Any

from typing_extensions import disjoint_base

@disjoint_base
class Completion:
    user_data: Any
    res: int
    flags: int
    buffer_id: int | None
    buffer: bytes | None
    def __init__(self, user_data: Any = None, res: int = 0, flags: int = 0, buffer_id: int | None = None,
                 buffer: bytes | None = None) -> None: ...
    @property
    def more(self) -> bool: ...
    def result(self) -> int: ...

@disjoint_base
class BufRing:
    bgid: int
    entries: int
    size: int
