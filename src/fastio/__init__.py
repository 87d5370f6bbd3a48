"""fastio: the five IO models at kernel level for Python on Linux.

Public modules: ``fastio.epoll``, ``fastio.poll``, ``fastio.selectors``,
``fastio.asyncio``, ``fastio.uring``, ``fastio.aio``; ``fastio.aligned_buffer()``
makes a buffer fit for ``O_DIRECT``. ``fastio.backend`` says which implementation serves them:
``"c"`` (the compiled extension) or ``"pure"`` (stdlib + ctypes); set
``FASTIO_BACKEND=c|pure`` before import to force one.
"""

from fastio._errors import UnsupportedError
from fastio._abi.aio import aligned_buffer

__version__ = "0.1.0"
__all__ = ["UnsupportedError", "aligned_buffer", "backend", "__version__"]


def __getattr__(name):
    # Resolved on first use so that importing fastio._pure or fastio._c
    # directly (a benchmark comparing both) does not pick a backend.
    if name == "backend":
        from fastio import _backend

        return _backend.name()
    raise AttributeError(f"module 'fastio' has no attribute {name!r}")
