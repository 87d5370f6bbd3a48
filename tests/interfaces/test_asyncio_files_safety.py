"""fastio.asyncio.open under what the oracle suite does not do: several
tasks on one file object, a close while another task's request is out, an
engine that cannot take a request, an exception between the request's
preparation and its await, a loop that is dropped, many completions at one
wake-up; and the edges of open() the built-in handles (a bad encoding,
``"locale"``, a directory fd, a BOM on append, a bad ``whence``, O_DIRECT at
any offset and size)."""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import time

import pytest

import fastio.asyncio as fa
from fastio.aio import aligned_buffer
from fastio.asyncio._fileengine import engine_for

from test_asyncio_files import (aio_or_skip, direct_fd_or_skip, disk_dir, engine,  # noqa: F401
                               run_on, uring_or_skip)

LINES = [f"line {i:05d} " + "x" * (i % 97) + "\n" for i in range(3000)]


def open_fds() -> set[int]:
    return {int(x) for x in os.listdir("/proc/self/fd")}


def kernel_objects() -> set[tuple[int, str]]:
    """The io_uring and eventfd fds of this process (what an engine holds)."""
    found = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if "io_uring" in target or "eventfd" in target:
            found.add((int(fd), target))
    return found


# ---------------------------------------------------------------- one file, several tasks


@pytest.mark.parametrize("mode", ["r", "rb"])
def test_concurrent_readlines_each_get_whole_lines_in_order(backend, engine, tmp_path, mode):
    # readline keeps what it read ahead; two tasks interleaving it used to
    # read the same bytes twice and lose others.
    path = tmp_path / "lines"
    path.write_text("".join(LINES))
    want = LINES if mode == "r" else [line.encode() for line in LINES]

    async def go():
        got: list = []

        async def reader():
            while True:
                line = await f.readline()
                if not line:
                    return
                got.append(line)

        async with fa.open(path, mode) as f:
            await asyncio.gather(*(reader() for _ in range(4)))
            return got

    got = run_on(backend, engine, go)
    assert sorted(got) == want      # every line once, whole
    if engine != "thread":
        assert got == want          # in the order the calls were made


def test_a_readall_and_a_seek_from_two_tasks_take_turns(backend, engine, tmp_path):
    data = os.urandom(300_000)
    path = tmp_path / "f"
    path.write_bytes(data)

    async def go():
        async with fa.open(path, "rb") as f:
            await f.read(10)
            whole, pos, rest = await asyncio.gather(f.read(), f.seek(5), f.read(7))
            return whole, pos, rest, await f.tell()

    whole, pos, rest, tell = run_on(backend, engine, go)
    if engine == "thread":
        assert pos == 5     # (the built-in file in threads: the order is the pool's)
    else:
        assert (whole, pos, rest, tell) == (data[10:], 5, data[5:12], 12)


def test_close_waits_for_a_read_of_several_requests_and_never_reuses_the_fd(backend, engine, tmp_path):
    # The file grows after open: readall then takes several requests. A
    # close from another task used to close the fd between them (the next
    # request then read whatever file got the number).
    path = tmp_path / "grows"
    path.write_bytes(b"a" * 1000)

    async def go():
        f = await fa.open(path, "rb")
        with open(path, "ab") as g:
            g.write(b"b" * 500_000)
        reading = asyncio.ensure_future(f.read())
        await asyncio.sleep(0)
        closing = asyncio.ensure_future(f.close())
        other = os.open(os.devnull, os.O_RDONLY)   # (takes the number a premature close freed)
        try:
            data = await reading
            await closing
        finally:
            os.close(other)
        return data, f.closed

    data, closed = run_on(backend, engine, go)
    assert closed and data == b"a" * 1000 + b"b" * 500_000


def test_a_call_waiting_for_its_turn_after_close_gets_closed_file_error(backend, engine, tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"z" * 100_000)

    async def go():
        f = await fa.open(path, "rb")
        results = await asyncio.gather(f.read(10), f.close(), f.read(10), return_exceptions=True)
        return results

    first, closed, late = run_on(backend, engine, go)
    assert first == b"z" * 10 and closed is None
    assert isinstance(late, ValueError) and "closed file" in str(late)


