"""The model tests/state/test_state_ring.py checks fastio.uring.Ring
against: the arguments its rules draw (good most of the time, bad often
enough: fuzzing.mostly) and what each must give, the buffer each label
stands for, ``Req`` (one request the model expects back) and ``RingModel``,
the bookkeeping of what the ring holds and what each completion must be.

RingModel is a mixin of RingMachine: the state it reads and keeps
(``ring``, ``closed``, the fds ``data_fd``, ``scratch``, ``r`` and ``w``,
``outstanding``, ``ids``, ``next_token``, ``stream``, ``consumed``,
``pipe_reader``, ``skips``) is set up by RingMachine.__init__."""

from __future__ import annotations

import array
import errno
import os
import random
import time

from fuzzing import BADFD, REFUSED_FDS, Errno, Raised, attempt, closed_fd_number, mostly
from hypothesis import strategies as st

from fastio import uring


SIZE = 8192
DATA = random.Random(11).randbytes(SIZE)
ECANCELED_OR_EINTR = (-errno.ECANCELED, -errno.EINTR)

# Read buffers: the good ones (length) and the refused ones (exception).
READ_BUFS = {
    "bytearray 0": 0, "bytearray 1": 1, "bytearray 100": 100, "bytearray 4096": 4096,
    "memoryview 64": 64, "array 32": 32,
    "bytes": TypeError, "memoryview of bytes": TypeError, "str": TypeError, "int": TypeError,
    "None": TypeError,
}
WRITE_BUFS = {"bytes 10": 10, "bytearray 100": 100, "memoryview of bytes 7": 7, "empty": 0,
              "str": TypeError, "int": TypeError, "None": TypeError}
# Offsets: None means "the file position" (-1); an exception type: refused.

# Arguments: good most of the time, bad often enough (fuzzing.mostly).
OFFSETS = mostly(st.one_of(st.integers(0, SIZE + 100), st.sampled_from(["eof", "position"])),
                 [-2, -(2**63), 2**63, 2**64, 1.5, "0"])
FDS = mostly(["data"] * 4 + ["scratch", "pipe", "pipe", "pipe write end", "bad number", "closed number"],
             list(REFUSED_FDS))
FLAGS = mostly([0, 0, 0, uring.IOSQE_ASYNC, "fixed"],
               [1 << 7, uring.IOSQE_BUFFER_SELECT, -1, 2**40, 1.0])


def read_buf(label):
    """A fresh buffer for label, and its length or the exception it gives."""
    kind = READ_BUFS[label]
    objs = {"bytes": b"read-only", "memoryview of bytes": memoryview(b"read-only"), "str": "text",
            "int": 12, "None": None}
    if label in objs:
        return objs[label], kind
    if label.startswith("memoryview"):
        return memoryview(bytearray(kind)), kind
    if label.startswith("array"):
        return array.array("b", bytes(kind)), kind
    return bytearray(kind), kind


def write_buf(label):
    kind = WRITE_BUFS[label]
    objs = {"str": "text", "int": 5, "None": None, "empty": b"",
            "bytes 10": b"0123456789", "bytearray 100": bytearray(100), "memoryview of bytes 7": memoryview(b"abcdefg")}
    return objs[label], kind


class Req:
    """One request the model expects back: ``check(res, completion)`` and
    whether it completes by itself, soon (``prompt``)."""

    def __init__(self, kind, check, prompt=True, target=None):
        self.kind = kind
        self.check = check
        self.prompt = prompt
        self.cancelled = False     # a cancel may have hit it: -ECANCELED/-EINTR allowed
        self.linked = False        # its link may be cut: -ECANCELED allowed
        self.fixed_file = False    # its fd is an index into the registered files ...
        self.ambiguous = False     # ... which changed before it was surely submitted


