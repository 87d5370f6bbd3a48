"""Stubs for fastio._c._fileio."""

from typing import Any, Callable, Optional

from typing_extensions import disjoint_base

def pread_nowait(fd: int, n: int, offset: int) -> Optional[bytes]: ...
def fs_type(fd: int) -> int: ...

@disjoint_base
class FileCore:
    _fd: int
    _closed: bool
    _readable: bool
    _direct: bool
    def _enable_fast_reads(self, loopref: Callable[[], Any]) -> None: ...
    def _cached_pread(self, size: int, offset: int) -> Optional[bytes]: ...
    async def pread(self, size: int, offset: int) -> bytes: ...
