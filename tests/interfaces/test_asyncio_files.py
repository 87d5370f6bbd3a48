"""fastio.asyncio.open and fastio.asyncio.os against the built-in open and
os as the oracle: the same script of calls on both, every result and every
exception type compared, and the file's bytes after; on each engine (uring
on the backend's ring, aio, thread), on the stdlib loop, uvloop and fastio's
loop.
Then what the oracle cannot show: concurrent awaits on one file, a cancelled
kernel read that writes nothing after its CancelledError, and the engine a
pipe gets."""

from __future__ import annotations

import asyncio
import builtins
import errno
import io
import os
import stat
import subprocess
import sys
import threading
import time

import pytest

import fastio.asyncio as fa
import fastio.asyncio.os as aos
from fastio import UnsupportedError
from fastio.aio import aligned_buffer
from fastio.asyncio import _fileengine
from fastio.asyncio._fileengine import UringFiles, engine_for

TIMEOUT = 10.0
TEXT = "first line\nsecond\r\nthird\rfourth \u00e9\u20ac\U0001f600\n\nlast without end"


def uring_or_skip(backend):
    if not backend.uring.available():
        pytest.skip(f"io_uring unusable here: {backend.uring.why_unavailable()}")


def aio_or_skip(backend):
    if not backend.aio.available():
        pytest.skip(f"Linux AIO unusable here: {backend.aio.why_unavailable()}")


@pytest.fixture(params=["uring", "aio", "thread"])
def engine(request, backend):
    if request.param == "uring":
        uring_or_skip(backend)
    elif request.param == "aio":
        aio_or_skip(backend)
    return request.param


@pytest.fixture(params=["stdlib", "uvloop", "fastio"])
def loop_factory(request):
    """The loop the oracle tests run on: the stdlib's, uvloop's (the test
    extra installs it) and fastio's (on the pure backend, its selector loop)."""
    if request.param == "stdlib":
        return asyncio.new_event_loop
    if request.param == "uvloop":
        uvloop = pytest.importorskip("uvloop", reason="uvloop is not installed (the test extra brings it)")
        return uvloop.new_event_loop
    return fa.Loop


def loop_kinds(backend):
    kinds = [asyncio.new_event_loop]
    try:
        import uvloop
    except ImportError:
        pass
    else:
        kinds.append(uvloop.new_event_loop)
    if backend.name == "c":
        kinds.append(fa.Loop)
    return kinds


def run_on(backend, engine, coro_fn, loop_factory=asyncio.new_event_loop):
    """Run ``coro_fn()`` on a new loop whose file engine is ``engine``
    (uring on the backend's ring)."""
    loop = loop_factory()
    try:
        if engine == "uring":
            engine_for(loop, "uring", ring_factory=backend.Ring)
        elif engine == "aio":
            engine_for(loop, "aio", context_factory=backend.aio.Context)

        async def main():
            return await asyncio.wait_for(coro_fn(), TIMEOUT)

        os.environ["FASTIO_FILE_ENGINE"] = engine
        try:
            return loop.run_until_complete(main())
        finally:
            del os.environ["FASTIO_FILE_ENGINE"]
    finally:
        loop.close()


def outcome(fn):
    try:
        return ("ok", fn())
    except Exception as exc:
        return ("raise", type(exc))


async def aoutcome(coro):
    try:
        return ("ok", await coro)
    except Exception as exc:
        return ("raise", type(exc))


# A script: (method, args) pairs, called on the built-in file and on ours.
SCRIPTS = {
    "read": [("read", (4,)), ("tell", ()), ("readline", ()), ("readline", (3,)), ("read", ()), ("read", ()),
             ("tell", ()), ("seek", (0,)), ("readlines", ()), ("write", (b"x",))],
    "write": [("write", (b"abc\n",)), ("tell", ()), ("write", (b"defgh",)), ("seek", (2,)), ("write", (b"Z",)),
              ("tell", ()), ("truncate", ()), ("seek", (0, 2)), ("tell", ()), ("read", (1,)),
              ("writelines", ([b"l1\n", b"l2\n"],)), ("flush", ())],
    "update": [("read", (5,)), ("write", (b"##",)), ("tell", ()), ("seek", (0,)), ("readline", ()),
               ("seek", (-3, 2)), ("read", ()), ("write", (b"end\n",)), ("seek", (0,)), ("read", ()),
               ("truncate", (7,)), ("seek", (0,)), ("read", ())],
}
BINARY_SEED = b"line one\nline two\r\nthree\n\nfour"


def text_args(args):
    return tuple(a.decode() if isinstance(a, bytes) else [x.decode() for x in a] if isinstance(a, list) else a
                 for a in args)


