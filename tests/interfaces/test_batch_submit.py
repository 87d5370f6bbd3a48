"""How read_batch hands its reads to the kernel (issue 12).

A submit of more than two requests plugs the block layer (io_uring's and
aio's PLUG_THRESHOLD): the requests reach the device only at the end of the
call. After a burst of completions the device then idles while the whole
refill is issued, which is what kept O_DIRECT reads a fifth behind fio. So
read_batch gives a device its reads two at a time; when the reads finish
inside the submit (the page cache), there is no device to keep busy and one
submit per refill stays. These tests count the system calls a batch makes,
which is the behaviour itself (speed is for bench/direct_bench.py).
"""

import array
import mmap

import pytest

from fastio._bench import syscount
from fastio._bench.files import direct_io_problem

pytestmark = pytest.mark.skipif(not syscount.available(),
                                reason=f"cannot count system calls here: {syscount.why_unavailable()}")

BS = 4096
N = 64          # blocks per batch
DEPTH = 32


def _offsets():
    # every block of the 1 MiB file once, in a scattered order
    return array.array("q", ((i * 37) % (1 << 20 // BS) * BS for i in range(N)))


def _counted_batch(obj, fd, data):
    buf = mmap.mmap(-1, N * BS)          # page aligned, as O_DIRECT needs
    offs = _offsets()
    try:
        with syscount.SyscallCounter() as sc:
            res = obj.read_batch(fd, buf, offs, BS, depth=DEPTH)
        assert list(res) == [BS] * N
        for i, off in enumerate(offs):
            assert buf[i * BS:(i + 1) * BS] == data[off:off + BS], f"block {i}"
        return sc.count
    finally:
        buf.close()


def test_uring_direct_batch_submits_a_few_at_a_time(backend, direct_fd, aio_datafile):
    why = direct_io_problem(str(aio_datafile[0].parent))
    if why:
        pytest.skip(f"no device behind O_DIRECT here: {why}")   # (tmpfs serves it from memory)
    fd, data = direct_fd
    with backend.Ring(DEPTH) as ring:
        count = _counted_batch(ring, fd, data)
    # The first refill alone is 32 reads in pairs: 15 submits and the wait
    # that submits the last pair. The split stops early only when every read
    # sent so far is already done a moment after its submit, which no device
    # does (it needs microseconds per read). One plugged submit per refill
    # made 2-6 calls here.
    assert count >= DEPTH // 2, f"{count} system calls for {N} O_DIRECT reads"


def test_aio_direct_batch_submits_a_few_at_a_time(backend, direct_fd):
    fd, data = direct_fd
    with backend.Context(DEPTH) as ctx:
        count = _counted_batch(ctx, fd, data)
    # 64 reads, two per io_submit: 32 submits, plus the waits and the fcntl
    assert count >= N // 2, f"{count} system calls for {N} O_DIRECT reads"


def test_uring_page_cache_batch_submits_each_refill_at_once(backend, datafile):
    fd, data = datafile
    with backend.Ring(DEPTH) as ring:
        _counted_batch(ring, fd, data)           # warm the file
        count = _counted_batch(ring, fd, data)
    # Cached reads finish inside the first pair's submit: the rest of each
    # refill goes in one call. In pairs it would be at least 32 calls.
    assert count <= 12, f"{count} system calls for {N} cached reads"


def test_aio_buffered_batch_submits_each_refill_at_once(backend, datafile):
    fd, data = datafile
    with backend.Context(DEPTH) as ctx:
        count = _counted_batch(ctx, fd, data)
    assert count <= 12, f"{count} system calls for {N} buffered reads"
