"""Stubs for the compiled load generator and reference echo server (``fastio/_c/_loadgen.pyx``)."""

import os
from typing import Any

from fastio._typing import FileDescriptorLike

def run(
    family: int,
    address: tuple[Any, ...] | str | bytes | os.PathLike[str] | os.PathLike[bytes],
    connections: int,
    size: int,
    depth: int,
    duration: float,
    requests: int,
    warmup: float,
    timeout: float,
) -> dict[str, float]: ...
def serve(listen_fd: FileDescriptorLike, wake_fd: FileDescriptorLike) -> dict[str, int]: ...
def serve_uring(listen_fd: FileDescriptorLike, wake_fd: FileDescriptorLike) -> dict[str, int]: ...
def serve_threads(listen_fd: FileDescriptorLike, wake_fd: FileDescriptorLike) -> dict[str, int]: ...
