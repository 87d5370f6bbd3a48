"""Stubs for fastio._c._uring_layout (the tests' view of the compiled ABI)."""

from typing import Any

def _abi_layout() -> dict[str, Any]: ...
