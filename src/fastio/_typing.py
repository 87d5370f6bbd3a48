"""Type aliases shared by the stubs and the pure backend."""

from typing import Protocol, Union


class HasFileno(Protocol):
    def fileno(self) -> int: ...


FileDescriptorLike = Union[int, HasFileno]