def test_a_cancelled_wait_for_the_turn_passes_it_on(backend, engine, tmp_path):
    path = tmp_path / "f"
    path.write_bytes(bytes(range(256)) * 64)

    async def go():
        async with fa.open(path, "rb") as f:
            a = asyncio.ensure_future(f.read(1))
            b = asyncio.ensure_future(f.read(1))
            c = asyncio.ensure_future(f.read(1))
            b.cancel()
            got_a = await a
            with pytest.raises(asyncio.CancelledError):
                await b
            return got_a, await c, await f.read(1)

    a, c, d = run_on(backend, engine, go)
    assert a + c + d == bytes([0, 1, 2]) or engine == "thread" and sorted(a + c + d) == [0, 1, 2]


# ---------------------------------------------------------------- close: the fd is never left open


def test_a_file_closed_from_another_loop_closes_its_fd(backend, engine, tmp_path):
    # The first loop is gone (its ring closed): the engine cannot take the
    # close; it used to mark the file closed and leave the fd open.
    path = tmp_path / "f"
    path.write_bytes(b"x")
    holder = {}

    async def opening():
        holder["f"] = await fa.open(path, "rb")
        return holder["f"].fileno()

    fd = run_on(backend, engine, opening)
    gc.collect()

    async def closing():
        await holder["f"].close()
        return holder["f"].closed

    assert run_on(backend, engine, closing)
    with pytest.raises(OSError):
        os.fstat(fd)


# ---------------------------------------------------------------- the kernel owns the buffer until it lets go


def test_an_exception_in_submit_waits_for_the_kernel_before_it_reaches_the_caller(backend, monkeypatch):
    # A signal handler's exception raised inside io_uring_enter, after the
    # kernel took the request: the caller hears of it only once the kernel
    # let go of its buffer, and the request's completion is not lost.
    uring_or_skip(backend)
    r, w = os.pipe()
    buf = bytearray(b"\xee" * 64)

    class Interrupt(Exception):
        pass

    async def go():
        loop = asyncio.get_running_loop()
        eng = engine_for(loop, "uring")
        real = eng.submit
        calls = []

        def submit_then_raise():
            real()
            if not calls:
                calls.append(1)
                loop.call_later(0.05, os.write, w, b"late")   # (so the read ends even if the cancel fails)
                raise Interrupt
        monkeypatch.setattr(eng, "submit", submit_then_raise)
        with pytest.raises(Interrupt):
            await eng.read(r, buf, -1)
        settled = bytes(buf), eng.inflight
        await asyncio.sleep(0.1)
        return settled, bytes(buf), eng.inflight, eng.orphans

    try:
        (at_raise, inflight_at_raise), later, inflight, orphans = run_on(backend, "uring", go)
    finally:
        os.close(r)
        os.close(w)
    assert inflight_at_raise == 0 and inflight == 0 and not orphans
    assert later == at_raise    # nothing written into the buffer after the exception reached the caller


def test_a_cancel_that_cannot_be_asked_still_raises_cancelled_error_after_the_kernel(backend, monkeypatch):
    uring_or_skip(backend)
    r, w = os.pipe()
    buf = bytearray(b"\xee" * 64)

    async def go():
        eng = engine_for(asyncio.get_running_loop(), "uring")

        def refuse(ud):
            raise RuntimeError("no room for the cancel")
        monkeypatch.setattr(eng, "cancel_request", refuse)
        task = asyncio.ensure_future(eng.read(r, buf, -1))
        await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.sleep(0.05)
        waiting = not task.done()      # the kernel still has the buffer: the task waits for it
        os.write(w, b"bytes")
        with pytest.raises(asyncio.CancelledError):
            await task
        return waiting, bytes(buf[:5]), eng.inflight

    try:
        waiting, head, inflight = run_on(backend, "uring", go)
    finally:
        os.close(r)
        os.close(w)
    assert waiting and head == b"bytes" and inflight == 0


# ---------------------------------------------------------------- engines

def test_a_loop_and_its_engines_are_freed_after_the_loop_is_gone(backend, engine, tmp_path):
    # An engine kept the last completion (not tracked by the collector),
    # whose future holds the loop: every loop leaked its ring or AIO
    # context, and after 256 loops io_setup failed machine-wide.
    path = tmp_path / "f"
    path.write_bytes(b"x" * 100)

    async def go():
        f = await fa.open(path, "rb")
        await f.read()
        await f.close()

    run_on(backend, engine, go)     # (what a process makes once, on first use, is not counted)
    gc.collect()
    before = kernel_objects()
    for _ in range(20):
        run_on(backend, engine, go)
    # (a closed loop's executor threads may still hold its last call's
    # future, and so the loop, for a moment after they ran it)
    deadline = time.monotonic() + 5
    while True:
        gc.collect()
        left = kernel_objects() - before
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert left == set()


