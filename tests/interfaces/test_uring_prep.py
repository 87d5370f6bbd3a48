"""Every prep_* writes the SQE the kernel expects, checked field by field
before the kernel sees it (``Ring._peek_sqe``), on both backends; and the
queue counters around submit()."""

from __future__ import annotations

import os
import select
import socket
import struct

import pytest

from fastio import uring
from fastio._abi.uring import IoUringSqe

pytestmark = pytest.mark.skipif(not uring.available(), reason=f"io_uring unusable: {uring.why_unavailable()}")


@pytest.fixture
def ring(backend):
    with backend.Ring(16) as r:
        yield r
        # nothing here was submitted: drop the queued SQEs with the ring


def sqe_of(ring, i=0) -> IoUringSqe:
    raw = ring._peek_sqe(i)
    assert len(raw) == 64
    return IoUringSqe.from_buffer_copy(raw)


def fields(sqe: IoUringSqe) -> dict:
    return {name: getattr(sqe, name) for name, _ in IoUringSqe._fields_}


def expect(sqe: IoUringSqe, **want):
    got = fields(sqe)
    base = {name: 0 for name in got}
    base.update(want)
    assert got == base, {k: (got[k], base[k]) for k in got if got[k] != base[k]}


def addr_of(buf) -> int:
    import ctypes

    return ctypes.addressof((ctypes.c_char * len(buf)).from_buffer(buf))


def test_nop_and_counters(ring):
    assert ring.sq_ready == 0 and ring.cq_ready == 0
    rid = ring.prep_nop(user_data="n", flags=uring.IOSQE_IO_DRAIN)
    assert rid == (1 << 32) | 0  # generation 1, slot 0
    expect(sqe_of(ring), opcode=uring.IORING_OP_NOP, fd=-1, flags=uring.IOSQE_IO_DRAIN, user_data=rid)
    assert ring.sq_ready == 1 and ring.cq_ready == 0
    assert ring.submit() == 1
    assert ring.sq_ready == 0
    assert [c.user_data for c in ring.wait(1, timeout=5)] == ["n"]
    assert ring.cq_ready == 0
    # the slot is reused with the next generation: a stale id never matches
    assert ring.prep_nop() == (2 << 32) | 0


def test_read_write(ring, tmp_path):
    buf = bytearray(100)
    rid = ring.prep_read(7, buf, 4096, rw_flags=os.RWF_NOWAIT)
    expect(sqe_of(ring), opcode=uring.IORING_OP_READ, fd=7, addr=addr_of(buf), len=100, off=4096,
           op_flags=os.RWF_NOWAIT, user_data=rid)
    rid2 = ring.prep_write(8, buf, -1, flags=uring.IOSQE_ASYNC)
    expect(sqe_of(ring, 1), opcode=uring.IORING_OP_WRITE, fd=8, addr=addr_of(buf), len=100,
           off=0xFFFFFFFFFFFFFFFF, flags=uring.IOSQE_ASYNC, user_data=rid2)


def test_readv_writev(ring):
    a, b = bytearray(10), bytearray(20)
    rid = ring.prep_readv(3, [a, b], 5)
    sqe = sqe_of(ring)
    assert (sqe.opcode, sqe.fd, sqe.len, sqe.off, sqe.user_data) == (uring.IORING_OP_READV, 3, 2, 5, rid)
    import ctypes

    iov = (ctypes.c_uint64 * 4).from_address(sqe.addr)
    assert list(iov) == [addr_of(a), 10, addr_of(b), 20]
    ring.prep_writev(3, [b"xyz"], 0)
    assert sqe_of(ring, 1).opcode == uring.IORING_OP_WRITEV and sqe_of(ring, 1).len == 1


