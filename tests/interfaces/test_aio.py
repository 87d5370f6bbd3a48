"""fastio.aio on the real kernel, both backends, real files on disk: data
checks against os.pread with and without O_DIRECT, vectored IO, fsync, poll,
partial submission, cancel, eventfd, the batch path, every error path, and the
safety rules (pinning, close in flight, GC, fork, threads, EINTR)."""

from __future__ import annotations

import array
import ctypes
import errno
import gc
import os
import random
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
import weakref

import pytest
from support import Interrupted, in_child, interval_timer, raise_interrupted, skip_if_valgrind_serialises_io_submit

import fastio
from fastio import UnsupportedError, aio

pytestmark = pytest.mark.skipif(not aio.available(), reason=f"Linux AIO unusable: {aio.why_unavailable()}")

SIZE = 1 << 20


@pytest.fixture
def impl(backend):
    """fastio._<backend>.aio itself (its Completion/available share names with io_uring's)."""
    return backend.aio


@pytest.fixture
def ctx(backend):
    c = backend.Context(64)
    yield c
    c.close()


@pytest.fixture
def datafile(tmp_path):
    """A 1 MiB file of random bytes on disk; yields (path, bytes)."""
    data = random.Random(4).randbytes(SIZE)
    path = tmp_path / "data"
    path.write_bytes(data)
    return path, data


@pytest.fixture
def direct_fd(datafile):
    """The data file opened O_RDONLY | O_DIRECT; yields (fd, bytes)."""
    path, data = datafile
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    except OSError as exc:
        pytest.skip(f"the filesystem of {path.parent} refuses O_DIRECT: {exc}")
    yield fd, data
    os.close(fd)


def reap(ctx, n, timeout=10.0):
    """Exactly n completions, within timeout (bounded loop)."""
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        out += ctx.getevents(0, n - len(out), timeout=0.05) if ctx.inflight == 0 else \
            ctx.getevents(1, min(n - len(out), ctx.maxevents), timeout=max(deadline - time.monotonic(), 0.001))
    assert len(out) == n, out
    return out


# ---- basics --------------------------------------------------------------

def test_context_lifetime(backend):
    with backend.Context(8) as c:
        assert not c.closed and c.inflight == 0 and c.queued == 0 and c.maxevents == 8
        assert c.getevents(0, timeout=0) == []
    assert c.closed
    c.close()   # idempotent
    for call in (lambda: c.prep_fsync(0), c.submit, c.getevents, lambda: c.cancel(1),
                 lambda: c.read_batch(0, bytearray(1), [0], 1)):
        with pytest.raises(ValueError, match="closed"):
            call()


@pytest.mark.parametrize("arg, exc", [(0, ValueError), (-1, ValueError), ("x", TypeError), (1.5, TypeError),
                                      (1 << 40, OverflowError)])
def test_context_bad_maxevents(backend, arg, exc):
    with pytest.raises(exc):
        backend.Context(arg)


def test_bad_arguments(ctx, tmp_path):
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT)
    try:
        with pytest.raises(TypeError):
            ctx.prep_pread(fd, b"read-only", 0)          # the kernel would write into it
        with pytest.raises(TypeError):
            ctx.prep_pread("fd", bytearray(1), 0)
        with pytest.raises(TypeError):
            ctx.prep_pwrite(fd, "text", 0)
        with pytest.raises(ValueError):
            ctx.prep_pread(fd, bytearray(1), -1)
        with pytest.raises(ValueError, match="RWF_"):
            ctx.prep_pread(fd, bytearray(1), 0, rw_flags=1 << 20)
        with pytest.raises(ValueError):
            ctx.prep_pread(fd, bytearray(1), 0, reqprio=1 << 20)
        with pytest.raises(ValueError):
            ctx.prep_poll(fd, 1 << 20)
        with pytest.raises(ValueError):
            ctx.prep_preadv(fd, [], 0)
        with pytest.raises(ValueError):
            ctx.getevents(2, 1)
        with pytest.raises(ValueError):
            ctx.getevents(-1)
        with pytest.raises(TypeError):
            ctx.getevents(timeout="soon")
        assert ctx.inflight == 0 and ctx.queued == 0    # nothing leaked by the failures
    finally:
        os.close(fd)


def test_completion_result(impl):
    assert impl.Completion("u", 5).result() == 5
    with pytest.raises(FileNotFoundError):
        impl.Completion(None, -errno.ENOENT).result()
    with pytest.raises(OSError, match="why") as info:
        impl.Completion(None, -errno.EINVAL, 0, "why").result()
    assert info.value.errno == errno.EINVAL
    assert impl.Completion(1, 2, 3) == impl.Completion(1, 2, 3) != impl.Completion(1, 2, 4)


# ---- data ---------------------------------------------------------------

