"""``fastio.asyncio.open``: files for asyncio whose reads and writes the
kernel does asynchronously (io_uring), with aiofiles' API and the built-in
``open``'s semantics.

On the ``uring`` engine a file is an fd and a position kept here: every read
and write is an io_uring request at an explicit offset (``pread``/``pwrite``
semantics, so concurrent awaits on one file each get their own range, in the
order they were called), opened with ``IORING_OP_OPENAT``, closed with
``IORING_OP_CLOSE``, synced with ``IORING_OP_FSYNC``, stat'ed with
``IORING_OP_STATX``; a read first tries ``preadv2(RWF_NOWAIT)``, which
copies cached pages at once and refuses rather than wait for a device (see
``_fileengine.UringFiles.read``). Writes go to the kernel when awaited (nothing is held
back for ``flush``). Appends (``"a"``) write at the file's end through the
kernel's ``O_APPEND``. Text mode decodes and encodes here, with the built-in
``open``'s ``encoding``, ``errors`` and ``newline`` rules; its ``tell()``
gives a byte position (what the built-in's is for stateless encodings) and
``seek()`` takes one back.

On the ``aio`` engine (``_fileaio``: ``O_DIRECT`` files where io_uring cannot
be used) the file is the same fd and position, its reads, writes and syncs
Linux AIO requests, the rest in a thread.

On the ``thread`` engine (where io_uring cannot be used, and for pipes, ttys
and character devices, whose reads io_uring would hand to a kernel thread
anyway), the file is the built-in ``open``'s, each call run in the loop's
default executor, as aiofiles does.
"""

from __future__ import annotations

import _multibytecodec
import asyncio
import codecs
import collections
import errno as _errno
import functools
import io
import locale
import operator
import os
import stat as _stat
import sys
from typing import TYPE_CHECKING, Any, AsyncIterator, Callable, Generator, Iterable, List, Optional, Union

from fastio import _backend
from fastio.asyncio import _fileaio, _fileengine
from fastio.asyncio._fileaio import AioFiles
from fastio.asyncio._fileengine import ThreadFiles, UringFiles, engine_for

__all__ = ["open", "AsyncFile", "AsyncBinaryFile", "AsyncTextFile", "AsyncThreadFile"]

_READ_CHUNK = 64 * 1024      # readline()'s and text read()'s read size
_SEEK_DATA_HOLE = tuple(getattr(os, name) for name in ("SEEK_DATA", "SEEK_HOLE") if hasattr(os, name))
_NEWLINES = (None, "", "\n", "\r", "\r\n")

# A text file's tell() cookie, laid out as the built-in's (CPython's C
# TextIOWrapper: so one may be given to the other's seek()): a 64-bit byte
# where decoding can start again with nothing held, then 32 bits each of the
# decoder's flags there, of the bytes beyond it to feed and of the characters
# to skip, then whether the last of them came from the end of the file. With
# nothing but a byte it is that byte's position.
_MASK64 = (1 << 64) - 1
_MASK32 = (1 << 32) - 1


def _pack_cookie(start: int, flags: int = 0, feed: int = 0, skip: int = 0, eof: bool = False) -> int:
    return start | flags << 64 | feed << 96 | skip << 128 | int(eof) << 160


def _initial_codec_flags(encoding: str, newline: Optional[str]) -> int:
    """The flags a cookie with none gets: a CJK decoder's initial ones (0
    is no state of an ISO-2022 decoder, whose CPython codec then calls a
    NULL function: the built-in's ``seek(1)`` of an iso2022_jp file crashes
    the interpreter), shifted as the newline decoder keeps them; else 0."""
    dec = codecs.getincrementaldecoder(encoding)()
    if not isinstance(dec, _multibytecodec.MultibyteIncrementalDecoder):
        return 0
    flags = dec.getstate()[1]
    return flags << 1 if newline is None or newline == "" else flags


def _unpack_cookie(cookie: int) -> tuple:
    """(start, flags, characters to skip); the bytes to feed need no
    separate step (decoding them is the start of decoding on)."""
    return cookie & _MASK64, cookie >> 64 & _MASK32, cookie >> 128 & _MASK32


class _Turns:
    """The operations that use one file's position take turns, in the order
    they were called, as the built-in file's lock makes them (``readline``,
    the text decoder's state, a read of several requests and ``close`` each
    see the state the one before left). Cheaper than ``asyncio.Lock`` when
    nobody waits: a flag."""

    __slots__ = ("busy", "waiters")

    def __init__(self) -> None:
        self.busy = False
        self.waiters: Optional[collections.deque] = None

    async def wait(self) -> None:
        """Wait for the turn (``busy`` was True); it is the caller's on return."""
        fut = asyncio.get_running_loop().create_future()
        if self.waiters is None:
            self.waiters = collections.deque()
        self.waiters.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()      # (handed the turn, then cancelled: the next one's)
            raise

    def release(self) -> None:
        """Hand the turn to the first waiter still waiting, or free it."""
        waiters = self.waiters
        while waiters:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return
        self.busy = False


def _in_turn(method: Callable[..., Any]) -> Callable[..., Any]:
    """``method`` (a coroutine method of a file with ``_turns``) run in its turn."""

    @functools.wraps(method)
    async def run(self: Any, *args: Any, **kwargs: Any) -> Any:
        turns = self._turns
        if turns.busy:
            await turns.wait()
        else:
            turns.busy = True
        try:
            return await method(self, *args, **kwargs)
        finally:
            turns.release()

    return run