class RingModel:
    """What the ring must hold and return; see the module docstring."""

    def token(self):
        self.next_token += 1
        return ("req", self.next_token)

    def fd_arg(self, label):
        """(value, errors, kind) for an fd label: kind names what the
        kernel then sees ("data", "pipe", "bad" ...)."""
        if label in REFUSED_FDS:
            value, exc = REFUSED_FDS[label]
            return value, [exc], None
        if label == "data":
            return self.data_fd, [], "data"
        if label == "scratch":
            return self.scratch, [], "scratch"
        if label == "pipe":
            return self.r, [], "pipe"
        if label == "pipe write end":
            return self.w, [], "pipe-w"
        if label == "bad number":
            return BADFD, [], "bad"
        return closed_fd_number(), [], "bad"

    def flags_arg(self, flags, pins):
        """(value, errors, fixed) for a flags draw."""
        if flags == "fixed":
            return uring.IOSQE_FIXED_FILE, [], True
        if isinstance(flags, float):
            return flags, [TypeError], False
        if flags == 2**40:
            return flags, [OverflowError], False
        if flags in (1 << 7, uring.IOSQE_BUFFER_SELECT, -1):
            return flags, [ValueError], False
        return flags, [], False

    def offset_arg(self, offset):
        """(value, errors, offset to model or None for the position)."""
        if offset == "eof":
            return SIZE, [], SIZE
        if offset == "position":
            return -1, [], None
        if isinstance(offset, str) or isinstance(offset, float):
            return offset, [TypeError], None
        if offset < -1:
            return offset, [ValueError], None
        if offset >= 2**63:
            return offset, [OverflowError], None
        return offset, [], offset

    def queue(self, call, *args, errors, req=None, **kwargs):
        """Make the call; on success record req under its user_data."""
        if self.closed:
            errors = errors + [ValueError]
        sq_before = None if self.closed else self.ring.sq_ready
        inflight_before = None if self.closed else self.ring.inflight
        tok = self.token()
        kwargs.setdefault("user_data", tok)
        # a full SQ the kernel will not drain: OSError(EBUSY), nothing queued
        result = attempt(call, *args, errors=errors, maybe=[Errno(errno.EBUSY)], **kwargs)
        if isinstance(result, Raised):
            if not self.closed and not isinstance(result.exc, OSError):
                assert self.ring.inflight == inflight_before, "a refused prep kept a slot"
                assert self.ring.sq_ready in (sq_before, 0), "a refused prep queued an SQE"
            return None
        if kwargs["user_data"] is None:
            assert result is None, f"a CQE_SKIP_SUCCESS request has no id, got {result!r}"
            self.skips += 1
            return None
        assert isinstance(result, int) and result > 0, f"request id {result!r}"
        self.outstanding[tok] = req
        self.ids[tok] = result
        return tok

    def read_check(self, buf, length, offset, fixed_kind):
        """The check of a read of length bytes into buf (a list of
        buffers for readv) from what fixed_kind names."""
        bufs = buf if isinstance(buf, list) else [buf]

        def got_bytes(res):
            return b"".join(bytes(memoryview(b).cast("B")) for b in bufs)[:res]

        def check(res, c):
            if fixed_kind == "data":
                if offset is None:      # the file position: any run of the file
                    assert 0 <= res <= length, f"read res {res} of {length}"
                    assert res == 0 or got_bytes(res) in DATA
                else:
                    want = max(0, min(length, SIZE - offset))
                    assert res == want, f"read of {length} at {offset}: res {res}, wanted {want}"
                    assert got_bytes(res) == DATA[offset:offset + res], "wrong bytes"
            elif fixed_kind == "pipe":
                assert res > 0 or length == 0, f"pipe read res {res}"
                got = got_bytes(res)
                want = bytes(self.stream[self.consumed:self.consumed + res])
                assert got == want, f"pipe read got {got!r}, the stream has {want!r}"
                self.consumed += res
            elif fixed_kind in ("bad", "pipe-w", "scratch-w"):
                # a write-only or closed fd; the scratch file opened O_RDWR reads what was written
                assert res in (-errno.EBADF, -errno.EINVAL), f"read of a bad fd: res {res}"
            elif fixed_kind == "scratch":
                assert 0 <= res <= length, f"scratch read res {res}"
            else:
                raise AssertionError(fixed_kind)
        return check

    def take(self, completions):
        """Match completions to the outstanding requests and check each
        (all of them, then report the first failure, so that the model
        stays consistent for the teardown)."""
        failures = []
        for c in completions:
            try:
                self.take_one(c)
            except AssertionError as exc:
                failures.append(exc)
        if failures:
            raise failures[0]

    def take_one(self, c):
        if c.user_data is None and self.skips and c.res < 0:
            self.skips -= 1      # a CQE_SKIP_SUCCESS nop that failed (cancelled)
            assert c.res in ECANCELED_OR_EINTR, f"a CQE_SKIP_SUCCESS nop failed: {c!r}"
            return
        assert c.user_data in self.outstanding, f"unexpected completion {c!r} (a second time?)"
        req = self.outstanding.pop(c.user_data)
        if req.kind == "pipe-read":
            self.pipe_reader = None
        if c.res in ECANCELED_OR_EINTR and (req.cancelled or req.linked):
            return
        if req.ambiguous:
            # the files registered when it was submitted are not known
            assert c.res == -errno.EBADF or 0 <= c.res <= req.length, f"fixed-file read res {c.res}"
            if req.kind == "pipe-read" and c.res > 0:
                self.consumed += c.res
            return
        req.check(c.res, c)

    def prompt_count(self):
        return sum(1 for r in self.outstanding.values() if r.prompt)

    def drain(self):
        """Reap every outstanding request within a bounded time: write
        what a pending pipe read wants, cancel pending polls."""
        if not self.outstanding:
            return
        deadline = time.monotonic() + 15
        last_cancel = 0.0
        while self.outstanding:
            assert time.monotonic() < deadline, f"never completed: {self.outstanding}"
            if self.pipe_reader is not None and self.consumed == len(self.stream):
                self.write_pipe(b"drain")
            if time.monotonic() - last_cancel > 0.5:
                last_cancel = time.monotonic()
                for req in self.outstanding.values():
                    req.cancelled = True
                # cancel every request in flight (ASYNC_CANCEL_ANY | ALL)
                ctok = self.token()
                self.ring.prep_async_cancel(cancel_flags=uring.ASYNC_CANCEL_ALL, user_data=ctok)
                self.outstanding[ctok] = Req("cancel", lambda res, c: None)
            self.take(self.ring.wait(1, timeout=0.1))

    def write_pipe(self, data):
        os.write(self.w, data)
        self.stream += data
        if self.pipe_reader is not None:
            self.outstanding[self.pipe_reader].prompt = True