@pytest.mark.parametrize("mode,script", [
    ("rb", "read"), ("r", "read"), ("wb", "write"), ("w", "write"), ("xb", "write"), ("ab", "write"),
    ("a", "write"), ("r+b", "update"), ("r+", "update"), ("w+b", "write"), ("a+b", "update"), ("a+", "update"),
])
def test_a_script_of_calls_matches_the_builtin_open(backend, engine, loop_factory, tmp_path, mode, script):
    binary = "b" in mode
    steps = SCRIPTS[script]
    if not binary:
        steps = [(m, text_args(a)) for m, a in steps]
    if not binary and script == "update":
        # text: no relative seeks; and no write right after a read, which the
        # built-in puts after its read-ahead (see the next test)
        steps = [s for s in steps if (s[0] != "seek" or s[1] in ((0,), (0, 2))) and s[1] != ("##",)]
    results = {}
    for who in ("builtin", "fastio"):
        path = tmp_path / who
        if "x" not in mode:
            path.write_bytes(BINARY_SEED)
        if who == "builtin":
            # Binary: the unbuffered built-in file, as ours writes through
            # (a buffered one's tell() after a seek in append mode counts
            # bytes it has not appended yet).
            unbuffered = binary and engine != "thread"
            with open(path, mode, 0 if unbuffered else -1, newline="" if not binary else None) as f:
                results[who] = [outcome(lambda m=m, a=a: getattr(f, m)(*a)) for m, a in steps]
                results[who].append(f.mode)
        else:
            async def go():
                async with fa.open(path, mode, newline="" if not binary else None) as f:
                    got = [await aoutcome(getattr(f, m)(*a)) for m, a in steps]
                    got.append(f.mode)
                    assert f.engine == engine
                    return got

            results[who] = run_on(backend, engine, go, loop_factory)
        results[who + "-bytes"] = path.read_bytes()
    assert results["fastio"] == results["builtin"]
    assert results["fastio-bytes"] == results["builtin-bytes"]


def test_a_text_write_after_a_read_goes_at_the_next_character(backend, tmp_path):
    # (The built-in's goes after what its text layer read ahead: 8 KiB on,
    # or at the end of a smaller file.)
    uring_or_skip(backend)
    path = tmp_path / "f"
    path.write_bytes(b"0123456789")

    async def go():
        async with fa.open(path, "r+") as f:
            assert await f.read(3) == "012"
            await f.write("ab")
            return await f.tell(), await f.read()

    assert run_on(backend, "uring", go) == (5, "56789")
    assert path.read_bytes() == b"012ab56789"


@pytest.mark.parametrize("newline", [None, "", "\n", "\r", "\r\n"])
@pytest.mark.parametrize("encoding", ["utf-8", "latin-1", "utf-16"])
def test_text_reads_and_writes_match_the_builtin(backend, engine, loop_factory, tmp_path, newline, encoding):
    text = TEXT if encoding != "latin-1" else TEXT.encode("latin-1", "replace").decode("latin-1")
    want_path, got_path = tmp_path / "want", tmp_path / "got"
    with open(want_path, "w", encoding=encoding, newline=newline) as f:
        f.write(text)
    with open(want_path, encoding=encoding, newline=newline) as f:
        want_lines = f.readlines()
    with open(want_path, encoding=encoding, newline=newline) as f:
        want_parts = [f.read(3), f.readline(), f.read(5), f.read()]

    async def go():
        async with fa.open(got_path, "w", encoding=encoding, newline=newline) as f:
            assert await f.write(text) == len(text)
        async with fa.open(got_path, encoding=encoding, newline=newline) as f:
            lines = [line async for line in f]
        async with fa.open(got_path, encoding=encoding, newline=newline) as f:
            parts = [await f.read(3), await f.readline(), await f.read(5), await f.read()]
        return lines, parts

    lines, parts = run_on(backend, engine, go, loop_factory)
    assert got_path.read_bytes() == want_path.read_bytes()
    assert lines == want_lines
    assert parts == want_parts


@pytest.mark.parametrize("newline", [None, ""])
def test_text_tell_and_seek_come_back_to_the_same_line(backend, engine, loop_factory, tmp_path, newline):
    path = tmp_path / "t"
    path.write_bytes(TEXT.encode("utf-8"))

    async def go():
        async with fa.open(path, encoding="utf-8", newline=newline) as f:
            marks = []
            while True:
                pos = await f.tell()
                line = await f.readline()
                if not line:
                    break
                marks.append((pos, line))
            again = []
            for pos, _line in reversed(marks):
                await f.seek(pos)
                again.append(await f.readline())
            return [line for _, line in marks], list(reversed(again))

    lines, again = run_on(backend, engine, go, loop_factory)
    with open(path, encoding="utf-8", newline=newline) as f:
        assert lines == f.readlines()
    assert again == lines


def test_errors_are_the_builtin_ones_with_the_file_name(backend, engine, loop_factory, tmp_path):
    missing = tmp_path / "missing"
    existing = tmp_path / "here"
    existing.write_bytes(b"x")

    async def go():
        got = {}
        for key, coro_fn in {
            "missing": lambda: fa.open(missing),
            "dir": lambda: fa.open(tmp_path),
            "exists": lambda: fa.open(existing, "x"),
        }.items():
            try:
                await coro_fn()
            except OSError as exc:
                got[key] = (type(exc), exc.errno, exc.filename)
        f = await fa.open(existing, "rb")
        with pytest.raises(io.UnsupportedOperation):
            await f.write(b"no")
        await f.close()
        await f.close()     # twice is allowed
        assert f.closed
        with pytest.raises(ValueError):
            await f.read()
        return got

    got = run_on(backend, engine, go, loop_factory)
    assert got["missing"] == (FileNotFoundError, 2, str(missing))
    assert got["dir"][:2] == (IsADirectoryError, 21)
    assert got["exists"] == (FileExistsError, 17, str(existing))


@pytest.mark.parametrize("mode,kwargs,error", [
    ("rw", {}, ValueError), ("rbt", {}, ValueError), ("q", {}, ValueError), ("rb", {"encoding": "utf-8"}, ValueError),
    ("r", {"buffering": 0}, ValueError), ("r", {"newline": "x"}, ValueError), (1, {}, TypeError),
])
def test_bad_arguments_are_refused_as_the_builtin_refuses_them(tmp_path, mode, kwargs, error):
    path = tmp_path / "f"
    path.write_bytes(b"")
    with pytest.raises(error):
        open(path, mode, **kwargs)
    with pytest.raises(error):
        fa.open(path, mode, **kwargs)