def _parse_mode(mode: str, buffering: int, encoding: Optional[str], errors: Optional[str],
                newline: Optional[str]) -> tuple[int, bool, bool, bool, bool]:
    """(open flags, reading, writing, appending, binary) as the built-in open
    decides them, with its errors for what it refuses."""
    if not isinstance(mode, str):
        raise TypeError(f"open() argument 'mode' must be str, not {type(mode).__name__}")
    modes = set(mode)
    if modes - set("axrwb+t") or len(mode) > len(modes):
        raise ValueError(f"invalid mode: '{mode}'")
    creating, reading, writing, appending = "x" in modes, "r" in modes, "w" in modes, "a" in modes
    updating, text, binary = "+" in modes, "t" in modes, "b" in modes
    if text and binary:
        raise ValueError("can't have text and binary mode at once")
    if creating + reading + writing + appending != 1:
        raise ValueError("must have exactly one of create/read/write/append mode")
    if binary and encoding is not None:
        raise ValueError("binary mode doesn't take an encoding argument")
    if binary and errors is not None:
        raise ValueError("binary mode doesn't take an errors argument")
    if binary and newline is not None:
        raise ValueError("binary mode doesn't take a newline argument")
    if not binary and buffering == 0:
        raise ValueError("can't have unbuffered text I/O")
    if newline not in _NEWLINES:
        raise ValueError(f"illegal newline value: {newline!r}")
    if updating:
        flags = os.O_RDWR
    elif reading:
        flags = os.O_RDONLY
    else:
        flags = os.O_WRONLY
    if writing:
        flags |= os.O_CREAT | os.O_TRUNC
    elif creating:
        flags |= os.O_CREAT | os.O_EXCL
    elif appending:
        flags |= os.O_CREAT | os.O_APPEND
    return flags, reading or updating, writing or creating or appending or updating, appending, binary


def open(file: Union[str, bytes, os.PathLike, int], mode: str = "r", buffering: int = -1,
         encoding: Optional[str] = None, errors: Optional[str] = None, newline: Optional[str] = None,
         closefd: bool = True, opener: Optional[Callable[[str, int], int]] = None, *,
         engine: Optional[str] = None) -> "_Opening":
    """Open ``file`` for asyncio, with the built-in ``open``'s arguments and
    rules; await it, or use ``async with fastio.asyncio.open(...) as f``.

    ``engine``: ``"uring"`` (the kernel's asynchronous IO; the default where
    io_uring works), ``"aio"`` (Linux AIO: asynchronous for ``O_DIRECT``
    files, which an ``int`` file or an ``opener`` can open; the default for
    them where io_uring cannot be used) or ``"thread"`` (the built-in file in
    the default executor); ``FASTIO_FILE_ENGINE`` sets the default. A pipe, tty or
    character device always gets ``thread``. ``f.engine`` says which a file
    got."""
    flags, readable, writable, appending, binary = _parse_mode(mode, buffering, encoding, errors, newline)
    if isinstance(file, bool):
        raise TypeError("open() argument 'file' must be str, bytes, os.PathLike or int, not bool")
    if not isinstance(file, int):
        file = os.fspath(file)
    if isinstance(file, int) and file < 0:
        raise ValueError("negative file descriptor")
    if not closefd and not isinstance(file, int):
        raise ValueError("Cannot use closefd=False with file name")
    if not binary and encoding is not None:
        codecs.lookup(_encoding_name(encoding))   # (LookupError before anything is opened)
    return _Opening(_open(file, mode, buffering, encoding, errors, newline, closefd, opener, engine,
                          flags, readable, writable, appending, binary))


def _encoding_name(encoding: Optional[str]) -> str:
    """The codec a text file with ``encoding`` uses, as the built-in decides
    (``None`` and, from 3.10, ``"locale"``: the locale's; UTF-8 mode makes
    ``None`` UTF-8)."""
    if encoding is None:
        return "utf-8" if sys.flags.utf8_mode else locale.getpreferredencoding(False)
    if encoding == "locale" and sys.version_info >= (3, 10):
        getencoding = getattr(locale, "getencoding", None)    # (3.11)
        return getencoding() if getencoding is not None else locale.getpreferredencoding(False)
    return encoding


class _Opening:
    """What ``open()`` returns: an awaitable and an async context manager."""

    __slots__ = ("_coro", "_file")

    def __init__(self, coro: Any) -> None:
        self._coro = coro
        self._file: Optional[AsyncFile] = None

    def __await__(self) -> Generator[Any, None, "AsyncFile"]:
        return self._coro.__await__()

    async def __aenter__(self) -> "AsyncFile":
        self._file = await self._coro
        return self._file

    async def __aexit__(self, *exc: object) -> None:
        if self._file is not None:
            await self._file.close()


def _aio_available() -> bool:
    from fastio import aio

    return bool(aio.available())