def test_the_aio_engine_takes_more_completions_than_maxevents_at_one_wakeup(backend, disk_dir):  # noqa: F811
    # The eventfd was read (its count reset), then maxevents completions
    # taken: the rest stayed in the kernel with nothing left to signal them.
    aio_or_skip(backend)
    n = 600
    fd = direct_fd_or_skip(os.path.join(disk_dir, "big"), os.O_RDONLY, os.urandom(4096 * n))

    async def go():
        loop = asyncio.get_running_loop()
        eng = engine_for(loop, "aio", context_factory=backend.aio.Context)
        assert n > eng.maxevents
        futs = []
        for i in range(n):
            fut = loop.create_future()
            eng.ctx.prep_pread(fd, aligned_buffer(4096), 4096 * i, user_data=fut)
            futs.append(fut)
        eng.submit()
        eng.watch()
        deadline = time.monotonic() + 5
        while eng.ctx.inflight and time.monotonic() < deadline:
            time.sleep(0.01)     # (all complete before the loop looks: one wake-up for all of them)
        return await asyncio.wait_for(asyncio.gather(*futs), 5)

    try:
        assert run_on(backend, "aio", go) == [4096] * n
    finally:
        os.close(fd)


# ---------------------------------------------------------------- open's edges, as the built-in


def test_a_bad_encoding_is_refused_before_anything_is_opened(backend, engine, tmp_path):
    async def go():
        before = open_fds()
        with pytest.raises(LookupError):
            await fa.open(tmp_path / "f", "w", encoding="no-such-codec")
        return open_fds() - before

    assert run_on(backend, engine, go) == set()


@pytest.mark.skipif(sys.version_info < (3, 10), reason='encoding="locale" is Python 3.10+ (on 3.9 an unknown codec)')
def test_encoding_locale_is_the_builtins(backend, engine, tmp_path):
    path = tmp_path / "f"

    async def go():
        async with fa.open(path, "w", encoding="locale") as f:
            await f.write("caf\u00e9\n")
            enc = getattr(f, "encoding", None)
        return enc

    enc = run_on(backend, engine, go)
    with open(path, encoding="locale") as f:
        assert f.read() == "caf\u00e9\n"
        assert enc == f.encoding


def test_a_directory_fd_is_refused_and_stays_the_callers(backend, engine, tmp_path):
    fd = os.open(tmp_path, os.O_RDONLY)

    async def go():
        with pytest.raises(IsADirectoryError):
            await fa.open(fd, "rb")

    try:
        run_on(backend, engine, go)
        os.fstat(fd)    # still open
    finally:
        os.close(fd)


@pytest.mark.parametrize("encoding", ["utf-16", "utf-8-sig", "utf-32"])
def test_append_writes_a_bom_only_to_an_empty_file(backend, engine, tmp_path, encoding):
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"

    async def go():
        for text in ("one\n", "two\n"):
            async with fa.open(ours, "a", encoding=encoding) as f:
                await f.write(text)

    run_on(backend, engine, go)
    for text in ("one\n", "two\n"):
        with open(theirs, "a", encoding=encoding) as f:
            f.write(text)
    assert ours.read_bytes() == theirs.read_bytes()


@pytest.mark.parametrize("mode", ["rb", "r"])
def test_an_unknown_whence_is_a_value_error(backend, engine, tmp_path, mode):
    path = tmp_path / "f"
    path.write_bytes(b"data")

    async def go():
        async with fa.open(path, mode) as f:
            with pytest.raises(ValueError):
                await f.seek(0, 7)
            return await f.read()

    assert run_on(backend, engine, go) in (b"data", "data")