def test_concurrent_reads_of_one_file_each_get_the_next_range(backend, engine, loop_factory, tmp_path):
    blocks = [bytes([i]) * 4096 for i in range(64)]
    path = tmp_path / "blocks"
    path.write_bytes(b"".join(blocks))

    async def go():
        async with fa.open(path, "rb") as f:
            got = await asyncio.gather(*(f.read(4096) for _ in range(64)))
            assert await f.read(1) == b""
            positional = await asyncio.gather(*(f.pread(4096, 4096 * i) for i in reversed(range(64))))
            return got, positional, await f.tell()

    got, positional, pos = run_on(backend, engine, go, loop_factory)
    assert sorted(got) == blocks
    if engine != "thread":
        assert got == blocks      # the ranges in the order the reads were called
    assert positional == list(reversed(blocks))
    assert pos == 64 * 4096


def test_the_compiled_loop_and_the_stdlib_loop_read_the_same(backend, tmp_path):
    uring_or_skip(backend)
    path = tmp_path / "f"
    data = os.urandom(200_000)
    path.write_bytes(data)

    async def go():
        async with fa.open(path, "rb") as f:
            head = await f.read(1000)
            buf = bytearray(5000)
            n = await f.readinto(buf)
            tail = await f.read()
            return head + bytes(buf[:n]) + tail

    for factory in loop_kinds(backend):
        assert run_on(backend, "uring", go, factory) == data


def test_a_cancelled_kernel_read_writes_nothing_after_cancelled_error(backend):
    # A pipe read stays in the kernel until bytes come: cancel the await,
    # then send bytes; the buffer must stay untouched and the task must
    # have seen CancelledError only once the kernel let go.
    uring_or_skip(backend)
    r, w = os.pipe()
    buf = bytearray(b"\xee" * 64)

    async def go():
        eng = engine_for(asyncio.get_running_loop(), "uring")
        task = asyncio.ensure_future(eng.read(r, buf, -1))
        await asyncio.sleep(0.05)
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not eng.orphans, "the kernel's completion came before CancelledError"
        os.write(w, b"late bytes")
        await asyncio.sleep(0.05)
        return bytes(buf)

    try:
        for factory in loop_kinds(backend):     # (on fastio's loop: the loop's own ring)
            assert run_on(backend, "uring", go, factory) == b"\xee" * 64
            assert os.read(r, 100) == b"late bytes"     # nothing was consumed by the cancelled read
    finally:
        os.close(r)
        os.close(w)


def test_a_pipe_gets_the_thread_engine(backend, tmp_path):
    uring_or_skip(backend)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)

    def writer():
        with open(fifo, "wb") as f:
            f.write(b"through the pipe\n")

    t = threading.Thread(target=writer)
    t.start()

    async def go():
        async with fa.open(fifo, "rb") as f:
            return f.engine, await f.readline()

    try:
        assert run_on(backend, "uring", go) == ("thread", b"through the pipe\n")
    finally:
        t.join(TIMEOUT)


def test_fsync_fdatasync_stat_and_positional_writes(backend, engine, loop_factory, tmp_path):
    path = tmp_path / "f"

    async def go():
        async with fa.open(path, "w+b") as f:
            await f.write(b"0123456789")
            assert await f.pwrite(b"AB", 3) == 2
            assert await f.tell() == 10         # pwrite leaves the position alone
            await f.fsync()
            await f.fdatasync()
            buf = bytearray(4)
            assert await f.preadinto(buf, 2) == 4
            return bytes(buf), await f.stat(), f.fileno()

    got, st, _fd = run_on(backend, engine, go, loop_factory)
    assert got == b"2AB5"
    assert path.read_bytes() == b"012AB56789"
    assert st.st_size == 10 and stat.S_ISREG(st.st_mode)


def test_os_stat_and_path_match_os(backend, engine, loop_factory, tmp_path):
    f = tmp_path / "file"
    f.write_bytes(b"12345")
    d = tmp_path / "dir"
    d.mkdir()
    link = tmp_path / "link"
    link.symlink_to(f)
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "nowhere")
    names = ("st_mode", "st_ino", "st_dev", "st_nlink", "st_uid", "st_gid", "st_size", "st_atime", "st_mtime",
             "st_ctime", "st_atime_ns", "st_mtime_ns", "st_ctime_ns", "st_blksize", "st_blocks", "st_rdev")

    async def go():
        out = {}
        for p in (f, d, link, dangling, tmp_path / "missing"):
            out[p.name] = (await aoutcome(aos.stat(p)), await aoutcome(aos.lstat(p)),
                           [await fn(p) for fn in (aos.path.exists, aos.path.lexists, aos.path.isfile,
                                                   aos.path.isdir, aos.path.islink)])
        out["size"] = await aos.path.getsize(f)
        out["same"] = await aos.path.samefile(f, link)
        await aos.rename(f, tmp_path / "renamed")
        await aos.mkdir(tmp_path / "made")
        out["listdir"] = sorted(await aos.listdir(tmp_path))
        await aos.remove(tmp_path / "renamed")
        await aos.rmdir(tmp_path / "made")
        return out

    # the oracle first: the calls above change the directory
    want = {}
    for p in (f, d, link, dangling, tmp_path / "missing"):
        want[p.name] = (outcome(lambda: os.stat(p)), outcome(lambda: os.lstat(p)),
                        [fn(p) for fn in (os.path.exists, os.path.lexists, os.path.isfile, os.path.isdir,
                                          os.path.islink)])
    got = run_on(backend, engine, go, loop_factory)
    for key, (st, lst, flags) in want.items():
        gst, glst, gflags = got[key]
        assert gflags == flags, key
        for mine, theirs in ((gst, st), (glst, lst)):
            assert mine[0] == theirs[0], key
            if mine[0] == "ok":
                # atime may move between the two calls (a read of the file in between)
                assert [getattr(mine[1], n) for n in names if "atime" not in n] == \
                       [getattr(theirs[1], n) for n in names if "atime" not in n], key
            else:
                assert mine[1] == theirs[1], key
    assert got["size"] == 5 and got["same"] is True
    assert got["listdir"] == sorted(["renamed", "dir", "link", "dangling", "made"])


