"""Asynchronous file IO in an asyncio program: fastio.asyncio.open.

The reads and writes are io_uring requests (engine "uring"): the task that
awaits one is suspended while the kernel reads or writes, and the loop's
thread is free for other tasks. Requests of one loop turn go to the kernel
in one io_uring_enter; a read of cached pages completes inside it. Where
io_uring cannot be used, the engine is "thread" (the built-in file in the
loop's executor, as aiofiles does).

    python examples/asyncio_files.py
    strace -f -e trace=io_uring_enter,read,pread64 python examples/asyncio_files.py
"""

import asyncio
import os
import tempfile

import fastio.asyncio
import fastio.asyncio.os


async def main(directory: str) -> None:
    text = os.path.join(directory, "data.txt")
    async with fastio.asyncio.open(text, "w") as f:
        print(f"file engine: {f.engine}")
        await f.write("one\ntwo\n")
    async with fastio.asyncio.open(text) as f:
        lines = [line async for line in f]
    print(f"read {len(lines)} lines: {lines}")

    blob = os.path.join(directory, "data.bin")
    async with fastio.asyncio.open(blob, "w+b") as f:
        await f.pwrite(b"at offset 4096", 4096)
        # eight reads at once: one io_uring_enter submits them all
        blocks = await asyncio.gather(*(f.pread(512, 512 * i) for i in range(8)))
        print(f"pread at 4096: {await f.pread(14, 4096)!r}; 8 blocks of zeros: "
              f"{all(b == bytes(512) for b in blocks)}")
    st = await fastio.asyncio.os.stat(blob)
    print(f"size {st.st_size}, exists: {await fastio.asyncio.os.path.exists(blob)}")
    await fastio.asyncio.os.remove(blob)
    print(f"removed, exists: {await fastio.asyncio.os.path.exists(blob)}")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        fastio.asyncio.run(main(tmp))
