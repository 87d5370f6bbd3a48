"""Stubs for the in-flight table shared by the compiled Ring and Context
(``fastio/_c/_inflight.pyx``); it is made and used from Cython only."""

from typing import final

@final
class InflightTable:
    inflight: int