def test_an_unknown_engine_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTIO_FILE_ENGINE", "carrier-pigeon")
    with pytest.raises(ValueError, match="FASTIO_FILE_ENGINE"):
        _fileengine.default_engine_name()

    async def go():
        with pytest.raises(ValueError, match="engine="):
            await fa.open(tmp_path / "x", "w", engine="nope")

    monkeypatch.delenv("FASTIO_FILE_ENGINE")
    asyncio.run(go())


def test_truncate_is_a_ring_request_where_the_kernel_has_ftruncate(backend, tmp_path):
    uring_or_skip(backend)
    loop = asyncio.new_event_loop()
    try:
        eng = engine_for(loop, "uring", ring_factory=backend.Ring)
        if _fileengine.IORING_OP_FTRUNCATE not in eng.opcodes:
            pytest.skip("this kernel's io_uring has no FTRUNCATE (Linux 6.9)")
        on_thread = []
        real_call = eng.thread.call

        async def recording_call(func, *args):
            on_thread.extend((func, *args))
            return await real_call(func, *args)

        eng.thread.call = recording_call
        path = tmp_path / "f"
        path.write_bytes(b"0123456789")
        with builtins.open(path, "r+b") as ref:     # the built-in's errno for a size past the fs's limit
            try:
                os.ftruncate(ref.fileno(), 1 << 62)
                too_big = None
            except OSError as exc:
                too_big = exc.errno

        async def go():
            async with fa.open(path, "r+b", engine="uring") as f:
                assert await f.truncate(3) == 3
                assert os.path.getsize(path) == 3
                await f.seek(2)
                assert await f.truncate() == 2
                assert await f.truncate(1 << 20) == 1 << 20
                if too_big is not None:
                    with pytest.raises(OSError) as info:
                        await f.truncate(1 << 62)
                    assert info.value.errno == too_big

        loop.run_until_complete(asyncio.wait_for(go(), TIMEOUT))
        assert os.path.getsize(path) == 1 << 20
        assert os.ftruncate not in on_thread
    finally:
        loop.close()


def test_the_loop_ring_is_closed_with_the_loop(backend):
    uring_or_skip(backend)
    loop = asyncio.new_event_loop()
    eng = engine_for(loop, "uring", ring_factory=backend.Ring)
    assert isinstance(eng, UringFiles) and not eng.closed
    ring = eng.ring
    loop.close()
    del loop, eng
    import gc

    gc.collect()
    assert ring.closed


def uring_loop_or_skip(backend):
    if backend.name != "c":
        pytest.skip("fastio's compiled loop is the c backend's")
    try:
        return fa.Loop(engine="uring")
    except UnsupportedError as exc:      # (io_uring refused here: the reason)
        pytest.skip(str(exc))


def test_on_fastios_uring_loop_the_requests_go_on_the_loops_own_ring(backend, tmp_path):
    uring_or_skip(backend)
    loop = uring_loop_or_skip(backend)
    path = tmp_path / "f"
    try:
        eng = engine_for(loop, "uring")
        assert eng.shared and eng.ring is loop._engine.ring

        async def go():
            async with fa.open(path, "w+b") as f:
                # Prepared, not submitted: the loop's next wait sends it (a
                # ring of its own would have written it inside the call).
                write = asyncio.ensure_future(f.pwrite(b"late", 0))
                await asyncio.sleep(0)      # (the write's first step ran in this turn)
                assert os.path.getsize(path) == 0
                await write
                assert path.read_bytes() == b"late"
                await asyncio.gather(*(f.pwrite(bytes([i]) * 4096, i * 4096) for i in range(64)))
                await f.fsync()
                got = await asyncio.gather(*(f.pread(4096, i * 4096) for i in range(64)))
                return got, await f.stat(), f.engine

        got, st, name = loop.run_until_complete(asyncio.wait_for(go(), TIMEOUT))
        assert got == [bytes([i]) * 4096 for i in range(64)]
        assert (st.st_size, name, eng.unhandled, eng.orphans) == (64 * 4096, "uring", [], {})
        assert eng.watching is False        # (nothing watched: the loop's own wait reaps them)
    finally:
        loop.close()
    assert eng.closed
    with pytest.raises(RuntimeError, match="closed"):
        eng.check()