def test_fixed(ring):
    buf = bytearray(4096)
    ring.register_buffers([buf])
    rid = ring.prep_read_fixed(5, 0, 100, nbytes=512, buf_offset=1024)
    expect(sqe_of(ring), opcode=uring.IORING_OP_READ_FIXED, fd=5, addr=addr_of(buf) + 1024, len=512, off=100,
           buf_index=0, user_data=rid)
    rid = ring.prep_write_fixed(5, 0, 0)
    expect(sqe_of(ring, 1), opcode=uring.IORING_OP_WRITE_FIXED, fd=5, addr=addr_of(buf), len=4096,
           buf_index=0, user_data=rid)
    with pytest.raises(ValueError, match="registered"):
        ring.prep_read_fixed(5, 1, 0)
    with pytest.raises(ValueError, match="outside"):
        ring.prep_read_fixed(5, 0, 0, nbytes=4000, buf_offset=100)


def test_fsync_fallocate_close_shutdown_ftruncate(ring):
    r1 = ring.prep_fsync(4, fsync_flags=uring.FSYNC_DATASYNC)
    expect(sqe_of(ring, 0), opcode=uring.IORING_OP_FSYNC, fd=4, op_flags=1, user_data=r1)
    r2 = ring.prep_fallocate(4, 1, 4096, 1 << 20)
    # the kernel reads the length from addr and the mode from len
    expect(sqe_of(ring, 1), opcode=uring.IORING_OP_FALLOCATE, fd=4, addr=1 << 20, len=1, off=4096, user_data=r2)
    r3 = ring.prep_close(9)
    expect(sqe_of(ring, 2), opcode=uring.IORING_OP_CLOSE, fd=9, user_data=r3)
    r4 = ring.prep_shutdown(9, socket.SHUT_WR)
    expect(sqe_of(ring, 3), opcode=uring.IORING_OP_SHUTDOWN, fd=9, len=socket.SHUT_WR, user_data=r4)
    r5 = ring.prep_ftruncate(4, 1 << 40)
    # the length in off, nothing in addr or len
    expect(sqe_of(ring, 4), opcode=uring.IORING_OP_FTRUNCATE, fd=4, addr=0, len=0, off=1 << 40, user_data=r5)


def test_openat_statx(ring):
    rid = ring.prep_openat(-100, "/etc/hostname", os.O_RDONLY, 0o600)
    sqe = sqe_of(ring)
    import ctypes

    assert (sqe.opcode, sqe.fd, sqe.len, sqe.op_flags, sqe.user_data) == (
        uring.IORING_OP_OPENAT, -100, 0o600, os.O_RDONLY | os.O_CLOEXEC, rid)
    assert ctypes.string_at(sqe.addr) == b"/etc/hostname"
    stx = bytearray(256)
    rid = ring.prep_statx(-100, b"/etc", 0x100, 0x7FF, stx)
    sqe = sqe_of(ring, 1)
    assert (sqe.opcode, sqe.len, sqe.op_flags, sqe.off) == (uring.IORING_OP_STATX, 0x7FF, 0x100, addr_of(stx))
    assert ctypes.string_at(sqe.addr) == b"/etc"
    with pytest.raises(ValueError, match="256"):
        ring.prep_statx(-100, "/", 0, 0, bytearray(100))
    with pytest.raises(ValueError, match="null"):
        ring.prep_openat(-100, "a\0b")


def test_path_operations(ring):
    import ctypes

    r1 = ring.prep_renameat(-100, "old", 7, b"new", 1)
    sqe = sqe_of(ring, 0)
    assert (sqe.opcode, sqe.fd, sqe.len, sqe.op_flags, sqe.user_data) == (uring.IORING_OP_RENAMEAT, -100, 7, 1, r1)
    assert (ctypes.string_at(sqe.addr), ctypes.string_at(sqe.off)) == (b"old", b"new")
    ring.prep_unlinkat(5, "gone", 0x200)
    sqe = sqe_of(ring, 1)
    assert (sqe.opcode, sqe.fd, sqe.len, sqe.off, sqe.op_flags) == (uring.IORING_OP_UNLINKAT, 5, 0, 0, 0x200)
    assert ctypes.string_at(sqe.addr) == b"gone"
    ring.prep_mkdirat(-100, "d", 0o750)
    sqe = sqe_of(ring, 2)
    assert (sqe.opcode, sqe.fd, sqe.len, sqe.off) == (uring.IORING_OP_MKDIRAT, -100, 0o750, 0)
    ring.prep_symlinkat("target", 6, "link")
    sqe = sqe_of(ring, 3)
    assert (sqe.opcode, sqe.fd) == (uring.IORING_OP_SYMLINKAT, 6)
    assert (ctypes.string_at(sqe.addr), ctypes.string_at(sqe.off)) == (b"target", b"link")
    ring.prep_linkat(3, "a", -100, "b", 0x400)
    sqe = sqe_of(ring, 4)
    assert (sqe.opcode, sqe.fd, sqe.len & 0xFFFFFFFF, sqe.op_flags) == (uring.IORING_OP_LINKAT, 3, (-100) & 0xFFFFFFFF,
                                                                        0x400)
    with pytest.raises(ValueError, match="null"):
        ring.prep_unlinkat(-100, "a\0b")


