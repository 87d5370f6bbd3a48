"""Code written for aiofiles runs unchanged on fastio.asyncio (issue 14):
every public name of aiofiles' file objects, aiofiles.os and
aiofiles.os.path is on ours, and one aiofiles-style program gives the same
transcript with ``aiofiles.open``/``aiofiles.os`` as with
``fastio.asyncio.open``/``fastio.asyncio.os``, on each engine and both
backends. aiofiles itself is the oracle (the test extra installs it)."""

from __future__ import annotations

import os
from types import ModuleType

import pytest

import fastio.asyncio as fa
import fastio.asyncio.os as aos

from test_asyncio_files import engine, run_on  # noqa: F401

aiofiles = pytest.importorskip("aiofiles", reason="aiofiles is not installed (the test extra brings it)")
import aiofiles.os  # noqa: E402

# What aiofiles' file objects have and ours do not, and why: both hand out the
# synchronous built-in file underneath, which a kernel-engine file has none of.
NOT_OURS = {"detach", "raw"}


def public(obj):
    return {n for n in dir(obj) if not n.startswith("_")}


@pytest.mark.parametrize("mode", ["r", "rb", "r+b", "wb", "w", "a", "ab", "w+", "a+b"])
def test_every_public_name_of_an_aiofiles_file_is_on_ours(backend, engine, tmp_path, mode):
    path = tmp_path / "f"
    path.write_bytes(b"one\ntwo\n")

    async def go():
        async with aiofiles.open(path, mode) as theirs, fa.open(path, mode, engine=engine) as ours:
            assert ours.engine == engine
            return {n for n in public(theirs) - NOT_OURS if not hasattr(ours, n)}

    assert run_on(backend, engine, go) == set()


def test_every_name_of_aiofiles_os_and_its_path_is_on_ours():
    assert {n for n in aiofiles.os.__all__ if not hasattr(aos, n)} == set()
    their_path = {n for n in public(aiofiles.os.path) if not isinstance(getattr(aiofiles.os.path, n), ModuleType)}
    assert {n for n in their_path if not hasattr(aos.path, n)} == set()
    assert {"exists", "isfile", "isdir", "islink", "getsize", "getmtime"} <= their_path


async def program(open_, os_, root):
    """aiofiles-style code: what its README and its users do."""
    log = []
    path = os.path.join(root, "notes.txt")
    async with open_(path, "w") as f:
        await f.write("alpha\n")
        await f.writelines(["beta\n", "gamma\n"])
        log.append(("line_buffering", f.line_buffering, await f.isatty(), f.mode))
    async with open_(path) as f:
        log.append(("lines", [line async for line in f]))
        await f.seek(0)
        log.append(("read", await f.read(3), await f.tell(), await f.readline(), await f.readlines()))
    async with open_(path, "rb") as f:
        log.append(("peek", (await f.peek(1))[:1], await f.tell(), await f.read(5), await f.read1(3)))
        buf = bytearray(4)
        log.append(("readinto", await f.readinto(buf), bytes(buf), await f.read()))
    async with open_(path, "r+b") as f:
        await f.seek(-6, os.SEEK_END)
        await f.write(b"GAMMA")
        await f.truncate(12)
        await f.flush()
        await f.seek(0)
        log.append(("update", await f.read(), f.closed, f.readable(), await f.writable(), await f.seekable()))
    log.append(("closed", f.closed))
    async with open_(path, "a") as f:
        log.append(("append", await f.write("delta\n"), await f.tell()))
    st = await os_.stat(path)
    log.append(("stat", st.st_size, await os_.path.getsize(path), await os_.path.isfile(path),
                await os_.path.exists(path + ".missing")))
    await os_.mkdir(os.path.join(root, "sub"))
    await os_.makedirs(os.path.join(root, "sub", "deep", "er"), exist_ok=True)
    await os_.rename(path, os.path.join(root, "sub", "moved.txt"))
    await os_.replace(os.path.join(root, "sub", "moved.txt"), os.path.join(root, "sub", "final.txt"))
    await os_.symlink("final.txt", os.path.join(root, "sub", "link"))
    log.append(("tree", sorted(await os_.listdir(os.path.join(root, "sub"))),
                await os_.readlink(os.path.join(root, "sub", "link")),
                await os_.path.islink(os.path.join(root, "sub", "link")),
                await os_.path.isdir(os.path.join(root, "sub", "deep"))))
    await os_.remove(os.path.join(root, "sub", "link"))
    await os_.unlink(os.path.join(root, "sub", "final.txt"))
    await os_.removedirs(os.path.join(root, "sub", "deep", "er"))
    log.append(("gone", await os_.path.exists(os.path.join(root, "sub"))))
    for call in (lambda: open_(os.path.join(root, "missing")), lambda: os_.stat(os.path.join(root, "missing"))):
        try:
            await call()
        except FileNotFoundError as exc:
            log.append(("error", exc.errno, os.path.basename(exc.filename)))
    return log


def test_an_aiofiles_program_runs_unchanged(backend, engine, tmp_path):
    (tmp_path / "aiofiles").mkdir()
    (tmp_path / "fastio").mkdir()
    theirs = run_on(backend, engine, lambda: program(aiofiles.open, aiofiles.os, str(tmp_path / "aiofiles")))
    ours = run_on(backend, engine, lambda: program(fa.open, aos, str(tmp_path / "fastio")))
    assert ours == theirs
    assert len(theirs) == 13     # (both missing-file errors among them)


def test_an_aiofiles_program_runs_unchanged_on_fastios_loop(backend, tmp_path):
    # (fa.Loop: the compiled loop on the c backend, the selector loop on pure)
    (tmp_path / "aiofiles").mkdir()
    (tmp_path / "fastio").mkdir()
    theirs = run_on(backend, "thread", lambda: program(aiofiles.open, aiofiles.os, str(tmp_path / "aiofiles")),
                    fa.Loop)
    ours = run_on(backend, "uring", lambda: program(fa.open, aos, str(tmp_path / "fastio")), fa.Loop)
    assert ours == theirs