async def _open(file: Any, mode: str, buffering: int, encoding: Optional[str], errors: Optional[str],
                newline: Optional[str], closefd: bool, opener: Any, engine: Optional[str], flags: int,
                readable: bool, writable: bool, appending: bool, binary: bool) -> "AsyncFile":
    loop = asyncio.get_running_loop()
    eng: Any = engine_for(loop, engine)
    # An O_DIRECT file (an fd, or what an opener made) where io_uring cannot
    # be used and no engine was asked for: Linux AIO, if it works here.
    direct_maybe = (isinstance(eng, ThreadFiles) and engine is None and not os.environ.get("FASTIO_FILE_ENGINE")
                    and (isinstance(file, int) or opener is not None) and _aio_available())
    if isinstance(eng, ThreadFiles) and not direct_maybe:
        return await AsyncThreadFile._open(eng, file, mode, buffering, encoding, errors, newline, closefd, opener)
    if isinstance(file, int):
        fd = file
    elif opener is not None:
        fd = opener(file, flags | os.O_CLOEXEC)
        if not isinstance(fd, int):
            raise TypeError("expected integer from opener")
        if fd < 0:
            raise ValueError(f"opener returned {fd}")
    else:
        res = await eng.openat(file, flags, 0o666)
        if res < 0:
            raise _fileengine._os_error(res, file)
        fd = res
    try:
        # (only an fd or an opener can bring O_DIRECT: the mode cannot)
        direct = (isinstance(file, int) or opener is not None) and _fileaio.is_direct(fd)
        if direct and isinstance(eng, ThreadFiles):
            eng = engine_for(loop, "aio")
    except BaseException:
        if closefd and not isinstance(file, int):
            os.close(fd)
        raise
    if isinstance(eng, ThreadFiles):
        return await AsyncThreadFile._open(eng, fd, mode, buffering, encoding, errors, newline,
                                           closefd, None, name=file)
    try:
        # fstat(2) here, not IORING_OP_STATX: an fd's attributes are there
        # without IO, and the kernel always hands a statx request to a
        # worker thread (REQ_F_FORCE_ASYNC), 20 us and a loop turn here.
        st = os.fstat(fd)
        if _stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(_errno.EISDIR, os.strerror(_errno.EISDIR), file)
        if not (_stat.S_ISREG(st.st_mode) or _stat.S_ISBLK(st.st_mode)):
            # pipes, ttys, sockets, character devices: the built-in file, in a thread
            thread_file = await AsyncThreadFile._open(eng.thread, fd, mode, buffering, encoding, errors, newline,
                                                      closefd, None, name=file)
            return thread_file
        if _fileengine.on_pseudo_fs(fd):
            # procfs, sysfs ...: the kernel makes the content in the read call
            # itself (io_uring would hand each to a worker thread). (A file
            # system that refuses RWF_NOWAIT, tmpfs on 6.18, is found by the
            # first read: a 1-byte try here would be a read, and set atime.)
            return await AsyncThreadFile._open(eng.thread, fd, mode, buffering, encoding, errors, newline,
                                               closefd, None, name=file)
        cls = _binary_file_class(eng)
        raw = cls(eng, fd, file, mode, readable, writable, appending, closefd,
                  st.st_size if appending else 0, st.st_size, direct)
        if cls is not AsyncBinaryFile:
            raw._enable_fast_reads(eng._loop)
    except BaseException:
        if closefd and not isinstance(file, int):   # (the caller's fd stays the caller's, as the built-in's)
            os.close(fd)
        raise
    if binary:
        return raw
    return AsyncTextFile(raw, encoding, errors, newline, mode, line_buffering=buffering == 1)


def _binary_mode(mode: str) -> str:
    """The ``mode`` of the built-in's binary file for ``mode`` (``"w+b"`` is ``"rb+"``)."""
    plus = "+" if "+" in mode else ""
    if "x" in mode:
        return "xb" + plus
    if "a" in mode:
        return "ab" + plus
    if plus:
        return "rb+"
    return "wb" if "w" in mode else "rb"


class AsyncFile:
    """What every file of ``fastio.asyncio.open`` has."""

    name: Any
    mode: str
    engine: str

    if TYPE_CHECKING:   # (each kind of file defines them)
        async def read(self, size: Optional[int] = -1) -> Any: ...
        async def read1(self, size: int = -1) -> bytes: ...
        async def readall(self) -> Any: ...
        async def readinto(self, buffer: Any) -> int: ...
        async def readline(self, size: Optional[int] = -1) -> Any: ...
        async def write(self, data: Any) -> int: ...
        async def seek(self, offset: int, whence: int = os.SEEK_SET) -> int: ...
        async def tell(self) -> int: ...
        async def truncate(self, size: Optional[int] = None) -> int: ...
        async def flush(self) -> None: ...
        async def pread(self, size: int, offset: int) -> bytes: ...
        async def preadinto(self, buffer: Any, offset: int) -> int: ...
        async def pwrite(self, data: Any, offset: int) -> int: ...
        async def fsync(self) -> None: ...
        async def fdatasync(self) -> None: ...
        async def stat(self) -> os.stat_result: ...
        def fileno(self) -> int: ...

    async def close(self) -> None:
        raise NotImplementedError

    @property
    def closed(self) -> bool:
        raise NotImplementedError

    async def isatty(self) -> bool:
        """Whether the file is a terminal (``ValueError`` once closed)."""
        return os.isatty(self.fileno())

    def __aiter__(self) -> AsyncIterator[Any]:
        return self

    async def __anext__(self) -> Any:
        line = await self.readline()
        if not line:
            raise StopAsyncIteration
        return line

    async def __aenter__(self) -> "AsyncFile":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def readlines(self, hint: int = -1) -> List[Any]:
        """The lines until EOF (or until ``hint`` characters or bytes were read)."""
        lines: List[Any] = []
        total = 0
        while True:
            line = await self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                return lines

    async def writelines(self, lines: Iterable[Any]) -> None:
        """Write every item of ``lines`` (no line separators are added)."""
        for line in lines:
            await self.write(line)


