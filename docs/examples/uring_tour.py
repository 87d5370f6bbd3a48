"""A tour of fastio.uring.Ring: queue, submit, reap, errors, the batch path
(docs/guide/uring.md)."""

import os
import tempfile

from fastio import uring

if not uring.available():  # kernel.io_uring_disabled, a seccomp filter ...
    print(f"skipped: io_uring is not available here: {uring.why_unavailable()}")
    raise SystemExit(0)

with tempfile.NamedTemporaryFile() as tmp:
    tmp.write(os.urandom(4 * 4096))
    tmp.flush()
    with uring.Ring(64) as ring:
        fd = os.open(tmp.name, os.O_RDONLY)
        buf = bytearray(4096)
        ring.prep_read(fd, buf, 0, user_data="file")  # queued, not yet submitted
        ring.prep_timeout(0.01, user_data="tick")
        for c in ring.wait(2):  # submit + wait for 2 completions
            print(c.user_data, c.res)  # "file 4096", then "tick -62" (-ETIME)
        ring.prep_openat(-100, "/nonexistent")  # -100: AT_FDCWD
        try:
            ring.wait()[0].result()  # a negative res raises its OSError
        except FileNotFoundError as exc:
            print("openat:", exc)
        # the batch path: many reads of one file in one call, the GIL released meanwhile
        print("read_batch:", ring.read_batch(fd, bytearray(4 * 4096), [0, 4096, 8192, 12288], 4096, depth=32))
        os.close(fd)
        names = sorted(uring.OPCODE_NAMES[op] for op in ring.probe() if op < len(uring.OPCODE_NAMES))
        print(f"the kernel supports {len(names)} opcodes, READ among them: {'READ' in names}")
