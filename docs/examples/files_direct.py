"""An O_DIRECT file read through the aio engine of fastio.asyncio.open
(docs/guide/asyncio-files.md): Linux AIO is asynchronous for O_DIRECT files."""

import asyncio
import os
import tempfile

import fastio
import fastio.asyncio
from fastio import aio

if not aio.available():
    print(f"skipped: Linux AIO is not available here: {aio.why_unavailable()}")
    raise SystemExit(0)

directory = "/var/tmp" if os.path.isdir("/var/tmp") else tempfile.gettempdir()
path = os.path.join(directory, f"fastio-docs-direct-{os.getpid()}")
try:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_DIRECT, 0o600)
except OSError as exc:
    print(f"skipped: O_DIRECT refused in {directory}: {exc}")
    raise SystemExit(0)


async def main():
    # buffering=0: no Python buffer between the file and the kernel
    async with fastio.asyncio.open(fd, "r+b", buffering=0, engine="aio") as f:
        print("engine:", f.engine)
        block = fastio.aligned_buffer(4096)  # page-aligned, as O_DIRECT needs
        block[:5] = b"hello"
        print("wrote", await f.pwrite(block, 0))
        data = await f.pread(4096, 0)  # pread makes an aligned buffer itself
        print("read", len(data), "bytes:", data[:5])


try:
    if aio.dio_alignment(fd) == (0, 0):
        os.close(fd)
        print(f"skipped: no direct IO in {directory}")
    else:
        asyncio.run(main())  # the aio engine works on any running loop
finally:
    os.unlink(path)