def test_a_cached_file_read_whole_does_not_wait_for_the_loops_ring(backend, tmp_path):
    # The short RWF_NOWAIT read at the end of the file is known to be the end
    # (the file's size): no ring read, which on the loop's own ring would
    # cost the task a loop turn, follows it.
    uring_or_skip(backend)
    loop = uring_loop_or_skip(backend)
    path = tmp_path / "f"
    path.write_bytes(b"4 KiB or so " * 300)

    async def go():
        async with fa.open(path, "rb") as f:
            assert f.engine == "uring"
            coro = f.read()
            try:
                coro.send(None)
            except StopIteration as done:
                return done.value
            coro.close()
            raise AssertionError("the read of a cached file waited for the ring")

    try:
        with open(path, "rb") as f:
            f.read()        # (cached)
        assert loop.run_until_complete(asyncio.wait_for(go(), TIMEOUT)) == path.read_bytes()
    finally:
        loop.close()


UNCLOSED_LOOP = """
import asyncio, os, sys, fastio.asyncio as fa
loop = fa.Loop(engine="uring")
path = sys.argv[1]

async def go():
    async with fa.open(path, "w+b") as f:
        write = asyncio.ensure_future(f.pwrite(b"late", 0))
        await asyncio.sleep(0)
        await write

loop.run_until_complete(go())
print("done")       # the loop is never closed: its ring is drained as the interpreter ends
"""


def test_a_loop_never_closed_drains_its_ring_at_exit_without_crashing(backend, tmp_path):
    uring_or_skip(backend)
    uring_loop_or_skip(backend).close()
    proc = subprocess.run([sys.executable, "-c", UNCLOSED_LOOP, str(tmp_path / "f")],
                          capture_output=True, text=True, timeout=60)
    assert (proc.returncode, proc.stdout) == (0, "done\n"), proc.stderr


def test_completions_taken_off_the_ring_survive_an_exception_half_way(backend):
    # An exception while completions are resolved (a signal handler's, a
    # finalizer's) loses none of those already taken off the ring, and
    # resolves none twice.
    uring_or_skip(backend)
    loop = asyncio.new_event_loop()
    raised = []

    class Touchy(asyncio.Future):
        def set_result(self, result):
            if not raised:
                raised.append(result)
                raise KeyboardInterrupt
            super().set_result(result)

    try:
        eng = engine_for(loop, "uring", ring_factory=backend.Ring)
        asyncio.set_event_loop(loop)
        futs = [asyncio.Future(loop=loop), Touchy(loop=loop), asyncio.Future(loop=loop)]
        for fut in futs:
            eng.ring.prep_nop(user_data=fut)
        eng.ring.submit()
        with pytest.raises(KeyboardInterrupt):
            eng.reap()
        assert futs[0].done() and not futs[1].done() and len(eng.unhandled) == 2
        eng.reap()
        assert [f.result() for f in futs] == [0, 0, 0] and eng.unhandled == []
        assert not eng.released and eng.ring.inflight == 0
    finally:
        asyncio.set_event_loop(None)
        loop.close()


def test_the_loop_engines_completion_handler_gets_back_what_it_did_not_take(backend):
    uring_or_skip(backend)
    loop = uring_loop_or_skip(backend)
    seen = []

    def handler(completions):
        seen.append([c.user_data for c in completions])
        if len(seen) == 1:
            raise KeyError("not taken")
        completions.clear()

    try:
        engine = loop._engine
        with pytest.raises(TypeError, match="callable"):
            engine.set_completion_handler(42)
        engine.set_completion_handler(handler)
        engine.ring.prep_nop(user_data="a")
        engine.ring.prep_nop(user_data="b")
        with pytest.raises(KeyError):       # (out of the loop's turn, as a callback's error is not)
            loop.run_until_complete(asyncio.sleep(0.01))
        loop.run_until_complete(asyncio.sleep(0.01))
        assert seen[:2] == [["a", "b"], ["a", "b"]] and len(seen) == 2
    finally:
        loop._engine.set_completion_handler(None)
        loop.close()


def test_a_forked_child_gets_a_clear_error_not_the_parents_ring(backend, tmp_path):
    uring_or_skip(backend)
    path = tmp_path / "f"
    path.write_bytes(b"data")
    loop = asyncio.new_event_loop()
    try:
        engine_for(loop, "uring", ring_factory=backend.Ring)
        f = loop.run_until_complete(fa.open(path, "rb"))
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                for call in (f.read, lambda: f.pread(4, 0)):    # (pread: also its cached range's path)
                    code = 1
                    try:
                        loop.run_until_complete(call())
                    except RuntimeError as exc:
                        code = 0 if "forked child" in str(exc) else 2
                    if code:
                        break
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
        assert loop.run_until_complete(f.read()) == b"data"      # the parent's file still works
        loop.run_until_complete(f.close())
    finally:
        loop.close()


