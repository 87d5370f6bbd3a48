"""fastio's exceptions."""

import os

__all__ = ["UnsupportedError", "raise_for_res"]


class UnsupportedError(OSError):
    """The running kernel or sandbox lacks a feature; the message names the cause."""


def raise_for_res(res: int) -> int:
    """Return a non-negative kernel result; raise the OSError a negative one stands for."""
    if res < 0:
        raise OSError(-res, os.strerror(-res))
    return res
