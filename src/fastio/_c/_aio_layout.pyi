"""Stubs for fastio._c._aio_layout (tests/interfaces/test_abi.py)."""

from typing import Any

def _abi_layout() -> dict[str, Any]: ...