def test_pread_of_a_cached_range_keeps_every_rule_of_pread(backend, loop_factory, tmp_path):
    # On the c backend's uring engine a file's pread of a range the page
    # cache holds is one compiled call (fastio._c._fileio.FileCore): the
    # same bytes as os.pread, the same refusals, and still refused from
    # another loop although the read would need no ring.
    uring_or_skip(backend)
    path = tmp_path / "f"
    data = os.urandom(3 * 4096 + 100)
    path.write_bytes(data)
    loop = loop_factory()
    other = asyncio.new_event_loop()
    try:
        engine_for(loop, "uring", ring_factory=backend.Ring)
        f = loop.run_until_complete(fa.open(path, "rb"))
        assert ("FileCore" in [c.__name__ for c in type(f).__mro__]) == (backend.name == "c")

        async def reads():
            got = [await f.pread(4096, off) for off in (0, 4096, 8192)]
            return got, await f.pread(4096, 3 * 4096), await f.pread(0, 5), await f.pread(10, len(data) + 7)

        whole, tail, empty, past = loop.run_until_complete(reads())
        assert whole == [data[:4096], data[4096:8192], data[8192:12288]]
        assert (tail, empty, past) == (data[12288:], b"", b"")    # short at EOF, nothing at and past it
        for size, offset in ((-1, 0), (1, -1)):
            with pytest.raises(ValueError):
                loop.run_until_complete(f.pread(size, offset))
        with pytest.raises(TypeError):
            loop.run_until_complete(f.pread(1.5, 0))
        with pytest.raises(RuntimeError, match="another event loop"):
            other.run_until_complete(f.pread(4096, 0))
        assert loop.run_until_complete(f.pread(5, 1)) == data[1:6]     # (its own loop again, after)
        loop.run_until_complete(f.close())
        with pytest.raises(ValueError, match="closed file"):
            loop.run_until_complete(f.pread(4096, 0))
        w = loop.run_until_complete(fa.open(path, "ab"))
        with pytest.raises(io.UnsupportedOperation):
            loop.run_until_complete(w.pread(4096, 0))
        loop.run_until_complete(w.close())
    finally:
        other.close()
        loop.close()


def error_of(fn):
    try:
        fn()
    except OSError as exc:
        return (type(exc), exc.errno, exc.filename, exc.filename2)
    return None


async def aerror_of(coro):
    try:
        await coro
    except OSError as exc:
        return (type(exc), exc.errno, exc.filename, exc.filename2)
    return None


def test_os_path_operations_do_and_refuse_what_os_does(backend, engine, loop_factory, tmp_path):
    # The same calls on two identical trees, one through os, one through
    # fastio.asyncio.os: the same trees after, the same errors (type, errno,
    # both file names).
    def make(root):
        root.mkdir()
        (root / "f").write_bytes(b"data")
        (root / "d").mkdir()
        (root / "d" / "inner").write_bytes(b"")
        return root

    def calls(root, m):
        return [
            (m.rename, (root / "f", root / "g")), (m.rename, (root / "missing", root / "x")),
            (m.replace, (root / "g", root / "h")), (m.mkdir, (root / "new",)), (m.mkdir, (root / "new",)),
            (m.symlink, ("h", root / "sym")), (m.symlink, ("h", root / "sym")), (m.link, (root / "h", root / "hard")),
            (m.link, (root / "missing", root / "hard2")), (m.rmdir, (root / "d",)), (m.rmdir, (root / "new",)),
            (m.remove, (root / "d",)), (m.unlink, (root / "hard",)), (m.remove, (root / "missing",)),
        ]

    want_root, got_root = make(tmp_path / "want"), make(tmp_path / "got")
    want = [error_of(lambda f=f, a=a: f(*a)) for f, a in calls(want_root, os)]

    async def go():
        return [await aerror_of(f(*a)) for f, a in calls(got_root, aos)]

    got = run_on(backend, engine, go, loop_factory)

    def names(errs, root):
        return [None if e is None else (e[0], e[1], *(str(n).replace(str(root), "ROOT") if n else n for n in e[2:]))
                for e in errs]

    assert names(got, got_root) == names(want, want_root)

    def tree(root):
        return sorted((str(p.relative_to(root)), p.is_symlink(), p.is_dir()) for p in root.rglob("*"))

    assert tree(got_root) == tree(want_root)
    assert os.readlink(got_root / "sym") == "h"


@pytest.fixture
def disk_dir():  # (tmpfs keeps its pages: fadvise cannot drop them)
    """A directory on a disk file system (not tmpfs: its page cache can be dropped)."""
    import tempfile

    with tempfile.TemporaryDirectory(dir="/var/tmp" if os.path.isdir("/var/tmp") else None) as d:
        yield d


def cached_pages(fd, size):
    """How many of the first ``size`` bytes' pages of ``fd`` are in the page
    cache: mincore(2) of a mapping, which reads nothing (a read, even with
    RWF_NOWAIT, would start a readahead)."""
    import ctypes
    import ctypes.util
    import mmap

    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
    addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
    if addr in (None, ctypes.c_void_p(-1).value):
        raise OSError(ctypes.get_errno(), "mmap")
    try:
        vec = ctypes.create_string_buffer((size + mmap.PAGESIZE - 1) // mmap.PAGESIZE)
        if libc.mincore(addr, size, vec) != 0:
            raise OSError(ctypes.get_errno(), "mincore")
        return sum(b & 1 for b in vec.raw)
    finally:
        libc.munmap(addr, size)


def drop_from_cache(fd, size):
    """POSIX_FADV_DONTNEED until no page of ``fd`` is cached, a few times:
    whether the kernel dropped them (it skips pages still in another CPU's
    LRU batch, and a busy machine may read some back)."""
    for _ in range(20):
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        if cached_pages(fd, size) == 0:
            return True
        time.sleep(0.01)
    return False


@pytest.mark.parametrize("nowait", [True, False], ids=["nowait-first", "ring-only"])
def test_reads_of_pages_not_cached_go_to_the_ring_and_come_back_whole(backend, disk_dir, nowait):
    # The file is dropped from the page cache: preadv2(RWF_NOWAIT) finds
    # nothing to copy (EAGAIN) and the read goes to the ring, or it goes
    # there at once ("ring-only"); all of it comes back, with no short read
    # taken for the end of the file. (A NOWAIT read cut short by a page not
    # cached sends the rest to the ring; this machine's kernel completed
    # every such read whole in tries with half of a file dropped, so that
    # branch is not reached here.)
    uring_or_skip(backend)
    data = os.urandom(1 << 20)
    path = os.path.join(disk_dir, "f")
    with open(path, "w+b") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())

    async def go():
        eng = engine_for(asyncio.get_running_loop(), "uring")
        eng.nowait = nowait
        ring_requests = 0
        complete = eng.complete

        async def counting(fut, ud):
            nonlocal ring_requests
            ring_requests += 1
            return await complete(fut, ud)

        eng.complete = counting
        async with fa.open(path, "rb") as f:
            # (clean pages after the fsync: dropped. A probe of them here
            # would start a readahead that brings them back.)
            if not drop_from_cache(f.fileno(), len(data)):
                return None
            before = ring_requests
            whole = await f.read(len(data))
            eof = await f.read(10)
            reads = ring_requests - before
        return whole, eof, reads

    got = run_on(backend, "uring", go)
    if got is None:
        pytest.skip("the kernel kept pages of the file cached through 20 POSIX_FADV_DONTNEED (pages in "
                    "another CPU's LRU batch are not dropped): nothing here is uncached to read")
    whole, eof, reads = got
    assert whole == data and eof == b""
    assert reads >= 1       # the dropped pages came through the ring


