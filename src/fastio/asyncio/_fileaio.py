"""``AioFiles``: the requests of ``fastio.asyncio.open`` on Linux native AIO
(``fastio.aio.Context``), for ``O_DIRECT`` files where io_uring cannot be used.

Linux AIO is asynchronous only for ``O_DIRECT`` reads and writes: on a file
opened without it, ``io_submit`` itself does the IO before it returns (still
correct, but the loop waits for it). So this engine is what an ``O_DIRECT``
file (an ``fd`` opened with it, or an ``opener`` that adds it) gets when
io_uring cannot be had, and what ``engine="aio"`` / ``FASTIO_FILE_ENGINE=aio``
forces. One context per event loop; every request signals one eventfd
(``IOCB_FLAG_RESFD``), which the loop watches with ``add_reader`` while
requests are out.

What AIO has no command for goes elsewhere: opening, ``stat``, ``truncate``
and the path calls of ``fastio.asyncio.os`` to the loop's default executor,
an append (``O_APPEND``: AIO does not move the file position, which
``tell()`` then reads) to a thread too, and ``close`` is a plain ``close(2)``.
``fsync``/``fdatasync`` are AIO commands; a file system that refuses them
(``EINVAL``) gets them in a thread.

Cancellation: ``io_cancel`` cannot cancel a file read or write on Linux (only
polls), so a cancelled await waits for its request's completion, then raises
``CancelledError``: the kernel has let go of the buffer by then.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import functools
import os
import weakref
from typing import Any, Callable, Optional

from fastio._errors import UnsupportedError
from fastio.asyncio._fileengine import AT_FDCWD, KernelFiles, errno_of

__all__ = ["AioFiles", "is_direct"]

#: eventfd(2) flags (linux/eventfd.h: the O_ values)
_EFD_CLOEXEC = os.O_CLOEXEC
_EFD_NONBLOCK = os.O_NONBLOCK
_O_DIRECT = getattr(os, "O_DIRECT", 0o40000)


def _eventfd() -> int:
    """A non-blocking eventfd (``os.eventfd`` from Python 3.10, libc's before)."""
    if hasattr(os, "eventfd"):
        return os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.eventfd(0, _EFD_NONBLOCK | _EFD_CLOEXEC)
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return int(fd)


def is_direct(fd: int) -> bool:
    """Whether ``fd`` was opened with ``O_DIRECT``."""
    import fcntl

    return bool(fcntl.fcntl(fd, fcntl.F_GETFL) & _O_DIRECT)


def _close(ctx: Any, efd: int) -> None:
    if not ctx.closed:
        ctx.close()
    try:
        os.close(efd)
    except OSError:
        pass


class AioFiles(KernelFiles):
    """The file requests of one event loop on one AIO context (see the module's text)."""

    name = "aio"
    what = "AIO context"

    def __init__(self, loop: asyncio.AbstractEventLoop, context_factory: Optional[Callable[..., Any]] = None,
                 maxevents: int = 256) -> None:
        if context_factory is None:
            from fastio import aio

            if not aio.available():
                raise UnsupportedError(f"Linux AIO cannot be used here: {aio.why_unavailable()}")
            context_factory = aio.Context
        super().__init__(loop)
        self.ctx = context_factory(maxevents)
        self.maxevents = maxevents
        try:
            self.fd = _eventfd()    # (every request signals it: what the loop watches)
            self.ctx.register_eventfd(self.fd)
        except BaseException:
            self.ctx.close()
            raise
        # closed with the loop's last reference (a context holds kernel memory)
        weakref.finalize(loop, _close, self.ctx, self.fd)

    @property
    def closed(self) -> bool:
        return bool(self.ctx.closed)

    # -- submission ----------------------------------------------------------

    def submit(self) -> None:
        self.ctx.submit()

    def harvest(self) -> list:
        """What the context completed; what the kernel had no room for yet
        is submitted."""
        try:
            os.read(self.fd, 8)     # (the count is not needed: the context says what came)
        except BlockingIOError:
            pass
        batch = self.ctx.getevents(0, timeout=0)
        done = list(batch)
        while len(batch) >= self.maxevents:    # (at most maxevents a call: take the rest too, since
            batch = self.ctx.getevents(0, timeout=0)    # the eventfd's count was just reset)
            done += batch
        if self.ctx.queued:
            self.ctx.submit()
        return done

    @property
    def inflight(self) -> int:
        return int(self.ctx.inflight)

    def cancel_request(self, rid: Any) -> bool:
        if self.ctx.closed:
            return False    # (closed: the context drained its requests)
        try:
            self.ctx.cancel(rid)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            # EINVAL: a file read or write runs to its end; its completion comes
        return True

    # -- operations (each returns the completion's res; < 0 is -errno) ------

    async def read(self, fd: int, buf: Any, offset: int, direct: bool = True) -> int:
        """A read of ``len(buf)`` bytes at ``offset`` into ``buf`` (for
        ``O_DIRECT``: aligned as the file needs, see ``fastio.aio.dio_alignment``).
        (``direct``: whether the file is ``O_DIRECT``; AIO reads are the same either way.)"""
        self.check()
        fut = self.loop.create_future()
        rid = self.ctx.prep_pread(fd, buf, offset, user_data=fut)
        return await self.complete(fut, rid, direct)

    async def read_bytes(self, fd: int, n: int, offset: int, direct: bool = True) -> bytes:
        """``n`` bytes at ``offset`` (fewer at the end of the file), read into
        a page-aligned buffer (what ``O_DIRECT`` needs), as ``bytes``."""
        self.check()
        return await self.read_aligned(fd, n, offset)

    async def write(self, fd: int, buf: Any, offset: int) -> int:
        """A write of ``buf`` at ``offset``; -1: at the end (an append, in a
        thread: AIO would not move the file position)."""
        self.check()
        if offset < 0:
            return await self.thread.call(errno_of, os.write, fd, buf)     # type: ignore[no-any-return]
        fut = self.loop.create_future()
        rid = self.ctx.prep_pwrite(fd, buf, offset, user_data=fut)
        return await self.complete(fut, rid)

    async def fsync(self, fd: int, datasync: bool = False) -> int:
        self.check()
        fut = self.loop.create_future()
        prep = self.ctx.prep_fdatasync if datasync else self.ctx.prep_fsync
        rid = prep(fd, user_data=fut)
        res = await self.complete(fut, rid)
        if res == -errno.EINVAL:    # (a file system without AIO fsync)
            res = await self.thread.call(errno_of, os.fdatasync if datasync else os.fsync, fd)
        return res

    async def openat(self, path: Any, flags: int, mode: int, dir_fd: int = AT_FDCWD) -> int:
        self.check()
        return await self.thread.call(  # type: ignore[no-any-return]
            errno_of, functools.partial(os.open, path, flags, mode, dir_fd=None if dir_fd == AT_FDCWD else dir_fd))

    async def close(self, fd: int) -> int:
        """``close(2)`` (AIO has no close; works from anywhere: an fd is never left open)."""
        return errno_of(os.close, fd)

    async def fstat(self, fd: int) -> os.stat_result:
        self.check()
        return await self.thread.call(os.fstat, fd)     # type: ignore[no-any-return]