class AsyncBinaryFile(AsyncFile):
    """A binary file on a kernel engine, ``uring`` or ``aio`` (``open(..., "rb")``
    and the other binary modes)."""

    def __init__(self, eng: Union[UringFiles, AioFiles], fd: int, name: Any, mode: str, readable: bool, writable: bool,
                 appending: bool, closefd: bool, pos: int, size_hint: int = 0, direct: bool = False) -> None:
        self._eng = eng
        self._fd = fd
        self.name = name
        self.mode = _binary_mode(mode)
        self.engine = eng.name
        self._readable = readable
        self._writable = writable
        self._appending = appending
        self._closefd = closefd
        self._direct = direct     # O_DIRECT: reads need aligned buffers, and the page cache is not used
        self._closed = False
        self._pos: Optional[int] = pos    # None: at the kernel's position (after an append)
        self._rbuf = b""                  # read ahead by readline(), at _pos - len(_rbuf)
        self._size_hint = size_hint       # the size at open: readall's first read
        self._turns = _Turns()            # what uses the position, one at a time

    def __repr__(self) -> str:
        return f"<fastio.asyncio file name={self.name!r} mode={self.mode!r} engine={self.engine!r}>"

    def __del__(self) -> None:
        if getattr(self, "_closed", True):
            return
        self._eng.forget(self._fd)
        if self._closefd:
            import warnings

            warnings.warn(f"unclosed file {self!r}", ResourceWarning, source=self)
            try:
                os.close(self._fd)
            except OSError:
                pass

    # -- state ---------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def fileno(self) -> int:
        self._check_open()
        return self._fd

    def readable(self) -> bool:
        self._check_open()
        return self._readable

    async def writable(self) -> bool:
        """Whether the file was opened for writing (a coroutine, as in
        aiofiles, where ``readable()`` is a plain call)."""
        self._check_open()
        return self._writable

    async def seekable(self) -> bool:
        """True: a kernel-engine file is a regular file or a block device
        (a coroutine, as in aiofiles)."""
        self._check_open()
        return True

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("I/O operation on closed file.")

    def _check_readable(self) -> None:
        self._check_open()
        if not self._readable:
            raise io.UnsupportedOperation("read")

    def _check_writable(self) -> None:
        self._check_open()
        if not self._writable:
            raise io.UnsupportedOperation("write")

    def _position(self) -> int:
        if self._pos is None:
            self._pos = os.lseek(self._fd, 0, os.SEEK_CUR)
        return self._pos

    def _err(self, res: int) -> OSError:
        return _fileengine._os_error(res)

    def _drop_read_ahead(self) -> None:
        """Forget the bytes read ahead (``peek``, ``readline``): the position
        goes back to the first of them, where the caller stands."""
        if self._rbuf:
            self._pos = self._position() - len(self._rbuf)
            self._rbuf = b""

    # -- reads -----------------------------------------------------------------

    async def _pread(self, n: int, offset: int) -> bytes:
        return await self._eng.read_bytes(self._fd, n, offset, self._direct)

    @_in_turn
    async def read(self, size: Optional[int] = -1) -> bytes:
        """Up to ``size`` bytes (all until EOF when ``size`` is negative or
        None); ``b""`` at EOF."""
        self._check_readable()
        if size is None or size < 0:
            return await self._readall()
        size = int(size)
        rbuf = self._rbuf
        if rbuf:
            if len(rbuf) >= size:
                self._rbuf = rbuf[size:]
                return rbuf[:size]
            self._rbuf = b""
            size -= len(rbuf)
        out = await self._read_at_pos(size, full=True)
        return rbuf + out if rbuf else out

    async def _read_at_pos(self, size: int, full: bool) -> bytes:
        """``size`` bytes at the position (fewer only at EOF when ``full``),
        the position reserved before the await, so concurrent reads each get
        the next range."""
        if size == 0:
            return b""
        off = self._position()
        self._pos = off + size
        data = await self._pread(size, off)
        got = len(data)
        while full and 0 < got < size:
            more = await self._pread(size - got, off + got)
            if not more:
                break
            data += more
            got += len(more)
        if got < size and self._pos == off + size:
            self._pos = off + got       # short (EOF): the position is where it ended
        return data

    @_in_turn
    async def peek(self, size: int = 0) -> bytes:
        """Bytes at the position, the position left where it is: what was
        read ahead, or else one kernel read of ``io.DEFAULT_BUFFER_SIZE``
        bytes, kept for the reads that follow. As the built-in's, it may
        be more or fewer than ``size`` (b"" at EOF)."""
        operator.index(size)    # (TypeError for a float, as the built-in)
        self._check_readable()
        if not self._rbuf:
            self._rbuf = await self._read_at_pos(io.DEFAULT_BUFFER_SIZE, full=False)
        return self._rbuf

    @_in_turn
    async def read1(self, size: int = -1) -> bytes:
        """At most one kernel read: up to ``size`` bytes (64 KiB when negative)."""
        self._check_readable()
        if size is None or size < 0:
            size = _READ_CHUNK
        if self._rbuf:
            out, self._rbuf = self._rbuf[:size], self._rbuf[size:]
            return out
        return await self._read_at_pos(int(size), full=False)

    @_in_turn
    async def readall(self) -> bytes:
        """Everything from the position to EOF."""
        self._check_readable()
        return await self._readall()

    async def _readall(self) -> bytes:
        parts = [self._rbuf]
        self._rbuf = b""
        # The first read asks for the rest of the file as it was at open,
        # plus one byte: a short read is the end (of a regular file), so a
        # file read whole usually takes one request.
        want = max(self._size_hint - self._position(), 0) + 1
        while True:
            data = await self._read_at_pos(max(want, _READ_CHUNK), full=False)
            if data:
                parts.append(data)
            if len(data) < max(want, _READ_CHUNK):
                return b"".join(parts)
            want = _READ_CHUNK

    @_in_turn
    async def readinto(self, buffer: Any) -> int:
        """Read into the writable ``buffer``; the number of bytes read."""
        self._check_readable()
        view = memoryview(buffer).cast("B")
        if view.readonly:
            raise TypeError("readinto() argument must be read-write bytes-like object")
        n = len(view)
        done = 0
        if self._rbuf:
            done = min(n, len(self._rbuf))
            view[:done] = self._rbuf[:done]
            self._rbuf = self._rbuf[done:]
            if done == n:
                return n
        off = self._position()
        self._pos = off + (n - done)
        res = await self._eng.read(self._fd, view[done:], off, self._direct)
        if res < 0:
            raise self._err(res)
        if res < n - done and self._pos == off + (n - done):
            self._pos = off + res
        return done + res

    @_in_turn
    async def readline(self, size: Optional[int] = -1) -> bytes:
        """One line, its ``b"\\n"`` included (or ``size`` bytes at most)."""
        self._check_readable()
        limit = -1 if size is None else int(size)
        buf = self._rbuf
        start = 0
        while True:
            i = buf.find(b"\n", start)
            if i >= 0 and (limit < 0 or i < limit):
                self._rbuf = buf[i + 1:]
                return buf[:i + 1]
            if 0 <= limit <= len(buf):
                self._rbuf = buf[limit:]
                return buf[:limit]
            start = len(buf)
            self._rbuf = b""
            more = await self._read_at_pos(_READ_CHUNK, full=False)
            if not more:
                return buf
            buf += more

    # -- positional --------------------------------------------------------------

    async def pread(self, size: int, offset: int) -> bytes:
        """``size`` bytes at ``offset`` (fewer at EOF); the position is not used."""
        if self._closed or not self._readable:
            self._check_readable()
        if size < 0:
            raise ValueError("negative size")
        if offset < 0:
            raise ValueError("negative offset")
        return await self._eng.read_bytes(self._fd, size, offset, self._direct)

    async def preadinto(self, buffer: Any, offset: int) -> int:
        """Read into ``buffer`` at ``offset``; the number of bytes read."""
        self._check_readable()
        if offset < 0:
            raise ValueError("negative offset")
        view = memoryview(buffer).cast("B")
        if view.readonly:
            raise TypeError("preadinto() argument must be read-write bytes-like object")
        res = await self._eng.read(self._fd, view, offset, self._direct)
        if res < 0:
            raise self._err(res)
        return res

    async def pwrite(self, data: Any, offset: int) -> int:
        """Write ``data`` at ``offset``; the number of bytes written."""
        self._check_writable()
        if offset < 0:
            raise ValueError("negative offset")
        self._drop_read_ahead()     # (what was read ahead may be what this overwrites)
        return await self._write_all(memoryview(data).cast("B"), offset)

    # -- writes ------------------------------------------------------------------

    async def _write_all(self, view: memoryview, offset: int) -> int:
        """Every byte of ``view`` at ``offset`` (-1: the file's end, append)."""
        n = len(view)
        done = 0
        while done < n:
            if done:
                self._check_open()  # (closed by another task meanwhile: the fd number may be another file's now)
            res = await self._eng.write(self._fd, view[done:], offset if offset < 0 else offset + done)
            if res < 0:
                raise self._err(res)
            if res == 0:
                raise OSError(_errno.EIO, "write returned 0")
            done += res
        return n

    @_in_turn
    async def write(self, data: Any) -> int:
        """Write ``data`` (bytes-like) at the position; its length."""
        self._check_writable()
        if isinstance(data, str):
            raise TypeError("a bytes-like object is required, not 'str'")
        view = memoryview(data).cast("B")
        self._drop_read_ahead()
        if self._appending:
            self._pos = None
            return await self._write_all(view, -1)
        off = self._position()
        self._pos = off + len(view)
        return await self._write_all(view, off)

    async def flush(self) -> None:
        """Nothing is held back: writes reach the kernel when awaited."""
        self._check_open()

    @_in_turn
    async def truncate(self, size: Optional[int] = None) -> int:
        """Cut (or extend) the file to ``size`` bytes (default: the position)."""
        self._check_writable()
        self._drop_read_ahead()     # (it may be past the new end: the built-in open drops it too)
        if size is None:
            size = self._position()
        if size < 0:
            raise OSError(_errno.EINVAL, os.strerror(_errno.EINVAL))
        if size >= 1 << 63:     # (off_t's range, as os.ftruncate refuses it)
            raise OverflowError("Python int too large to convert to C long")
        res = await self._eng.ftruncate(self._fd, size)
        if res < 0:
            raise self._err(res)
        return size

    async def fsync(self) -> None:
        """Data and metadata to the device (``IORING_OP_FSYNC``)."""
        self._check_open()
        res = await self._eng.fsync(self._fd)
        if res < 0:
            raise self._err(res)

    async def fdatasync(self) -> None:
        """Data to the device (``IORING_FSYNC_DATASYNC``)."""
        self._check_open()
        res = await self._eng.fsync(self._fd, datasync=True)
        if res < 0:
            raise self._err(res)

    async def stat(self) -> os.stat_result:
        """``os.fstat`` of the file (``IORING_OP_STATX``; in a thread on ``aio``)."""
        self._check_open()
        return await self._eng.fstat(self._fd)

    # -- position ----------------------------------------------------------------

    async def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """Move the position, as ``io`` files do; the new position."""
        if (whence == os.SEEK_SET and type(offset) is int and offset >= 0 and not self._turns.busy
                and not self._closed and not self._appending):
            self._rbuf = b""    # (the common case, with nothing in flight: no turn to wait for)
            self._pos = offset
            return offset
        return await self._seek(offset, whence)  # type: ignore[no-any-return]

    @_in_turn
    async def _seek(self, offset: int, whence: int) -> int:
        self._check_open()
        offset = int(offset)
        if whence == os.SEEK_SET:
            if offset < 0:
                raise ValueError(f"negative seek position {offset}")
            pos = offset
        elif whence == os.SEEK_CUR:
            pos = self._position() - len(self._rbuf) + offset
        elif whence == os.SEEK_END:
            pos = os.fstat(self._fd).st_size + offset   # (an fd's size is there without IO)
        elif whence in _SEEK_DATA_HOLE:
            pos = os.lseek(self._fd, offset, whence)    # (the kernel's answer)
        else:
            raise ValueError(f"whence value {whence} unsupported")
        if pos < 0:
            raise OSError(_errno.EINVAL, os.strerror(_errno.EINVAL))
        self._rbuf = b""
        self._pos = pos
        if self._appending:
            os.lseek(self._fd, pos, os.SEEK_SET)    # (the kernel's position: what tell() reads after appends)
        return pos

    @_in_turn
    async def tell(self) -> int:
        """The position."""
        self._check_open()
        return self._position() - len(self._rbuf)

    # -- end -------------------------------------------------------------------

    @_in_turn
    async def close(self) -> None:
        """Close the file (``IORING_OP_CLOSE``); closing twice is allowed."""
        if self._closed:
            return
        self._closed = True
        if not self._closefd:
            self._eng.forget(self._fd)              # (the caller's fd: it may become another file)
            return
        res = await self._eng.close(self._fd)       # (close(2) where the engine cannot take it)
        if res < 0:
            raise self._err(res)


