"""fastio.uring on the real kernel, both backends: data, errors, timeouts,
links, cancel, registration, the batch path, and the safety rules (pinning,
close with requests in flight, GC, fork, full SQ, CQ overflow, threads)."""

from __future__ import annotations

import array
import errno
import gc
import os
import random
import select
import socket
import threading
import time
import weakref

import pytest
from support import in_child, skip_if_valgrind_serialises_uring_waits

from fastio import UnsupportedError, uring

pytestmark = pytest.mark.skipif(not uring.available(), reason=f"io_uring unusable: {uring.why_unavailable()}")

AT_FDCWD = -100


@pytest.fixture
def ring(backend):
    r = backend.Ring(64)
    yield r
    r.close()


@pytest.fixture
def datafile(tmp_path):
    """A 1 MiB file of random bytes; yields (fd, bytes)."""
    data = random.Random(1).randbytes(1 << 20)
    path = tmp_path / "data"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    yield fd, data
    os.close(fd)


def wait_all(ring, n, timeout=10.0):
    """Exactly n completions, within timeout (bounded loop)."""
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        out += ring.wait(n - len(out), timeout=max(deadline - time.monotonic(), 0.001))
    assert len(out) == n, out
    return out


# ---- basics --------------------------------------------------------------

def test_ring_properties(backend):
    with backend.Ring(5) as r:
        assert r.sq_entries == 8 and r.cq_entries == 16
        assert r.features & uring.FEAT_NODROP and r.features & uring.FEAT_EXT_ARG
        assert r.fileno() > 2 and not os.get_inheritable(r.fileno())
        assert not r.closed and r.inflight == 0
    assert r.closed
    with backend.Ring(4, cq_entries=64) as r:
        assert r.cq_entries == 64 and r.setup_flags & uring.SETUP_CQSIZE


@pytest.mark.parametrize("kwargs, exc", [
    ({"entries": 0}, ValueError), ({"entries": "x"}, TypeError), ({"flags": uring.SETUP_SQE128}, ValueError),
    ({"flags": 1 << 40}, ValueError), ({"entries": 1 << 20}, OSError), ({"flags": 1 << 30}, OSError),
])
def test_ring_bad_arguments(backend, kwargs, exc):
    with pytest.raises(exc) as info:
        backend.Ring(**kwargs)
    if exc is OSError:
        assert info.value.errno == errno.EINVAL


def test_nop_user_data_any_object(ring):
    token = object()
    ids = [ring.prep_nop(user_data=u) for u in (token, "s", None, 42)]
    assert len(set(ids)) == 4
    done = wait_all(ring, 4)
    assert [c.user_data for c in done] == [token, "s", None, 42]
    assert all(c.res == 0 and c.result() == 0 and not c.more for c in done)
    assert ring.inflight == 0


def test_peek_never_blocks_and_submit_and_wait(ring):
    assert ring.peek() == []
    ring.prep_nop(user_data=1)
    ring.prep_nop(user_data=2)
    assert ring.submit_and_wait(2) == 2
    assert ring.cq_ready == 2
    assert [c.user_data for c in ring.peek()] == [1, 2]
    assert ring.peek() == []


def test_wait_timeout_returns_empty(ring):
    t0 = time.monotonic()
    assert ring.wait(1, timeout=0.05) == []
    assert time.monotonic() - t0 >= 0.04


def test_completion_result_raises_oserror(backend):
    c = backend.uring.Completion("u", -errno.ENOENT, 0)
    with pytest.raises(FileNotFoundError):
        c.result()
    assert backend.uring.Completion("u", 7, uring.CQE_F_MORE).more
    assert backend.uring.Completion("u", 7).result() == 7


# ---- file IO --------------------------------------------------------------

def test_reads_equal_pread(ring, datafile):
    fd, data = datafile
    rng = random.Random(2)
    cases = [(rng.randrange(0, len(data) + 8192), rng.choice([1, 100, 512, 4096, 65536, 100_000]))
             for _ in range(200)]
    cases += [(len(data) - 10, 100), (len(data), 10), (len(data) + 4096, 4096)]   # past EOF
    bufs = []
    for i, (off, size) in enumerate(cases):
        buf = bytearray(size)
        bufs.append(buf)
        ring.prep_read(fd, buf, off, user_data=i)
    for c in wait_all(ring, len(cases)):
        off, size = cases[c.user_data]
        expected = os.pread(fd, size, off)
        assert c.res == len(expected)
        assert bytes(bufs[c.user_data][:c.res]) == expected


def test_write_fsync_read_back(ring, tmp_path):
    fd = os.open(tmp_path / "w", os.O_RDWR | os.O_CREAT)
    try:
        ring.prep_write(fd, b"hello ", 0, user_data="w1", flags=uring.IOSQE_IO_LINK)
        ring.prep_write(fd, memoryview(b"world!")[:5], 6, user_data="w2", flags=uring.IOSQE_IO_LINK)
        ring.prep_fsync(fd, user_data="sync")
        done = wait_all(ring, 3)
        assert [(c.user_data, c.res) for c in done] == [("w1", 6), ("w2", 5), ("sync", 0)]
        buf = bytearray(11)
        ring.prep_read(fd, buf, 0)
        assert wait_all(ring, 1)[0].res == 11 and buf == b"hello world"
        assert os.pread(fd, 20, 0) == b"hello world"
    finally:
        os.close(fd)


def test_readv_writev(ring, tmp_path):
    fd = os.open(tmp_path / "v", os.O_RDWR | os.O_CREAT)
    try:
        ring.prep_writev(fd, [b"abc", bytearray(b"defg"), memoryview(b"hi")], 0)
        assert wait_all(ring, 1)[0].res == 9
        a, b = bytearray(4), bytearray(10)
        ring.prep_readv(fd, [a, b], 1)
        assert wait_all(ring, 1)[0].res == 8
        assert a == b"bcde" and b[:4] == b"fghi"
    finally:
        os.close(fd)


