"""Extension modules of fastio's compiled backend; metadata lives in pyproject.toml."""

from Cython.Build import cythonize
from setuptools import Extension, setup

MODULES = ["epoll", "poll", "selectors", "sigio", "uring", "aio", "_loadgen"]

extensions = [
    Extension(
        f"fastio._c.{name}",
        [f"src/fastio/_c/{name}.pyx"],
        include_dirs=["csrc"],
        # No -march/-mcpu: wheels must run on any CPU of their architecture
        # (tests/test_build_flags.py checks the built modules).
        extra_compile_args=["-Wall", "-Wextra", "-std=gnu11"],
    )
    for name in MODULES
]

setup(
    ext_modules=cythonize(
        extensions,
        include_path=["src"],
        compiler_directives={"language_level": "3", "embedsignature": True},
    )
)