_compiled_class: Optional[type] = None


def _binary_file_class(eng: Any) -> type:
    """The class of a binary file on ``eng``: for the c backend's ``uring``
    engine, ``AsyncBinaryFile`` on ``fastio._c._fileio.FileCore`` (its
    state in C fields, and ``pread`` of a cached range compiled); else
    ``AsyncBinaryFile``."""
    global _compiled_class
    if not isinstance(eng, UringFiles) or eng.backend != "c":
        return AsyncBinaryFile
    if _compiled_class is None:
        core = _backend.load("_fileio", "c").FileCore

        class CompiledBinaryFile(core, AsyncBinaryFile):  # type: ignore[misc, valid-type]
            """``AsyncBinaryFile`` with its state in C fields, whose
            ``pread`` of a cached range is one compiled call."""

            _engine_pread = AsyncBinaryFile.pread   # (what FileCore.pread falls back to)

            async def read(self, size: Optional[int] = -1) -> bytes:
                # A cached range at the position, nobody else's turn and
                # nothing read ahead: one compiled call, no turn to take.
                pos = self._pos
                if size is not None and size >= 0 and pos is not None and not self._rbuf and not self._turns.busy:
                    data = self._cached_pread(size, pos)
                    if data is not None:
                        self._pos = pos + size
                        return data  # type: ignore[no-any-return]
                return await AsyncBinaryFile.read(self, size)

            read.__doc__ = AsyncBinaryFile.read.__doc__

            if sys.version_info >= (3, 12):     # (a Python coroutine costs less than a compiled one here)
                async def pread(self, size: int, offset: int) -> bytes:
                    data = self._cached_pread(size, offset)
                    if data is not None:
                        return data  # type: ignore[no-any-return]
                    return await AsyncBinaryFile.pread(self, size, offset)

                pread.__doc__ = AsyncBinaryFile.pread.__doc__

        _compiled_class = CompiledBinaryFile
    return _compiled_class