def test_pread_nowait_reads_what_the_cache_holds_and_says_none_for_the_rest(backend, disk_dir):
    # The engine's first try for a read: bytes straight from the page cache
    # (os.pread's result), b"" at or past the end, None for pages not cached.
    import importlib

    pread_nowait = importlib.import_module(f"fastio._{backend.name}._fileio").pread_nowait
    data = os.urandom(3 * 4096 + 100)
    path = os.path.join(disk_dir, "f")
    with open(path, "w+b") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    fd = os.open(path, os.O_RDONLY)
    try:
        assert os.pread(fd, len(data), 0) == data     # (cached now)
        assert pread_nowait(fd, 4096, 4096) == data[4096:8192]
        assert pread_nowait(fd, 1 << 20, 0) == data      # (short: the end of the file)
        assert pread_nowait(fd, 10, len(data)) == b"" and pread_nowait(fd, 10, len(data) + 5) == b""
        assert pread_nowait(fd, 0, 0) == b""
        with pytest.raises(ValueError):
            pread_nowait(fd, -1, 0)
        with pytest.raises(ValueError):
            pread_nowait(fd, 1, -1)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        assert pread_nowait(fd, 4096, 0) is None
        assert os.pread(fd, 4096, 0) == data[:4096]
    finally:
        os.close(fd)
    with pytest.raises(OSError) as bad:
        pread_nowait(fd, 1, 0)
    assert bad.value.errno == errno.EBADF
    r, w = os.pipe()
    try:
        with pytest.raises(OSError) as pipe:
            pread_nowait(r, 1, 0)
        assert pipe.value.errno == errno.ESPIPE
    finally:
        os.close(r)
        os.close(w)


def direct_fd_or_skip(path, flags=os.O_RDWR, data=None):
    """An O_DIRECT fd of ``path`` (written with ``data`` first, if given)."""
    if data is not None:
        with open(path, "wb") as f:
            f.write(data)
    try:
        return os.open(path, flags | os.O_DIRECT)
    except OSError as exc:
        pytest.skip(f"this file system refuses O_DIRECT: {exc}")


def test_an_o_direct_file_on_the_aio_engine_reads_writes_and_cancels(backend, disk_dir):
    # The aio engine's own case: O_DIRECT requests, asynchronous in the
    # kernel; a cancelled await (io_cancel cannot stop a file read) raises
    # CancelledError only after the read is done, and nothing lands later.
    aio_or_skip(backend)
    data = os.urandom(1 << 20)
    path = os.path.join(disk_dir, "d")
    fd = direct_fd_or_skip(path, data=data)
    block = aligned_buffer(4096)

    async def go():
        f = await fa.open(fd, "rb+", buffering=0, engine="aio")
        assert f.engine == "aio"
        whole = await f.read()
        parts = await asyncio.gather(*(f.pread(4096, off) for off in range(0, 1 << 20, 64 << 10)))
        n = await f.preadinto(block, 8192)
        # pread and read make their own aligned buffers and cover whole
        # pages: any offset and size; the caller's own buffer must be aligned
        odd = [await f.pread(100, 1), await f.pread(5000, (1 << 20) - 10), await f.pread(4096, 100)]
        await f.seek(3)
        odd += [await f.read(5), await f.read(4097)]
        with pytest.raises(OSError) as unaligned:
            await f.preadinto(bytearray(100), 1)
        await f.seek(0)
        block[:] = b"w" * 4096
        wrote = await f.pwrite(block, 4096)
        await f.fsync()
        await f.fdatasync()
        size = (await f.stat()).st_size
        target = aligned_buffer(1 << 20)
        target[:] = b"\0" * len(target)
        t = asyncio.ensure_future(f.preadinto(target, 0))
        await asyncio.sleep(0)
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t
        landed = bytes(target)
        await asyncio.sleep(0.05)
        after = bytes(target)
        await f.close()
        return whole, parts, n, odd, unaligned.value.errno, wrote, size, landed, after

    whole, parts, n, odd, err, wrote, size, landed, after = run_on(backend, "aio", go)
    assert odd == [data[1:101], data[-10:], data[100:4196], data[3:8], data[8:4105]]
    assert whole == data
    assert parts == [data[off:off + 4096] for off in range(0, 1 << 20, 64 << 10)]
    assert n == 4096 and err == errno.EINVAL and wrote == 4096 and size == len(data)
    assert landed == after      # the kernel wrote nothing after CancelledError
    with open(path, "rb") as f:
        assert f.read() == data[:4096] + b"w" * 4096 + data[8192:]