def test_poll_timeout_cancel(ring):
    p = ring.prep_poll_add(3, select.POLLIN, multishot=True, user_data="p")
    expect(sqe_of(ring, 0), opcode=uring.IORING_OP_POLL_ADD, fd=3, len=uring.POLL_ADD_MULTI,
           op_flags=select.POLLIN, user_data=p)
    r = ring.prep_poll_remove(p)
    expect(sqe_of(ring, 1), opcode=uring.IORING_OP_POLL_REMOVE, fd=-1, addr=p, user_data=r)
    t = ring.prep_timeout(1.5, 2, timeout_flags=uring.TIMEOUT_ABS)
    sqe = sqe_of(ring, 2)
    assert (sqe.opcode, sqe.fd, sqe.len, sqe.off, sqe.op_flags) == (uring.IORING_OP_TIMEOUT, -1, 1, 2, 1)
    import ctypes

    assert struct.unpack("qq", ctypes.string_at(sqe.addr, 16)) == (1, 500_000_000)
    r = ring.prep_timeout_remove(t)
    expect(sqe_of(ring, 3), opcode=uring.IORING_OP_TIMEOUT_REMOVE, fd=-1, addr=t, user_data=r)
    r = ring.prep_async_cancel(p, cancel_flags=uring.ASYNC_CANCEL_ALL)
    expect(sqe_of(ring, 4), opcode=uring.IORING_OP_ASYNC_CANCEL, fd=-1, addr=p, op_flags=1, user_data=r)
    r = ring.prep_async_cancel(fd=5)
    expect(sqe_of(ring, 5), opcode=uring.IORING_OP_ASYNC_CANCEL, fd=5, op_flags=uring.ASYNC_CANCEL_FD,
           user_data=r)
    r = ring.prep_async_cancel()
    expect(sqe_of(ring, 6), opcode=uring.IORING_OP_ASYNC_CANCEL, fd=-1, op_flags=uring.ASYNC_CANCEL_ANY,
           user_data=r)
    r = ring.prep_link_timeout(0.25)
    sqe = sqe_of(ring, 7)
    assert (sqe.opcode, sqe.len, sqe.off) == (uring.IORING_OP_LINK_TIMEOUT, 1, 0)
    assert struct.unpack("qq", ctypes.string_at(sqe.addr, 16)) == (0, 250_000_000)


