"""Asynchronous IO with Linux native AIO (fastio.aio): two cases.

1. A socket, with IOCB_CMD_POLL. AIO cannot read a socket asynchronously (a
   read iocb on a socket runs inside io_submit(2) and blocks there), but it
   can wait for readiness: io_submit(2) arms a poll and returns at once, and
   io_getevents(2) sleeps until the poll completes (phase 1). recvfrom(2) then
   copies (phase 2), as in IO multiplexing.
2. A file opened with O_DIRECT (Stevens' figure 6.5, for real). io_submit(2)
   hands the read to the block layer and returns at once. The device reads
   the block and DMA puts it into our aligned buffer (phases 1 and 2), with
   no help from the process. io_getevents(2) collects the completion.
   Buffered (non-O_DIRECT) reads would run inside io_submit(2) instead.

Run: python examples/aio.py
"""

import os
import socket
import tempfile
import threading

import fastio
from fastio import aio, poll

MESSAGE = b"hello, world"


def reap(ctx):
    done = ctx.getevents(1, timeout=5.0)  # io_getevents(2): sleeps until a completion
    if not done:
        raise TimeoutError("no completion within 5 s")
    return done[0]


def socket_poll(ctx):
    a, peer = socket.socketpair()
    with a, peer:
        ctx.prep_poll(a, poll.POLLIN, user_data="poll a")  # IOCB_CMD_POLL
        print(f"submitted {ctx.submit()} poll; io_submit(2) returned at once")
        sender = threading.Timer(0.2, peer.sendall, (MESSAGE,))  # the peer sends in 0.2 s
        sender.start()
        print("waiting: io_getevents(2) sleeps until the poll completes ...")
        c = reap(ctx)
        sender.join()
        # res: the socket's wake-up bits, POLLIN and maybe more than was asked
        print(f"completion {c.user_data!r}: res={c.res:#x}, POLLIN: {bool(c.res & poll.POLLIN)}")
        data = a.recv(1024)  # phase 2 is ours: recvfrom(2)
        print(f"copied {len(data)} bytes: {data!r}")


def direct_read(ctx, fd):
    align = aio.dio_alignment(fd)  # statx(2) STATX_DIOALIGN: (memory, offset)
    if align == (0, 0):
        print("skipped: this filesystem has no direct IO")
        return
    if align is None:
        print("note: no O_DIRECT alignment reported (tmpfs, or a kernel before 6.1);"
              " on tmpfs this read is copied inside io_submit(2)")
    buf = fastio.aligned_buffer(4096)  # page-aligned memory, as O_DIRECT needs
    ctx.prep_pread(fd, buf, 0, user_data="pread file")  # IOCB_CMD_PREAD at offset 0
    print(f"submitted {ctx.submit()} read; io_submit(2) returned, the device reads")
    c = reap(ctx)
    n = c.result()  # bytes read; a negative res would raise its OSError here
    print(f"completion {c.user_data!r}: res={c.res}")
    print(f"copied {n} bytes: {bytes(buf[:len(MESSAGE)])!r} + {n - len(MESSAGE)} zero bytes")


if not aio.available():  # e.g. fs.aio-max-nr reached, seccomp, no CONFIG_AIO
    print(f"skipped: Linux AIO is not available here: {aio.why_unavailable()}")
    raise SystemExit(0)

with aio.Context(8) as ctx:  # io_setup(2); io_destroy(2) at the end
    socket_poll(ctx)
    # A one-block file. /var/tmp is usually on disk; /tmp may be tmpfs.
    directory = "/var/tmp" if os.path.isdir("/var/tmp") else tempfile.gettempdir()
    with tempfile.NamedTemporaryFile(dir=directory) as f:
        f.write(MESSAGE.ljust(4096, b"\0"))
        f.flush()  # write(2), into the page cache
        os.fsync(f.fileno())  # to the disk now, so that io_submit(2) has nothing to flush
        try:
            fd = os.open(f.name, os.O_RDONLY | os.O_DIRECT)
        except OSError as exc:  # EINVAL: no O_DIRECT on this filesystem
            print(f"skipped: O_DIRECT is refused in {directory}: {exc}")
        else:
            try:
                direct_read(ctx, fd)
            finally:
                os.close(fd)
