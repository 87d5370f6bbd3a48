"""fastio.aio on the real kernel, both backends, real files on disk: data
checks against os.pread with and without O_DIRECT, vectored IO, fsync, poll,
partial submission, cancel, eventfd, the batch path, every error path,
availability and the helpers (aligned_buffer, dio_alignment). The safety
rules (pinning, close in flight, GC, fork, threads, EINTR) and the cases
found in review are in test_aio_safety.py; the fixtures (impl, ctx,
aio_datafile, direct_fd) in conftest.py."""

from __future__ import annotations

import array
import ctypes
import errno
import os
import random
import select
import subprocess
import sys
import tempfile
import time

import pytest
from support import reap

import fastio
from fastio import UnsupportedError, aio

pytestmark = pytest.mark.skipif(not aio.available(), reason=f"Linux AIO unusable: {aio.why_unavailable()}")

SIZE = 1 << 20   # the size of conftest's aio_datafile


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

def test_buffered_pread_pwrite_equal_os_pread(ctx, aio_datafile, tmp_path):
    path, data = aio_datafile
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


def test_einval_without_odirect_has_no_alignment_story(ctx, aio_datafile):
    path, _ = aio_datafile
    fd = os.open(path, os.O_RDONLY)
    try:
        ctx.prep_pread(fd, bytearray(8), 0, reqprio=7 << 13, user_data="prio")  # ioprio class 7: invalid
        c = reap(ctx, 1)[0]
        assert (c.user_data, c.res, c.detail) == ("prio", -errno.EINVAL, None)
        with pytest.raises(OSError, match="^\\[Errno 22\\] Invalid argument$"):
            c.result()
    finally:
        os.close(fd)


def test_vectored(ctx, aio_datafile, tmp_path):
    path, data = aio_datafile
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


def test_read_batch_array_forms_errors_and_write_batch(ctx, aio_datafile, tmp_path):
    path, data = aio_datafile
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
