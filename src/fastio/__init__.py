"""fastio: the five IO models at kernel level for Python on Linux.

Public modules: ``fastio.epoll``, ``fastio.poll``, ``fastio.selectors``,
``fastio.asyncio``, ``fastio.uring``, ``fastio.aio``; ``fastio.aligned_buffer()``
makes a buffer fit for ``O_DIRECT``. ``fastio.backend`` says which implementation serves them:
``"c"`` (the compiled extension) or ``"pure"`` (stdlib + ctypes); set
``FASTIO_BACKEND=c|pure`` before import to force one.
``fastio.get_include()`` is the directory of the C headers that a Cython
module cimporting ``fastio._c.uring`` compiles against.
"""

from fastio._errors import UnsupportedError
from fastio._abi.aio import aligned_buffer

__version__ = "0.1.0"
__all__ = ["UnsupportedError", "aligned_buffer", "backend", "get_include", "__version__"]


def get_include() -> str:
    """The directory holding the C headers (``fio_*.h``) that fastio's
    ``.pxd`` files name: pass it as ``include_dirs`` when compiling a Cython
    module that cimports ``fastio._c.uring`` (see docs/uring.md). The
    ``.pxd`` files themselves are found on ``sys.path``, beside the modules.

    :raises FileNotFoundError: neither an installed copy nor a source
        checkout's ``csrc/`` is there.
    """
    import os

    here = os.path.dirname(os.path.abspath(__file__))
    # A wheel or a regular install carries them as fastio/include/ (setup.py);
    # an editable install imports from src/, beside the checkout's csrc/.
    for where in (os.path.join(here, "include"), os.path.join(here, os.pardir, os.pardir, "csrc")):
        if os.path.isfile(os.path.join(where, "fio_uring_ring.h")):
            return os.path.normpath(where)
    raise FileNotFoundError(f"fastio's C headers are not installed beside {here}: reinstall fastio")


def __getattr__(name):
    # Resolved on first use so that importing fastio._pure or fastio._c
    # directly (a benchmark comparing both) does not pick a backend.
    if name == "backend":
        from fastio import _backend

        return _backend.name()
    raise AttributeError(f"module 'fastio' has no attribute {name!r}")