def test_network(ring):
    import ctypes

    r = ring.prep_accept(3, multishot=True)
    expect(sqe_of(ring, 0), opcode=uring.IORING_OP_ACCEPT, fd=3, ioprio=uring.ACCEPT_MULTISHOT,
           op_flags=os.O_CLOEXEC, user_data=r)
    r = ring.prep_connect(3, ("127.0.0.1", 8080))
    sqe = sqe_of(ring, 1)
    assert (sqe.opcode, sqe.fd, sqe.off) == (uring.IORING_OP_CONNECT, 3, 16)
    assert ctypes.string_at(sqe.addr, 8) == struct.pack("=H", socket.AF_INET) + struct.pack("!H", 8080) + bytes(
        [127, 0, 0, 1])
    buf = bytearray(64)
    r = ring.prep_recv(3, buf, msg_flags=socket.MSG_WAITALL)
    expect(sqe_of(ring, 2), opcode=uring.IORING_OP_RECV, fd=3, addr=addr_of(buf), len=64,
           op_flags=socket.MSG_WAITALL, user_data=r)
    r = ring.prep_send(3, buf)
    expect(sqe_of(ring, 3), opcode=uring.IORING_OP_SEND, fd=3, addr=addr_of(buf), len=64, user_data=r)
    r = ring.prep_sendmsg(3, [buf], msg_flags=socket.MSG_NOSIGNAL)
    sqe = sqe_of(ring, 4)
    assert (sqe.opcode, sqe.len, sqe.op_flags) == (uring.IORING_OP_SENDMSG, 1, socket.MSG_NOSIGNAL)
    r = ring.prep_splice(3, -1, 4, 100, 4096)
    expect(sqe_of(ring, 5), opcode=uring.IORING_OP_SPLICE, fd=4, addr=0xFFFFFFFFFFFFFFFF, off=100, len=4096,
           splice_fd_in=3, user_data=r)


def test_recv_multishot(ring):
    ring.register_buf_ring(7, 4, 128)
    r = ring.prep_recv_multishot(3, 7)
    expect(sqe_of(ring), opcode=uring.IORING_OP_RECV, fd=3, ioprio=uring.RECV_MULTISHOT,
           flags=uring.IOSQE_BUFFER_SELECT, buf_index=7, user_data=r)
    with pytest.raises(ValueError, match="not registered"):
        ring.prep_recv_multishot(3, 8)


def test_poll_first(ring):
    """poll_first=True sets IORING_RECVSEND_POLL_FIRST in sqe.ioprio, beside
    what the prep sets there itself; False (the default) leaves it clear."""
    buf = bytearray(8)
    ring.register_buf_ring(7, 4, 128)
    preps = [lambda **kw: ring.prep_recv(3, buf, **kw), lambda **kw: ring.prep_send(3, buf, **kw),
             lambda **kw: ring.prep_recvmsg(3, [buf], **kw), lambda **kw: ring.prep_sendmsg(3, [buf], **kw),
             lambda **kw: ring.prep_recv_multishot(3, 7, **kw)]
    i = 0
    for prep in preps:
        for first in (False, True):
            prep(poll_first=first)
            ioprio = sqe_of(ring, i).ioprio
            i += 1
            assert bool(ioprio & uring.RECVSEND_POLL_FIRST) == first, (i, ioprio)
    assert sqe_of(ring, 9).ioprio == uring.RECV_MULTISHOT | uring.RECVSEND_POLL_FIRST


def test_sqe_fully_rewritten(ring):
    """A reused SQE slot keeps nothing of its previous request."""
    for _ in range(16):
        ring.prep_splice(1003, 1, 1004, 2, 5, splice_flags=1)
    ring.submit()
    ring.wait(16, timeout=5)
    ring.prep_nop()
    expect(sqe_of(ring), opcode=uring.IORING_OP_NOP, fd=-1, user_data=sqe_of(ring).user_data)


@pytest.mark.parametrize("bad", [{"flags": 1 << 7}, {"flags": uring.IOSQE_BUFFER_SELECT}])
def test_bad_sqe_flags(ring, bad):
    with pytest.raises(ValueError):
        ring.prep_nop(**bad)
    assert ring.sq_ready == 0 and ring.inflight == 0


def test_skip_success_rules(ring):
    assert ring.prep_nop(flags=uring.IOSQE_CQE_SKIP_SUCCESS) is None
    assert sqe_of(ring).user_data == 0xFFFFFFFFFFFFFFFE and ring.inflight == 0
    with pytest.raises(ValueError, match="user_data"):
        ring.prep_nop(flags=uring.IOSQE_CQE_SKIP_SUCCESS, user_data=1)
    with pytest.raises(ValueError, match="buffers"):
        ring.prep_read(0, bytearray(1), 0, flags=uring.IOSQE_CQE_SKIP_SUCCESS)
    ring.submit()
    assert ring.wait(0, timeout=0.05) == []     # success: no completion at all
