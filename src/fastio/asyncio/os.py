"""``fastio.asyncio.os``: aiofiles.os' names, with ``os``' arguments,
results and exceptions, awaitable.

``stat`` and ``lstat`` are io_uring requests (``IORING_OP_STATX``) on the
running loop's file ring; the others run the ``os`` call in the loop's
default executor (as aiofiles does) until their io_uring operations are
wired here. ``path`` holds ``exists``, ``isfile``, ``isdir``, ``islink``,
``getsize``, ``getmtime`` ... (aiofiles.os.path's names). Where io_uring
cannot be used (or with ``FASTIO_FILE_ENGINE=thread``) every call runs in
the executor.
"""

from __future__ import annotations

import asyncio
import os as _os
from functools import partial
from typing import Any, Optional

from fastio.asyncio import _fileengine, ospath as path
from fastio.asyncio._fileengine import AT_FDCWD, AT_SYMLINK_NOFOLLOW, UringFiles, engine_for, wrap

__all__ = ["stat", "lstat", "rename", "renames", "replace", "remove", "unlink", "mkdir", "makedirs", "rmdir",
           "removedirs", "link", "symlink", "readlink", "listdir", "scandir", "sendfile", "statvfs", "access",
           "getcwd", "path", "wrap"]


async def stat(path: Any, *, dir_fd: Optional[int] = None, follow_symlinks: bool = True) -> _os.stat_result:
    """``os.stat``, through ``IORING_OP_STATX``."""
    loop = asyncio.get_running_loop()
    eng = engine_for(loop)
    if not isinstance(eng, UringFiles):
        return await eng.call(partial(_os.stat, path, dir_fd=dir_fd, follow_symlinks=follow_symlinks))
    buf = bytearray(256)
    if isinstance(path, int) and not isinstance(path, bool):
        if dir_fd is not None:
            raise ValueError("stat: can't specify dir_fd without matching path")
        res = await eng.statx_fd(path, buf)
        name: Any = None
    else:
        name = _os.fspath(path)
        res = await eng.statx(name, 0 if follow_symlinks else AT_SYMLINK_NOFOLLOW, buf,
                              dir_fd=AT_FDCWD if dir_fd is None else dir_fd)
    if res < 0:
        raise _fileengine._os_error(res, name)
    return _fileengine.stat_result(buf)


async def lstat(path: Any, *, dir_fd: Optional[int] = None) -> _os.stat_result:
    """``os.lstat``, through ``IORING_OP_STATX``."""
    return await stat(path, dir_fd=dir_fd, follow_symlinks=False)


rename = wrap(_os.rename)
renames = wrap(_os.renames)
replace = wrap(_os.replace)
remove = wrap(_os.remove)
unlink = wrap(_os.unlink)
mkdir = wrap(_os.mkdir)
makedirs = wrap(_os.makedirs)
rmdir = wrap(_os.rmdir)
removedirs = wrap(_os.removedirs)
link = wrap(_os.link)
symlink = wrap(_os.symlink)
readlink = wrap(_os.readlink)
listdir = wrap(_os.listdir)
scandir = wrap(_os.scandir)
sendfile = wrap(_os.sendfile)
statvfs = wrap(_os.statvfs)
access = wrap(_os.access)
getcwd = wrap(_os.getcwd)
