"""Where the requests of ``fastio.asyncio.open`` and ``fastio.asyncio.os`` go.

``UringFiles``: the requests of one event loop on one ``fastio.uring.Ring``.

* On fastio's compiled loop on its ``uring`` engine, the ring is the loop's
  own: a request is prepared on it (``prep_*``, a future as ``user_data``)
  and goes to the kernel with the loop's next ``io_uring_enter``, the one
  that also submits the loop's polls and waits: no system call of its own.
  Its completion comes back through that wait (the engine's completion
  handler) and wakes the task in the same turn.
* On any other running loop (the stdlib's, uvloop, fastio's on epoll), a
  ring of the engine's own. A request is submitted at once, in one
  ``io_uring_enter``; what the kernel completed inside that call (a write of
  cached pages, an open, a close: most file requests) is returned without
  the task being suspended, as a synchronous call would, but without the
  thread hand-off of a thread pool. What completes later is announced by the
  ring's own fd, which is readable while its completion queue holds
  entries: the loop watches it with ``add_reader`` while requests are out
  (an io_uring fd can be polled; no eventfd, and no read of one, is needed).

Cancellation: cancelling an await cancels the kernel request
(``ASYNC_CANCEL``), and the awaiting task sees ``CancelledError`` only once
the request's completion has come back: until then the kernel may still write
into the buffer, which the ring keeps pinned.

``ThreadFiles``: the same calls as blocking system calls in the loop's
default executor, for where io_uring cannot be used and for files whose
reads the kernel cannot do asynchronously (pipes, ttys, character devices).

``AioFiles`` (``fastio.asyncio._fileaio``): Linux native AIO, for
``O_DIRECT`` files where io_uring cannot be used.

``FASTIO_FILE_ENGINE=uring|aio|thread`` forces one (forcing ``uring`` or
``aio`` where it cannot be had raises ``fastio.UnsupportedError``).
"""

from __future__ import annotations

import asyncio
import errno
import functools
import os
import struct
import weakref
from typing import Any, Callable, Optional, Union

from fastio import _backend
from fastio._errors import UnsupportedError

__all__ = ["ENGINES", "UringFiles", "ThreadFiles", "engine_for", "default_engine_name", "errno_of", "stat_result",
           "wrap"]

ENGINES = ("uring", "aio", "thread")

#: io_uring's FSYNC_DATASYNC (fsync_flags of IORING_OP_FSYNC)
FSYNC_DATASYNC = 1
#: the opcode of ftruncate, which not every kernel's io_uring has (probe())
IORING_OP_FTRUNCATE = 55
#: statx(2)
AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW = 0x100
AT_EMPTY_PATH = 0x1000
STATX_BASIC_STATS = 0x7FF
STATX_SIZE = 64

_PAGE = os.sysconf("SC_PAGE_SIZE")
_POOLED = 16 * _PAGE    # the largest O_DIRECT read buffer kept for reuse
_POOLED_EACH = 64       # at most this many of each size

# Bumped in a forked child: an engine made before the fork is the parent's.
_fork_generation = 0


def _forked() -> None:
    global _fork_generation
    _fork_generation += 1


os.register_at_fork(after_in_child=_forked)

_engines: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Any]]" = weakref.WeakKeyDictionary()


def default_engine_name() -> str:
    """The engine a new file gets: ``FASTIO_FILE_ENGINE`` if set, else
    ``uring`` where io_uring works, else ``thread``."""
    forced = os.environ.get("FASTIO_FILE_ENGINE", "")
    if forced:
        if forced not in ENGINES:
            raise ValueError(f"FASTIO_FILE_ENGINE={forced!r}: expected one of {', '.join(ENGINES)}")
        return forced
    from fastio import uring

    return "uring" if uring.available() else "thread"