class AsyncTextFile(AsyncFile):
    """A text file on the ``uring`` engine: the bytes of an
    ``AsyncBinaryFile``, decoded and encoded here."""

    def __init__(self, raw: AsyncBinaryFile, encoding: Optional[str], errors: Optional[str],
                 newline: Optional[str], mode: str, line_buffering: bool = False) -> None:
        encoding = _encoding_name(encoding)
        codecs.lookup(encoding)     # LookupError for an unknown one, as the built-in
        self._plain_flags = _initial_codec_flags(encoding, newline)
        self.buffer = raw
        self.name = raw.name
        self.mode = mode
        self.engine = raw.engine
        self.encoding = encoding
        self.errors = errors if errors is not None else "strict"
        self.newlines_arg = newline
        #: ``buffering=1`` was asked for (as the built-in's attribute; every
        #: write reaches the kernel when awaited, whole lines or not)
        self.line_buffering = line_buffering
        self._readnl = newline
        self._writenl = newline if newline else (os.linesep if newline is None else None)
        self._decoder: Any = None
        self._encoder: Any = None
        # The chunk read last and its text: what tell() needs to find the
        # byte of any of its characters. Each chunk is read once the text
        # before it is all returned (the callers hold what they took).
        self._text = ""         # the chunk's text
        self._used = 0          # characters of _text returned already
        self._chunk_start = 0   # the byte position where _chunk began
        self._chunk = b""       # the bytes decoded into _text (from a point where nothing is held)
        self._flags = 0         # the decoder's flags where _chunk begins
        self._mark: Any = None  # (characters, byte in _chunk, flags): a restart point tell() found last
        self._pos_flags = 0     # the decoder's flags at the position, with no chunk (a seek() set them)
        self._turns = _Turns()
        if raw._writable:
            # As the built-in decides: a BOM (utf-16, utf-8-sig ...) is
            # written only where the file starts (an append: to an empty one).
            self._encoder = codecs.getincrementalencoder(encoding)(self.errors)
            if raw._position() != 0:
                self._encoder.setstate(0)

    def __repr__(self) -> str:
        return (f"<fastio.asyncio text file name={self.name!r} mode={self.mode!r} "
                f"encoding={self.encoding!r} engine={self.engine!r}>")

    @property
    def closed(self) -> bool:
        return self.buffer.closed

    def fileno(self) -> int:
        return self.buffer.fileno()

    def readable(self) -> bool:
        return self.buffer.readable()

    async def writable(self) -> bool:
        return await self.buffer.writable()

    async def seekable(self) -> bool:
        return await self.buffer.seekable()

    @property
    def newlines(self) -> Any:
        dec = self._decoder
        return getattr(dec, "newlines", None) if dec is not None else None

    def _get_decoder(self) -> Any:
        if self._decoder is None:
            dec: Any = codecs.getincrementaldecoder(self.encoding)(self.errors)
            if self._readnl is None or self._readnl == "":
                dec = io.IncrementalNewlineDecoder(dec, translate=self._readnl is None)
            self._decoder = dec
        return self._decoder

    async def _fill(self) -> bool:
        """Read and decode the next chunk (the text before it is all
        returned); False at EOF (the decoder's last characters, if any, are
        then the chunk's text)."""
        dec = self._get_decoder()
        pos = self.buffer._position() - len(self.buffer._rbuf)
        held, flags = dec.getstate()    # (held: the last bytes of the chunk before, not decoded yet)
        data = await self.buffer.read1(_READ_CHUNK)
        final = not data
        self._text = dec.decode(data, final)
        self._chunk_start, self._chunk, self._flags = pos - len(held), held + data, flags
        self._used, self._mark = 0, None
        return not final

    def _avail(self) -> int:
        return len(self._text) - self._used

    def _take(self, n: int) -> str:
        used = self._used
        out = self._text[used:used + n]
        self._used = used + len(out)
        return out

    def _forget(self) -> None:
        """Drop the chunk (after a seek, a write, a read to the end)."""
        self._text, self._chunk, self._used, self._mark, self._pos_flags = "", b"", 0, None, 0

    @_in_turn
    async def read(self, size: Optional[int] = -1) -> str:
        """Up to ``size`` characters (all until EOF when negative or None)."""
        self.buffer._check_readable()
        if size is None or size < 0:
            head = self._take(self._avail())
            data = await self.buffer.readall()     # (one read, one decode: not chunk by chunk)
            text = self._get_decoder().decode(data, True)
            self._forget()
            return head + text if head else text
        parts = []
        while True:
            got = self._take(size)
            parts.append(got)
            size -= len(got)
            if size == 0 or not await self._fill() and not self._avail():
                return "".join(parts)

    def _line_end(self, start: int) -> int:
        """The index just past the first line end in the text buffer at or
        after ``start``, or -1 (a line end that may go on in bytes not read
        yet does not count)."""
        text = self._text
        nl = self._readnl
        if nl is None or nl == "\n":
            i = text.find("\n", start)
            return -1 if i < 0 else i + 1
        if nl == "":
            # universal: \r\n, \r or \n, not translated (the decoder holds a
            # trailing \r back until the next byte is known)
            i = text.find("\n", start)
            j = text.find("\r", start)
            if j >= 0 and (i < 0 or j < i):
                if j + 1 < len(text) and text[j + 1] == "\n":
                    return j + 2
                return j + 1
            return -1 if i < 0 else i + 1
        i = text.find(nl, start)
        return -1 if i < 0 else i + len(nl)

    @_in_turn
    async def readline(self, size: Optional[int] = -1) -> str:
        """One line, its line end included (translated to ``"\\n"`` when
        ``newline`` is None), or ``size`` characters at most."""
        self.buffer._check_readable()
        limit = -1 if size is None else int(size)
        parts: List[str] = []
        taken = 0           # characters in parts
        cr = False          # parts end with "\r" (a "\r\n" split between two chunks)
        while True:
            if cr and self._readnl == "\r\n" and self._avail() and self._text[self._used] == "\n":
                end = self._used + 1
            else:
                end = self._line_end(self._used)
            if end >= 0 and (limit < 0 or taken + end - self._used <= limit):
                parts.append(self._take(end - self._used))
                return "".join(parts)
            if 0 <= limit <= taken + self._avail():
                parts.append(self._take(limit - taken))
                return "".join(parts)
            piece = self._take(self._avail())
            if piece:
                parts.append(piece)
                taken += len(piece)
                cr = piece[-1] == "\r"
            if not await self._fill() and not self._avail():
                return "".join(parts)

    @_in_turn
    async def write(self, s: str) -> int:
        """Write the string ``s`` (``"\\n"`` translated as ``newline`` says);
        its length in characters."""
        self.buffer._check_writable()
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        n = len(s)
        if self._writenl and self._writenl != "\n" and "\n" in s:
            s = s.replace("\n", self._writenl)
        if self._text or self._chunk:
            await self._rewind()
        await self.buffer.write(self._encoder.encode(s))
        return n

    async def _rewind(self) -> None:
        """Give back what was decoded and not returned: the byte position goes
        back to the next character's (before a write or a seek)."""
        pos = self._locate()[1]
        self._forget()
        self._decoder = None
        self.buffer._rbuf = b""
        self.buffer._pos = pos

    def _held_back(self, dec: Any) -> int:
        """Bytes of the chunk the decoder holds and has not decoded yet (a
        part of a character, a ``\\r`` that may start ``\\r\\n``)."""
        buf, flag = dec.getstate()
        held = len(buf)
        if isinstance(dec, io.IncrementalNewlineDecoder) and flag & 1:
            held += self._cr_size()
        return held

    def _cr_size(self) -> int:
        enc = codecs.getincrementalencoder(self.encoding)(self.errors)
        try:
            enc.setstate(0)     # (no BOM)
        except Exception:
            pass
        return len(enc.encode("\r"))

    def _locate(self) -> tuple:
        """(tell()'s cookie, the byte where the next character begins), as
        the built-in finds them: from a point of the chunk where nothing was
        held, the characters returned are decoded again byte by byte; the
        last such point before the next character, with the decoder's flags
        there, and what must be decoded and skipped beyond it, make the
        cookie."""
        if not self._text and not self._chunk:
            pos = self.buffer._position() - len(self.buffer._rbuf)
            return _pack_cookie(pos, self._pos_flags), pos
        end = self._chunk_start + len(self._chunk)
        if self._used == len(self._text):
            held, flags = self._decoder.getstate()
            if not held:
                return _pack_cookie(end, flags), end - self._held_back(self._decoder)
        # From the restart point found last (a loop of readline() and tell()
        # decodes each byte once) or the chunk's start.
        mark = self._mark
        if mark is None or mark[0] > self._used:
            mark = (0, 0, self._flags)
        chars, safe, safe_flags = mark
        skip = self._used - chars
        chunk = self._chunk
        fed = decoded = 0
        if skip:
            dec: Any = codecs.getincrementaldecoder(self.encoding)(self.errors)
            if self._readnl is None or self._readnl == "":
                dec = io.IncrementalNewlineDecoder(dec, translate=self._readnl is None)
            dec.setstate((b"", safe_flags))
            for k in range(safe, len(chunk)):
                decoded += len(dec.decode(chunk[k:k + 1]))
                fed += 1
                held, flags = dec.getstate()
                if not held and decoded <= skip:
                    safe, safe_flags, skip, fed, decoded = k + 1, flags, skip - decoded, 0, 0
                if decoded >= skip:
                    break
        self._mark = (self._used - skip, safe, safe_flags)
        start = self._chunk_start + safe
        if not skip:
            return _pack_cookie(start, safe_flags), start
        # The next character came out of the last byte fed, or of the end.
        eof = decoded < skip
        nxt = start + fed - (0 if eof or decoded == skip else 1)
        return _pack_cookie(start, safe_flags, fed, skip, eof), nxt

    @_in_turn
    async def tell(self) -> int:
        """The byte position of the next character (a ``seek()`` cookie)."""
        self.buffer._check_open()
        return self._locate()[0]

    @_in_turn
    async def seek(self, cookie: int, whence: int = os.SEEK_SET) -> int:
        """``seek(tell_result)``, ``seek(0)``, ``seek(0, SEEK_END)``, as text
        files allow."""
        self.buffer._check_open()
        if whence == os.SEEK_CUR:
            if cookie != 0:
                raise io.UnsupportedOperation("can't do nonzero cur-relative seeks")
            cookie = self._locate()[0]
            whence = os.SEEK_SET
        elif whence == os.SEEK_END:
            if cookie != 0:
                raise io.UnsupportedOperation("can't do nonzero end-relative seeks")
        elif whence != os.SEEK_SET:
            raise ValueError(f"invalid whence ({whence}, should be 0, 1 or 2)")
        elif cookie < 0:
            raise ValueError(f"negative seek position {cookie}")
        start, flags, skip = _unpack_cookie(cookie) if whence == os.SEEK_SET else (0, 0, 0)
        self._forget()
        self._decoder = None
        pos = await self.buffer.seek(start, whence)
        if self._encoder is not None:
            self._encoder.reset()
            if pos != 0:
                self._encoder.setstate(0)
        if whence == os.SEEK_END:
            return pos
        if cookie and self.buffer.readable():
            # As the built-in: past the start the decoder looks for no BOM,
            # and takes the flags the cookie says (a CJK codec's initial
            # ones where it says none).
            if not flags >> 1 if self._readnl is None or self._readnl == "" else not flags:
                flags |= self._plain_flags
            self._get_decoder().setstate((b"", flags))
            self._pos_flags = flags
            while skip:
                if not self._avail() and not await self._fill() and not self._avail():
                    raise OSError(f"can't restore the text position of cookie {cookie}")
                skip -= len(self._take(skip))
        return cookie

    async def flush(self) -> None:
        await self.buffer.flush()

    @_in_turn
    async def truncate(self, size: Optional[int] = None) -> int:
        if size is None:
            size = self._locate()[1]
        return await self.buffer.truncate(size)

    async def fsync(self) -> None:
        await self.buffer.fsync()

    async def fdatasync(self) -> None:
        await self.buffer.fdatasync()

    async def stat(self) -> os.stat_result:
        return await self.buffer.stat()

    @_in_turn
    async def close(self) -> None:
        await self.buffer.close()


