"""A tour of fastio.aio.Context on an O_DIRECT file: queue, submit, reap, a
misaligned request, the batch path (docs/guide/aio.md)."""

import os
import tempfile

import fastio
from fastio import aio

if not aio.available():  # fs.aio-max-nr reached, seccomp, no CONFIG_AIO
    print(f"skipped: Linux AIO is not available here: {aio.why_unavailable()}")
    raise SystemExit(0)

directory = "/var/tmp" if os.path.isdir("/var/tmp") else tempfile.gettempdir()
path = os.path.join(directory, f"fastio-docs-aio-{os.getpid()}")
try:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_DIRECT, 0o600)
except OSError as exc:
    print(f"skipped: O_DIRECT refused in {directory}: {exc}")
    raise SystemExit(0)
try:
    alignment = aio.dio_alignment(fd)
    print("alignment:", alignment)  # e.g. (512, 512); (0, 0): no O_DIRECT here
    if alignment == (0, 0):
        print(f"skipped: no direct IO in {directory}")
        raise SystemExit(0)
    buf = fastio.aligned_buffer(8192)  # page-aligned, writable, zero-filled
    buf[:5] = b"hello"
    with aio.Context(128) as ctx:
        ctx.prep_pwrite(fd, buf, 0, user_data="w")  # queued, not yet submitted
        print("submitted:", ctx.submit())  # 1: how many the kernel took
        print(ctx.getevents(1))  # [Completion(user_data='w', res=8192, res2=0)]
        if alignment is not None and alignment[1] > 1:
            ctx.prep_pread(fd, memoryview(buf)[:4096], 1)  # offset 1: misaligned for O_DIRECT
            try:
                ctx.getevents(1)[0].result()  # submits, waits, raises
            except OSError as exc:
                print("misaligned:", exc)
        # the batch path: many reads of one file in one call, the GIL released meanwhile
        print("read_batch:", ctx.read_batch(fd, fastio.aligned_buffer(2 * 4096), [0, 4096], 4096, depth=32))
finally:
    os.close(fd)
    os.unlink(path)
