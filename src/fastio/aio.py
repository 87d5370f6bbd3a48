"""Linux native AIO (``io_setup(2)``, ``io_submit(2)``, ``io_getevents(2)``,
``io_cancel(2)``), with no libaio. ``Context`` queues requests (``prep_*``),
submits them and reaps ``Completion`` objects; the constants keep the
kernel's names (``IOCB_CMD_PREAD``, ``IOCB_FLAG_RESFD``, ``RWF_NOWAIT``).

Truly asynchronous only with ``O_DIRECT`` files (and ``prep_poll``): see the
kernel facts in docs/aio.md. ``aligned_buffer()`` makes a buffer
fit for ``O_DIRECT``; ``dio_alignment(fd)`` says what alignment a file needs
(``(0, 0)``: no direct IO there). ``available()`` says whether Linux AIO works
here and ``why_unavailable()`` why not; ``FASTIO_DISABLE=aio`` switches it off.
"""

from typing import TYPE_CHECKING

from fastio import _backend
from fastio._abi.aio import (  # noqa: F401  (re-exported)
    IOCB_CMD_PREAD,
    IOCB_CMD_PWRITE,
    IOCB_CMD_FSYNC,
    IOCB_CMD_FDSYNC,
    IOCB_CMD_POLL,
    IOCB_CMD_NOOP,
    IOCB_CMD_PREADV,
    IOCB_CMD_PWRITEV,
    IOCB_FLAG_RESFD,
    IOCB_FLAG_IOPRIO,
    RWF_HIPRI,
    RWF_DSYNC,
    RWF_SYNC,
    RWF_NOWAIT,
    RWF_APPEND,
    aligned_buffer,
    dio_alignment,
)

if TYPE_CHECKING:
    from fastio._c.aio import Context, Completion, available, why_unavailable
else:
    _impl = _backend.load("aio")
    Context = _impl.Context
    Completion = _impl.Completion
    available = _impl.available
    why_unavailable = _impl.why_unavailable

__all__ = [
    "Context",
    "Completion",
    "available",
    "why_unavailable",
    "aligned_buffer",
    "dio_alignment",
    "IOCB_CMD_PREAD",
    "IOCB_CMD_PWRITE",
    "IOCB_CMD_FSYNC",
    "IOCB_CMD_FDSYNC",
    "IOCB_CMD_POLL",
    "IOCB_CMD_NOOP",
    "IOCB_CMD_PREADV",
    "IOCB_CMD_PWRITEV",
    "IOCB_FLAG_RESFD",
    "IOCB_FLAG_IOPRIO",
    "RWF_HIPRI",
    "RWF_DSYNC",
    "RWF_SYNC",
    "RWF_NOWAIT",
    "RWF_APPEND",
]
