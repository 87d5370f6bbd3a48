"""The lock a pure-backend Ring or Context takes around each of its calls.

The compiled backend has the GIL to keep two threads out of the ring's
memory at once; the pure one takes this lock. It refuses re-entry from the
thread that holds it (a signal handler, or a finalizer run when a call
releases a buffer, using the object again) with RuntimeError where a plain
lock would deadlock.

``with self._lock():`` checks, then enters the RLock itself: its acquire
and release are C calls the ``with`` statement makes, so no Python code (a
signal handler that raises) runs between taking the lock and the block that
gives it back. A lock whose acquire or release was Python code could be left
held by an interrupted call, and the next call hung, or raised "used
re-entrantly", for ever.
"""

from __future__ import annotations

import threading


class CallLock:
    """CallLock(what): ``what`` names the object in the re-entry error."""

    __slots__ = ("_lock", "_what")

    def __init__(self, what: str):
        self._lock = threading.RLock()
        self._what = what

    def owned(self) -> bool:
        """Held by the calling thread."""
        return self._lock._is_owned()

    def __call__(self):
        if self._lock._is_owned():
            raise RuntimeError(f"{self._what} used re-entrantly (from a signal handler or a finalizer "
                               "running inside one of its own calls)")
        return self._lock
