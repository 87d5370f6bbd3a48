"""``fastio.asyncio.os``: aiofiles.os' names, with ``os``' arguments,
results and exceptions, awaitable.

On the running loop's file ring, as io_uring requests: ``stat``/``lstat``
(``IORING_OP_STATX``), ``rename``/``replace`` (``RENAMEAT``),
``remove``/``unlink``/``rmdir`` (``UNLINKAT``), ``mkdir`` (``MKDIRAT``),
``symlink`` (``SYMLINKAT``), ``link`` (``LINKAT``), each where the kernel has
the operation (5.11 and 5.15). The kernel runs these path operations on its
own worker threads (no GIL, no Python thread). The others (``listdir``,
``scandir``, ``makedirs`` ...) run the ``os`` call in the loop's default
executor, as aiofiles does. ``path`` holds ``exists``, ``isfile``, ``isdir``, ``islink``,
``getsize``, ``getmtime`` ... (aiofiles.os.path's names). Where io_uring
cannot be used (or with ``FASTIO_FILE_ENGINE=thread``, or ``aio``: AIO has no
path operations) every call runs in the executor.
"""

from __future__ import annotations

import asyncio
import os as _os
from functools import partial
from typing import Any, Optional

from fastio.asyncio import _fileengine, ospath as path
from fastio.asyncio._fileengine import AT_FDCWD, AT_SYMLINK_NOFOLLOW, ThreadFiles, UringFiles, engine_for, wrap

AT_REMOVEDIR = 0x200
AT_SYMLINK_FOLLOW = 0x400

__all__ = ["stat", "lstat", "rename", "renames", "replace", "remove", "unlink", "mkdir", "makedirs", "rmdir",
           "removedirs", "link", "symlink", "readlink", "listdir", "scandir", "sendfile", "statvfs", "access",
           "getcwd", "path", "wrap"]


async def stat(path: Any, *, dir_fd: Optional[int] = None, follow_symlinks: bool = True) -> _os.stat_result:
    """``os.stat``, through ``IORING_OP_STATX``."""
    loop = asyncio.get_running_loop()
    eng = engine_for(loop)
    if not isinstance(eng, UringFiles):     # (thread or aio: a thread)
        thread = eng if isinstance(eng, ThreadFiles) else eng.thread
        return await thread.call(partial(_os.stat, path, dir_fd=dir_fd, follow_symlinks=follow_symlinks))
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


def _uring(op: str) -> Optional[UringFiles]:
    """The running loop's uring engine, if the kernel has ``IORING_OP_<op>``."""
    from fastio import uring

    eng = engine_for(asyncio.get_running_loop())
    if isinstance(eng, UringFiles) and getattr(uring, "IORING_OP_" + op) in eng.opcodes:
        return eng
    return None


def _dir_fd(dir_fd: Optional[int]) -> int:
    return AT_FDCWD if dir_fd is None else dir_fd


async def rename(src: Any, dst: Any, *, src_dir_fd: Optional[int] = None, dst_dir_fd: Optional[int] = None) -> None:
    """``os.rename``, through ``IORING_OP_RENAMEAT`` (Linux 5.11)."""
    eng = _uring("RENAMEAT")
    if eng is None:
        return await wrap(_os.rename)(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)  # type: ignore[no-any-return]
    res = await eng.path_op("renameat", _dir_fd(src_dir_fd), src, _dir_fd(dst_dir_fd), dst, 0)
    if res < 0:
        raise _fileengine._os_error(res, _os.fspath(src), _os.fspath(dst))


async def replace(src: Any, dst: Any, *, src_dir_fd: Optional[int] = None, dst_dir_fd: Optional[int] = None) -> None:
    """``os.replace`` (on Linux the same rename(2) as ``os.rename``)."""
    await rename(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)


async def remove(path: Any, *, dir_fd: Optional[int] = None) -> None:
    """``os.remove``, through ``IORING_OP_UNLINKAT`` (Linux 5.11)."""
    eng = _uring("UNLINKAT")
    if eng is None:
        return await wrap(_os.remove)(path, dir_fd=dir_fd)  # type: ignore[no-any-return]
    res = await eng.path_op("unlinkat", _dir_fd(dir_fd), path, 0)
    if res < 0:
        raise _fileengine._os_error(res, _os.fspath(path))


unlink = remove


async def rmdir(path: Any, *, dir_fd: Optional[int] = None) -> None:
    """``os.rmdir``, through ``IORING_OP_UNLINKAT`` with ``AT_REMOVEDIR``."""
    eng = _uring("UNLINKAT")
    if eng is None:
        return await wrap(_os.rmdir)(path, dir_fd=dir_fd)  # type: ignore[no-any-return]
    res = await eng.path_op("unlinkat", _dir_fd(dir_fd), path, AT_REMOVEDIR)
    if res < 0:
        raise _fileengine._os_error(res, _os.fspath(path))


async def mkdir(path: Any, mode: int = 0o777, *, dir_fd: Optional[int] = None) -> None:
    """``os.mkdir``, through ``IORING_OP_MKDIRAT`` (Linux 5.15)."""
    eng = _uring("MKDIRAT")
    if eng is None:
        return await wrap(_os.mkdir)(path, mode, dir_fd=dir_fd)  # type: ignore[no-any-return]
    res = await eng.path_op("mkdirat", _dir_fd(dir_fd), path, mode)
    if res < 0:
        raise _fileengine._os_error(res, _os.fspath(path))


async def symlink(src: Any, dst: Any, target_is_directory: bool = False, *, dir_fd: Optional[int] = None) -> None:
    """``os.symlink``, through ``IORING_OP_SYMLINKAT`` (Linux 5.15)."""
    eng = _uring("SYMLINKAT")
    if eng is None:
        return await wrap(_os.symlink)(src, dst, target_is_directory, dir_fd=dir_fd)  # type: ignore[no-any-return]
    res = await eng.path_op("symlinkat", src, _dir_fd(dir_fd), dst)
    if res < 0:
        raise _fileengine._os_error(res, _os.fspath(src), _os.fspath(dst))


async def link(src: Any, dst: Any, *, src_dir_fd: Optional[int] = None, dst_dir_fd: Optional[int] = None,
               follow_symlinks: bool = True) -> None:
    """``os.link``, through ``IORING_OP_LINKAT`` (Linux 5.15)."""
    eng = _uring("LINKAT")
    if eng is None:
        return await wrap(_os.link)(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd,  # type: ignore[no-any-return]
                                    follow_symlinks=follow_symlinks)
    res = await eng.path_op("linkat", _dir_fd(src_dir_fd), src, _dir_fd(dst_dir_fd), dst,
                            AT_SYMLINK_FOLLOW if follow_symlinks else 0)
    if res < 0:
        raise _fileengine._os_error(res, _os.fspath(src), _os.fspath(dst))


renames = wrap(_os.renames)
makedirs = wrap(_os.makedirs)
removedirs = wrap(_os.removedirs)
readlink = wrap(_os.readlink)
listdir = wrap(_os.listdir)
scandir = wrap(_os.scandir)
sendfile = wrap(_os.sendfile)
statvfs = wrap(_os.statvfs)
access = wrap(_os.access)
getcwd = wrap(_os.getcwd)
