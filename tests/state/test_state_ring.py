"""A hypothesis state machine over fastio.uring.Ring, on both backends:
random sequences of valid and invalid calls (prep_read/readv/write/nop/
timeout/poll_add/async_cancel/read_fixed with good fds, closed, negative and
huge ones, wrong and read-only buffer types, negative and huge offsets,
sizes and counts; submit, submit_and_wait, wait with timeouts, peek;
read_batch; linked timeouts; files and buffers registered and unregistered;
close and use after close) on rings of 1 to 64 entries (so a full SQ is
met), against a model of what each must do:

* a call with a bad argument raises the documented exception (TypeError for
  a wrong type, ValueError or OverflowError for a value out of range,
  ValueError on a closed ring, OSError with the kernel's errno) and queues
  nothing; a good one returns a request id;
* every request comes back exactly once, with the user_data it was given,
  and its res is what the model predicts: the byte count (and the bytes) of
  a read of a known file, the next bytes of the pipe's stream, -EBADF for a
  closed or unknown fd, -ETIME for a timeout, -ECANCELED once cancelled ...;
* nothing waits unbounded: every wait has a timeout, except where the model
  knows that enough requests complete by themselves.

The model (the argument tables, Req, RingModel's bookkeeping and checks) is
tests/helpers/ring_model.py. Examples and steps: see tests/helpers/fuzzing.py
(FASTIO_FUZZ_EXAMPLES=N for a long run).
"""

from __future__ import annotations

import array
import errno
import os
import random
import select

import pytest
from fuzzing import BADFD, Errno, Raised, attempt, fuzz_settings, make, mostly
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule, \
    run_state_machine_as_test
from ring_model import DATA, FDS, FLAGS, OFFSETS, READ_BUFS, SIZE, WRITE_BUFS, Req, RingModel, read_buf, \
    write_buf

from fastio import uring

pytestmark = pytest.mark.skipif(not uring.available(), reason=f"io_uring unusable: {uring.why_unavailable()}")

SETTINGS = fuzz_settings(examples=60, steps=50)