def test_buffered_pread_pwrite_equal_os_pread(ctx, datafile, tmp_path):
    path, data = datafile
    fd = os.open(path, os.O_RDONLY)
    out = os.open(tmp_path / "out", os.O_RDWR | os.O_CREAT)
    try:
        rng = random.Random(7)
        reqs = [(rng.randrange(SIZE), rng.randrange(1, 9000)) for _ in range(32)]
        bufs = [bytearray(n) for _, n in reqs]
        for i, ((off, _), buf) in enumerate(zip(reqs, bufs)):
            ctx.prep_pread(fd, buf, off, user_data=i)
        assert ctx.queued == 32 and ctx.submit() == 32 and ctx.queued == 0
        got = {c.user_data: c.result() for c in reap(ctx, 32)}
        for i, (off, n) in enumerate(reqs):
            assert got[i] == len(os.pread(fd, n, off))
            assert bytes(bufs[i][:got[i]]) == os.pread(fd, n, off)
        ctx.prep_pwrite(out, data[:5000], 100, user_data="w")
        ctx.prep_pwrite(out, memoryview(data)[5000:6000], 5100, rw_flags=aio.RWF_DSYNC)
        assert sorted(c.res for c in reap(ctx, 2)) == [1000, 5000]
        assert os.pread(out, 6000, 100) == data[:6000]
    finally:
        os.close(fd)
        os.close(out)


