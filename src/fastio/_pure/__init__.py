"""The pure-Python backend: the same classes as ``fastio._c``, on the stdlib,
ctypes and mmap, calling the same kernel interfaces (slower, no compiler needed)."""
