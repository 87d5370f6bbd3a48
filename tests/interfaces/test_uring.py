"""fastio.uring on the real kernel, both backends: data, errors, timeouts,
links, cancel, registration, the batch path, availability. The safety rules
(pinning, close with requests in flight, GC, fork, full SQ, CQ overflow,
threads) are in test_uring_safety.py."""

from __future__ import annotations

import array
import errno
import os
import random
import select
import socket
import time

import pytest
from support import wait_all

from fastio import UnsupportedError, uring

pytestmark = pytest.mark.skipif(not uring.available(), reason=f"io_uring unusable: {uring.why_unavailable()}")

AT_FDCWD = -100


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


def test_path_operations_rename_unlink_mkdir_symlink_link(ring, tmp_path):
    have = ring.probe()
    needed = {uring.IORING_OP_RENAMEAT, uring.IORING_OP_UNLINKAT, uring.IORING_OP_MKDIRAT,
              uring.IORING_OP_SYMLINKAT, uring.IORING_OP_LINKAT}
    if not needed <= have:
        pytest.skip("this kernel has not every path operation (RENAMEAT/UNLINKAT 5.11, the others 5.15)")
    src = tmp_path / "src"
    src.write_bytes(b"x")
    ring.prep_renameat(AT_FDCWD, src, AT_FDCWD, tmp_path / "dst")
    ring.prep_mkdirat(AT_FDCWD, tmp_path / "dir", 0o700)
    ring.prep_symlinkat("dst", AT_FDCWD, tmp_path / "sym")
    assert [c.res for c in wait_all(ring, 3)] == [0, 0, 0]
    ring.prep_linkat(AT_FDCWD, tmp_path / "dst", AT_FDCWD, tmp_path / "hard")
    assert wait_all(ring, 1)[0].res == 0
    assert not src.exists() and (tmp_path / "dst").read_bytes() == b"x"
    assert os.stat(tmp_path / "dir").st_mode & 0o777 == 0o700 & ~current_umask()
    assert os.readlink(tmp_path / "sym") == "dst"
    assert os.stat(tmp_path / "hard").st_ino == os.stat(tmp_path / "dst").st_ino
    dirfd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        ring.prep_unlinkat(dirfd, "hard")
        ring.prep_unlinkat(dirfd, "dir", 0x200)        # AT_REMOVEDIR
        assert [c.res for c in wait_all(ring, 2)] == [0, 0]
    finally:
        os.close(dirfd)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dst", "sym"]
    ring.prep_renameat(AT_FDCWD, tmp_path / "dst", AT_FDCWD, tmp_path / "sym", 1)     # RENAME_NOREPLACE
    ring.prep_unlinkat(AT_FDCWD, tmp_path / "missing")
    assert sorted(c.res for c in wait_all(ring, 2)) == sorted([-errno.EEXIST, -errno.ENOENT])
    with pytest.raises(ValueError, match="null"):
        ring.prep_linkat(AT_FDCWD, "a", AT_FDCWD, "b\0")


def test_ftruncate_cuts_and_extends_the_file(ring, tmp_path):
    if uring.IORING_OP_FTRUNCATE not in ring.probe():
        pytest.skip("this kernel's io_uring has no FTRUNCATE (Linux 6.9)")
    path = tmp_path / "f"
    path.write_bytes(b"0123456789")
    fd = os.open(path, os.O_RDWR)
    try:
        ring.prep_ftruncate(fd, 4)
        assert wait_all(ring, 1)[0].res == 0
        assert path.read_bytes() == b"0123"
        ring.prep_ftruncate(fd, 1 << 20)
        assert wait_all(ring, 1)[0].res == 0
        assert os.fstat(fd).st_size == 1 << 20
        ring.prep_ftruncate(fd, 1 << 63)               # negative as the kernel's loff_t
        assert wait_all(ring, 1)[0].res == -errno.EINVAL
    finally:
        os.close(fd)
    rfd = os.open(path, os.O_RDONLY)
    try:
        ring.prep_ftruncate(rfd, 0)                   # not open for writing
        assert wait_all(ring, 1)[0].res in (-errno.EINVAL, -errno.EBADF)
    finally:
        os.close(rfd)
    assert os.stat(path).st_size == 1 << 20
    with pytest.raises(OverflowError):
        ring.prep_ftruncate(0, -1)
    assert ring.sq_ready == 0


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


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
