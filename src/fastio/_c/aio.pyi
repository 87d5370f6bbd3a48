"""Stubs for fastio._c.aio (the same API as fastio._pure.aio)."""

from collections.abc import Iterable, Sequence
from typing import Any, Union

from typing_extensions import Buffer

from fastio._c._aio_core import Completion as Completion
from fastio._c._aio_core import ContextCore
from fastio._c._aio_core import available as available
from fastio._c._aio_core import why_unavailable as why_unavailable

_Fd = Union[int, Any]  # an int or an object with fileno()

class Context(ContextCore):
    def prep_pread(self, fd: _Fd, buf: Buffer, offset: int, *, user_data: Any = None, rw_flags: int = 0,
                   reqprio: int = 0) -> int: ...
    def prep_pwrite(self, fd: _Fd, buf: Buffer, offset: int, *, user_data: Any = None, rw_flags: int = 0,
                    reqprio: int = 0) -> int: ...
    def prep_preadv(self, fd: _Fd, buffers: Iterable[Buffer], offset: int, *, user_data: Any = None,
                    rw_flags: int = 0, reqprio: int = 0) -> int: ...
    def prep_pwritev(self, fd: _Fd, buffers: Iterable[Buffer], offset: int, *, user_data: Any = None,
                     rw_flags: int = 0, reqprio: int = 0) -> int: ...
    def prep_fsync(self, fd: _Fd, *, user_data: Any = None, reqprio: int = 0) -> int: ...
    def prep_fdatasync(self, fd: _Fd, *, user_data: Any = None, reqprio: int = 0) -> int: ...
    def prep_poll(self, fd: _Fd, events: int, *, user_data: Any = None, reqprio: int = 0) -> int: ...
    def read_batch(self, fd: _Fd, buf: Buffer, offsets: Sequence[int] | Buffer, size: int,
                   results: Buffer | None = None, *, depth: int = 0) -> Any: ...
    def write_batch(self, fd: _Fd, buf: Buffer, offsets: Sequence[int] | Buffer, size: int,
                    results: Buffer | None = None, *, depth: int = 0) -> Any: ...