def test_fixed_buffers_and_files(ring, datafile, tmp_path):
    fd, data = datafile
    buf = bytearray(8192)
    ring.register_buffers([buf])
    ring.register_files([fd])
    # fd 0 here is the fixed-file index
    ring.prep_read_fixed(0, 0, 4096, nbytes=4096, buf_offset=4096, flags=uring.IOSQE_FIXED_FILE)
    assert wait_all(ring, 1)[0].res == 4096
    assert bytes(buf[4096:]) == data[4096:8192]
    with pytest.raises(BufferError):
        buf.append(1)     # registered buffers stay pinned
    wfd = os.open(tmp_path / "fixed", os.O_RDWR | os.O_CREAT)
    try:
        assert ring.register_files_update(0, [wfd]) == 1
        ring.prep_write_fixed(0, 0, 0, nbytes=100, flags=uring.IOSQE_FIXED_FILE)
        assert wait_all(ring, 1)[0].res == 100
        assert os.pread(wfd, 200, 0) == bytes(buf[:100])
    finally:
        os.close(wfd)
    ring.unregister_files()
    ring.unregister_buffers()
    buf.append(1)         # released


def test_unregister_buffers_refused_while_in_flight(ring):
    r, w = os.pipe()
    try:
        ring.register_buffers([bytearray(16)])
        ring.prep_read_fixed(r, 0, -1)
        ring.submit()
        with pytest.raises(OSError) as info:
            ring.unregister_buffers()
        assert info.value.errno == errno.EBUSY
        os.write(w, b"x")
        assert wait_all(ring, 1)[0].res == 1
        ring.unregister_buffers()
    finally:
        os.close(r)
        os.close(w)


def test_openat_statx_close_fallocate(ring, tmp_path):
    path = tmp_path / "new"
    ring.prep_openat(AT_FDCWD, path, os.O_RDWR | os.O_CREAT, 0o600, user_data="open")
    fd = wait_all(ring, 1)[0].result()
    assert not os.get_inheritable(fd)
    ring.prep_fallocate(fd, 0, 0, 12345)
    assert wait_all(ring, 1)[0].res == 0
    stx = bytearray(256)
    ring.prep_statx(AT_FDCWD, str(path), 0, 0x7FF, stx)
    assert wait_all(ring, 1)[0].res == 0
    assert int.from_bytes(stx[40:48], "little") == 12345 == os.stat(path).st_size   # stx_size
    assert int.from_bytes(stx[28:30], "little") & 0o777 == 0o600                    # stx_mode
    ring.prep_close(fd)
    assert wait_all(ring, 1)[0].res == 0
    with pytest.raises(OSError):
        os.fstat(fd)
    ring.prep_openat(AT_FDCWD, tmp_path / "missing", os.O_RDONLY)
    with pytest.raises(FileNotFoundError):
        wait_all(ring, 1)[0].result()


# ---- errors as negative res -----------------------------------------------

def test_errors_come_back_as_negative_res(ring, tmp_path):
    fd = os.open(tmp_path / "e", os.O_RDWR | os.O_CREAT)
    try:
        ring.prep_read(1 << 20, bytearray(1), 0, user_data="ebadf")
        ring.prep_timeout(0.001, user_data="etime")
        ring.prep_fsync(fd, fsync_flags=0xFF, user_data="einval")   # unknown fsync flag
        done = {c.user_data: c for c in wait_all(ring, 3)}
    finally:
        os.close(fd)
    assert done["ebadf"].res == -errno.EBADF
    assert done["etime"].res == -errno.ETIME
    assert done["einval"].res == -errno.EINVAL
    with pytest.raises(OSError) as info:
        done["einval"].result()
    assert info.value.errno == errno.EINVAL


def test_timeout_count_and_remove(ring):
    ring.prep_timeout(10, count=2, user_data="t")
    ring.prep_nop(user_data=1)
    ring.prep_nop(user_data=2)
    done = {c.user_data: c.res for c in wait_all(ring, 3)}
    assert done == {"t": 0, 1: 0, 2: 0}
    t = ring.prep_timeout(10, user_data="long")
    ring.submit()
    ring.prep_timeout_remove(t, user_data="rm")
    done = {c.user_data: c.res for c in wait_all(ring, 2)}
    assert done == {"long": -errno.ECANCELED, "rm": 0}


def test_linked_read_then_write(ring, datafile, tmp_path):
    fd, data = datafile
    out = os.open(tmp_path / "copy", os.O_RDWR | os.O_CREAT)
    try:
        buf = bytearray(4096)
        ring.prep_read(fd, buf, 8192, user_data="r", flags=uring.IOSQE_IO_LINK)
        ring.prep_write(out, buf, 0, user_data="w")
        done = [(c.user_data, c.res) for c in wait_all(ring, 2)]
        assert done == [("r", 4096), ("w", 4096)]
        assert os.pread(out, 4096, 0) == data[8192:12288]
        # a failed link head cancels the rest of the chain
        ring.prep_read(1 << 20, buf, 0, user_data="bad", flags=uring.IOSQE_IO_LINK)
        ring.prep_write(out, buf, 0, user_data="skipped")
        done = {c.user_data: c.res for c in wait_all(ring, 2)}
        assert done == {"bad": -errno.EBADF, "skipped": -errno.ECANCELED}
    finally:
        os.close(out)


def test_link_timeout_fires(ring):
    r, w = os.pipe()
    try:
        ring.prep_read(r, bytearray(10), -1, user_data="read", flags=uring.IOSQE_IO_LINK)
        ring.prep_link_timeout(0.05, user_data="lt")
        done = {c.user_data: c.res for c in wait_all(ring, 2)}
        assert done == {"read": -errno.ECANCELED, "lt": -errno.ETIME}
    finally:
        os.close(r)
        os.close(w)


