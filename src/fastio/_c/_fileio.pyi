"""Stubs for fastio._c._fileio."""

from typing import Optional

def pread_nowait(fd: int, n: int, offset: int) -> Optional[bytes]: ...