def test_odirect_aligned_reads_equal_pread(ctx, direct_fd):
    fd, data = direct_fd
    rng = random.Random(3)
    offs = [rng.randrange(SIZE // 4096) * 4096 for _ in range(48)]
    bufs = [fastio.aligned_buffer(4096) for _ in offs]
    for i, (off, buf) in enumerate(zip(offs, bufs)):
        ctx.prep_pread(fd, buf, off, user_data=i)
    for c in reap(ctx, 48):
        assert c.result() == 4096 and c.res2 == 0
        assert bytes(bufs[c.user_data]) == data[offs[c.user_data]:offs[c.user_data] + 4096]


def test_odirect_write_then_read(ctx, tmp_path):
    try:
        fd = os.open(tmp_path / "dw", os.O_RDWR | os.O_CREAT | os.O_DIRECT)
    except OSError as exc:
        pytest.skip(f"O_DIRECT refused here: {exc}")
    try:
        src = fastio.aligned_buffer(8192)
        src[:] = random.Random(9).randbytes(8192)
        ctx.prep_pwrite(fd, src, 4096)
        assert reap(ctx, 1)[0].result() == 8192
        dst = fastio.aligned_buffer(8192)
        ctx.prep_pread(fd, dst, 4096)
        assert reap(ctx, 1)[0].result() == 8192 and bytes(dst) == bytes(src)
    finally:
        os.close(fd)


@pytest.mark.parametrize("what", ["offset", "length", "buffer address"])
def test_odirect_misaligned_einval_is_explained(ctx, direct_fd, what):
    fd, _ = direct_fd
    mem_align, off_align = aio.dio_alignment(fd)
    assert off_align >= 512
    base = fastio.aligned_buffer(8192)
    buf, off = base[:4096], 0
    if what == "offset":
        off = 1
    elif what == "length":
        buf = base[:4095]
    else:
        buf = base[1:4097]
        if mem_align <= 1:
            pytest.skip("this device accepts any buffer address for O_DIRECT")
    ctx.prep_pread(fd, buf, off)
    c = reap(ctx, 1)[0]
    assert c.res == -errno.EINVAL
    with pytest.raises(OSError, match=f"{what} .* not a multiple of") as info:
        c.result()
    assert info.value.errno == errno.EINVAL and "O_DIRECT" in str(info.value)


def test_einval_without_odirect_has_no_alignment_story(ctx, datafile):
    path, _ = datafile
    fd = os.open(path, os.O_RDONLY)
    try:
        ctx.prep_pread(fd, bytearray(8), 0, reqprio=7 << 13, user_data="prio")  # ioprio class 7: invalid
        c = reap(ctx, 1)[0]
        assert (c.user_data, c.res, c.detail) == ("prio", -errno.EINVAL, None)
        with pytest.raises(OSError, match="^\\[Errno 22\\] Invalid argument$"):
            c.result()
    finally:
        os.close(fd)


def test_vectored(ctx, datafile, tmp_path):
    path, data = datafile
    fd = os.open(path, os.O_RDONLY)
    out = os.open(tmp_path / "v", os.O_RDWR | os.O_CREAT)
    try:
        a, b, c = bytearray(3), bytearray(5000), memoryview(bytearray(7))
        ctx.prep_preadv(fd, [a, b, c], 11, user_data="rv")
        ctx.prep_pwritev(out, [b"ab", data[:100], bytearray(b"z")], 3, user_data="wv")
        got = {c.user_data: c.result() for c in reap(ctx, 2)}
        assert got == {"rv": 5010, "wv": 103}
        assert bytes(a) + bytes(b) + bytes(c) == data[11:11 + 5010]
        assert os.pread(out, 103, 3) == b"ab" + data[:100] + b"z"
    finally:
        os.close(fd)
        os.close(out)


def test_fsync_fdatasync(ctx, tmp_path):
    fd = os.open(tmp_path / "s", os.O_RDWR | os.O_CREAT)
    try:
        os.write(fd, b"data")
        ctx.prep_fsync(fd, user_data="fsync")
        ctx.prep_fdatasync(fd, user_data="fdatasync")
        assert sorted((c.user_data, c.result()) for c in reap(ctx, 2)) == [("fdatasync", 0), ("fsync", 0)]
    finally:
        os.close(fd)


def test_poll_on_socket_pair(ctx, sockpair):
    a, b = sockpair
    ctx.prep_poll(a, select.POLLIN, user_data="in")
    assert ctx.submit() == 1
    assert ctx.getevents(0, timeout=0.05) == []          # not ready yet
    b.send(b"x")
    c = reap(ctx, 1)[0]
    assert c.user_data == "in" and c.result() & select.POLLIN
    ctx.prep_poll(b, select.POLLOUT, user_data="out")     # ready at once
    assert reap(ctx, 1)[0].res & select.POLLOUT


def test_rwf_nowait_on_empty_pipe_does_not_block(ctx):
    r, w = os.pipe()
    try:
        ctx.prep_pread(r, bytearray(4), 0, rw_flags=aio.RWF_NOWAIT)
        t0 = time.monotonic()
        c = reap(ctx, 1, timeout=5)[0]
        assert time.monotonic() - t0 < 2
        assert c.res in (-errno.EAGAIN, -errno.ESPIPE, -errno.EOPNOTSUPP), c
    finally:
        os.close(r)
        os.close(w)


# ---- submission, completion, cancel --------------------------------------

def test_partial_submission_keeps_the_rest_queued(backend, sockpair):
    a, b = sockpair
    with backend.Context(1) as c:
        for i in range(600):
            c.prep_poll(a, select.POLLIN, user_data=i)
        taken = c.submit()
        assert 0 < taken < 600                   # the context holds far fewer than 600
        assert c.queued == 600 - taken and c.inflight == 600
        assert c.getevents(0, timeout=0) == []    # nothing completed, nothing lost
        b.send(b"ready")
        seen = []
        for _ in range(100):                     # each round: completions, then the next submit
            seen += [x.user_data for x in c.getevents(1, 128, timeout=5)]
            if len(seen) == 600:
                break
        assert sorted(seen) == list(range(600)) and c.inflight == 0 and c.queued == 0


def test_refused_at_submit_becomes_a_completion(ctx, tmp_path):
    fd = os.open(tmp_path / "f", os.O_RDWR | os.O_CREAT)
    os.write(fd, b"hello")
    bad = os.open(os.devnull, os.O_RDONLY)
    os.close(bad)                                 # a closed fd number
    try:
        ctx.prep_pread(fd, bytearray(2), 0, user_data="before")
        ctx.prep_pread(bad, bytearray(2), 0, user_data="bad")
        ctx.prep_pread(fd, bytearray(3), 2, user_data="after")
        assert ctx.submit() == 2 and ctx.queued == 0
        got = {c.user_data: c.res for c in reap(ctx, 3)}
        assert got == {"before": 2, "bad": -errno.EBADF, "after": 3}
    finally:
        os.close(fd)


def test_getevents_many_in_one_call(ctx, direct_fd):
    fd, data = direct_fd
    buf = fastio.aligned_buffer(64 * 4096)
    for i in range(64):
        ctx.prep_pread(fd, buf[i * 4096:(i + 1) * 4096], i * 4096, user_data=i)
    got = ctx.getevents(64, 64, timeout=10)      # one call reaps them all
    assert sorted(c.user_data for c in got) == list(range(64))
    assert bytes(buf) == data[:64 * 4096]


def test_getevents_never_waits_for_nothing(ctx):
    t0 = time.monotonic()
    assert ctx.getevents(5, timeout=None) == []  # min_nr lowered to 0 in flight
    assert time.monotonic() - t0 < 1


def test_getevents_timeout(ctx, sockpair):
    ctx.prep_poll(sockpair[0], select.POLLIN)
    t0 = time.monotonic()
    assert ctx.getevents(1, timeout=0.1) == []
    assert 0.09 <= time.monotonic() - t0 < 2
    ctx.close()


def test_cancel(ctx, sockpair, direct_fd):
    a, _ = sockpair
    fd, _ = direct_fd
    pid = ctx.prep_poll(a, select.POLLIN, user_data="poll")
    ctx.submit()
    assert ctx.cancel(pid) is True
    c = reap(ctx, 1)[0]
    assert c.user_data == "poll" and c.res >= 0       # cancelled poll: res 0 (no events)
    assert ctx.cancel(pid) is False                   # already reaped
    qid = ctx.prep_poll(a, select.POLLIN, user_data="queued")
    assert ctx.cancel(qid) is True and ctx.queued == 0
    c = reap(ctx, 1)[0]
    assert (c.user_data, c.res) == ("queued", -errno.ECANCELED)
    rid = ctx.prep_pread(fd, fastio.aligned_buffer(4096), 0, user_data="read")
    ctx.submit()
    with pytest.raises(OSError) as info:
        ctx.cancel(rid)                               # file reads cannot be cancelled
    assert info.value.errno == errno.EINVAL
    assert reap(ctx, 1)[0].result() == 4096
    with pytest.raises(TypeError):
        ctx.cancel("id")


def test_eventfd_wakeups(ctx, direct_fd, sockpair):
    fd, _ = direct_fd
    efd = ctypes.CDLL(None, use_errno=True).eventfd(0, os.O_CLOEXEC | os.O_NONBLOCK)  # os.eventfd is 3.10+
    assert efd >= 0
    try:
        ctx.register_eventfd(efd)
        for i in range(5):
            ctx.prep_pread(fd, fastio.aligned_buffer(4096), i * 4096)
        ctx.submit()
        total, deadline = 0, time.monotonic() + 10
        while total < 5 and time.monotonic() < deadline:
            if select.select([efd], [], [], 1)[0]:
                total += int.from_bytes(os.read(efd, 8), sys.byteorder)
        assert total == 5
        assert len(reap(ctx, 5)) == 5
        ctx.unregister_eventfd()
        ctx.prep_poll(sockpair[1], select.POLLOUT)
        assert len(reap(ctx, 1)) == 1
        assert select.select([efd], [], [], 0.05)[0] == []    # no longer signalled
    finally:
        os.close(efd)


# ---- the batch path -------------------------------------------------------

@pytest.mark.parametrize("depth", [1, 8, 0])
def test_read_batch_equals_pread(ctx, direct_fd, depth):
    fd, data = direct_fd
    rng = random.Random(depth)
    offs = [rng.randrange(SIZE // 4096) * 4096 for _ in range(200)]
    buf = fastio.aligned_buffer(200 * 4096)
    res = ctx.read_batch(fd, buf, offs, 4096, depth=depth)
    assert res == [4096] * 200
    for i, off in enumerate(offs):
        assert buf[i * 4096:(i + 1) * 4096] == data[off:off + 4096]
    assert ctx.inflight == 0


def test_read_batch_array_forms_errors_and_write_batch(ctx, datafile, tmp_path):
    path, data = datafile
    fd = os.open(path, os.O_RDONLY)
    out = os.open(tmp_path / "wb", os.O_RDWR | os.O_CREAT)
    try:
        buf = bytearray(3 * 100)
        results = array.array("i", [0] * 3)
        got = ctx.read_batch(fd, buf, array.array("q", [0, 1000, SIZE - 50]), 100, results)
        assert got is results and list(results) == [100, 100, 50]
        assert buf[:200] == data[:100] + data[1000:1100]
        assert ctx.write_batch(out, b"a" * 10 + b"b" * 10, [0, 50], 10) == [10, 10]
        assert os.pread(out, 60, 0) == b"a" * 10 + b"\0" * 40 + b"b" * 10
        with pytest.raises(ValueError):
            ctx.read_batch(fd, bytearray(10), [0, 10], 10)
        with pytest.raises(TypeError):
            ctx.read_batch(fd, bytearray(10), [0], 10, array.array("q", [0]))
        with pytest.raises(ValueError):
            ctx.read_batch(fd, bytearray(10), [-5], 10)
        assert ctx.inflight == 0
    finally:
        os.close(fd)
        os.close(out)


def test_read_batch_keeps_other_completions(ctx, direct_fd, sockpair):
    fd, _ = direct_fd
    ctx.prep_poll(sockpair[1], select.POLLOUT, user_data="other")
    ctx.submit()
    ctx.read_batch(fd, fastio.aligned_buffer(16 * 4096), [i * 4096 for i in range(16)], 4096)
    assert [c.user_data for c in reap(ctx, 1)] == ["other"]


# ---- safety ---------------------------------------------------------------

def test_buffer_pinned_until_reaped(ctx, direct_fd):
    fd, data = direct_fd

    class Token:
        pass

    buf = bytearray(4096 + 4096)
    token = Token()
    token_ref = weakref.ref(token)
    ctx.prep_pread(fd, memoryview(buf)[:100], 0, user_data=token)      # buffered-size, pinned while queued
    with pytest.raises(BufferError):
        buf.extend(b"grow")
    ctx.submit()
    with pytest.raises(BufferError):
        buf.extend(b"grow")                  # completed maybe, but not reaped: still pinned
    del token
    gc.collect()
    assert token_ref() is not None
    c = reap(ctx, 1)[0]
    assert c.user_data is token_ref()
    del c
    gc.collect()
    assert token_ref() is None                # released once reaped
    buf.extend(b"free")


def test_buffer_with_no_python_reference_left(ctx, datafile):
    path, data = datafile
    fd = os.open(path, os.O_RDONLY)
    try:
        ctx.prep_pread(fd, bytearray(10), 5, user_data="orphan")
        gc.collect()
        c = reap(ctx, 1)[0]
        assert (c.user_data, c.res) == ("orphan", 10)
    finally:
        os.close(fd)


def test_buffer_released_after_cancel(ctx, sockpair):
    buf = bytearray(4)
    ctx.prep_pread(sockpair[0].fileno(), buf, 0, rw_flags=aio.RWF_NOWAIT)   # pinned
    qid = ctx.prep_poll(sockpair[0], select.POLLIN)
    ctx.cancel(qid)
    reap(ctx, 2)
    buf.extend(b"ok")


def test_close_with_requests_in_flight(backend, sockpair, direct_fd):
    a, b = sockpair
    fd, _ = direct_fd
    c = backend.Context(8)
    bufs = [bytearray(8) for _ in range(3)]
    for i in range(20):
        c.prep_poll(a, select.POLLIN, user_data=i)
    dbuf = fastio.aligned_buffer(4096)
    c.prep_pread(fd, dbuf, 0)
    assert c.submit() == 21
    for buf in bufs:
        c.prep_pread(a.fileno(), buf, 0)       # queued, never submitted: dropped
    assert c.inflight == 24
    t0 = time.monotonic()
    c.close()
    assert time.monotonic() - t0 < 5
    assert c.closed and c.inflight == 0
    for buf in bufs:
        buf.extend(b"free")                    # every pin released
    b.send(b"late")
    assert a.recv(4) == b"late"                # nothing left reading the socket
    with pytest.raises(ValueError, match="closed"):
        c.submit()


def test_gc_with_requests_in_flight(backend, sockpair):
    buf = bytearray(8)
    c = backend.Context(8)
    c.prep_poll(sockpair[0], select.POLLIN)
    c.submit()
    c.prep_pread(sockpair[0].fileno(), buf, 0)    # queued: pinned, never run
    with pytest.warns(ResourceWarning, match="unclosed"):
        del c
        gc.collect()
    buf.extend(b"free")


def test_gc_collects_a_context_in_a_cycle_through_user_data(backend, sockpair):
    """Regression: on the c backend a Context whose in-flight request's
    user_data referred back to it was never collected (the slot held the
    reference where the garbage collector could not see it): its AIO
    context, its pinned buffers and the whole cycle leaked. The user_data
    objects now live in a list the collector traverses."""

    class Token:
        pass

    buf = bytearray(8)
    c = backend.Context(8)
    token = Token()
    token.ctx = c                                   # the cycle: ctx -> request -> token -> ctx
    token_ref = weakref.ref(token)
    c.prep_poll(sockpair[0], select.POLLIN, user_data=token)
    c.submit()
    c.prep_pread(sockpair[0].fileno(), buf, 0, user_data=token)   # queued: pinned, never run
    del c, token
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
    assert token_ref() is None                      # the cycle is gone ...
    buf.extend(b"free")                             # ... and with it the pin


@skip_if_valgrind_serialises_io_submit
def test_event_reaped_while_its_submit_runs_in_another_thread(ctx, datafile):
    """Regression: submit() counted the requests io_submit took only after the
    call returned, and marked their slots submitted by index. A request that
    completed inside io_submit (a buffered read) could be reaped by another
    thread meanwhile: the count of requests in flight went below zero (a
    huge unsigned number), so getevents() no longer lowered min_nr to what
    was in flight and waited for requests that did not exist; and the freed
    slot, reused by a new request, was marked submitted. An early reap is
    now left out of the count, and only slots still being submitted by that
    call (same generation) are marked."""
    path, _ = datafile
    fd = os.open(path, os.O_RDONLY)
    r, w = os.pipe()
    try:
        ctx.prep_pread(fd, bytearray(10), 0, user_data="file")
        ctx.prep_pread(r, bytearray(4), 0, user_data="pipe")   # blocks io_submit until written
        t = threading.Thread(target=ctx.submit)
        t.start()
        got = []
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            got = ctx.getevents(0, timeout=0.01)
        assert [(c.user_data, c.res) for c in got] == [("file", 10)]
        assert t.is_alive()                                    # still inside io_submit
        rid = ctx.prep_pread(fd, bytearray(10), 0, user_data="reused")   # the freed slot
        assert ctx.cancel(rid) is True
        writer = threading.Timer(1.0, os.write, (w, b"data"))
        writer.start()
        try:
            # Nothing is counted in flight yet (the pipe read is still being
            # submitted): min_nr is lowered to 0, no wait. Before the fix
            # this waited, and returned the pipe read once the writer ran.
            assert [c.user_data for c in ctx.getevents(2, timeout=5)] == ["reused"]
        finally:
            writer.join()
            t.join(10)
        assert not t.is_alive()
        events = reap(ctx, 1)
        assert [(c.user_data, c.res) for c in events] == [("pipe", 4)]
        assert ctx.inflight == 0 and ctx.queued == 0
        assert ctx.getevents(0, timeout=0) == []
    finally:
        os.close(fd)
        os.close(r)
        os.close(w)


def test_fork_child_refuses_and_parent_unharmed(ctx, sockpair):
    a, b = sockpair
    ctx.prep_poll(a, select.POLLIN, user_data="parent")
    ctx.submit()
    for call in (lambda: ctx.prep_fsync(0), ctx.submit, lambda: ctx.getevents(0), lambda: ctx.cancel(0)):
        out = in_child(call)
        assert out.startswith("RuntimeError") and "fork" in out, out
    assert in_child(lambda: (ctx.close(), ctx.closed)[1]) == "ok True"
    b.send(b"x")
    c = reap(ctx, 1)[0]
    assert c.user_data == "parent" and c.res & select.POLLIN


def test_threads_share_a_context(ctx, datafile):
    path, data = datafile
    fd = os.open(path, os.O_RDONLY)
    errors = []
    bufs = {}

    def worker(k):
        try:
            for i in range(50):
                buf = bytearray(16)
                bufs[(k, i)] = buf
                ctx.prep_pread(fd, buf, (k * 50 + i) * 16, user_data=(k, i))
                if i % 7 == 0:
                    ctx.submit()
        except BaseException as exc:   # pragma: no cover - reported below
            errors.append(exc)

    try:
        threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not errors
        got = reap(ctx, 200)
        assert sorted(c.user_data for c in got) == sorted((k, i) for k in range(4) for i in range(50))
        for (k, i), buf in bufs.items():
            assert bytes(buf) == data[(k * 50 + i) * 16:(k * 50 + i + 1) * 16]
    finally:
        os.close(fd)


def test_close_while_another_thread_waits_is_refused(ctx, sockpair):
    ctx.prep_poll(sockpair[0], select.POLLIN)
    ctx.submit()
    started = threading.Event()
    result = []

    def waiter():
        started.set()
        result.append(ctx.getevents(1, timeout=5))

    t = threading.Thread(target=waiter)
    t.start()
    started.wait(5)
    time.sleep(0.1)
    with pytest.raises(RuntimeError, match="another thread"):
        ctx.close()
    sockpair[1].send(b"wake")
    t.join(10)
    assert not t.is_alive() and len(result[0]) == 1


def test_eintr_retried_and_handler_exception_propagates(ctx, sockpair):
    ctx.prep_poll(sockpair[0], select.POLLIN)
    calls = []
    with interval_timer(lambda *a: calls.append(1)):
        t0 = time.monotonic()
        assert ctx.getevents(1, timeout=0.3) == []       # retried after each signal, deadline kept
        assert 0.29 <= time.monotonic() - t0 < 3
    assert calls
    with interval_timer(raise_interrupted, 0.05):
        with pytest.raises(Interrupted):
            ctx.getevents(1, timeout=5)


# ---- availability and helpers ------------------------------------------------

def test_available_here(impl):
    assert impl.available() is True and impl.why_unavailable() is None


def test_aio_max_nr_exhausted_is_named(backend):
    with open("/proc/sys/fs/aio-max-nr") as f:
        max_nr = int(f.read())
    with pytest.raises(UnsupportedError) as info:
        backend.Context(max_nr * 2 + 1)
    assert info.value.errno == errno.EAGAIN
    assert f"fs.aio-max-nr={max_nr}" in str(info.value) and "fs.aio-nr=" in str(info.value)


@pytest.mark.skipif(os.geteuid() != 0, reason="lowering fs.aio-max-nr needs root")
@pytest.mark.parametrize("name", ["c", "pure"])
def test_aio_max_nr_reached_by_other_contexts_is_named(name):
    """The real exhaustion: fs.aio-nr + this context > fs.aio-max-nr. The
    sysctl is lowered to what other contexts already hold (fs.aio-nr, counted
    system-wide) plus 1 for the few milliseconds of a subprocess, then
    restored; one context of 1 event fits, a second does not (6.18 counts
    the events asked for, not the larger ring it allocates)."""
    path = "/proc/sys/fs/aio-max-nr"
    with open(path) as f:
        saved = f.read().strip()
    with open("/proc/sys/fs/aio-nr") as f:
        held = int(f.read())
    limit = held + 1
    code = (
        "import fastio, fastio.aio as a\n"
        "first = a.Context(1)\n"
        "try:\n    a.Context(1)\nexcept fastio.UnsupportedError as e:\n    print('refused', e.errno, e)\n"
        "first.close()\n"
    )
    try:
        try:
            with open(path, "w") as f:
                f.write(str(limit))
        except OSError as exc:
            pytest.skip(f"cannot write {path}: {exc}")
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                              env={**os.environ, "FASTIO_BACKEND": name})
    finally:
        with open(path, "w") as f:
            f.write(saved)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"refused {errno.EAGAIN} "), proc.stdout
    assert f"fs.aio-max-nr={limit}," in proc.stdout and f"fs.aio-nr={limit} " in proc.stdout


@pytest.mark.parametrize("name", ["c", "pure"])
def test_fastio_disable_switch(name):
    code = (
        "import fastio, fastio.aio as a\n"
        "print(a.available(), a.why_unavailable())\n"
        "try:\n    a.Context()\nexcept fastio.UnsupportedError as e:\n    print('refused', e)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "FASTIO_DISABLE": "uring,aio", "FASTIO_BACKEND": name})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("False") and "FASTIO_DISABLE=aio" in lines[0]
    assert lines[1].startswith("refused") and "FASTIO_DISABLE" in lines[1]


@pytest.mark.parametrize("alignment", [512, 4096, 65536])
def test_aligned_buffer(alignment):
    buf = fastio.aligned_buffer(10000, alignment)
    assert len(buf) == 10000 and not buf.readonly and bytes(buf) == b"\0" * 10000
    addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    assert addr % alignment == 0
    for bad in (0, 3, -4096):
        with pytest.raises(ValueError):
            fastio.aligned_buffer(4096, bad)
    with pytest.raises(ValueError):
        fastio.aligned_buffer(0)


def test_dio_alignment(direct_fd, tmp_path):
    fd, _ = direct_fd
    mem, off = aio.dio_alignment(fd)
    assert off in (512, 1024, 2048, 4096) and 0 < mem <= off


def test_dio_alignment_flags_tmpfs_as_not_direct():
    """tmpfs takes O_DIRECT opens (6.6+) but copies synchronously; statx
    reports no direct-IO alignment there, which is how it is detected."""
    if not os.path.isdir("/dev/shm") or os.statvfs("/dev/shm").f_fsid == os.statvfs("/").f_fsid:
        pytest.skip("no separate /dev/shm")
    with open("/proc/mounts") as f:
        if not any(line.split()[1] == "/dev/shm" and line.split()[2] == "tmpfs" for line in f):
            pytest.skip("/dev/shm is not a tmpfs here")
    fd, path = tempfile.mkstemp(dir="/dev/shm")
    try:
        assert aio.dio_alignment(fd) in (None, (0, 0))
    finally:
        os.close(fd)
        os.unlink(path)


# ---------------------------------------------------------------- found in review


def test_a_signal_does_not_end_getevents_early(ctx, datafile):
    """Regression: io_getevents cut short by a signal returns what it had (not
    EINTR), which getevents() took for its timeout: min_nr was not honoured."""
    path, data = datafile
    fd = os.open(path, os.O_RDONLY)
    r, w = os.pipe()
    old = signal.signal(signal.SIGALRM, lambda *a: None)
    try:
        ctx.prep_pread(fd, bytearray(16), 0, user_data="read")
        ctx.prep_poll(r, select.POLLIN, user_data="poll")
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        start = time.monotonic()
        got = ctx.getevents(min_nr=2, timeout=0.5)
        elapsed = time.monotonic() - start
        assert [c.user_data for c in got] == ["read"]
        assert elapsed >= 0.45  # waited out its timeout, not just until the signal
        os.write(w, b"x")
        assert [c.user_data for c in ctx.getevents(1, timeout=5)] == ["poll"]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        os.close(fd)
        os.close(r)
        os.close(w)


def test_completions_survive_a_handler_exception_in_getevents(ctx):
    """Regression: completions already reaped (here a refused request's) were
    lost when a signal handler raised during the wait."""
    r, w = os.pipe()
    old = signal.signal(signal.SIGALRM, raise_interrupted)
    try:
        ctx.prep_pread(12345, bytearray(8), 0, user_data="refused")  # EBADF at submit
        ctx.prep_poll(r, select.POLLIN, user_data="poll")
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        with pytest.raises(Interrupted):
            ctx.getevents(min_nr=2, timeout=None)
        signal.setitimer(signal.ITIMER_REAL, 0)
        os.write(w, b"x")
        got = ctx.getevents(min_nr=2, timeout=5)
        assert sorted(c.user_data for c in got) == ["poll", "refused"]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        os.close(r)
        os.close(w)


def test_close_or_a_second_waiter_inside_a_call_is_refused(ctx):
    """Regression: close() from a signal handler (or another thread, or a
    buffer exporter) inside a call freed what the call was using; and a batch
    beside another waiter could wait forever for events the other reaped."""
    r, w = os.pipe()
    refused = []

    def handler(*args):
        try:
            ctx.close()
        except RuntimeError as exc:
            refused.append(str(exc))
        try:
            ctx.read_batch(r, bytearray(8), [0], 8)
        except RuntimeError as exc:
            refused.append(str(exc))
        os.write(w, b"x")

    old = signal.signal(signal.SIGALRM, handler)
    try:
        ctx.prep_poll(r, select.POLLIN, user_data="poll")
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        got = ctx.getevents(1, timeout=5)
        assert [c.user_data for c in got] == ["poll"]
        assert len(refused) == 2
        assert "while a call on this context is running" in refused[0]
        assert "needs the context to itself" in refused[1]
        assert not ctx.closed
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        os.close(r)
        os.close(w)


def test_close_from_a_buffer_finalizer_inside_submit_or_cancel_is_refused(ctx, datafile):
    """Regression (issue 8): a request's buffer is released inside submit()
    (the kernel refused the request) and cancel() (a queued request); when
    the request held its last reference, its finalizer could close the
    context, and the compiled backend then released the slot a second time
    (``inflight`` wrapped to 2**32 - 1, the free list looped). close() there
    is a RuntimeError now, as on the pure backend."""
    refused = []

    class Buf(bytearray):
        def __del__(self):
            try:
                ctx.close()
            except RuntimeError as exc:
                refused.append(str(exc))

    path, _ = datafile
    fd = os.open(path, os.O_RDONLY)
    try:
        bad = os.open(path, os.O_RDONLY)
        os.close(bad)                                      # EBADF at io_submit
        ctx.prep_pread(bad, Buf(8), 0, user_data="refused")
        assert ctx.submit() == 0
        request = ctx.prep_pread(fd, Buf(8), 0, user_data="cancelled")
        assert ctx.cancel(request) is True
        assert len(refused) == 2
        assert all("while a call on this context is running" in m for m in refused)
        assert not ctx.closed and ctx.inflight == 0 and ctx.queued == 0
        got = {c.user_data: c.res for c in ctx.getevents(0, timeout=0)}
        assert got == {"refused": -errno.EBADF, "cancelled": -errno.ECANCELED}
        ctx.prep_pread(fd, bytearray(8), 0, user_data="after")
        assert [c.user_data for c in reap(ctx, 1)] == ["after"]
    finally:
        os.close(fd)


def test_a_buffer_finalizer_using_the_context_inside_close_fails_cleanly(backend, datafile):
    """Regression (issue 8): close() releases queued requests' buffers; a
    finalizer run then that used the context deadlocked the pure backend (its
    lock is not re-entrant) and, on the compiled one, could queue or submit
    into the table being torn down. The call fails now: ValueError (closed)
    on the compiled backend, RuntimeError (re-entrant) on the pure one."""
    ctx = backend.Context(8)
    errors = []

    class Buf(bytearray):
        def __del__(self):
            for call in (lambda: ctx.prep_pread(fd, bytearray(8), 0), ctx.submit):
                try:
                    call()
                except (ValueError, RuntimeError) as exc:
                    errors.append(type(exc).__name__)

    path, _ = datafile
    fd = os.open(path, os.O_RDONLY)
    try:
        ctx.prep_pread(fd, Buf(8), 0)        # queued: close() drops it, releasing Buf
        ctx.close()
        assert ctx.closed
        assert errors == ["ValueError"] * 2 or errors == ["RuntimeError"] * 2
    finally:
        ctx.close()
        os.close(fd)


@pytest.mark.parametrize("call", [
    lambda c, fd: c.prep_pread(fd, bytearray(8), 1.9),
    lambda c, fd: c.prep_pread(fd, bytearray(8), 0, rw_flags=8.5),
    lambda c, fd: c.prep_poll(fd, 1.5),
    lambda c, fd: c.read_batch(fd, bytearray(1024), [0], 512.7),
    lambda c, fd: c.read_batch(fd, bytearray(1024), [1.5], 512),
], ids=["offset", "rw_flags", "poll events", "batch size", "batch offset"])
def test_int_arguments_refuse_floats(ctx, datafile, call):
    """Regression: the compiled backend truncated floats where the pure one
    raised TypeError."""
    path, _ = datafile
    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(TypeError):
            call(ctx, fd)
        assert ctx.getevents(0, timeout=0) == []
    finally:
        os.close(fd)


@pytest.mark.parametrize("request_id, exc", [(1.0, TypeError), (-1, OverflowError), (2**64, OverflowError)])
def test_cancel_request_id_must_be_an_int_in_range(ctx, request_id, exc):
    """Regression (found writing tests/state/test_state_aio.py): the c backend took
    a float id (cancel(1.5) returned False) and the pure one masked a
    negative or too large id into range; ids are ints 0 .. 2**64 - 1."""
    with pytest.raises(exc):
        ctx.cancel(request_id)


def test_read_batch_offset_beyond_int64_is_an_overflow_error(ctx, datafile):
    """Regression: the pure backend sent an offset of 2**63 to the kernel
    (the read came back -EINVAL); the compiled one raised OverflowError."""
    path, _ = datafile
    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(OverflowError):
            ctx.read_batch(fd, bytearray(8), [0, 2**63], 4)
        assert ctx.inflight == 0
    finally:
        os.close(fd)


def test_read_batch_on_a_context_full_of_other_requests_does_not_wait_for_them(backend, datafile):
    """Regression (found writing tests/state/test_state_aio.py): read_batch on a
    context full of requests that never complete (polls of an empty pipe)
    waited for one of them to complete, forever, before it could submit a
    read. The reads it cannot submit now come back -EAGAIN."""
    path, data = datafile
    fd = os.open(path, os.O_RDONLY)
    r, w = os.pipe()
    ctx = backend.Context(1)
    rescue = threading.Timer(10, os.write, (w, b"x"))     # unblocks a regression in 10 s
    rescue.start()
    try:
        for _ in range(100000):
            ctx.prep_poll(r, select.POLLIN)
            if ctx.submit() == 0:
                break                                  # the kernel takes no more
        assert ctx.queued == 1
        results = ctx.read_batch(fd, bytearray(16), [0, 8], 8)
        assert rescue.is_alive(), "read_batch waited for the polls"
        assert results == [-errno.EAGAIN, -errno.EAGAIN]
    finally:
        rescue.cancel()
        ctx.close()
        os.close(fd)
        os.close(r)
        os.close(w)


def test_getevents_never_returns_more_than_max_nr(ctx, datafile):
    """Regression (found by tests/state/test_state_aio.py): completions already
    held by the context (requests refused at submission, or cancelled while
    queued) were all returned at once, past max_nr; the rest now waits for
    the next call, in order."""
    path, _ = datafile
    fd = os.open(path, os.O_RDONLY)
    try:
        ids = [ctx.prep_pread(2**31 - 1, bytearray(1), 0, user_data=i) for i in range(3)]   # refused: EBADF
        ctx.prep_pread(fd, bytearray(1), 0, user_data=3)
        ctx.cancel(ctx.prep_pread(fd, bytearray(1), 0, user_data=4))                          # -ECANCELED
        assert ctx.submit() == 1
        got = []
        for _ in range(5):
            batch = ctx.getevents(0, 2, timeout=1)
            assert len(batch) <= 2
            got += batch
        assert sorted(c.user_data for c in got) == [0, 1, 2, 3, 4]
        assert [c.user_data for c in got if c.user_data in (0, 1, 2)] == [0, 1, 2]     # in order
        assert ids
    finally:
        os.close(fd)


def test_read_batch_of_a_bad_fd_beside_a_poll_in_flight(backend):
    """Regression (found by tests/state/test_state_aio.py, a hang): after the
    kernel refused a batch's first read outright (EBADF), read_batch waited
    for an event before submitting the next one whenever any request of the
    context was in flight; a poll that never fires made that wait endless.
    It now waits only for its own reads."""
    r, w = os.pipe()
    ctx = backend.Context(8)
    rescue = threading.Timer(10, os.write, (w, b"x"))     # unblocks a regression in 10 s
    rescue.start()
    try:
        ctx.prep_poll(r, select.POLLIN, user_data="poll")
        assert ctx.submit() == 1
        assert ctx.read_batch(2**31 - 1, bytearray(16), [0, 8], 8) == [-errno.EBADF, -errno.EBADF]
        assert rescue.is_alive(), "read_batch waited for the poll"
    finally:
        rescue.cancel()
        ctx.close()
        os.close(r)
        os.close(w)