def test_where_io_uring_cannot_be_used_an_o_direct_file_gets_aio(backend, disk_dir, monkeypatch):
    # No engine asked for and io_uring switched off: an O_DIRECT fd and an
    # opener that adds O_DIRECT get Linux AIO; a plain path or fd, threads.
    aio_or_skip(backend)
    path = os.path.join(disk_dir, "d")
    with open(path, "wb") as f:
        f.write(os.urandom(8192))
    os.close(direct_fd_or_skip(path, os.O_RDONLY))
    monkeypatch.setenv("FASTIO_DISABLE", "uring")

    async def go():
        engines = {}
        for name, kwargs, target in (
                ("direct fd", {}, os.open(path, os.O_RDONLY | os.O_DIRECT)),
                ("direct opener", {"opener": lambda p, fl: os.open(p, fl | os.O_DIRECT)}, path),
                ("plain path", {}, path),
                ("plain fd", {}, os.open(path, os.O_RDONLY))):
            async with fa.open(target, "rb", buffering=0, **kwargs) as f:
                assert len(await f.pread(4096, 4096)) == 4096
                engines[name] = f.engine
        return engines

    loop = asyncio.new_event_loop()
    try:
        engine_for(loop, "aio", context_factory=backend.aio.Context)
        got = loop.run_until_complete(go())
    finally:
        loop.close()
    assert got == {"direct fd": "aio", "direct opener": "aio", "plain path": "thread", "plain fd": "thread"}


def test_an_o_direct_file_on_the_uring_engine_reads_aligned_and_keeps_the_cache_try_for_others(backend, disk_dir):
    # An O_DIRECT file on the uring engine: pread and read make an aligned
    # buffer (the built-in's unaligned one gets EINVAL), and no RWF_NOWAIT
    # try is made for it. That try's EINVAL on an unaligned buffer used to
    # switch the try off for every file of the loop.
    uring_or_skip(backend)
    data = os.urandom(1 << 16)
    fd = direct_fd_or_skip(os.path.join(disk_dir, "d"), os.O_RDONLY, data)

    async def go():
        eng = engine_for(asyncio.get_running_loop(), "uring")
        async with fa.open(fd, "rb", buffering=0) as f:
            assert f.engine == "uring"
            got = (await f.pread(4096, 8192), await f.read())
        return got, eng.nowait

    (part, whole), nowait = run_on(backend, "uring", go)
    assert part == data[8192:12288] and whole == data
    assert nowait       # still on for the loop's other files


@pytest.mark.parametrize("mode", ["r+b", "r+"])
def test_truncate_returns_the_size_as_the_builtin_does(backend, engine, tmp_path, mode):
    """The built-in file's ``truncate(size)`` returns ``size`` as given (so
    ``truncate(True)`` is ``True``); the thread engine made it ``int``."""
    path = tmp_path / "f"
    path.write_bytes(b"abcdef")
    with open(path, mode) as f:
        reference = [f.truncate(True), f.truncate(4)]

    async def ours():
        path.write_bytes(b"abcdef")
        async with fa.open(path, mode, engine=engine) as f:
            return [await f.truncate(True), await f.truncate(4)], os.path.getsize(path)

    got, size = run_on(backend, engine, ours)
    assert [(type(v), v) for v in got] == [(type(v), v) for v in reference] == [(bool, True), (int, 4)]
    assert size == 4


def test_truncate_and_pwrite_after_a_read_ahead_keep_the_builtins_results(backend, engine, tmp_path):
    """``peek()`` and ``readline()`` read ahead; ``truncate()`` must drop
    what they read (the built-in open does: a read after it gave the cut
    bytes), and ``pwrite()``, which drops it too, must put the position
    back where the caller stands (it jumped past the read-ahead)."""
    path = tmp_path / "f"
    data = b"line1\nline2\nline3\n" + bytes(range(256)) * 40

    def reference():
        path.write_bytes(data)
        with open(path, "r+b") as f:
            first = f.readline()
            f.truncate()
            cut = (f.read(), f.tell(), os.path.getsize(path))
        path.write_bytes(data)
        with open(path, "r+b") as f:
            f.peek(1)
            f.seek(0, os.SEEK_CUR)      # (the built-in has no pwrite: the unbuffered write)
            os.pwrite(f.fileno(), b"X", 9000)
            moved = (f.tell(), f.read(4))
        return first, cut, moved

    async def ours():
        path.write_bytes(data)
        async with fa.open(path, "r+b", engine=engine) as f:
            await f.peek(1)
            first = await f.readline()
            await f.truncate()
            cut = (await f.read(), await f.tell(), os.path.getsize(path))
        path.write_bytes(data)
        async with fa.open(path, "r+b", engine=engine) as f:
            await f.peek(1)
            await f.pwrite(b"X", 9000)
            moved = (await f.tell(), await f.read(4))
        return first, cut, moved

    assert run_on(backend, engine, ours) == reference() == (b"line1\n", (b"", 6, 6), (0, b"line"))