class AsyncThreadFile(AsyncFile):
    """A built-in file whose every call runs in the loop's default executor
    (the ``thread`` engine)."""

    def __init__(self, eng: Any, f: Any, name: Any = None) -> None:
        self._eng = eng
        self._f = f
        self.name = f.name if name is None else name
        self.mode = f.mode
        self.engine = "thread"
        self._plain_flags = 0   # (a text file's: what a cookie with no flags gets, as AsyncTextFile's)
        self._turns = _Turns()  # (a built-in text file is not safe for two threads at once)

    @classmethod
    async def _open(cls, eng: Any, file: Any, mode: str, buffering: int, encoding: Optional[str],
                    errors: Optional[str], newline: Optional[str], closefd: bool, opener: Any,
                    name: Any = None) -> "AsyncThreadFile":
        import builtins

        f = await eng.call(lambda: builtins.open(file, mode, buffering, encoding, errors, newline, closefd,
                                                 opener))
        self = cls(eng, f, name)
        if isinstance(f, io.TextIOWrapper):
            self._plain_flags = _initial_codec_flags(f.encoding, newline)
        return self

    def __repr__(self) -> str:
        return f"<fastio.asyncio file name={self.name!r} mode={self.mode!r} engine='thread'>"

    @property
    def closed(self) -> bool:
        return bool(self._f.closed)

    def fileno(self) -> int:
        return int(self._f.fileno())

    def readable(self) -> bool:
        return bool(self._f.readable())

    async def writable(self) -> bool:
        return bool(self._f.writable())

    async def seekable(self) -> bool:
        return bool(self._f.seekable())

    def __getattr__(self, attr: str) -> Any:
        if attr in ("encoding", "errors", "newlines", "buffer", "line_buffering"):
            return getattr(self._f, attr)
        raise AttributeError(attr)

    @_in_turn
    async def _call(self, method: str, *args: Any) -> Any:
        return await self._eng.call(getattr(self._f, method), *args)

    async def read(self, size: Optional[int] = -1) -> Any:
        return await self._call("read", size)

    async def read1(self, size: int = -1) -> Any:
        return await self._call("read1", size)

    async def peek(self, size: int = 0) -> bytes:
        return await self._call("peek", size)  # type: ignore[no-any-return]

    async def readall(self) -> Any:
        return await self._call("read", -1)

    async def readinto(self, buffer: Any) -> int:
        return int(await self._call("readinto", buffer))

    async def readline(self, size: Optional[int] = -1) -> Any:
        return await self._call("readline", size)

    async def write(self, data: Any) -> int:
        return int(await self._call("write", data))

    async def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if self._plain_flags and whence == os.SEEK_SET and 0 < offset < 1 << 64:
            await self._call("seek", offset | self._plain_flags << 64, whence)
            return offset
        return int(await self._call("seek", offset, whence))

    async def tell(self) -> int:
        return int(await self._call("tell"))

    async def truncate(self, size: Optional[int] = None) -> int:
        return await self._call("truncate", size)  # type: ignore[no-any-return]   # (the size as given, as the built-in's)

    async def flush(self) -> None:
        await self._call("flush")

    def _flushed(self, call: Callable[..., Any], *args: Any) -> Any:
        """``call(fd, *args)`` after what the built-in file holds back is written (in the executor)."""
        self._f.flush()
        return call(self._f.fileno(), *args)

    @_in_turn
    async def _fd_call(self, call: Callable[..., Any], *args: Any) -> Any:
        return await self._eng.call(self._flushed, call, *args)

    async def pread(self, size: int, offset: int) -> bytes:
        return bytes(await self._fd_call(os.pread, size, offset))

    async def preadinto(self, buffer: Any, offset: int) -> int:
        return int(await self._fd_call(lambda fd, off: os.preadv(fd, [buffer], off), offset))

    async def pwrite(self, data: Any, offset: int) -> int:
        return int(await self._fd_call(os.pwrite, data, offset))

    async def fsync(self) -> None:
        await self._fd_call(os.fsync)

    async def fdatasync(self) -> None:
        await self._fd_call(os.fdatasync)

    async def stat(self) -> os.stat_result:
        return await self._eng.call(os.fstat, self._f.fileno())  # type: ignore[no-any-return]

    async def close(self) -> None:
        await self._call("close")
