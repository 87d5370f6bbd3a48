"""``pread_nowait()`` on the stdlib: ``os.preadv`` with ``RWF_NOWAIT`` into
a ``bytearray``, then its ``bytes``; ``fs_type()`` through ctypes' libc;
see ``fastio._c._fileio``."""

from __future__ import annotations

import ctypes
import errno
import os
from typing import Optional

__all__ = ["fs_type", "pread_nowait"]


class _Statfs(ctypes.Structure):
    # struct statfs: f_type (__fsword_t, a long on every architecture fastio
    # builds for) first; the rest is room for the kernel to write into.
    _fields_ = [("f_type", ctypes.c_long), ("_rest", ctypes.c_char * 248)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.fstatfs.argtypes = (ctypes.c_int, ctypes.POINTER(_Statfs))
_libc.fstatfs.restype = ctypes.c_int


def fs_type(fd: int) -> int:
    """The magic number of ``fd``'s file system; see ``fastio._c._fileio.fs_type``."""
    st = _Statfs()
    if _libc.fstatfs(fd, ctypes.byref(st)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return st.f_type & 0xFFFFFFFF


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