@pytest.mark.parametrize("eng_name", ["uring", "aio"])
def test_o_direct_reads_at_any_offset_and_size(backend, disk_dir, eng_name):  # noqa: F811
    # O_DIRECT needs block-aligned offsets, sizes and buffers: read(), readall,
    # read(5) and pread(4096, 100) used to fail with EINVAL.
    (uring_or_skip if eng_name == "uring" else aio_or_skip)(backend)
    data = os.urandom(3 * 4096 + 123)
    fd = direct_fd_or_skip(os.path.join(disk_dir, "d"), os.O_RDONLY, data)

    async def go():
        async with fa.open(fd, "rb", buffering=0, engine=eng_name, closefd=False) as f:
            got = [await f.read(5), await f.read(4096), await f.pread(4096, 100), await f.pread(10, len(data) - 3),
                   await f.pread(10, len(data) + 4096)]
            got.append(await f.read())
            await f.seek(1)
            got.append(await f.readline())
        return got

    try:
        got = run_on(backend, eng_name, go)
    finally:
        os.close(fd)
    line_end = data.find(b"\n", 1)
    assert got == [data[:5], data[5:4101], data[100:4196], data[-3:], b"", data[4101:],
                   data[1:line_end + 1] if line_end >= 0 else data[1:]]


# ---------------------------------------------------------------- text across chunks


def chunky_text() -> str:
    """Lines that cross the 64 KiB read size, a "\\r\\n" split between two
    reads, characters of 2 to 4 bytes, every newline kind."""
    head = "a" * 65535 + "\r\n"        # (its "\r" is byte 65535, its "\n" byte 65536)
    lines = [f"{i} caf\u00e9 \u20ac \U0001f600 " + "y" * (i * 37 % 300) + ("\n", "\r\n", "\r")[i % 3]
             for i in range(2000)]
    return head + "".join(lines) + "no end"


@pytest.mark.parametrize("newline", [None, "", "\n", "\r", "\r\n"])
def test_text_readline_and_tell_across_chunks_match_the_builtin(backend, engine, tmp_path, newline):
    path = tmp_path / "t"
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(chunky_text())
    with open(path, encoding="utf-8", newline=newline) as f:
        want = list(f)
        f.seek(0)
        whole = f.read()

    async def go():
        async with fa.open(path, encoding="utf-8", newline=newline) as f:
            got, marks = [], []
            while True:
                marks.append(await f.tell())
                line = await f.readline()
                if not line:
                    break
                got.append(line)
            # back to a few of the positions: the same line again
            again = []
            for i in (0, 1, len(got) // 2, len(got) - 1):
                await f.seek(marks[i])
                again.append((i, await f.readline()))
            await f.seek(0)
            return got, again, await f.read()

    got, again, read_all = run_on(backend, engine, go)
    assert got == want
    assert all(line == want[i] for i, line in again)
    assert read_all == whole


# ---------------------------------------------------------------- O_DIRECT reads of many tasks


@pytest.mark.parametrize("eng_name", ["uring", "aio"])
def test_direct_reads_of_one_turn_go_to_the_kernel_in_one_submit(backend, disk_dir, eng_name):  # noqa: F811
    # Submitted one by one, each direct read paid the device's notification
    # in its own submit, and 64 tasks kept about two reads in flight.
    (uring_or_skip if eng_name == "uring" else aio_or_skip)(backend)
    data = os.urandom(64 * 4096)
    fd = direct_fd_or_skip(os.path.join(disk_dir, "d"), os.O_RDONLY, data)

    async def go():
        eng = engine_for(asyncio.get_running_loop(), eng_name)
        submits = []
        real = eng.submit

        def counting():
            submits.append(eng.inflight)
            real()
        eng.submit = counting
        async with fa.open(fd, "rb", buffering=0, engine=eng_name, closefd=False) as f:
            got = await asyncio.gather(*(f.pread(4096, 4096 * i) for i in range(64)))
            again = await asyncio.gather(*(f.pread(100, 4096 * i + 7) for i in range(64)))   # (pooled buffers)
        return got, again, submits, {size: len(bufs) for size, bufs in eng.aligned.items()}

    try:
        got, again, submits, pooled = run_on(backend, eng_name, go)
    finally:
        os.close(fd)
    assert got == [data[4096 * i:4096 * (i + 1)] for i in range(64)]
    assert again == [data[4096 * i + 7:4096 * i + 107] for i in range(64)]
    assert len(submits) == 2, submits       # one per turn: each gather's 64 reads together
    assert pooled == {4096: 64}             # the buffers came back for reuse, no more than the cap
