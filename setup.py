"""Extension modules of fastio's compiled backend; metadata lives in pyproject.toml."""

import glob
import os

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_py import build_py

MODULES = [
    "epoll", "poll", "selectors", "sigio", "_inflight",
    "_uring_types", "_uring_core", "_uring_register", "uring", "_uring_layout",
    "_aio_core", "aio", "_aio_layout", "_loadgen",
    "_loop_handles", "_loop_engine", "_loop_core", "_loop_epoll", "_loop_uring", "_loop_transport",
    "_fileio",
]
SANITIZERS = {"address", "undefined"}


def debug_flags():
    """Instrumented builds, never for wheels: FASTIO_SANITIZE=address,undefined
    (any subset; tools/sanitize) and FASTIO_DEBUG=1 (-O0 -g). They come after
    CPython's own flags, so their -O wins. Returns (compile, link) args."""
    wanted = [s.strip() for s in os.environ.get("FASTIO_SANITIZE", "").split(",") if s.strip()]
    unknown = sorted(set(wanted) - SANITIZERS)
    if unknown:
        raise SystemExit(f"FASTIO_SANITIZE: unknown {','.join(unknown)} (use any of: address,undefined)")
    debug = os.environ.get("FASTIO_DEBUG", "")
    if debug not in ("", "0", "1"):
        raise SystemExit(f"FASTIO_DEBUG={debug!r}: use 1 (or 0/unset)")
    args = []
    if wanted:
        args = [f"-fsanitize={','.join(wanted)}", "-fno-omit-frame-pointer", "-g", "-O1"]
        if "undefined" in wanted:
            args.append("-fno-sanitize-recover=undefined")  # a UBSan report ends the process
    if debug == "1":
        args += ["-g", "-O0"]
    link = [a for a in args if a.startswith("-fsanitize") or a.startswith("-fno-sanitize")]
    return args, link


COMPILE, LINK = debug_flags()
# Cython and the C compiler run one module per CPU: uring.pyx alone is about
# 40% of a serial build, so two CPUs cut an install to about 60% of the time.
JOBS = len(os.sched_getaffinity(0))

extensions = [
    Extension(
        f"fastio._c.{name}",
        [f"src/fastio/_c/{name}.pyx"],
        include_dirs=["csrc"],
        # No -march/-mcpu: wheels must run on any CPU of their architecture
        # (tests/packaging/test_build_flags.py checks the built modules).
        extra_compile_args=["-Wall", "-Wextra", "-std=gnu11", *COMPILE],
        extra_link_args=LINK,
    )
    for name in MODULES
]



class build_py_with_headers(build_py):
    """The csrc/ headers go into the package as fastio/include/: the .pxd
    files that ship beside the modules name them, so a Cython module that
    cimports fastio._c.uring compiles against an installed wheel
    (fastio.get_include() says where they are)."""

    def run(self):
        super().run()
        target = os.path.join(self.build_lib, "fastio", "include")
        self.mkpath(target)
        for header in sorted(glob.glob("csrc/*.h")):
            self.copy_file(header, target)


setup(
    cmdclass={"build_py": build_py_with_headers},
    ext_modules=cythonize(
        extensions,
        include_path=["src"],
        compiler_directives={"language_level": "3", "embedsignature": True},
        nthreads=JOBS,
    ),
    options={"build_ext": {"parallel": JOBS}},
)
