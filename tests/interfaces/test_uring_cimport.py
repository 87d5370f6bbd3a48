"""The ring as a C API: another Cython module cimports ``fastio._c.uring.Ring``
(through ``_uring_core.pxd``), queues SQEs, submits and reaps into its own
``handle_cqe`` with no Python call per request, which is what the compiled
event loop stands on. The module is compiled here, against the ``.pxd`` files
and the headers (``fastio.get_include()``) of the fastio under test: an
installed wheel must carry both."""

from __future__ import annotations

import importlib.util
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

import fastio
from fastio import uring

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("Cython") is None or importlib.util.find_spec("setuptools") is None,
                       reason="compiling a cimporting module needs Cython and setuptools (the test extra has both)"),
    pytest.mark.skipif(not uring.available(), reason=f"io_uring unusable: {uring.why_unavailable()}"),
]

CONSUMER = textwrap.dedent("""
    # cython: language_level=3
    from libc.stdint cimport uint32_t, uint64_t
    from fastio._c._inflight cimport Slot
    from fastio._c._uring cimport FIO_IORING_ENTER_GETEVENTS, fio_io_uring_cqe, fio_io_uring_sqe, fio_prep_nop
    from fastio._c.uring cimport Ring

    cdef class CountingRing(Ring):
        '''Counts NOP completions in C: no Completion object, no Python call.'''
        cdef public long long seen
        cdef public long long stale
        cdef public unsigned long long last_id

        cdef int handle_cqe(self, fio_io_uring_cqe *cqe, list out) except -1:
            cdef Slot *s = self.table.lookup(cqe.user_data)
            if s == NULL:
                self.stale += 1
                return 0
            self.seen += 1
            self.slot_release(<uint32_t>(cqe.user_data & 0xFFFFFFFF))
            return 0

        def run_nops(self, int n):
            cdef uint32_t idx
            cdef fio_io_uring_sqe *sqe
            cdef list unused = []
            cdef int i
            for i in range(n):
                idx = self.new_slot(None, 0, False)
                sqe = self.sqe_for(idx)
                fio_prep_nop(sqe)
                self.last_id = self.finish(idx, sqe, 0)
            self.submit_pending()
            while self.seen < n:
                self.enter(0, 1, FIO_IORING_ENTER_GETEVENTS, -1)
                self.reap(unused)
            return len(unused)
""")

SETUP = textwrap.dedent("""
    import sys
    from setuptools import Extension, setup
    from Cython.Build import cythonize
    setup(name="consumer", script_args=["build_ext", "--inplace", "-q"],
          ext_modules=cythonize([Extension("consumer", ["consumer.pyx"], include_dirs=[sys.argv[1]],
                                           extra_compile_args=["-Wall", "-Wextra"])],
                                quiet=True, compiler_directives={"language_level": 3}))
""")


@pytest.fixture(scope="module")
def consumer(tmp_path_factory):
    import fastio._c.uring as compiled
    where = tmp_path_factory.mktemp("cimport")
    (where / "consumer.pyx").write_text(CONSUMER)
    (where / "build.py").write_text(SETUP)
    # Cython finds fastio's .pxd files on sys.path: the package's parent.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(pathlib.Path(compiled.__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", "")]))
    # Under tools/sanitize the ASan runtime is preloaded into this process;
    # the compiler must not inherit it (gcc's cc1 crashes under it).
    for name in ("LD_PRELOAD", "ASAN_OPTIONS", "LSAN_OPTIONS", "UBSAN_OPTIONS"):
        env.pop(name, None)
    out = subprocess.run([sys.executable, "build.py", fastio.get_include()], cwd=where, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "warning:" not in out.stderr, out.stderr
    spec = importlib.util.spec_from_file_location(
        "consumer", next(p for p in where.iterdir() if p.name.startswith("consumer.") and p.suffix == ".so"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_cython_subclass_reaps_into_c(consumer):
    ring = consumer.CountingRing(64)
    try:
        # More than the SQ holds: the automatic submit on a full SQ runs too.
        assert ring.run_nops(200) == 0          # nothing went through Completion objects
        assert ring.seen == 200 and ring.stale == 0
        assert ring.inflight == 0
        assert ring.last_id & 0xFFFFFFFF < 200   # the id is (gen << 32) | slot
        # The Python API still works on the same object.
        ring.prep_nop(user_data="py")
        assert ring.wait(1, timeout=5) == []    # handled by the override, as every CQE is
        assert ring.seen == 201
    finally:
        ring.close()
    assert ring.closed


def test_close_still_drains_a_subclass(consumer):
    """close() reaps through the override too: a request queued from C and
    submitted is released before the ring goes."""
    ring = consumer.CountingRing(8)
    ring.prep_nop()
    ring.submit()
    ring.close()
    assert ring.inflight == 0 and ring.seen == 1
