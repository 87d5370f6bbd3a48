"""fastio.asyncio.open by file system: a procfs or sysfs file, whose content
the kernel makes inside each read (never asynchronously), gets the thread
engine whichever engine was asked for; a file system that refuses
``RWF_NOWAIT`` (tmpfs on Linux 6.18) reads through the ring without
switching the page-cache try off for the loop's other files; and
``fs_type``, which tells them apart, on both backends."""

from __future__ import annotations

import asyncio
import errno
import importlib
import os
import tempfile

import pytest

import fastio.asyncio as fa
from fastio.asyncio import _fileengine
from fastio.asyncio._fileengine import engine_for

from test_asyncio_files import aio_or_skip, disk_dir, run_on, uring_or_skip  # noqa: F401
PROC_SUPER_MAGIC = 0x9FA0
SYSFS_MAGIC = 0x62656572
TMPFS_MAGIC = 0x01021994


def fs_type_of(backend):
    return importlib.import_module(f"fastio._{backend.name}._fileio").fs_type


class CountingRing:
    """The engine's ring, with its reads counted."""

    def __init__(self, ring):
        self._ring = ring
        self.reads = 0

    def prep_read(self, *args, **kwargs):
        self.reads += 1
        return self._ring.prep_read(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._ring, name)


def refuses_nowait(fd):
    """Whether fd's file system refuses preadv2(RWF_NOWAIT) (EOPNOTSUPP)."""
    if not hasattr(os, "RWF_NOWAIT"):
        return False
    try:
        os.preadv(fd, (bytearray(1),), 0, os.RWF_NOWAIT)
    except OSError as exc:
        return exc.errno == errno.EOPNOTSUPP
    return False


def test_fs_type_names_the_file_system(backend, tmp_path):
    fs_type = fs_type_of(backend)
    fd = os.open("/proc/self/status", os.O_RDONLY)
    try:
        assert fs_type(fd) == PROC_SUPER_MAGIC
    finally:
        os.close(fd)
    if os.path.isdir("/sys/kernel"):
        fd = os.open("/sys/kernel", os.O_RDONLY | os.O_DIRECTORY)
        try:
            assert fs_type(fd) == SYSFS_MAGIC
        finally:
            os.close(fd)
    path = tmp_path / "f"
    path.write_bytes(b"x")
    fd = os.open(path, os.O_RDONLY)
    try:
        assert fs_type(fd) not in _fileengine.PSEUDO_FS
        # (the ctypes mirror reads the same field)
        assert fs_type(fd) == importlib.import_module("fastio._pure._fileio").fs_type(fd)
    finally:
        os.close(fd)
    with pytest.raises(OSError) as bad:
        fs_type(fd)
    assert bad.value.errno == errno.EBADF


@pytest.mark.parametrize("engine", ["uring", "aio"])
@pytest.mark.parametrize("path", ["/proc/sys/kernel/ostype", "/proc/self/mounts",
                                  "/sys/kernel/mm/transparent_hugepage/enabled"])
def test_a_procfs_or_sysfs_file_gets_the_thread_engine(backend, engine, path):
    (uring_or_skip if engine == "uring" else aio_or_skip)(backend)
    if not os.path.exists(path):
        pytest.skip(f"{path} is not on this kernel")
    with open(path, "rb") as f:
        want = f.read()

    async def go():
        async with fa.open(path, "rb", engine=engine) as f:
            return f.engine, await f.read()

    got_engine, got = run_on(backend, engine, go)
    assert got_engine == "thread"
    if "self" not in path:      # (/proc/self/* is the reading process's: the same process here, but it may move)
        assert got == want
    else:
        assert got.splitlines()[0] == want.splitlines()[0]