def test_cancel_by_id_and_by_fd(ring):
    r, w = os.pipe()
    try:
        target = ring.prep_read(r, bytearray(8), -1, user_data="a")
        ring.submit()
        ring.prep_async_cancel(target, user_data="cancel")
        done = {c.user_data: c.res for c in wait_all(ring, 2)}
        assert done == {"a": -errno.ECANCELED, "cancel": 0}
        # a stale id (already reaped) matches nothing
        ring.prep_async_cancel(target, user_data="stale")
        assert wait_all(ring, 1)[0].res == -errno.ENOENT
        for i in range(3):
            ring.prep_read(r, bytearray(8), -1, user_data=i)
        ring.submit()
        ring.prep_async_cancel(fd=r, cancel_flags=uring.ASYNC_CANCEL_ALL, user_data="byfd")
        done = {c.user_data: c.res for c in wait_all(ring, 4)}
        assert done == {0: -errno.ECANCELED, 1: -errno.ECANCELED, 2: -errno.ECANCELED, "byfd": 3}
        assert ring.inflight == 0
    finally:
        os.close(r)
        os.close(w)


def test_poll_single_and_multishot(ring, sockpair):
    a, b = sockpair
    ring.prep_poll_add(a, select.POLLIN, user_data="once")
    ring.submit()
    assert ring.wait(1, timeout=0.02) == []
    b.send(b"x")
    c = wait_all(ring, 1)[0]
    assert c.user_data == "once" and c.res & select.POLLIN and not c.more
    a.recv(1)
    pid = ring.prep_poll_add(a, select.POLLIN, multishot=True, user_data="multi")
    ring.submit()
    for _ in range(3):
        b.send(b"y")
        c = wait_all(ring, 1)[0]
        assert c.user_data == "multi" and c.more
        a.recv(1)
    ring.prep_poll_remove(pid, user_data="rm")
    done = {c.user_data: c for c in wait_all(ring, 2)}
    assert done["rm"].res == 0 and done["multi"].res == -errno.ECANCELED and not done["multi"].more
    assert ring.inflight == 0


# ---- network ----------------------------------------------------------------

def wait_for(ring, names, timeout=10.0):
    """Completions by user_data until every name in ``names`` came (bounded)."""
    got = {}
    deadline = time.monotonic() + timeout
    while not set(names) <= set(got) and time.monotonic() < deadline:
        for c in ring.wait(1, timeout=max(deadline - time.monotonic(), 0.001)):
            got[c.user_data] = c
    assert set(names) <= set(got), got
    return got


def test_tcp_echo(ring):
    with socket.create_server(("127.0.0.1", 0)) as srv:
        cli = socket.socket()
        ring.prep_accept(srv, user_data="accept")
        ring.prep_connect(cli, srv.getsockname(), user_data="connect")
        done = wait_for(ring, ["accept", "connect"])
        assert done["connect"].res == 0
        peer = socket.socket(fileno=done["accept"].result())
        try:
            for size in (1, 1000, 100_000):
                payload = os.urandom(size)
                ring.prep_send(cli, payload, user_data="send")
                got = bytearray()
                sent = False
                for _ in range(1000):
                    if len(got) >= size:
                        break
                    buf = bytearray(65536)
                    ring.prep_recv(peer, buf, user_data="recv")
                    done = wait_for(ring, ["recv"])
                    got += buf[:done["recv"].result()]
                    sent = sent or "send" in done
                if not sent:
                    wait_for(ring, ["send"])
                assert bytes(got) == payload
                ring.prep_send(peer, got, user_data="echo")
                back = bytearray(size)
                ring.prep_recv(cli, back, msg_flags=socket.MSG_WAITALL, user_data="back")
                done = wait_for(ring, ["echo", "back"])
                assert done["back"].res == size and bytes(back) == payload
            ring.prep_shutdown(cli, socket.SHUT_WR, user_data="shut")
            ring.prep_recv(peer, bytearray(10), user_data="eof")
            done = wait_for(ring, ["shut", "eof"])
            assert done["shut"].res == 0 and done["eof"].res == 0
        finally:
            peer.close()
            cli.close()


def test_sendmsg_recvmsg(ring, sockpair):
    a, b = sockpair
    ring.prep_sendmsg(a, [b"ab", b"cde"], user_data="s")
    x, y = bytearray(1), bytearray(10)
    ring.prep_recvmsg(b, [x, y], user_data="r")
    done = {c.user_data: c.res for c in wait_all(ring, 2)}
    assert done == {"s": 5, "r": 5} and x == b"a" and y[:4] == b"bcde"


def test_poll_first_reaches_the_kernel(ring, sockpair):
    """poll_first=True: the kernel skips the first attempt and waits for
    readiness. With MSG_DONTWAIT that wait is refused, so a recv finds
    -EAGAIN even with data queued, where a plain recv gets the data; without
    MSG_DONTWAIT a poll_first recv and send do their work."""
    a, b = sockpair
    a.send(b"hello")
    buf = bytearray(16)
    ring.prep_recv(b, buf, msg_flags=socket.MSG_DONTWAIT, poll_first=True, user_data="first")
    res = wait_all(ring, 1)[0].res
    if res == -errno.EINVAL:
        pytest.skip("this kernel refuses IORING_RECVSEND_POLL_FIRST on a recv (Linux 5.19+ takes it)")
    assert res == -errno.EAGAIN
    ring.prep_recvmsg(b, [buf], msg_flags=socket.MSG_DONTWAIT, poll_first=True, user_data="first msg")
    assert wait_all(ring, 1)[0].res == -errno.EAGAIN
    ring.prep_recv(b, buf, msg_flags=socket.MSG_DONTWAIT, user_data="plain")
    assert wait_all(ring, 1)[0].res == 5 and buf[:5] == b"hello"
    ring.prep_recv(b, buf, poll_first=True, user_data="recv")
    ring.prep_send(a, b"again", poll_first=True, user_data="send")
    done = {c.user_data: c.res for c in wait_all(ring, 2)}
    assert done == {"recv": 5, "send": 5} and buf[:5] == b"again"