class RingMachine(RingModel, RuleBasedStateMachine):
    backend = None   # the backend namespace (conftest's fixture): set by machine_for()

    def __init__(self):
        super().__init__()
        self.tmpfds = []
        self.data_fd = self.open_data()
        self.scratch = self.open_scratch()
        self.r, self.w = os.pipe()
        self.tmpfds += [self.r, self.w]
        self.rings = []
        self.ring = None
        self.closed = False
        self.outstanding: dict = {}
        self.ids: dict = {}             # token -> request id
        self.clean_fixed: dict = {}     # fixed-read token -> no other fixed read overlapped it
        self.next_token = 0
        self.stream = bytearray()       # every byte written to the pipe ...
        self.consumed = 0               # ... and how many a read took
        self.pipe_reader = None         # the one pipe read in flight (its token)
        self.files = None               # registered fixed files (list of names) or None
        self.bufs = None                # registered buffers (list of bytearrays) or None
        self.backlog_unknown = False    # read_batch may have reaped completions
        self.skips = 0                  # CQE_SKIP_SUCCESS requests: one cancelled comes back, user_data None

    # -- set-up and teardown ------------------------------------------

    def open_data(self):
        path = os.path.join(TMP, "data")
        if not os.path.exists(path):
            with open(path, "wb") as f:
                f.write(DATA)
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self.tmpfds.append(fd)
        return fd

    def open_scratch(self):
        fd = os.open(os.path.join(TMP, f"scratch-{os.getpid()}-{id(self)}"),
                     os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        self.tmpfds.append(fd)
        return fd

    @initialize(entries=st.sampled_from([1, 2, 4, 8, 64]))
    def make_ring(self, entries):
        self.ring = make(self.backend.Ring, entries)
        self.rings.append(self.ring)

    def teardown(self):
        try:
            if self.ring is not None and not self.closed:
                self.drain()
        finally:
            for ring in self.rings:
                ring.close()
            for fd in self.tmpfds:
                os.close(fd)

    # -- rules: requests --------------------------------------------------

    @rule(fd=FDS, buf=mostly([k for k, v in READ_BUFS.items() if isinstance(v, int)],
                             [k for k, v in READ_BUFS.items() if not isinstance(v, int)]),
          offset=OFFSETS, flags=FLAGS)
    def prep_read(self, fd, buf, offset, flags):
        value, errors, kind = self.fd_arg(fd)
        bufobj, blen = read_buf(buf)
        if isinstance(blen, type):
            errors = errors + [blen]
        off, oerr, model_off = self.offset_arg(offset)
        errors = errors + oerr
        fl, ferr, fixed = self.flags_arg(flags, True)
        errors = errors + ferr
        if fixed:
            # the fd is an index into the registered files
            # index 0 is the data file in every registration; 5 is never
            # registered. (Never the pipe: a read queued before the files
            # change reads what is registered when it is submitted.)
            if kind in ("data", "scratch", "pipe", "pipe-w") or kind == "bad":
                value = 0 if kind == "data" else 5
                if self.files is None or value >= len(self.files):
                    kind = "bad"
                else:
                    kind = self.files[value]
        if kind == "pipe" and self.pipe_reader is not None:
            return          # one pipe reader at a time keeps the stream model exact
        if kind == "pipe-w":
            kind = "bad"
        length = blen if isinstance(blen, int) else 0
        prompt = kind != "pipe" or self.consumed < len(self.stream)
        req = Req("pipe-read" if kind == "pipe" else "read",
                  self.read_check(bufobj, length, model_off, kind), prompt)
        if kind == "pipe" and length == 0:
            req = Req("read", lambda res, c: None, True)     # an empty read of a pipe: 0 at once
        req.fixed_file = fixed
        req.length = length
        tok = self.queue(self.ring.prep_read, value, bufobj, off, errors=errors, req=req, flags=fl)
        if tok is not None and req.kind == "pipe-read":
            self.pipe_reader = tok
        if tok is not None and fl & uring.IOSQE_ASYNC:
            req.linked = True       # io-wq may return -EINTR on a cancel; harmless here

    @rule(fd=FDS, n=st.integers(0, 3), bad=st.sampled_from([None, None, "bytes", "not a list"]),
          offset=OFFSETS)
    def prep_readv(self, fd, n, bad, offset):
        value, errors, kind = self.fd_arg(fd)
        bufs = [bytearray(random.Random(n).choice([1, 10, 300])) for _ in range(n)]
        if bad == "bytes":
            bufs.append(b"read-only")
            errors = errors + [TypeError]
        if n == 0 and bad is None:
            errors = errors + [ValueError]
        off, oerr, model_off = self.offset_arg(offset)
        errors = errors + oerr
        arg = 7 if bad == "not a list" else bufs
        if bad == "not a list":
            errors = errors + [TypeError]
        if kind == "pipe" and self.pipe_reader is not None:
            return
        if kind == "pipe-w":
            kind = "bad"
        length = sum(len(b) for b in bufs)
        req = Req("pipe-read" if kind == "pipe" else "read", self.read_check(bufs, length, model_off, kind),
                  kind != "pipe" or self.consumed < len(self.stream))
        tok = self.queue(self.ring.prep_readv, value, arg, off, errors=errors, req=req)
        if tok is not None and req.kind == "pipe-read":
            self.pipe_reader = tok

    @rule(fd=mostly(["scratch", "scratch", "data", "bad number", "closed number"],
                    ["negative", "str", "too big"]),
          buf=mostly([k for k, v in WRITE_BUFS.items() if isinstance(v, int)],
                     [k for k, v in WRITE_BUFS.items() if not isinstance(v, int)]), offset=OFFSETS)
    def prep_write(self, fd, buf, offset):
        value, errors, kind = self.fd_arg(fd)
        bufobj, blen = write_buf(buf)
        if isinstance(blen, type):
            errors = errors + [blen]
        off, oerr, _ = self.offset_arg(offset)
        errors = errors + oerr

        def check(res, c):
            if kind == "scratch":
                assert res == blen, f"write of {blen}: res {res}"
            else:   # a read-only or closed fd
                assert res == -errno.EBADF, f"write to {kind}: res {res}"
        self.queue(self.ring.prep_write, value, bufobj, off, errors=errors, req=Req("write", check))

    @rule(skip=st.booleans(), with_data=st.booleans(), flags=FLAGS)
    def prep_nop(self, skip, with_data, flags):
        fl, errors, fixed = self.flags_arg(flags, False)
        if fixed:
            fl = 0
        kwargs = {}
        if skip:
            fl = fl | uring.IOSQE_CQE_SKIP_SUCCESS if isinstance(fl, int) else fl
            if with_data:
                errors = errors + [ValueError]
            else:
                kwargs["user_data"] = None
        self.queue(self.ring.prep_nop, errors=errors, flags=fl,
                   req=Req("nop", lambda res, c: self.expect(res == 0, f"nop res {res}")), **kwargs)

    def expect(self, cond, what):
        assert cond, what

    @rule(seconds=mostly([0, 0.0, 1e-6, 0.0005, 0.001], ["1", None, -1, -0.5, float("nan"), 1e300]),
          count=mostly([0, 1, 2], [-1, 2**32, 1.5]))
    def prep_timeout(self, seconds, count):
        errors = []
        if isinstance(seconds, str):
            errors.append(TypeError)
        elif seconds is None or seconds != seconds or seconds < 0:   # None: forever, refused
            errors.append(ValueError)
        elif seconds == 1e300:
            errors.append(OverflowError)
        if isinstance(count, float):
            errors.append(TypeError)
        elif count < 0 or count >= 2**32:
            errors.append(OverflowError)

        def check(res, c):
            assert res in (-errno.ETIME, 0), f"timeout res {res}"
        self.queue(self.ring.prep_timeout, seconds, count, errors=errors, req=Req("timeout", check))

    @rule(fd=FDS, mask=mostly([select.POLLIN, select.POLLOUT, select.POLLIN | select.POLLOUT],
                              [-1, 2**32, 1.0]))
    def prep_poll_add(self, fd, mask):
        value, errors, kind = self.fd_arg(fd)
        if isinstance(mask, float):
            errors = errors + [TypeError]
        elif not 0 <= mask < 2**32:
            errors = errors + [OverflowError]
        want = mask if isinstance(mask, int) and mask >= 0 else 0

        def check(res, c):
            if kind == "bad":
                assert res == -errno.EBADF, f"poll of a bad fd: res {res}"
            else:
                assert res > 0 and res & (want | select.POLLERR | select.POLLHUP), f"poll res {res:#x}"
        # a poll of the pipe's read end waits for data a pipe read may take first
        prompt = kind in ("bad", "data", "scratch") or bool(kind == "pipe-w" and want & select.POLLOUT)
        self.queue(self.ring.prep_poll_add, value, mask, errors=errors, req=Req("poll", check, prompt))

    @rule(which=st.sampled_from(["outstanding", "outstanding", "stale", "garbage", "any", "all", "str",
                                 "float", "fd"]))
    def prep_async_cancel(self, which):
        errors = []
        kwargs = {}
        target = None
        if which == "outstanding" and self.outstanding:
            tok = random.Random(self.next_token).choice(sorted(self.outstanding))
            target = self.ids[tok]
            self.outstanding[tok].cancelled = True
        elif which in ("stale", "garbage", "outstanding"):
            target = 12345 if which == "stale" else -1
        elif which == "any":
            pass
        elif which == "all":
            kwargs["cancel_flags"] = uring.ASYNC_CANCEL_ALL
        elif which == "str":
            target = "x"
            errors.append(TypeError)
        elif which == "float":
            target = 1.0
            errors.append(TypeError)
        elif which == "fd":
            kwargs["fd"] = self.r
        if which in ("any", "all", "fd") and not errors:
            for req in self.outstanding.values():
                req.cancelled = True        # any of them may be the one cancelled

        def check(res, c):
            assert res >= 0 or res in (-errno.ENOENT, -errno.EALREADY, -errno.EINVAL), f"cancel res {res}"
        args = () if which in ("any", "all", "fd") else (target,)
        self.queue(self.ring.prep_async_cancel, *args, errors=errors, req=Req("cancel", check), **kwargs)

    @precondition(lambda self: not self.closed)
    @rule(seconds=st.sampled_from([1e-6, 0.001]), data_first=st.booleans())
    def linked_pipe_read(self, seconds, data_first):
        """A pipe read cut short by a linked timeout (both SQEs in one
        submission: only when the SQ has room for two)."""
        # (not preconditions: whether a pipe read is still in flight
        # depends on timing, and hypothesis must draw the same way on replay)
        if self.pipe_reader is not None or self.ring.sq_entries - self.ring.sq_ready < 2:
            return
        if data_first:
            self.write_pipe(b"linked")
        buf = bytearray(4)
        req = Req("pipe-read", self.read_check(buf, 4, None, "pipe"),
                  prompt=True)
        req.linked = True
        tok = self.queue(self.ring.prep_read, self.r, buf, -1, errors=[], req=req, flags=uring.IOSQE_IO_LINK)
        self.pipe_reader = tok

        def check(res, c):
            assert res in (-errno.ETIME, -errno.ECANCELED, -errno.EALREADY, -errno.ENOENT, 0), f"link timeout res {res}"
        self.queue(self.ring.prep_link_timeout, seconds, errors=[], req=Req("link-timeout", check))

    # -- rules: files and buffers -----------------------------------------

    @rule(which=st.sampled_from(["data+pipe", "with -1", "bad", "str", "negative", "empty"]))
    def register_files(self, which):
        names = {"data+pipe": ["data", "pipe"], "with -1": ["data", None], "empty": []}.get(which)
        errors = [ValueError] if self.closed else []
        fds = {"bad": [BADFD], "str": ["0"], "negative": [-2]}.get(which)
        if fds is None:
            fds = [self.data_fd if n == "data" else self.r if n == "pipe" else -1 for n in names]
        if which == "bad":
            errors.append(Errno(errno.EBADF))
        elif which == "str":
            errors.append(TypeError)
        elif which == "negative":
            errors.append(ValueError)
        elif which == "empty":
            errors.append(Errno(errno.EINVAL))
        if self.files is not None:
            errors.append(Errno(errno.EBUSY))
        result = attempt(self.ring.register_files, fds, errors=errors)
        if not isinstance(result, Raised):
            self.files = [n or "bad" for n in names]
            self.files_changed()

    def files_changed(self):
        """A fixed-file read still queued reads whatever is registered
        when it is submitted."""
        for req in self.outstanding.values():
            if req.fixed_file:
                req.ambiguous = True

    @rule()
    def unregister_files(self):
        errors = [ValueError] if self.closed else []
        if self.files is None:
            errors.append(Errno(errno.ENXIO))
        if not isinstance(attempt(self.ring.unregister_files, errors=errors), Raised):
            self.files = None
            self.files_changed()

    @rule(which=st.sampled_from(["one", "two", "bytes", "empty list", "zero length"]))
    def register_buffers(self, which):
        bufs = {"one": [bytearray(4096)], "two": [bytearray(100), bytearray(2000)], "bytes": [b"ro"],
                "empty list": [], "zero length": [bytearray()]}[which]
        errors = [ValueError] if self.closed else []
        if self.bufs is not None:
            errors.append(Errno(errno.EBUSY))
        errors += {"bytes": [TypeError], "empty list": [ValueError], "zero length": [Errno()]}.get(which, [])
        if not isinstance(attempt(self.ring.register_buffers, bufs, errors=errors), Raised):
            self.bufs = bufs

    @rule()
    def unregister_buffers(self):
        errors = [ValueError] if self.closed else []
        if self.bufs is None:
            errors.append(Errno(errno.ENXIO))
        # a fixed read not yet reaped keeps them (read_batch may have reaped it)
        maybe = [Errno(errno.EBUSY)] if any(r.kind == "fixed" for r in self.outstanding.values()) else []
        if not isinstance(attempt(self.ring.unregister_buffers, errors=errors, maybe=maybe), Raised):
            self.bufs = None

    @precondition(lambda self: self.bufs is not None or self.closed)
    @rule(index=mostly([0], [1, 2, -1, 1.0]), offset=st.integers(0, SIZE),
          nbytes=mostly([None, 0, 10, 100], [5000, -1, 2**64, 1.5]),
          buf_offset=mostly([0, 50], [-1, 10**6, 2**63, "0"]))
    def prep_read_fixed(self, index, offset, nbytes, buf_offset):
        errors = []
        for v in (index, nbytes, buf_offset):
            if isinstance(v, (float, str)):
                errors.append(TypeError)
        if buf_offset == 2**63 or nbytes == 2**64:
            errors.append(OverflowError)
        length = 0
        if self.bufs is None or not isinstance(index, int) or not 0 <= index < len(self.bufs):
            errors.append(ValueError)
        elif isinstance(buf_offset, int) and (nbytes is None or isinstance(nbytes, int)):
            size = len(self.bufs[index])
            n = size - buf_offset if nbytes is None else nbytes
            if buf_offset < 0 or n < 0 or buf_offset > size or n > size - buf_offset:
                errors.append(ValueError)
            length = n
        bufs, idx, boff = self.bufs, index, buf_offset
        tok = None

        def check(res, c):
            want = max(0, min(length, SIZE - offset))
            assert res == want, f"read_fixed of {length} at {offset}: res {res}, wanted {want}"
            if self.clean_fixed.pop(tok, False):
                assert bytes(bufs[idx][boff:boff + res]) == DATA[offset:offset + res], "read_fixed bytes"
        others = [t for t, r in self.outstanding.items() if r.kind == "fixed"]
        tok = self.queue(self.ring.prep_read_fixed, self.data_fd, index, offset, errors=errors,
                         nbytes=nbytes, buf_offset=buf_offset, req=Req("fixed", check))
        if tok is not None:
            self.clean_fixed[tok] = not others
            for t in others:
                self.clean_fixed[t] = False

    # -- rules: submission and completion -----------------------------------

    @rule()
    def submit(self):
        result = attempt(self.ring.submit, errors=[ValueError] if self.closed else [])
        if not isinstance(result, Raised):
            assert result >= 0 and self.ring.sq_ready == 0, f"submit() {result}, sq_ready {self.ring.sq_ready}"

    @rule(n=mostly([0, 1, 2], [-1, 2**31, 1.5]))
    def submit_and_wait(self, n):
        errors = [ValueError] if self.closed else []
        if isinstance(n, float):
            errors.append(TypeError)
        elif n < 0:
            errors.append(ValueError)
        elif n >= 2**31:
            errors.append(OverflowError)
        elif self.backlog_unknown or n > self.prompt_count():
            return          # it would wait for completions that may never come
        attempt(self.ring.submit_and_wait, n, errors=errors)

    @rule(n=mostly([0, 1, 2, 3], [-1, 1.5, 2**31]),
          timeout=mostly([0, 0.0, 0.001, 0.02, None, -1], [float("nan"), "1"]))
    def wait(self, n, timeout):
        errors = [ValueError] if self.closed else []
        if isinstance(n, float):
            errors.append(TypeError)
        elif n < 0:
            errors.append(ValueError)
        elif n >= 2**31:
            errors.append(OverflowError)
        if isinstance(timeout, str):
            errors.append(TypeError)
        elif timeout is not None and timeout != timeout:
            errors.append(ValueError)
        if (timeout is None or (isinstance(timeout, (int, float)) and timeout < 0)) and not errors:
            if n > self.prompt_count() or any(r.cancelled for r in self.outstanding.values()):
                timeout = 0.05          # unbounded only where the model is sure
        result = attempt(self.ring.wait, n, timeout=timeout, errors=errors)
        if not isinstance(result, Raised):
            self.backlog_unknown = False
            self.take(result)

    @rule()
    def peek(self):
        result = attempt(self.ring.peek, errors=[ValueError] if self.closed else [])
        if not isinstance(result, Raised):
            self.backlog_unknown = False
            self.take(result)

    @rule(fd=mostly(["data", "data", "bad number"], ["negative", "str"]),
          n=st.integers(0, 6), size=mostly([1, 100, 512], [0, -1, 2**33, 2**63, 1.5]),
          bad=st.sampled_from([None, None, None, "negative offset", "float offset", "buf too small",
                               "read-only buf", "results", "bad results", "array offsets",
                               "negative array offset"]),
          depth=st.sampled_from([0, 1, 3]))
    def read_batch(self, fd, n, size, bad, depth):
        value, errors, kind = self.fd_arg(fd)
        rng = random.Random(n * 7 + depth)
        offsets = [rng.randrange(0, SIZE + 50) for _ in range(n)]
        if isinstance(size, float):
            errors = errors + [TypeError]
        elif size >= 2**63:
            errors = errors + [OverflowError]
        elif not 0 < size <= 0xFFFFFFFF:
            errors = errors + [ValueError]
        isize = size if isinstance(size, int) and 0 < size < 2**20 else 1
        buf = bytearray(max(n * isize, 1))
        results = None
        if bad in ("negative offset", "negative array offset") and n:
            offsets[0] = -5
            errors = errors + [ValueError]
        elif bad == "float offset" and n:
            offsets[0] = 0.5
            errors = errors + [TypeError]
        elif bad == "buf too small" and n:
            buf = bytearray(n * isize - 1)
            errors = errors + [ValueError]
        elif bad == "read-only buf":
            buf = bytes(len(buf))
            errors = errors + [TypeError]
        elif bad == "results":
            results = array.array("i", [0] * n)
        elif bad == "bad results":
            results = array.array("d", [0.0] * max(n, 1))
            errors = errors + [TypeError]
        arg_offsets = array.array("q", offsets) if bad in ("array offsets", "negative array offset") else offsets
        if self.closed:
            errors = errors + [ValueError]
        inflight = None if self.closed else self.ring.inflight
        result = attempt(self.ring.read_batch, value, buf, arg_offsets, size, results, depth=depth,
                         errors=errors)
        if isinstance(result, Raised):
            if inflight is not None:
                assert self.ring.inflight == inflight, "a refused read_batch kept a slot"
            return
        self.backlog_unknown = True
        if results is not None:
            assert result is results
        res = list(result)
        assert len(res) == n
        for i, off in enumerate(offsets):
            if kind == "bad":
                assert res[i] == -errno.EBADF, f"read_batch of a bad fd: {res}"
            else:
                want = max(0, min(isize, SIZE - off))
                assert res[i] == want, f"read_batch[{i}] at {off}: {res[i]}, wanted {want}"
                assert buf[i * isize:i * isize + want] == DATA[off:off + want], "read_batch bytes"

    # -- rules: the pipe, close ---------------------------------------------

    @rule(data=st.binary(min_size=1, max_size=20))
    def write_to_pipe(self, data):
        if len(self.stream) - self.consumed < 4096:
            self.write_pipe(data)

    @precondition(lambda self: not self.closed)
    @rule(drain_first=st.booleans(), reopen=mostly([True], [False]),
          entries=st.sampled_from([1, 8, 64]))
    def close(self, drain_first, reopen, entries):
        """Close (with requests in flight unless drain_first); every
        call then refuses the ring; mostly, go on with a new one."""
        if drain_first:
            self.drain()
        self.ring.close()
        self.closed = True
        assert self.ring.closed and self.ring.inflight == 0
        # close() discarded what was in flight; a pipe read it cancelled
        # may have taken bytes first: start the stream model again.
        self.outstanding.clear()
        self.pipe_reader = None
        os.set_blocking(self.r, False)
        try:
            while os.read(self.r, 65536):
                pass
        except BlockingIOError:
            pass
        os.set_blocking(self.r, True)
        self.stream = bytearray()
        self.consumed = 0
        self.files = self.bufs = None
        self.backlog_unknown = False
        self.skips = 0
        for call in self.CLOSED_CALLS:
            self.use_after_close(call)
        if reopen:
            self.reopen(entries)

    CLOSED_CALLS = ["prep_nop", "submit", "wait", "peek", "fileno", "sq_ready", "cq_ready",
                    "register_files", "probe", "close", "closed", "inflight"]

    @precondition(lambda self: self.closed)
    @rule(call=st.sampled_from(CLOSED_CALLS))
    def use_after_close(self, call):
        ring = self.ring
        if call == "close":
            ring.close()
            return
        if call == "closed":
            assert ring.closed is True
            return
        if call == "inflight":
            assert ring.inflight == 0
            return
        calls = {"prep_nop": lambda: ring.prep_nop(), "submit": ring.submit, "wait": lambda: ring.wait(0, 0),
                 "peek": ring.peek, "fileno": ring.fileno, "sq_ready": lambda: ring.sq_ready,
                 "cq_ready": lambda: ring.cq_ready, "register_files": lambda: ring.register_files([0]),
                 "probe": ring.probe}
        attempt(calls[call], errors=[ValueError])

    @precondition(lambda self: self.closed)
    @rule(entries=st.sampled_from([1, 8, 64]))
    def reopen(self, entries):
        self.ring = make(self.backend.Ring, entries)
        self.rings.append(self.ring)
        self.closed = False

    @precondition(lambda self: not self.closed)
    @rule()
    def drain_all(self):
        self.drain()
        assert self.ring.inflight == 0, f"inflight {self.ring.inflight} with nothing outstanding"

    # -- invariants -------------------------------------------------------

    @invariant()
    def consistent(self):
        if self.ring is None or self.closed:
            return
        assert 0 <= self.ring.sq_ready <= self.ring.sq_entries
        assert self.ring.inflight <= len(self.outstanding), \
            f"inflight {self.ring.inflight} > {len(self.outstanding)} requests not yet reaped"
        assert self.consumed <= len(self.stream)


def machine_for(backend):
    """RingMachine bound to ``backend`` (a subclass per backend: hypothesis keeps rules per class)."""
    return type(f"RingMachine_{backend.name}", (RingMachine,), {"backend": backend})


TMP = None


@pytest.fixture
def tmpdir_for_machine(tmp_path):
    global TMP
    TMP = str(tmp_path)
    yield
    TMP = None


def test_ring_state_machine(backend, tmpdir_for_machine):
    run_state_machine_as_test(machine_for(backend), settings=SETTINGS)
