"""``fastio.asyncio.os.path``: aiofiles.os.path's names, awaitable, with
``os.path``'s results. Those that stat go through ``fastio.asyncio.os.stat``
(io_uring's statx); the others run in the loop's default executor."""

from __future__ import annotations

import os.path as _path
import stat as _st
from typing import Any

from fastio.asyncio._fileengine import wrap

__all__ = ["exists", "lexists", "isfile", "isdir", "islink", "ismount", "getsize", "getmtime", "getatime",
           "getctime", "samefile", "sameopenfile", "abspath"]


async def _stat(path: Any, follow: bool = True) -> Any:
    from fastio.asyncio import os as aos

    try:
        return await aos.stat(path, follow_symlinks=follow)
    except (OSError, ValueError):
        return None


async def exists(path: Any) -> bool:
    """``os.path.exists``."""
    return await _stat(path) is not None


async def lexists(path: Any) -> bool:
    """``os.path.lexists``."""
    return await _stat(path, False) is not None


async def isfile(path: Any) -> bool:
    """``os.path.isfile``."""
    st = await _stat(path)
    return st is not None and _st.S_ISREG(st.st_mode)


async def isdir(path: Any) -> bool:
    """``os.path.isdir``."""
    st = await _stat(path)
    return st is not None and _st.S_ISDIR(st.st_mode)


async def islink(path: Any) -> bool:
    """``os.path.islink``."""
    st = await _stat(path, False)
    return st is not None and _st.S_ISLNK(st.st_mode)


async def _stat_or_raise(path: Any) -> Any:
    from fastio.asyncio import os as aos

    return await aos.stat(path)


async def getsize(path: Any) -> int:
    """``os.path.getsize``."""
    return int((await _stat_or_raise(path)).st_size)


async def getmtime(path: Any) -> float:
    """``os.path.getmtime``."""
    return float((await _stat_or_raise(path)).st_mtime)


async def getatime(path: Any) -> float:
    """``os.path.getatime``."""
    return float((await _stat_or_raise(path)).st_atime)


async def getctime(path: Any) -> float:
    """``os.path.getctime``."""
    return float((await _stat_or_raise(path)).st_ctime)


async def samefile(path1: Any, path2: Any) -> bool:
    """``os.path.samefile``."""
    a = await _stat_or_raise(path1)
    b = await _stat_or_raise(path2)
    return bool(_path.samestat(a, b))


async def sameopenfile(fp1: int, fp2: int) -> bool:
    """``os.path.sameopenfile``."""
    return await samefile(fp1, fp2)


ismount = wrap(_path.ismount)
abspath = wrap(_path.abspath)
