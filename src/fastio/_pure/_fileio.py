"""``pread_nowait()`` on the stdlib: ``os.preadv`` with ``RWF_NOWAIT`` into
a ``bytearray``, then its ``bytes``; see ``fastio._c._fileio``."""

from __future__ import annotations

import errno
import os
from typing import Optional

__all__ = ["pread_nowait"]


def pread_nowait(fd: int, n: int, offset: int) -> Optional[bytes]:
    """Up to ``n`` bytes of ``fd`` at ``offset`` as far as the page cache
    holds them, or ``None`` when the first page is not cached; see
    ``fastio._c._fileio.pread_nowait``."""
    if n < 0:
        raise ValueError(f"n must be >= 0, not {n}")
    if offset < 0:
        raise ValueError(f"offset must be >= 0, not {offset}")
    if not hasattr(os, "RWF_NOWAIT"):
        raise OSError(errno.ENOSYS, os.strerror(errno.ENOSYS))
    buf = bytearray(n)
    try:
        got = os.preadv(fd, (buf,), offset, os.RWF_NOWAIT)
    except BlockingIOError:
        return None
    del buf[got:]
    return bytes(buf)