def test_splice(ring, datafile):
    fd, data = datafile
    r, w = os.pipe()
    try:
        ring.prep_splice(fd, 100, w, -1, 1000)
        assert wait_all(ring, 1)[0].res == 1000
        assert os.read(r, 2000) == data[100:1100]
    finally:
        os.close(r)
        os.close(w)


def test_multishot_accept_many_clients(ring):
    n = 20
    with socket.create_server(("127.0.0.1", 0), backlog=n) as srv:
        ring.prep_accept(srv, multishot=True, user_data="acc")
        ring.submit()
        clients = [socket.create_connection(srv.getsockname()) for _ in range(n)]
        try:
            got = wait_all(ring, n)
            assert all(c.user_data == "acc" and c.res >= 0 and c.more for c in got)
            for c in got:
                os.close(c.res)
            ring.prep_async_cancel(fd=srv, user_data="stop")
            done = {c.user_data: c for c in wait_all(ring, 2)}
            assert done["acc"].res == -errno.ECANCELED and not done["acc"].more
            assert ring.inflight == 0
        finally:
            for cl in clients:
                cl.close()


def test_multishot_recv_buf_ring_runs_out_and_refills(ring, sockpair):
    a, b = sockpair
    br = ring.register_buf_ring(1, 4, 64)
    assert (br.bgid, br.entries, br.size) == (1, 4, 64)
    received = []
    for round_ in range(3):
        ring.prep_recv_multishot(a, 1, user_data="rx")
        ring.submit()
        # 6 messages before reaping: 4 buffers, then the group is dry
        for i in range(6):
            b.send(f"r{round_}m{i}".encode())
            time.sleep(0.005)
        ended = False
        rounds = 0
        while not ended and rounds < 100:
            rounds += 1
            for c in ring.wait(1, timeout=5):
                assert c.user_data == "rx"
                if c.res > 0:
                    assert c.buffer_id is not None and len(c.buffer) == c.res
                    received.append(c.buffer)
                if not c.more:
                    ended = True
                    assert c.res == -errno.ENOBUFS or c.res > 0
        assert ended
    assert b"".join(received).startswith(b"r0m0")
    # everything sent arrives, in order, across the re-arms
    rest = b"".join(received)
    a.setblocking(False)
    try:
        rest += a.recv(4096)
    except BlockingIOError:
        pass
    assert rest == b"".join(f"r{r}m{i}".encode() for r in range(3) for i in range(6))
    with pytest.raises(OSError):
        ring.register_buf_ring(1, 4, 64)   # group taken
    ring.unregister_buf_ring(1)


def test_register_eventfd(ring):
    import ctypes

    efd = ctypes.CDLL(None, use_errno=True).eventfd(0, os.O_CLOEXEC)   # os.eventfd is 3.10+
    assert efd >= 0, ctypes.get_errno()
    try:
        ring.register_eventfd(efd)
        ring.prep_nop()
        wait_all(ring, 1)
        assert int.from_bytes(os.read(efd, 8), "little") >= 1
        ring.unregister_eventfd()
    finally:
        os.close(efd)


def test_probe(ring):
    ops = ring.probe()
    for name in ("NOP", "READ", "WRITE", "READV", "ACCEPT", "RECV", "SEND", "TIMEOUT", "ASYNC_CANCEL",
                 "SPLICE", "STATX", "OPENAT", "CLOSE", "SHUTDOWN"):
        assert getattr(uring, f"IORING_OP_{name}") in ops, name


# ---- the batch path ---------------------------------------------------------