def engine_for(loop: asyncio.AbstractEventLoop, name: Optional[str] = None, *,
               ring_factory: Optional[Callable[..., Any]] = None,
               context_factory: Optional[Callable[..., Any]] = None) -> "KernelFiles | ThreadFiles":
    """The engine ``name`` (default: ``default_engine_name()``) of ``loop``,
    made on first use and kept for the loop's life. ``ring_factory`` (a
    ``Ring`` class of either backend) is used when the loop's uring engine
    is made by this call, ``context_factory`` (an AIO ``Context`` class) for
    its aio engine."""
    if name is None:
        name = default_engine_name()
    if name not in ENGINES:
        raise ValueError(f"engine={name!r}: expected one of {', '.join(ENGINES)}")
    per_loop = _engines.get(loop)
    if per_loop is None:
        per_loop = _engines[loop] = {}
    eng = per_loop.get(name)
    if eng is None or eng.closed:
        if name == "uring":
            eng = UringFiles(loop, ring_factory)
        elif name == "aio":
            from fastio.asyncio._fileaio import AioFiles

            eng = AioFiles(loop, context_factory)
        else:
            eng = ThreadFiles(loop)
        per_loop[name] = eng
    return eng


def wrap(func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` as a coroutine function whose call runs in the running loop's
    default executor (aiofiles.os.wrap)."""

    async def run(*args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, functools.partial(func, *args, **kwargs))

    run.__name__ = func.__name__
    run.__qualname__ = func.__name__
    run.__doc__ = f"``{func.__module__}.{func.__name__}``, in the loop's default executor."
    return run


def errno_of(call: Callable[..., Any], *args: Any) -> int:
    """``call(*args)``'s result, or ``-errno`` for its ``OSError``."""
    try:
        return int(call(*args) or 0)
    except OSError as exc:
        return -(exc.errno or errno.EIO)


def _os_error(res: int, filename: Any = None, filename2: Any = None) -> OSError:
    err = -res
    if filename2 is not None:
        return OSError(err, os.strerror(err), filename, None, filename2)
    if filename is not None:
        return OSError(err, os.strerror(err), filename)
    return OSError(err, os.strerror(err))


class ThreadFiles:
    """Blocking calls in the loop's default executor."""

    name = "thread"
    closed = False

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = weakref.ref(loop)     # (the engines of a loop die with it)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop()
        if loop is None:
            raise RuntimeError("the engine's event loop is gone")
        return loop

    async def call(self, func: Callable[..., Any], *args: Any) -> Any:
        """``func(*args)`` in the running loop's default executor (a file
        opened in one loop may be closed in another, as a built-in file may)."""
        return await asyncio.get_running_loop().run_in_executor(None, func, *args)


def _loop_ring(loop: asyncio.AbstractEventLoop) -> Any:
    """The engine of fastio's compiled loop when ``loop`` is one on io_uring
    (its ``ring`` is the loop's own), else None."""
    try:
        from fastio._c._loop_core import LoopCore
        from fastio._c._loop_uring import UringEngine
    except ImportError:     # (no compiled backend)
        return None
    if isinstance(loop, LoopCore) and isinstance(loop._engine, UringEngine):
        return loop._engine
    return None


class KernelFiles:
    """What the two kernel engines (``UringFiles``, ``fastio.asyncio._fileaio.AioFiles``)
    share: the loop and fork checks, and the bookkeeping that hands each
    completion (``user_data``: its future) to its await, cancelled or not."""

    name = ""
    what = ""   # (for errors: "ring", "AIO context")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = weakref.ref(loop)     # (the engines of a loop die with it)
        self.generation = _fork_generation
        self.unhandled: list = []   # completions taken off the kernel, not resolved yet
        self.last: Any = None       # the completion resolved last (see take())
        # futures whose await was cancelled -> the future that their
        # completion resolves (the cancelled task waits for it)
        self.orphans: dict[asyncio.Future, asyncio.Future] = {}
        # cancelled futures whose completion came before their task saw the
        # cancellation (nothing left to wait for)
        self.released: set[asyncio.Future] = set()
        self.thread = ThreadFiles(loop)
        # page-aligned buffers of O_DIRECT reads, by size, free for reuse
        # (a new one is an mmap, and its munmap a TLB flush on every CPU)
        self.aligned: dict[int, list] = {}

    @property
    def closed(self) -> bool:
        raise NotImplementedError

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop()
        if loop is None:
            raise RuntimeError("the engine's event loop is gone")
        return loop

    def forget(self, fd: int) -> None:
        """``fd`` is no longer the file it was (closed, or handed back to its
        owner): drop what the engine noted about it."""

    def check(self) -> None:
        if self.generation != _fork_generation:
            raise RuntimeError(f"fastio.asyncio file IO used in a forked child: the {self.what} is the parent's")
        if self.closed:
            raise RuntimeError(f"the loop's file {self.what} is closed")
        if asyncio.get_running_loop() is not self._loop():
            raise RuntimeError("a fastio.asyncio file is used from another event loop than the one it was "
                               "opened in")

    def take(self, completions: list) -> None:
        """Resolve ``completions`` in order, taking each off the list once
        resolved: one whose resolving raised is handed in again, and one
        resolved already (``last``: an exception came after it) is not
        resolved twice. The loop engine's completion handler on the loop's
        own ring."""
        taken = 0
        try:
            for c in completions:
                if c is not self.last:
                    self.resolve(c)
                taken += 1
        finally:
            del completions[:taken]
        # All resolved: let go of the last one (its future holds the loop,
        # and a completion is not tracked by the cycle collector: kept, the
        # loop, its ring or AIO context and eventfd would never be freed).
        self.last = None

    def resolve(self, c: Any) -> None:
        fut = c.user_data
        if fut is not None:     # (None: a cancel's own completion)
            if not fut.done():
                fut.set_result(c.res)
            else:
                gone = self.orphans.pop(fut, None)
                if gone is None:
                    self.released.add(fut)
                elif not gone.done():
                    gone.set_result(c.res)
        self.last = c

    def cancel_request(self, ud: Any) -> bool:
        """Ask the kernel to cancel request ``ud``: True if its completion is
        still to come, False if the engine is closed (its requests drained)."""
        raise NotImplementedError

    async def ftruncate(self, fd: int, size: int) -> int:
        """``ftruncate(2)`` (0 or ``-errno``), on a thread: the kernel
        engine has no request for it."""
        return await self.thread.call(errno_of, os.ftruncate, fd, size)  # type: ignore[no-any-return]

    async def read(self, fd: int, buf: Any, offset: int, direct: bool = False) -> int:
        raise NotImplementedError

    async def read_aligned(self, fd: int, n: int, offset: int) -> bytes:
        """``n`` bytes at ``offset`` (fewer at the end of the file), as
        ``bytes``, for an ``O_DIRECT`` file: the kernel refuses (``EINVAL``)
        a direct read whose buffer, offset or length is not a multiple of
        the device's block, so the read covers the whole pages around the
        range (a page is a multiple of every logical block size Linux
        allows), into a page-aligned buffer, and the range is cut out."""
        from fastio.aio import aligned_buffer

        if n == 0:
            return b""
        start = offset - offset % _PAGE
        end = -(-(offset + n) // _PAGE) * _PAGE
        size = end - start
        pool = self.aligned.get(size) if size <= _POOLED else None
        buf = pool.pop() if pool else aligned_buffer(size)
        res = await self.read(fd, buf, start, True)
        # (here the kernel has let go of buf: it may serve another read;
        # one whose await was cancelled is not given back)
        skip = offset - start
        data = b"" if res < 0 else bytes(buf[skip:max(skip, min(res, skip + n))])
        if size <= _POOLED:
            pool = self.aligned.setdefault(size, [])
            if len(pool) < _POOLED_EACH:
                pool.append(buf)
        if res < 0:
            raise _os_error(res)
        return data

    # what each engine does with its kernel object: the fd the loop watches
    # (``fd``), hand the requests prepared to the kernel, take off what it
    # completed, count what it has not

    fd = -1
    watching = False    # the loop watches fd

    def submit(self) -> None:
        raise NotImplementedError

    def harvest(self) -> list:
        raise NotImplementedError

    @property
    def inflight(self) -> int:
        raise NotImplementedError

    async def complete(self, fut: asyncio.Future, ud: Any, device: bool = False) -> int:
        """Submit the request just prepared (``ud``, whose ``user_data`` is
        ``fut``): its ``res``, at once if the kernel completed it during the
        submit, else once its completion comes (the loop watching ``fd``).

        ``device``: a request for the device itself (an ``O_DIRECT`` read),
        which no submit completes at once: the requests the tasks prepare in
        one turn of the loop go to the kernel together, in one submit at the
        turn's end. Each submit of a direct read costs the device's
        notification (on a VM a trap to the hypervisor, 15-25 us here, in
        the submitting call), and one at a time the tasks' reads were
        serialized behind it: two in flight out of 64, 12k reads/s where
        one submit for all of them gives the device the whole batch."""
        if device:
            self.watch()
            if not self.flush_pending:
                self.flush_pending = True
                self.loop.call_soon(self.flush)
            return await self.wait(fut, ud)
        try:
            self.submit()
            self.reap()
            if fut.done():
                return int(fut.result())
            self.watch()
        except BaseException:
            # (a signal handler's exception inside io_uring_enter, a failing
            # callback): the request may be the kernel's already, and its
            # buffer with it; the caller hears of the error only once the
            # kernel has let go.
            await self.settle(fut, ud)
            raise
        return await self.wait(fut, ud)

    flush_pending = False

    def flush(self) -> None:
        """Submit what the loop's turn prepared (``complete(device=True)``)."""
        self.flush_pending = False
        if self.closed:
            return
        try:
            self.submit()
        except BaseException:
            # (a signal handler's exception in the submit: what is left in
            # the queue goes with the next flush)
            self.flush_pending = True
            self.loop.call_soon(self.flush)
            raise
        self.reap()

    def watch(self) -> None:
        """The loop watches ``fd`` (while requests are out)."""
        if not self.watching:
            self.loop.add_reader(self.fd, self.reap)
            self.watching = True

    async def settle(self, fut: asyncio.Future, ud: Any) -> None:
        """Wait, whatever comes, until request ``ud`` (whose ``user_data`` is
        ``fut``) has completed, after asking the kernel to cancel it."""
        if fut.done():
            return
        try:
            pending = self.cancel_request(ud)
            if pending:
                self.watch()
                self.submit()
        except Exception:
            pending = not self.closed   # (could not ask: it completes by itself; a closed engine drained it)
        while pending and not fut.done():
            try:
                await asyncio.shield(fut)
            except asyncio.CancelledError:
                continue
            except Exception:
                break

    def reap(self) -> None:
        """Hand every completion to its future (or, for a cancelled await, to
        the future its task waits on)."""
        if self.closed:
            return
        # (Kept in unhandled until resolved: an exception from a signal
        # handler or a finalizer half-way loses none of them.)
        self.unhandled += self.harvest()
        self.take(self.unhandled)
        if not self.inflight and self.watching:
            self.loop.remove_reader(self.fd)
            self.watching = False

    async def wait(self, fut: asyncio.Future, ud: Any) -> int:
        """The completion's ``res`` of request ``ud`` (whose ``user_data`` is
        ``fut``). A cancelled await cancels the request and raises
        ``CancelledError`` once the kernel has let go of its buffers."""
        try:
            return await fut
        except asyncio.CancelledError:
            if not fut.cancelled():
                raise
            if fut in self.released:
                self.released.discard(fut)
                raise
            gone = self.loop.create_future()
            self.orphans[fut] = gone
            try:
                pending = self.cancel_request(ud)
            except Exception:
                # (the cancel could not be asked for: the request completes
                # by itself, and its buffer is the kernel's until then)
                pending = not self.closed
            if not pending:
                gone.set_result(None)
            while not gone.done():
                try:
                    await asyncio.shield(gone)
                except asyncio.CancelledError:
                    continue    # cancelled again: still wait for the kernel
            raise


class UringFiles(KernelFiles):
    """The file requests of one event loop, on its ring (see the module's
    text): ``shared`` says whether that is the loop's own."""

    name = "uring"
    what = "ring"

    def __init__(self, loop: asyncio.AbstractEventLoop, ring_factory: Optional[Callable[..., Any]] = None,
                 entries: int = 256) -> None:
        loop_engine = _loop_ring(loop)
        if loop_engine is not None and ring_factory is not None and not isinstance(loop_engine.ring, ring_factory):
            loop_engine = None      # a ring of another backend was asked for
        if ring_factory is None and loop_engine is None:
            from fastio import uring

            if not uring.available():
                raise UnsupportedError(f"io_uring cannot be used here: {uring.why_unavailable()}")
            ring_factory = uring.Ring
        super().__init__(loop)
        self.shared = loop_engine is not None
        if loop_engine is not None:
            self.ring = loop_engine.ring    # closed by the loop
            loop_engine.set_completion_handler(self.take)
        else:
            assert ring_factory is not None
            self.ring = ring_factory(entries, cq_entries=4 * entries)
            # closed with the loop's last reference (a ring holds kernel memory)
            weakref.finalize(loop, _close_ring, self.ring)
        self.fd = self.ring.fileno()
        self.opcodes = frozenset(self.ring.probe())     # what this kernel's io_uring can do
        self.nowait = hasattr(os, "RWF_NOWAIT")         # reads try preadv2(RWF_NOWAIT) first
        # fds whose file system refuses RWF_NOWAIT (EOPNOTSUPP: tmpfs on
        # Linux 6.18, for one): their reads go straight to the ring, and the
        # other files keep the try
        self.no_nowait: set[int] = set()
        self.backend = "pure" if type(self.ring).__module__.startswith("fastio._pure") else "c"
        self.pread_nowait = _backend.load("_fileio", self.backend).pread_nowait

    @property
    def closed(self) -> bool:
        return self.ring.closed

    # -- submission ----------------------------------------------------------

    async def complete(self, fut: asyncio.Future, ud: Any, device: bool = False) -> int:
        """As ``KernelFiles.complete``; on the loop's own ring, the loop's
        next wait submits the request."""
        if self.shared:
            return await self.wait(fut, ud)
        return await super().complete(fut, ud, device)

    def submit(self) -> None:
        self.ring.submit()

    def harvest(self) -> list:
        return self.ring.peek()  # type: ignore[no-any-return]

    @property
    def inflight(self) -> int:
        return int(self.ring.inflight)

    def cancel_request(self, ud: Any) -> bool:
        if self.ring.closed:
            return False    # (closed: the ring drained its requests)
        self.ring.prep_async_cancel(ud)     # (its own completion is skipped by reap)
        if not self.shared:
            self.ring.submit()
        return True

    # -- operations (each returns the completion's res; < 0 is -errno) ------

    async def read(self, fd: int, buf: Any, offset: int, direct: bool = False) -> int:
        """A read of ``len(buf)`` bytes at ``offset`` (-1: the file position).
        ``direct``: the file is ``O_DIRECT`` (no page cache: no ``RWF_NOWAIT`` try).

        At an offset, ``preadv2(RWF_NOWAIT)`` first: it copies what the page
        cache holds and returns ``EAGAIN`` rather than wait for a device,
        which is the attempt io_uring itself makes inline before it hands a
        read to a worker, without the ring's own cost (the ring's
        submit-and-reap is about 2 us more per 4 KiB here). What it could
        not read (nothing, or the part not cached) goes to the ring."""
        self.check()    # (first: a forked child or another loop is refused whether or not the cache has it)
        done = 0
        if self.nowait and offset >= 0 and not direct and fd not in self.no_nowait:
            try:
                done = os.preadv(fd, (buf,), offset, os.RWF_NOWAIT)
            except BlockingIOError:
                done = 0
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                    return -exc.errno   # (as the ring would report it: ESPIPE, EBADF ...)
                self.no_nowait.add(fd)  # (a file system without it: this file's reads go to the ring)
            else:
                n = memoryview(buf).nbytes
                if done == n or done == 0 and n > 0 or _at_end(fd, offset + done):
                    return done         # all of it, or the end of the file
                buf = memoryview(buf).cast("B")[done:]
                offset += done
        fut = self.loop.create_future()
        ud = self.ring.prep_read(fd, buf, offset, user_data=fut)
        res = await self.complete(fut, ud, direct)
        if done and res >= 0:
            return done + res
        return done if done and res < 0 else res

    async def read_bytes(self, fd: int, n: int, offset: int, direct: bool = False) -> bytes:
        """``n`` bytes at ``offset`` (fewer at the end of the file), as
        ``bytes``; ``OSError`` for an error. ``RWF_NOWAIT`` first, as
        :meth:`read`; the rest through the ring (for an ``O_DIRECT`` file,
        ``direct``: all of it, into a page-aligned buffer)."""
        self.check()
        head = b""
        if direct:
            return await self.read_aligned(fd, n, offset)
        if self.nowait and offset >= 0 and n > 0 and fd not in self.no_nowait:
            try:
                got = self.pread_nowait(fd, n, offset)    # (None: not cached)
            except OSError as exc:
                if exc.errno == errno.ENOSYS:
                    self.nowait = False         # (no preadv2 in this build: for no file)
                elif exc.errno in (errno.EOPNOTSUPP, errno.EINVAL):
                    self.no_nowait.add(fd)      # (this file's file system cannot)
                else:
                    raise
                got = None
            if got is not None:
                if len(got) == n or not got or _at_end(fd, offset + len(got)):
                    return got      # all of it, or the end of the file
                head = got
                n -= len(got)
                offset += len(got)
        buf = bytearray(n)
        fut = self.loop.create_future()
        ud = self.ring.prep_read(fd, buf, offset, user_data=fut)
        res = await self.complete(fut, ud)
        if res < 0:
            if head:
                return head
            raise _os_error(res)
        if res < n:
            del buf[res:]
        return head + buf if head else bytes(buf)

    async def write(self, fd: int, buf: Any, offset: int) -> int:
        self.check()
        fut = self.loop.create_future()
        ud = self.ring.prep_write(fd, buf, offset, user_data=fut)
        return await self.complete(fut, ud)

    async def fsync(self, fd: int, datasync: bool = False) -> int:
        self.check()
        fut = self.loop.create_future()
        ud = self.ring.prep_fsync(fd, fsync_flags=FSYNC_DATASYNC if datasync else 0, user_data=fut)
        return await self.complete(fut, ud)

    async def openat(self, path: Any, flags: int, mode: int, dir_fd: int = AT_FDCWD) -> int:
        self.check()
        fut = self.loop.create_future()
        ud = self.ring.prep_openat(dir_fd, path, flags, mode, user_data=fut)
        return await self.complete(fut, ud)

    def forget(self, fd: int) -> None:
        self.no_nowait.discard(fd)   # (a later file with this number may well take RWF_NOWAIT)

    async def close(self, fd: int) -> int:
        """``IORING_OP_CLOSE`` of ``fd``; ``close(2)`` here where the ring
        cannot take it (a forked child, another loop, a closed ring): an fd
        is never left open."""
        self.forget(fd)
        try:
            self.check()
            fut = self.loop.create_future()
            ud = self.ring.prep_close(fd, user_data=fut)
        except Exception:
            return errno_of(os.close, fd)
        return await self.complete(fut, ud)

    async def statx(self, path: Any, flags: int, buf: bytearray, dir_fd: int = AT_FDCWD,
                    mask: int = STATX_BASIC_STATS) -> int:
        self.check()
        fut = self.loop.create_future()
        ud = self.ring.prep_statx(dir_fd, path, flags, mask, buf, user_data=fut)
        return await self.complete(fut, ud)

    async def fstat(self, fd: int) -> os.stat_result:
        """``os.fstat(fd)`` through ``IORING_OP_STATX``."""
        buf = bytearray(256)
        res = await self.statx_fd(fd, buf)
        if res < 0:
            raise _os_error(res)
        return stat_result(buf)

    async def statx_fd(self, fd: int, buf: bytearray, mask: int = STATX_BASIC_STATS) -> int:
        """``fstat``: a statx of ``fd`` itself (``AT_EMPTY_PATH``)."""
        return await self.statx("", AT_EMPTY_PATH, buf, dir_fd=fd, mask=mask)

    async def path_op(self, name: str, *args: Any) -> int:
        """One of the ring's path operations (``renameat``, ``unlinkat``,
        ``mkdirat``, ``symlinkat``, ``linkat``): its ``res``."""
        self.check()
        fut = self.loop.create_future()
        ud = getattr(self.ring, "prep_" + name)(*args, user_data=fut)
        return await self.complete(fut, ud)

    async def ftruncate(self, fd: int, size: int) -> int:
        """``IORING_OP_FTRUNCATE`` where this kernel has it (6.9), a thread otherwise."""
        if IORING_OP_FTRUNCATE not in self.opcodes:
            return await super().ftruncate(fd, size)
        self.check()
        fut = self.loop.create_future()
        ud = self.ring.prep_ftruncate(fd, size, user_data=fut)
        return await self.complete(fut, ud)

    async def fallocate(self, fd: int, mode: int, offset: int, length: int) -> int:
        self.check()
        fut = self.loop.create_future()
        ud = self.ring.prep_fallocate(fd, mode, offset, length, user_data=fut)
        return await self.complete(fut, ud)


#: linux/magic.h: the file systems whose files have no pages to wait for
#: but content the kernel makes on each read, synchronously (procfs,
#: sysfs, debugfs, tracefs, cgroup, cgroup2, securityfs, configfs,
#: efivarfs, bpf, pstore): their files get the thread engine
PSEUDO_FS = frozenset({0x9FA0, 0x62656572, 0x64626720, 0x74726163, 0x27E0EB, 0x63677270, 0x73636673,
                       0x62656570, 0xDE5E81E4, 0xCAFE4A11, 0x6165676C})


def on_pseudo_fs(fd: int) -> bool:
    """Whether ``fd`` is a file of procfs, sysfs or another of ``PSEUDO_FS``."""
    try:
        return _backend.load("_fileio").fs_type(fd) in PSEUDO_FS
    except OSError:
        return False


def _at_end(fd: int, offset: int) -> bool:
    """Whether ``offset`` is at or past the end of ``fd``'s file: what tells
    a short ``RWF_NOWAIT`` read at the end of the file (done) from one that
    stopped at a page not in the cache (the rest goes to the ring). An
    ``fstat`` is a fraction of a ring round trip."""
    try:
        return offset >= os.fstat(fd).st_size
    except OSError:
        return False


def _close_ring(ring: Any) -> None:
    if not ring.closed:
        ring.close()


# struct statx (linux/stat.h): the fields os.stat_result has
_STATX = struct.Struct("<IIQIIIH2xQQQ8x" + "qI4x" * 4 + "IIII")


def stat_result(buf: Union[bytes, bytearray]) -> os.stat_result:
    """``os.stat_result`` of a ``struct statx``, as ``os.stat`` makes it
    (float times as ``sec + nsec * 1e-9``, to the same bit)."""
    (_mask, blksize, _attrs, nlink, uid, gid, mode, ino, size, blocks,
     a_s, a_ns, _b_s, _b_ns, c_s, c_ns, m_s, m_ns,
     rdev_major, rdev_minor, dev_major, dev_minor) = _STATX.unpack_from(buf)
    atime_ns = a_s * 1_000_000_000 + a_ns
    mtime_ns = m_s * 1_000_000_000 + m_ns
    ctime_ns = c_s * 1_000_000_000 + c_ns
    return os.stat_result(
        (mode, ino, os.makedev(dev_major, dev_minor), nlink, uid, gid, size, a_s, m_s, c_s),
        {"st_atime": a_s + a_ns * 1e-9, "st_mtime": m_s + m_ns * 1e-9, "st_ctime": c_s + c_ns * 1e-9,
         "st_atime_ns": atime_ns, "st_mtime_ns": mtime_ns, "st_ctime_ns": ctime_ns,
         "st_blksize": blksize, "st_blocks": blocks, "st_rdev": os.makedev(rdev_major, rdev_minor)})
