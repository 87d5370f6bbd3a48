"""Kernel facts that do not depend on a backend: constants, struct layouts
(ctypes mirrors of the ``csrc/`` ABI headers, checked against them by
``tests/interfaces/test_abi.py``), the libc entries the probes use, and availability
probes. Both backends, the facades and the tools import from here; nothing
here imports a backend."""