@pytest.mark.parametrize("depth", [1, 7, 0])
def test_read_batch_equals_pread(ring, datafile, depth):
    fd, data = datafile
    rng = random.Random(depth)
    size = 4096
    offsets = [rng.randrange(0, len(data) // size + 2) * size for _ in range(300)]
    buf = bytearray(len(offsets) * size)
    results = ring.read_batch(fd, buf, offsets, size, depth=depth)
    for i, off in enumerate(offsets):
        expected = os.pread(fd, size, off)
        assert results[i] == len(expected)
        assert buf[i * size:i * size + results[i]] == expected
    assert ring.inflight == 0


def test_read_batch_array_forms_and_write_batch(ring, tmp_path):
    fd = os.open(tmp_path / "b", os.O_RDWR | os.O_CREAT)
    try:
        src = bytes(range(256)) * 16
        res = array.array("i", [0] * 8)
        assert ring.write_batch(fd, src, array.array("q", [i * 512 for i in range(8)]), 512, res) is res
        assert list(res) == [512] * 8
        assert os.pread(fd, 4096, 0) == src
        out = bytearray(4096)
        assert ring.read_batch(fd, out, range(0, 4096, 512), 512) == [512] * 8 and out == src
        with pytest.raises(ValueError, match="blocks"):
            ring.read_batch(fd, bytearray(10), [0, 512], 512)
        with pytest.raises(TypeError):
            ring.read_batch(fd, b"readonly", [0], 8)
        with pytest.raises(TypeError):
            ring.read_batch(fd, bytearray(8), array.array("i", [0]), 8)
        assert ring.inflight == 0
    finally:
        os.close(fd)


def test_read_batch_keeps_other_completions(ring, datafile):
    fd, _ = datafile
    ring.prep_nop(user_data="other")
    ring.submit()
    ring.read_batch(fd, bytearray(4096 * 4), [0, 4096, 8192, 12288], 4096)
    assert [c.user_data for c in ring.peek()] == ["other"]


# ---- safety ---------------------------------------------------------------

def test_pinned_buffer_survives_dropped_references(ring):
    r, w = os.pipe()
    try:
        class Token:
            pass

        buf = bytearray(5)
        token = Token()
        token_ref = weakref.ref(token)
        ring.prep_read(r, memoryview(buf), -1, user_data=token)
        ring.submit()
        with pytest.raises(BufferError):
            buf.extend(b"grow")           # resizing a buffer in flight
        del token
        gc.collect()
        assert token_ref() is not None     # the ring holds user_data
        os.write(w, b"hello")
        c = wait_all(ring, 1)[0]
        assert c.user_data is token_ref() and c.res == 5
        del c
        gc.collect()
        assert token_ref() is None         # released once reaped
        assert buf == b"hello"
        buf.extend(b"!")                   # no longer pinned
    finally:
        os.close(r)
        os.close(w)


def test_buffer_with_no_python_reference_left(ring):
    """The only reference to the buffer is the ring's pin."""
    class Buf(bytearray):  # a bytearray that can be weakly referenced
        pass

    r, w = os.pipe()
    try:
        buf = Buf(4)
        alive = weakref.ref(buf)
        ring.prep_read(r, buf, -1, user_data="orphan")
        ring.submit()
        del buf
        gc.collect()
        assert alive() is not None  # pinned by the ring while the read is in flight
        os.write(w, b"data")
        c = wait_all(ring, 1)[0]
        assert (c.user_data, c.res) == ("orphan", 4)
        gc.collect()
        assert alive() is None  # released once reaped
    finally:
        os.close(r)
        os.close(w)


def test_buffer_released_after_cancel(ring):
    r, w = os.pipe()
    try:
        buf = bytearray(4)
        rid = ring.prep_read(r, buf, -1)
        ring.submit()
        ring.prep_async_cancel(rid)
        wait_all(ring, 2)
        buf.extend(b"ok")     # released by the cancelled completion
    finally:
        os.close(r)
        os.close(w)


def test_close_with_requests_in_flight(backend):
    r, w = os.pipe()
    try:
        ring = backend.Ring(8)
        bufs = [bytearray(8) for _ in range(4)]
        for b in bufs:
            ring.prep_read(r, b, -1)
        ring.prep_timeout(100)
        ring.prep_poll_add(r, select.POLLIN, multishot=True)
        ring.submit()
        ring.prep_nop()           # queued, never submitted: dropped
        assert ring.inflight == 7
        t0 = time.monotonic()
        ring.close()
        assert time.monotonic() - t0 < 5
        assert ring.closed and ring.inflight == 0
        for b in bufs:
            b.extend(b"free")     # every pin released
        os.write(w, b"late")      # nothing reads into freed memory any more
        assert os.read(r, 4) == b"late"
        ring.close()              # idempotent
        with pytest.raises(ValueError, match="closed"):
            ring.prep_nop()
        with pytest.raises(ValueError, match="closed"):
            ring.wait()
        with pytest.raises(ValueError, match="closed"):
            ring.fileno()
    finally:
        os.close(r)
        os.close(w)


def test_gc_with_requests_in_flight(backend):
    r, w = os.pipe()
    try:
        buf = bytearray(8)
        ring = backend.Ring(8)
        ring.prep_read(r, buf, -1)
        ring.submit()
        with pytest.warns(ResourceWarning, match="unclosed"):
            del ring
            gc.collect()
        buf.extend(b"free")  # unpinned: the read was cancelled, not left in flight
        os.write(w, b"12345678")  # a read still in flight would take these bytes
        assert os.read(r, 8) == b"12345678"
        assert bytes(buf) == bytes(8) + b"free"
    finally:
        os.close(r)
        os.close(w)


def test_full_sq_flushes_and_loses_nothing(backend):
    with backend.Ring(4, cq_entries=256) as ring:
        ids = [ring.prep_nop(user_data=i) for i in range(50)]   # SQ of 4: auto-submits
        assert len(set(ids)) == 50
        got = wait_all(ring, 50)
        assert sorted(c.user_data for c in got) == list(range(50))


def test_cq_overflow_loses_nothing(backend):
    with backend.Ring(8) as ring:          # CQ of 16
        for i in range(100):
            ring.prep_nop(user_data=i)
            if i % 8 == 7:
                ring.submit()
        ring.submit()
        got = wait_all(ring, 100)
        assert sorted(c.user_data for c in got) == list(range(100))


def test_buffers_unregistered_while_nbytes_converts(ring):
    """Regression (issue 8): prep_read_fixed converted nbytes after taking a
    pointer into the registered-buffer table; an __index__ that unregistered
    the buffers made the compiled backend read the freed table (ASan:
    heap-use-after-free in prep_fixed). Every argument is converted first
    now, so the index is checked against what is registered then."""
    ring.register_buffers([bytearray(4096)])

    class Unregisters:
        def __index__(self):
            ring.unregister_buffers()
            return 16

        __int__ = __index__

    r, w = os.pipe()
    try:
        with pytest.raises(ValueError, match="not a registered buffer"):
            ring.prep_read_fixed(r, 0, -1, nbytes=Unregisters())
        assert ring.sq_ready == 0 and ring.inflight == 0
    finally:
        os.close(r)
        os.close(w)


def test_close_with_an_overflowed_cq_releases_everything(backend):
    """Regression (issue 8): close() with completions still in the kernel's
    overflow list gave up at once on the compiled backend (its reap entered
    the kernel through the closed-ring check) and kept every buffer pinned
    forever. Now it flushes the overflow and releases them all."""
    ring = backend.Ring(4)                 # CQ of 8
    r, w = os.pipe()
    try:
        os.write(w, b"x" * 64)
        bufs = []
        for _ in range(6):
            for _ in range(4):
                bufs.append(bytearray(1))
                ring.prep_read(r, bufs[-1], -1)
            ring.submit()                  # a pipe with data: each read completes inside
        assert ring.inflight == 24 and ring.cq_ready == ring.cq_entries == 8   # 16 overflowed
        t0 = time.monotonic()
        ring.close()
        assert time.monotonic() - t0 < 5   # no drain timeout
        for buf in bufs:
            buf.extend(b"!")               # BufferError while still pinned
    finally:
        ring.close()
        os.close(r)
        os.close(w)


def test_close_from_a_finalizer_while_reaping_is_refused(backend):
    """Regression (issue 8): a finalizer run while completions were reaped
    (here: the buffer's, whose last reference the request held) could close
    the ring. The compiled backend then released the slot twice, waited 10 s
    for its completion, and read the unmapped CQ ring (a segfault). close()
    there is a RuntimeError now, as on the pure backend, and the ring stays
    usable."""
    ring = backend.Ring(8)
    refused = []

    class Buf(bytearray):
        def __del__(self):
            try:
                ring.close()
            except RuntimeError as exc:
                refused.append(str(exc))

    r, w = os.pipe()
    try:
        os.write(w, b"abcd")
        for i in range(4):
            ring.prep_read(r, Buf(1), -1, user_data=i)     # the request holds the only reference
        ring.submit_and_wait(4)
        got = ring.peek()
        assert sorted((c.user_data, c.res) for c in got) == [(i, 1) for i in range(4)]
        assert len(refused) == 4
        assert all("while a call on this ring is running" in m for m in refused)
        assert not ring.closed and ring.inflight == 0
        ring.prep_nop(user_data="after")
        assert [c.user_data for c in ring.wait(1, timeout=5)] == ["after"]
    finally:
        ring.close()
        os.close(r)
        os.close(w)


def test_close_from_the_garbage_collector_inside_peek(backend):
    """Regression (issue 8): the garbage collector may run a finalizer that
    closes the ring at any allocation inside peek() (CPython < 3.12 collects
    right there; 3.12+ at the next bytecode boundary). The compiled backend
    read the unmapped rings afterwards (a segfault; UBSan: load of a null
    pointer). Now the close is refused once reaping has begun, or, if it came
    first, peek() raises the closed-ring ValueError."""
    ring = backend.Ring(8)
    outcome = []

    class Closer:
        def __init__(self):
            self.cycle = self              # only the collector frees it

        def __del__(self):
            try:
                ring.close()
                outcome.append("closed")
            except RuntimeError:
                outcome.append("refused")

    r, w = os.pipe()
    threshold = gc.get_threshold()
    try:
        os.write(w, b"abcd")
        for i in range(4):
            ring.prep_read(r, bytearray(1), -1, user_data=i)
        ring.submit_and_wait(4)
        gc.collect()
        Closer()
        gc.set_threshold(1)
        try:
            got = ring.peek()
        except ValueError:
            got = None
        finally:
            gc.set_threshold(*threshold)
        gc.collect()
        if got is None:         # the close came before peek() reached the ring
            assert outcome == ["closed"] and ring.closed
        else:                   # refused inside peek(), or run after it returned
            assert sorted(c.user_data for c in got) == [0, 1, 2, 3]
            assert outcome in (["refused"], ["closed"])
    finally:
        gc.set_threshold(*threshold)
        ring.close()
        os.close(r)
        os.close(w)


def test_threads_share_a_ring(ring):
    errors = []

    def worker(k):
        try:
            for i in range(200):
                ring.prep_nop(user_data=(k, i))
                if i % 16 == 0:
                    ring.submit()
        except BaseException as exc:   # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    got = wait_all(ring, 800)
    assert sorted(c.user_data for c in got) == sorted((k, i) for k in range(4) for i in range(200))


@skip_if_valgrind_serialises_uring_waits
def test_close_while_another_thread_waits_is_refused(ring):
    started = threading.Event()
    result = []

    def waiter():
        started.set()
        result.append(ring.wait(1, timeout=2))

    t = threading.Thread(target=waiter)
    t.start()
    started.wait(5)
    time.sleep(0.1)
    with pytest.raises(RuntimeError, match="another thread"):
        ring.close()
    ring.prep_nop(user_data="wake")
    ring.submit()
    t.join(10)
    assert not t.is_alive()


def test_fork_child_refuses_and_parent_unharmed(ring):
    r, w = os.pipe()
    try:
        buf = bytearray(4)
        ring.prep_read(r, buf, -1, user_data="parent")
        ring.submit()
        for call in (ring.prep_nop, ring.peek, ring.submit, lambda: ring.wait(0)):
            out = in_child(call)
            assert out.startswith("RuntimeError") and "fork" in out
        assert in_child(lambda: (ring.close(), ring.closed)[1]) == "ok True"
        os.write(w, b"abcd")
        c = wait_all(ring, 1)[0]
        assert (c.user_data, c.res, bytes(buf)) == ("parent", 4, b"abcd")
    finally:
        os.close(r)
        os.close(w)


# ---- availability -----------------------------------------------------------

def test_available_here(backend):
    assert backend.uring.available() is True and backend.uring.why_unavailable() is None


def _run(code: str, **env):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize("name", ["c", "pure"])
def test_fastio_disable_switch(name):
    code = (
        "import fastio, fastio.uring as u\n"
        "print(u.available(), u.why_unavailable())\n"
        "try:\n    u.Ring()\nexcept fastio.UnsupportedError as e:\n    print('refused', e)\n"
    )
    proc = _run(code, FASTIO_DISABLE="uring", FASTIO_BACKEND=name)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("False") and "FASTIO_DISABLE=uring" in lines[0]
    assert lines[1].startswith("refused") and "FASTIO_DISABLE" in lines[1]


@pytest.mark.skipif(os.geteuid() != 0, reason="toggling kernel.io_uring_disabled needs root")
@pytest.mark.skipif(not os.path.exists("/proc/sys/kernel/io_uring_disabled"),
                    reason="kernel without kernel.io_uring_disabled (before 6.6)")
@pytest.mark.parametrize("name", ["c", "pure"])
def test_sysctl_io_uring_disabled_is_named(name):
    path = "/proc/sys/kernel/io_uring_disabled"
    with open(path) as f:
        saved = f.read().strip()
    try:
        try:
            with open(path, "w") as f:
                f.write("2")
        except OSError as exc:
            pytest.skip(f"cannot write {path}: {exc}")
        code = (
            "import fastio, fastio.uring as u\n"
            "print(u.available())\nprint(u.why_unavailable())\n"
            "try:\n    u.Ring()\nexcept fastio.UnsupportedError as e:\n    print('refused', e.errno, e)\n"
        )
        proc = _run(code, FASTIO_BACKEND=name)
    finally:
        with open(path, "w") as f:
            f.write(saved)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "False"
    assert "kernel.io_uring_disabled=2" in lines[1]
    # Linux 6.6+ answers EPERM (the sysctl's documentation); ENOSYS is accepted for older backports
    assert lines[2].split()[:2] in (["refused", str(errno.EPERM)], ["refused", str(errno.ENOSYS)])
    assert "kernel.io_uring_disabled=2" in lines[2]


def test_unsupported_error_is_oserror():
    assert issubclass(UnsupportedError, OSError)


# ---------------------------------------------------------------- found in review


class _Stop(Exception):
    pass


@skip_if_valgrind_serialises_uring_waits
def test_one_signal_during_a_submitting_wait_runs_its_handler(backend):
    """Regression: wait() that submits and waits in one io_uring_enter got the
    submitted count back, not EINTR, when a signal arrived; the handler never
    ran and Ctrl-C hung the wait. One SIGALRM must end an endless wait."""
    import signal

    r, w = os.pipe()
    old = signal.signal(signal.SIGALRM, lambda *a: (_ for _ in ()).throw(_Stop()))
    try:
        with backend.Ring(8) as ring:
            buf = bytearray(16)
            ring.prep_read(r, buf, -1)
            signal.setitimer(signal.ITIMER_REAL, 0.2)
            with pytest.raises(_Stop):
                ring.wait(1, timeout=None)
            os.write(w, b"x")  # complete the read so close() has nothing to cancel
            assert [c.res for c in ring.wait(1, timeout=5)] == [1]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        os.close(r)
        os.close(w)


@skip_if_valgrind_serialises_uring_waits
def test_close_inside_a_call_is_refused(backend, datafile):
    """Regression: close() from Python code run inside a prep (here, the
    iterable of buffers) or from a signal handler inside read_batch unmapped
    the ring under the call (a 10 s hang, then a crash). It is a RuntimeError
    now, and the ring stays usable."""
    import signal

    fd, data = datafile
    ring = backend.Ring(8)

    def buffers():
        with pytest.raises(RuntimeError, match="while a call on this ring is running"):
            ring.close()
        yield bytearray(8)

    ring.prep_readv(fd, buffers(), 0, user_data="v")
    [c] = ring.wait(1, timeout=5)
    assert (c.user_data, c.res) == ("v", 8)

    ring.close()

    # A signal handler that closes the ring while read_batch waits: the
    # batch reads a pipe that stays empty until the handler itself writes to
    # it, so the handler is certain to run inside the call (a batch over a
    # warm file can finish before any timer fires).
    refused = []
    r, w = os.pipe()

    def handler(*args):
        try:
            ring.close()
        except RuntimeError as exc:
            refused.append(str(exc))
        os.write(w, b"y" * 16)

    ring = backend.Ring(8)
    old = signal.signal(signal.SIGALRM, handler)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        out = ring.read_batch(r, bytearray(16), [0, 0], 8)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        os.close(r)
        os.close(w)
    assert out == [8, 8]
    assert refused, "the handler never ran inside read_batch"
    assert not ring.closed
    ring.close()
    assert ring.closed


def test_a_bad_argument_after_the_slot_leaves_nothing_queued(backend):
    """Regression: prep_fsync(fsync_flags=-1) raised after taking an SQE, which
    stayed half written in the SQ and kept close() waiting for it."""
    with backend.Ring(8) as ring:
        with pytest.raises(OverflowError):
            ring.prep_fsync(0, fsync_flags=-1)
        with pytest.raises(ValueError):
            ring.prep_splice(0, -1, 1, -1, -1)
        assert ring.sq_ready == 0
    assert ring.closed


def test_gc_of_a_cycle_with_a_multishot_recv_in_flight(backend):
    """Regression: a ring in a reference cycle, collected with a multishot recv
    armed on a buffer ring, had its buffer ring unmapped first and was put in
    a module list from its deallocator (a use-after-free)."""
    import gc
    import warnings

    a, b = socket.socketpair()
    try:
        ring = backend.Ring(8)
        ring.register_buf_ring(1, 8, 64)
        ring.prep_recv_multishot(a.fileno(), 1, user_data=ring)  # the cycle
        ring.submit()
        del ring
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()
        b.send(b"after the ring is gone")  # nothing may write into freed memory
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("offset", [1.5, "8"])
def test_offsets_must_be_ints(ring, offset):
    r, w = os.pipe()
    try:
        with pytest.raises(TypeError):
            ring.prep_read(r, bytearray(4), offset)
        assert ring.sq_ready == 0
    finally:
        os.close(r)
        os.close(w)


@pytest.mark.parametrize("call", [
    lambda r, fd: r.prep_poll_add(fd, 1.0),
    lambda r, fd: r.prep_read(fd, bytearray(1), 0, rw_flags=1.0),
    lambda r, fd: r.prep_nop(flags=1.0),
    lambda r, fd: r.prep_timeout(0.1, 1.5),
    lambda r, fd: r.prep_fsync(fd, fsync_flags=0.0),
    lambda r, fd: r.prep_fallocate(fd, 0, 0, 4.0),
    lambda r, fd: r.prep_async_cancel(1.0),
    lambda r, fd: r.prep_async_cancel(cancel_flags=0.0),
    lambda r, fd: r.prep_splice(fd, -1, fd, -1, 4.0),
    lambda r, fd: r.read_batch(fd, bytearray(8), [0], 1.5),
    lambda r, fd: r.read_batch(fd, bytearray(8), [0.5], 1),
], ids=["poll_mask", "rw_flags", "flags", "count", "fsync_flags", "length", "target", "cancel_flags",
        "nbytes", "batch size", "batch offset"])
def test_int_arguments_refuse_floats(backend, call, datafile):
    """Regression (found writing tests/state/test_state_ring.py): every int argument of
    Ring took a float and truncated it (poll_mask=1.5 became 1; a batch
    size of 1.5 read 1 byte), on both backends, where CPython's converters
    raise TypeError."""
    fd, _ = datafile
    with backend.Ring(8) as ring:
        with pytest.raises(TypeError):
            call(ring, fd)
        assert ring.sq_ready == 0 and ring.inflight == 0


@pytest.mark.parametrize("call", [
    lambda r, fd: r.prep_read(fd, bytearray(1), 2**63),
    lambda r, fd: r.prep_read(fd, bytearray(1), 2**64),
    lambda r, fd: r.read_batch(fd, bytearray(8), [2**63], 1),
    lambda r, fd: r.prep_fallocate(fd, 0, 0, -1),
    lambda r, fd: r.prep_poll_add(fd, 2**32),
    lambda r, fd: r.register_files_update(-1, [fd]),
], ids=["offset 2**63", "offset 2**64", "batch offset", "negative length", "poll_mask", "update offset"])
def test_out_of_range_ints_are_overflow_errors(backend, call, datafile):
    """Regression: the pure backend masked an offset of 2**63 or more into
    range (a read at 0), took a negative fallocate length as 2**64 - 1 and
    read a batch at offset 2**63 (-EINVAL); the compiled one raised
    OverflowError. Both raise OverflowError now."""
    fd, _ = datafile
    with backend.Ring(8) as ring:
        with pytest.raises(OverflowError):
            call(ring, fd)
        assert ring.sq_ready == 0 and ring.inflight == 0


def test_gc_collects_a_ring_in_a_cycle_through_user_data(backend):
    """Regression: on the c backend a Ring whose in-flight request's
    user_data referred back to it was never collected (the slot held the
    reference where the garbage collector could not see it): its fd, its
    mappings and its pinned buffers leaked. The user_data objects now live
    in a list the collector traverses."""
    import warnings

    class Token:
        pass

    r, w = os.pipe()
    try:
        buf = bytearray(8)
        ring = backend.Ring(8)
        ring_fd = ring.fileno()
        token = Token()
        token.ring = ring                               # the cycle: ring -> request -> token -> ring
        token_ref = weakref.ref(token)
        ring.prep_read(r, buf, -1, user_data=token)     # waits for data that never comes
        ring.submit()
        ring.prep_nop(user_data=token)                  # queued, never submitted
        del ring, token
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()
        assert token_ref() is None                      # the cycle is gone ...
        buf.extend(b"free")                             # ... the pin with it ...
        try:
            what = os.readlink(f"/proc/self/fd/{ring_fd}")
        except FileNotFoundError:
            what = "closed"
        assert what != "anon_inode:[io_uring]"          # ... and the ring
    finally:
        os.close(r)
        os.close(w)


def test_close_with_the_cq_overflowed_releases_everything(backend, datafile):
    """Regression (found by tests/state/test_state_ring.py): close() with more
    completions than the CQ holds (the kernel keeps the rest, FEAT_NODROP)
    gave up at once and leaked every request's buffers for good on the c
    backend: its drain flushed the overflow through a call that refuses a
    closing ring."""
    fd, data = datafile
    ring = backend.Ring(1)                 # 1 SQE, 2 CQEs
    bufs = [bytearray(16) for _ in range(5)]
    for i, buf in enumerate(bufs):
        ring.prep_read(fd, buf, i, user_data=i)   # a full SQ: each submits the one before
    ring.submit()
    deadline = time.monotonic() + 5
    while ring.cq_ready < 2 and time.monotonic() < deadline:
        time.sleep(0.001)
    ring.close()
    assert ring.inflight == 0
    for buf in bufs:
        buf.extend(b"free")                # every pin released


@pytest.mark.parametrize("offsets", [[0, -5], array.array("q", [0, -5]), array.array("Q", [0, 2**63])],
                         ids=["list", "array q", "array Q"])
def test_read_batch_refuses_negative_offsets_in_any_form(backend, datafile, offsets):
    """Regression (found by tests/state/test_state_ring.py): a negative offset was
    refused (ValueError) in a list but sent to the kernel from an int64
    buffer (each such read came back -EINVAL), on both backends."""
    fd, _ = datafile
    with backend.Ring(8) as ring:
        with pytest.raises(ValueError, match="offsets"):
            ring.read_batch(fd, bytearray(32), offsets, 16)
        assert ring.inflight == 0


def test_read_batch_with_the_sq_full_of_requests_that_never_complete(backend, datafile):
    """Regression (found reviewing the batch loop after the same hang that
    tests/state/test_state_aio.py met in aio): with the SQ full of other requests
    and none of its own in flight, read_batch submitted them and waited for
    a completion; polls of an empty pipe never complete, so it waited
    forever. It now only submits them, then queues and waits for its own."""
    fd, data = datafile
    r, w = os.pipe()
    ring = backend.Ring(2)
    rescue = threading.Timer(10, os.write, (w, b"xx"))    # unblocks a regression in 10 s
    rescue.start()
    try:
        ring.prep_poll_add(r, select.POLLIN, user_data=1)
        ring.prep_poll_add(r, select.POLLIN, user_data=2)
        assert ring.sq_ready == ring.sq_entries == 2
        buf = bytearray(16)
        assert ring.read_batch(fd, buf, [0, 8], 8) == [8, 8]
        assert rescue.is_alive(), "read_batch waited for the polls"
        assert bytes(buf) == data[:16]
    finally:
        rescue.cancel()
        ring.close()
        os.close(r)
        os.close(w)
