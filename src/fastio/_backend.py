"""Backend selection: which implementation (``c`` or ``pure``) serves the
public modules.

``FASTIO_BACKEND`` is read once, on first use: ``c`` forces the compiled
backend (an ImportError saying why if it cannot be imported), ``pure`` the
stdlib + ctypes one; unset or empty means ``c``, falling back to ``pure`` with
a RuntimeWarning that carries the import error. Any other value warns and is
treated as unset.
"""

from __future__ import annotations

import importlib
import os
import warnings
from types import ModuleType

BACKENDS = ("c", "pure")

_chosen: str | None = None


def _import_c() -> None:
    try:
        importlib.import_module("fastio._c")
    except ImportError as exc:
        raise ImportError(
            f"fastio's compiled backend cannot be imported: {exc}. Reinstall fastio "
            "with a C compiler and the Python headers (python -m pip install .), or "
            "set FASTIO_BACKEND=pure"
        ) from exc


def name() -> str:
    """The backend in use, choosing it on the first call."""
    global _chosen
    if _chosen is not None:
        return _chosen
    wanted = os.environ.get("FASTIO_BACKEND", "")
    if wanted not in ("",) + BACKENDS:
        warnings.warn(
            f"FASTIO_BACKEND={wanted!r} is not one of {', '.join(BACKENDS)}; ignoring it",
            RuntimeWarning,
            stacklevel=3,
        )
        wanted = ""
    if wanted == "pure":
        _chosen = "pure"
    elif wanted == "c":
        _import_c()
        _chosen = "c"
    else:
        try:
            _import_c()
            _chosen = "c"
        except ImportError as exc:
            warnings.warn(f"{exc}; using the pure-Python backend", RuntimeWarning, stacklevel=3)
            _chosen = "pure"
    return _chosen


def load(module: str, backend: str | None = None) -> ModuleType:
    """The implementation module ``fastio._<backend>.<module>``."""
    return importlib.import_module(f"fastio._{backend or name()}.{module}")