def test_a_file_system_without_rwf_nowait_leaves_the_try_on_for_the_other_files(backend, tmp_path):
    # Regression: a read of one tmpfs file (EOPNOTSUPP for RWF_NOWAIT) switched
    # the page-cache try off for every file of the loop, so every later
    # cached read went round the ring.
    uring_or_skip(backend)
    if not os.path.isdir("/dev/shm"):
        pytest.skip("no /dev/shm (tmpfs) on this machine")
    shm_fd, shm_path = tempfile.mkstemp(dir="/dev/shm")
    try:
        os.write(shm_fd, b"hello tmpfs")
        if fs_type_of(backend)(shm_fd) != TMPFS_MAGIC or not refuses_nowait(shm_fd):
            pytest.skip("/dev/shm here is not a tmpfs that refuses RWF_NOWAIT (Linux 6.18's does)")
        regular = tmp_path / "cached"
        data = os.urandom(8192)
        regular.write_bytes(data)
        fd = os.open(regular, os.O_RDONLY)
        try:
            if refuses_nowait(fd):
                pytest.skip("the test directory's file system refuses RWF_NOWAIT too")
        finally:
            os.close(fd)

        async def go():
            eng = engine_for(asyncio.get_running_loop(), "uring")
            eng.ring = ring = CountingRing(eng.ring)
            async with fa.open(shm_path, "rb", engine="uring") as t, fa.open(regular, "rb", engine="uring") as r:
                assert t.engine == r.engine == "uring"
                assert await t.pread(5, 0) == b"hello"
                assert await t.read() == b"hello tmpfs"
                assert ring.reads >= 1          # (tmpfs: through the ring)
                # An fd the engine meets without an open of ours finds out itself.
                # (two fds open at once: the engine remembers an fd number)
                raw1, raw2 = os.open(shm_path, os.O_RDONLY), os.open(shm_path, os.O_RDONLY)
                try:
                    buf = bytearray(5)
                    assert await eng.read(raw1, buf, 6) == 5 and buf == b"tmpfs"
                    assert await eng.read_bytes(raw2, 5, 0) == b"hello"
                finally:
                    os.close(raw1)
                    os.close(raw2)
                # The cached file's read is still the page-cache try alone.
                before = ring.reads
                got = await eng.read_bytes(r.fileno(), 4096, 4096)
                return got, ring.reads - before

        assert run_on(backend, "uring", go) == (data[4096:], 0)
    finally:
        os.close(shm_fd)
        os.unlink(shm_path)


def test_an_fd_number_noted_as_refusing_rwf_nowait_is_forgotten_with_its_file(backend, tmp_path):
    # Regression: only the engine's close() dropped the note, so a tmpfs file
    # opened with closefd=False (or dropped unclosed) left its fd number
    # marked, and the next file to get that number lost the page-cache try.
    uring_or_skip(backend)
    if not os.path.isdir("/dev/shm"):
        pytest.skip("no /dev/shm (tmpfs) on this machine")
    regular = tmp_path / "cached"
    data = os.urandom(8192)
    regular.write_bytes(data)

    async def go():
        eng = engine_for(asyncio.get_running_loop(), "uring")
        eng.ring = ring = CountingRing(eng.ring)
        shm_fd, shm_path = tempfile.mkstemp(dir="/dev/shm")
        try:
            os.write(shm_fd, b"hello tmpfs")
            if fs_type_of(backend)(shm_fd) != TMPFS_MAGIC or not refuses_nowait(shm_fd):
                pytest.skip("/dev/shm here is not a tmpfs that refuses RWF_NOWAIT (Linux 6.18's does)")
            async with fa.open(shm_fd, "rb", closefd=False, engine="uring") as t:
                assert await t.read() == b"hello tmpfs"
        finally:
            os.close(shm_fd)
            os.unlink(shm_path)
        async with fa.open(regular, "rb", engine="uring") as r:
            if refuses_nowait(r.fileno()):
                pytest.skip("the test directory's file system refuses RWF_NOWAIT too")
            before = ring.reads
            got = await eng.read_bytes(r.fileno(), 4096, 4096)   # (the engine's path, on both backends)
            return r.fileno() == shm_fd, got, ring.reads - before

    assert run_on(backend, "uring", go) == (True, data[4096:], 0)


@pytest.mark.parametrize("engine", ["uring", "aio", "thread"])
def test_opening_and_closing_a_file_reads_nothing(backend, engine, disk_dir):
    # Regression: the open probed RWF_NOWAIT with a 1-byte read, which set the
    # file's atime (relatime: once per change) where the built-in open does not.
    if engine == "uring":
        uring_or_skip(backend)
    elif engine == "aio":
        aio_or_skip(backend)
    path = os.path.join(disk_dir, "f")

    def fresh():
        with open(path, "wb") as f:
            f.write(b"x" * 8192)
        old = os.stat(path)
        os.utime(path, ns=(old.st_mtime_ns - 10**9, old.st_mtime_ns))   # atime before mtime
        return os.stat(path).st_atime_ns

    before = fresh()
    with open(path, "rb") as f:
        f.read(1)
    if os.stat(path).st_atime_ns == before:
        pytest.skip(f"{disk_dir} does not update atime on a read (noatime)")
    before = fresh()

    async def go():
        async with fa.open(path, "rb", engine=engine) as f:
            return f.engine

    assert run_on(backend, engine, go) == engine
    assert os.stat(path).st_atime_ns == before
