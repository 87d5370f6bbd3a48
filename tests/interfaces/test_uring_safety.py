"""fastio.uring's safety rules on the real kernel, both backends: pinned
buffers outlive every Python reference, close and the garbage collector with
requests in flight, a full SQ and an overflowed CQ lose nothing, threads,
fork, and the cases found in review (finalizers and signals inside calls,
bad arguments after a slot is taken)."""

from __future__ import annotations

import array
import errno
import gc
import os
import select
import socket
import threading
import time
import weakref

import pytest
from support import in_child, skip_if_valgrind_serialises_uring_waits, wait_all

from fastio import uring

pytestmark = pytest.mark.skipif(not uring.available(), reason=f"io_uring unusable: {uring.why_unavailable()}")


# ---- safety ---------------------------------------------------------------

def test_pinned_buffer_survives_dropped_references(ring):
    r, w = os.pipe()
    try:
        class Token:
            pass

        buf = bytearray(5)
        token = Token()
        token_ref = weakref.ref(token)
        ring.prep_read(r, memoryview(buf), -1, user_data=token)
        ring.submit()
        with pytest.raises(BufferError):
            buf.extend(b"grow")           # resizing a buffer in flight
        del token
        gc.collect()
        assert token_ref() is not None     # the ring holds user_data
        os.write(w, b"hello")
        c = wait_all(ring, 1)[0]
        assert c.user_data is token_ref() and c.res == 5
        del c
        gc.collect()
        assert token_ref() is None         # released once reaped
        assert buf == b"hello"
        buf.extend(b"!")                   # no longer pinned
    finally:
        os.close(r)
        os.close(w)


def test_buffer_with_no_python_reference_left(ring):
    """The only reference to the buffer is the ring's pin."""
    class Buf(bytearray):  # a bytearray that can be weakly referenced
        pass

    r, w = os.pipe()
    try:
        buf = Buf(4)
        alive = weakref.ref(buf)
        ring.prep_read(r, buf, -1, user_data="orphan")
        ring.submit()
        del buf
        gc.collect()
        assert alive() is not None  # pinned by the ring while the read is in flight
        os.write(w, b"data")
        c = wait_all(ring, 1)[0]
        assert (c.user_data, c.res) == ("orphan", 4)
        gc.collect()
        assert alive() is None  # released once reaped
    finally:
        os.close(r)
        os.close(w)


def test_buffer_released_after_cancel(ring):
    r, w = os.pipe()
    try:
        buf = bytearray(4)
        rid = ring.prep_read(r, buf, -1)
        ring.submit()
        ring.prep_async_cancel(rid)
        wait_all(ring, 2)
        buf.extend(b"ok")     # released by the cancelled completion
    finally:
        os.close(r)
        os.close(w)


def test_close_with_requests_in_flight(backend):
    r, w = os.pipe()
    try:
        ring = backend.Ring(8)
        bufs = [bytearray(8) for _ in range(4)]
        for b in bufs:
            ring.prep_read(r, b, -1)
        ring.prep_timeout(100)
        ring.prep_poll_add(r, select.POLLIN, multishot=True)
        ring.submit()
        ring.prep_nop()           # queued, never submitted: dropped
        assert ring.inflight == 7
        t0 = time.monotonic()
        ring.close()
        assert time.monotonic() - t0 < 5
        assert ring.closed and ring.inflight == 0
        for b in bufs:
            b.extend(b"free")     # every pin released
        os.write(w, b"late")      # nothing reads into freed memory any more
        assert os.read(r, 4) == b"late"
        ring.close()              # idempotent
        with pytest.raises(ValueError, match="closed"):
            ring.prep_nop()
        with pytest.raises(ValueError, match="closed"):
            ring.wait()
        with pytest.raises(ValueError, match="closed"):
            ring.fileno()
    finally:
        os.close(r)
        os.close(w)


def test_gc_with_requests_in_flight(backend):
    r, w = os.pipe()
    try:
        buf = bytearray(8)
        ring = backend.Ring(8)
        ring.prep_read(r, buf, -1)
        ring.submit()
        with pytest.warns(ResourceWarning, match="unclosed"):
            del ring
            gc.collect()
        buf.extend(b"free")  # unpinned: the read was cancelled, not left in flight
        os.write(w, b"12345678")  # a read still in flight would take these bytes
        assert os.read(r, 8) == b"12345678"
        assert bytes(buf) == bytes(8) + b"free"
    finally:
        os.close(r)
        os.close(w)


def test_full_sq_flushes_and_loses_nothing(backend):
    with backend.Ring(4, cq_entries=256) as ring:
        ids = [ring.prep_nop(user_data=i) for i in range(50)]   # SQ of 4: auto-submits
        assert len(set(ids)) == 50
        got = wait_all(ring, 50)
        assert sorted(c.user_data for c in got) == list(range(50))


def test_cq_overflow_loses_nothing(backend):
    with backend.Ring(8) as ring:          # CQ of 16
        for i in range(100):
            ring.prep_nop(user_data=i)
            if i % 8 == 7:
                ring.submit()
        ring.submit()
        got = wait_all(ring, 100)
        assert sorted(c.user_data for c in got) == list(range(100))


def test_buffers_unregistered_while_nbytes_converts(ring):
    """Regression (issue 8): prep_read_fixed converted nbytes after taking a
    pointer into the registered-buffer table; an __index__ that unregistered
    the buffers made the compiled backend read the freed table (ASan:
    heap-use-after-free in prep_fixed). Every argument is converted first
    now, so the index is checked against what is registered then."""
    ring.register_buffers([bytearray(4096)])

    class Unregisters:
        def __index__(self):
            ring.unregister_buffers()
            return 16

        __int__ = __index__

    r, w = os.pipe()
    try:
        with pytest.raises(ValueError, match="not a registered buffer"):
            ring.prep_read_fixed(r, 0, -1, nbytes=Unregisters())
        assert ring.sq_ready == 0 and ring.inflight == 0
    finally:
        os.close(r)
        os.close(w)


def test_close_with_an_overflowed_cq_releases_everything(backend):
    """Regression (issue 8): close() with completions still in the kernel's
    overflow list gave up at once on the compiled backend (its reap entered
    the kernel through the closed-ring check) and kept every buffer pinned
    forever. Now it flushes the overflow and releases them all."""
    ring = backend.Ring(4)                 # CQ of 8
    r, w = os.pipe()
    try:
        os.write(w, b"x" * 64)
        bufs = []
        for _ in range(6):
            for _ in range(4):
                bufs.append(bytearray(1))
                ring.prep_read(r, bufs[-1], -1)
            ring.submit()                  # a pipe with data: each read completes inside
        assert ring.inflight == 24 and ring.cq_ready == ring.cq_entries == 8   # 16 overflowed
        t0 = time.monotonic()
        ring.close()
        assert time.monotonic() - t0 < 5   # no drain timeout
        for buf in bufs:
            buf.extend(b"!")               # BufferError while still pinned
    finally:
        ring.close()
        os.close(r)
        os.close(w)


def test_close_from_a_finalizer_while_reaping_is_refused(backend):
    """Regression (issue 8): a finalizer run while completions were reaped
    (here: the buffer's, whose last reference the request held) could close
    the ring. The compiled backend then released the slot twice, waited 10 s
    for its completion, and read the unmapped CQ ring (a segfault). close()
    there is a RuntimeError now, as on the pure backend, and the ring stays
    usable."""
    ring = backend.Ring(8)
    refused = []

    class Buf(bytearray):
        def __del__(self):
            try:
                ring.close()
            except RuntimeError as exc:
                refused.append(str(exc))

    r, w = os.pipe()
    try:
        os.write(w, b"abcd")
        for i in range(4):
            ring.prep_read(r, Buf(1), -1, user_data=i)     # the request holds the only reference
        ring.submit_and_wait(4)
        got = ring.peek()
        assert sorted((c.user_data, c.res) for c in got) == [(i, 1) for i in range(4)]
        assert len(refused) == 4
        assert all("while a call on this ring is running" in m for m in refused)
        assert not ring.closed and ring.inflight == 0
        ring.prep_nop(user_data="after")
        assert [c.user_data for c in ring.wait(1, timeout=5)] == ["after"]
    finally:
        ring.close()
        os.close(r)
        os.close(w)


def test_close_from_the_garbage_collector_inside_peek(backend):
    """Regression (issue 8): the garbage collector may run a finalizer that
    closes the ring at any allocation inside peek() (CPython < 3.12 collects
    right there; 3.12+ at the next bytecode boundary). The compiled backend
    read the unmapped rings afterwards (a segfault; UBSan: load of a null
    pointer). Now the close is refused once reaping has begun, or, if it came
    first, peek() raises the closed-ring ValueError."""
    ring = backend.Ring(8)
    outcome = []

    class Closer:
        def __init__(self):
            self.cycle = self              # only the collector frees it

        def __del__(self):
            try:
                ring.close()
                outcome.append("closed")
            except RuntimeError:
                outcome.append("refused")

    r, w = os.pipe()
    threshold = gc.get_threshold()
    try:
        os.write(w, b"abcd")
        for i in range(4):
            ring.prep_read(r, bytearray(1), -1, user_data=i)
        ring.submit_and_wait(4)
        gc.collect()
        Closer()
        gc.set_threshold(1)
        try:
            got = ring.peek()
        except ValueError:
            got = None
        finally:
            gc.set_threshold(*threshold)
        gc.collect()
        if got is None:         # the close came before peek() reached the ring
            assert outcome == ["closed"] and ring.closed
        else:                   # refused inside peek(), or run after it returned
            assert sorted(c.user_data for c in got) == [0, 1, 2, 3]
            assert outcome in (["refused"], ["closed"])
    finally:
        gc.set_threshold(*threshold)
        ring.close()
        os.close(r)
        os.close(w)


def test_threads_share_a_ring(ring):
    errors = []

    def worker(k):
        try:
            for i in range(200):
                ring.prep_nop(user_data=(k, i))
                if i % 16 == 0:
                    ring.submit()
        except BaseException as exc:   # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    got = wait_all(ring, 800)
    assert sorted(c.user_data for c in got) == sorted((k, i) for k in range(4) for i in range(200))


@skip_if_valgrind_serialises_uring_waits
def test_close_while_another_thread_waits_is_refused(ring):
    started = threading.Event()
    result = []

    def waiter():
        started.set()
        result.append(ring.wait(1, timeout=2))

    t = threading.Thread(target=waiter)
    t.start()
    started.wait(5)
    time.sleep(0.1)
    with pytest.raises(RuntimeError, match="another thread"):
        ring.close()
    ring.prep_nop(user_data="wake")
    ring.submit()
    t.join(10)
    assert not t.is_alive()


def test_fork_child_refuses_and_parent_unharmed(ring):
    r, w = os.pipe()
    try:
        buf = bytearray(4)
        ring.prep_read(r, buf, -1, user_data="parent")
        ring.submit()
        for call in (ring.prep_nop, ring.peek, ring.submit, lambda: ring.wait(0)):
            out = in_child(call)
            assert out.startswith("RuntimeError") and "fork" in out
        assert in_child(lambda: (ring.close(), ring.closed)[1]) == "ok True"
        os.write(w, b"abcd")
        c = wait_all(ring, 1)[0]
        assert (c.user_data, c.res, bytes(buf)) == ("parent", 4, b"abcd")
    finally:
        os.close(r)
        os.close(w)


# ---------------------------------------------------------------- found in review


class _Stop(Exception):
    pass


@skip_if_valgrind_serialises_uring_waits
def test_one_signal_during_a_submitting_wait_runs_its_handler(backend):
    """Regression: wait() that submits and waits in one io_uring_enter got the
    submitted count back, not EINTR, when a signal arrived; the handler never
    ran and Ctrl-C hung the wait. One SIGALRM must end an endless wait."""
    import signal

    r, w = os.pipe()
    old = signal.signal(signal.SIGALRM, lambda *a: (_ for _ in ()).throw(_Stop()))
    try:
        with backend.Ring(8) as ring:
            buf = bytearray(16)
            ring.prep_read(r, buf, -1)
            signal.setitimer(signal.ITIMER_REAL, 0.2)
            with pytest.raises(_Stop):
                ring.wait(1, timeout=None)
            os.write(w, b"x")  # complete the read so close() has nothing to cancel
            assert [c.res for c in ring.wait(1, timeout=5)] == [1]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        os.close(r)
        os.close(w)


@skip_if_valgrind_serialises_uring_waits
def test_close_inside_a_call_is_refused(backend, datafile):
    """Regression: close() from Python code run inside a prep (here, the
    iterable of buffers) or from a signal handler inside read_batch unmapped
    the ring under the call (a 10 s hang, then a crash). It is a RuntimeError
    now, and the ring stays usable."""
    import signal

    fd, data = datafile
    ring = backend.Ring(8)

    def buffers():
        with pytest.raises(RuntimeError, match="while a call on this ring is running"):
            ring.close()
        yield bytearray(8)

    ring.prep_readv(fd, buffers(), 0, user_data="v")
    [c] = ring.wait(1, timeout=5)
    assert (c.user_data, c.res) == ("v", 8)

    ring.close()

    # A signal handler that closes the ring while read_batch waits: the
    # batch reads a pipe that stays empty until the handler itself writes to
    # it, so the handler is certain to run inside the call (a batch over a
    # warm file can finish before any timer fires).
    refused = []
    r, w = os.pipe()

    def handler(*args):
        try:
            ring.close()
        except RuntimeError as exc:
            refused.append(str(exc))
        os.write(w, b"y" * 16)

    ring = backend.Ring(8)
    old = signal.signal(signal.SIGALRM, handler)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        out = ring.read_batch(r, bytearray(16), [0, 0], 8)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        os.close(r)
        os.close(w)
    assert out == [8, 8]
    assert refused, "the handler never ran inside read_batch"
    assert not ring.closed
    ring.close()
    assert ring.closed


def test_a_bad_argument_after_the_slot_leaves_nothing_queued(backend):
    """Regression: prep_fsync(fsync_flags=-1) raised after taking an SQE, which
    stayed half written in the SQ and kept close() waiting for it."""
    with backend.Ring(8) as ring:
        with pytest.raises(OverflowError):
            ring.prep_fsync(0, fsync_flags=-1)
        with pytest.raises(ValueError):
            ring.prep_splice(0, -1, 1, -1, -1)
        assert ring.sq_ready == 0
    assert ring.closed


def test_gc_of_a_cycle_with_a_multishot_recv_in_flight(backend):
    """Regression: a ring in a reference cycle, collected with a multishot recv
    armed on a buffer ring, had its buffer ring unmapped first and was put in
    a module list from its deallocator (a use-after-free)."""
    import gc
    import warnings

    a, b = socket.socketpair()
    try:
        ring = backend.Ring(8)
        ring.register_buf_ring(1, 8, 64)
        ring.prep_recv_multishot(a.fileno(), 1, user_data=ring)  # the cycle
        ring.submit()
        del ring
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()
        b.send(b"after the ring is gone")  # nothing may write into freed memory
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("offset", [1.5, "8"])
def test_offsets_must_be_ints(ring, offset):
    r, w = os.pipe()
    try:
        with pytest.raises(TypeError):
            ring.prep_read(r, bytearray(4), offset)
        assert ring.sq_ready == 0
    finally:
        os.close(r)
        os.close(w)


@pytest.mark.parametrize("call", [
    lambda r, fd: r.prep_poll_add(fd, 1.0),
    lambda r, fd: r.prep_read(fd, bytearray(1), 0, rw_flags=1.0),
    lambda r, fd: r.prep_nop(flags=1.0),
    lambda r, fd: r.prep_timeout(0.1, 1.5),
    lambda r, fd: r.prep_fsync(fd, fsync_flags=0.0),
    lambda r, fd: r.prep_fallocate(fd, 0, 0, 4.0),
    lambda r, fd: r.prep_async_cancel(1.0),
    lambda r, fd: r.prep_async_cancel(cancel_flags=0.0),
    lambda r, fd: r.prep_splice(fd, -1, fd, -1, 4.0),
    lambda r, fd: r.read_batch(fd, bytearray(8), [0], 1.5),
    lambda r, fd: r.read_batch(fd, bytearray(8), [0.5], 1),
], ids=["poll_mask", "rw_flags", "flags", "count", "fsync_flags", "length", "target", "cancel_flags",
        "nbytes", "batch size", "batch offset"])
def test_int_arguments_refuse_floats(backend, call, datafile):
    """Regression (found writing tests/state/test_state_ring.py): every int argument of
    Ring took a float and truncated it (poll_mask=1.5 became 1; a batch
    size of 1.5 read 1 byte), on both backends, where CPython's converters
    raise TypeError."""
    fd, _ = datafile
    with backend.Ring(8) as ring:
        with pytest.raises(TypeError):
            call(ring, fd)
        assert ring.sq_ready == 0 and ring.inflight == 0


@pytest.mark.parametrize("call", [
    lambda r, fd: r.prep_read(fd, bytearray(1), 2**63),
    lambda r, fd: r.prep_read(fd, bytearray(1), 2**64),
    lambda r, fd: r.read_batch(fd, bytearray(8), [2**63], 1),
    lambda r, fd: r.prep_fallocate(fd, 0, 0, -1),
    lambda r, fd: r.prep_poll_add(fd, 2**32),
    lambda r, fd: r.register_files_update(-1, [fd]),
], ids=["offset 2**63", "offset 2**64", "batch offset", "negative length", "poll_mask", "update offset"])
def test_out_of_range_ints_are_overflow_errors(backend, call, datafile):
    """Regression: the pure backend masked an offset of 2**63 or more into
    range (a read at 0), took a negative fallocate length as 2**64 - 1 and
    read a batch at offset 2**63 (-EINVAL); the compiled one raised
    OverflowError. Both raise OverflowError now."""
    fd, _ = datafile
    with backend.Ring(8) as ring:
        with pytest.raises(OverflowError):
            call(ring, fd)
        assert ring.sq_ready == 0 and ring.inflight == 0


def test_gc_collects_a_ring_in_a_cycle_through_user_data(backend):
    """Regression: on the c backend a Ring whose in-flight request's
    user_data referred back to it was never collected (the slot held the
    reference where the garbage collector could not see it): its fd, its
    mappings and its pinned buffers leaked. The user_data objects now live
    in a list the collector traverses."""
    import warnings

    class Token:
        pass

    r, w = os.pipe()
    try:
        buf = bytearray(8)
        ring = backend.Ring(8)
        ring_fd = ring.fileno()
        token = Token()
        token.ring = ring                               # the cycle: ring -> request -> token -> ring
        token_ref = weakref.ref(token)
        ring.prep_read(r, buf, -1, user_data=token)     # waits for data that never comes
        ring.submit()
        ring.prep_nop(user_data=token)                  # queued, never submitted
        del ring, token
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()
        assert token_ref() is None                      # the cycle is gone ...
        buf.extend(b"free")                             # ... the pin with it ...
        try:
            what = os.readlink(f"/proc/self/fd/{ring_fd}")
        except FileNotFoundError:
            what = "closed"
        assert what != "anon_inode:[io_uring]"          # ... and the ring
    finally:
        os.close(r)
        os.close(w)


def test_close_with_the_cq_overflowed_releases_everything(backend, datafile):
    """Regression (found by tests/state/test_state_ring.py): close() with more
    completions than the CQ holds (the kernel keeps the rest, FEAT_NODROP)
    gave up at once and leaked every request's buffers for good on the c
    backend: its drain flushed the overflow through a call that refuses a
    closing ring."""
    fd, data = datafile
    ring = backend.Ring(1)                 # 1 SQE, 2 CQEs
    bufs = [bytearray(16) for _ in range(5)]
    for i, buf in enumerate(bufs):
        ring.prep_read(fd, buf, i, user_data=i)   # a full SQ: each submits the one before
    ring.submit()
    deadline = time.monotonic() + 5
    while ring.cq_ready < 2 and time.monotonic() < deadline:
        time.sleep(0.001)
    ring.close()
    assert ring.inflight == 0
    for buf in bufs:
        buf.extend(b"free")                # every pin released


@pytest.mark.parametrize("offsets", [[0, -5], array.array("q", [0, -5]), array.array("Q", [0, 2**63])],
                         ids=["list", "array q", "array Q"])
def test_read_batch_refuses_negative_offsets_in_any_form(backend, datafile, offsets):
    """Regression (found by tests/state/test_state_ring.py): a negative offset was
    refused (ValueError) in a list but sent to the kernel from an int64
    buffer (each such read came back -EINVAL), on both backends."""
    fd, _ = datafile
    with backend.Ring(8) as ring:
        with pytest.raises(ValueError, match="offsets"):
            ring.read_batch(fd, bytearray(32), offsets, 16)
        assert ring.inflight == 0


def test_read_batch_with_the_sq_full_of_requests_that_never_complete(backend, datafile):
    """Regression (found reviewing the batch loop after the same hang that
    tests/state/test_state_aio.py met in aio): with the SQ full of other requests
    and none of its own in flight, read_batch submitted them and waited for
    a completion; polls of an empty pipe never complete, so it waited
    forever. It now only submits them, then queues and waits for its own."""
    fd, data = datafile
    r, w = os.pipe()
    ring = backend.Ring(2)
    rescue = threading.Timer(10, os.write, (w, b"xx"))    # unblocks a regression in 10 s
    rescue.start()
    try:
        ring.prep_poll_add(r, select.POLLIN, user_data=1)
        ring.prep_poll_add(r, select.POLLIN, user_data=2)
        assert ring.sq_ready == ring.sq_entries == 2
        buf = bytearray(16)
        assert ring.read_batch(fd, buf, [0, 8], 8) == [8, 8]
        assert rescue.is_alive(), "read_batch waited for the polls"
        assert bytes(buf) == data[:16]
    finally:
        rescue.cancel()
        ring.close()
        os.close(r)
        os.close(w)


def _reap_storm(ring, storm, got, until, limit=10.0):
    """Wait (the storm on) until until() or limit seconds; completions into got."""
    deadline = time.monotonic() + limit
    while not until() and time.monotonic() < deadline:
        out = storm.call(ring.wait, 1, timeout=0.05)
        if out:
            got += out


def test_a_raising_signal_handler_loses_and_doubles_nothing(storm_backend, datafile, storm):
    """Regression (pure backend): a handler raising inside prep_read or wait
    left the ring's lock owned ("used re-entrantly" for ever), a queued SQE
    holding the previous request's fields with its slot never released, and
    completions handed out twice (taken off the CQ, then given back by the
    raising wait as well). Under a storm of raising signals every request
    queued comes back exactly once with the file's bytes, and the ring ends
    with nothing in flight and usable."""
    fd, data = datafile
    rounds = 0
    t0 = time.monotonic()
    while rounds < 200 and time.monotonic() - t0 < 3:
        with storm_backend.Ring(8) as ring:
            bufs = {i: bytearray(3000) for i in range(48)}
            queued = set()
            for i, buf in bufs.items():
                if storm.call(ring.prep_read, fd, buf, i * 1000, user_data=i) is not None:
                    queued.add(i)
            got: list = []
            _reap_storm(ring, storm, got, lambda: ring.inflight == 0)
            got += ring.peek()   # what a raising wait gave back, after its slot was released
            ids = [c.user_data for c in got]
            assert ring.inflight == 0, f"round {rounds}: {ring.inflight} requests never came back"
            assert len(ids) == len(set(ids)), f"round {rounds}: completions handed out twice"
            # A prep the handler interrupted after queueing still completes.
            assert queued <= set(ids)
            for c in got:
                assert c.res == 3000 and bufs[c.user_data] == data[c.user_data * 1000:][:3000]
            ring.prep_nop(user_data="after")
            assert [c.user_data for c in wait_all(ring, 1)] == ["after"]
        rounds += 1
    assert storm.raised > 0 and rounds > 0


def test_a_raising_signal_handler_recycles_each_provided_buffer_once(storm_backend, storm):
    """Regression (pure backend): a handler raising while a multishot recv's
    completion was handed out could leave its provided buffer never given
    back to the kernel. The storm runs around the reaping of datagrams on an
    8-buffer ring: each arrives whole and in order, and afterwards (storm
    off) seven datagrams sent at once all find a buffer. (Bursts stay under
    eight: having filled the last buffer, the kernel's multishot recv picks
    the next before it looks for data, and ends with ENOBUFS on an empty
    socket.) One buffer lost would end the recv with ENOBUFS, one given
    twice would mix two datagrams."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        with storm_backend.Ring(16) as ring:
            ring.register_buf_ring(1, 8, 64)
            rid = ring.prep_recv_multishot(a.fileno(), 1, user_data="recv")
            expected: list = []

            def reap_all(got, limit):
                """Reap until every datagram sent arrived; check each."""
                deadline = time.monotonic() + limit
                while len(got) < len(expected) and time.monotonic() < deadline:
                    out = storm.call(ring.wait, 1, timeout=0.05)
                    for c in out or ():
                        assert c.user_data == "recv" and c.res > 0, \
                            f"the recv ended with {errno.errorcode.get(-c.res, c.res)}"
                        got.append(c.buffer)
                        if not c.more:      # (the kernel may end a multishot recv at will)
                            nonlocal rid
                            rid = ring.prep_recv_multishot(a.fileno(), 1, user_data="recv")
                assert got == expected
                expected.clear()

            t0 = time.monotonic()
            for n in range(300):
                if time.monotonic() - t0 > 3:
                    break
                if n % 8 == 0:
                    # A wait with nothing to come, so the storm surely lands
                    # inside one (the compiled calls are short).
                    assert not storm.call(ring.wait, 1, timeout=0.005)
                for k in range(1 + n % 7):
                    chunk = bytes([(n + k) % 251]) * (1 + (n * 7 + k) % 64)
                    b.send(chunk)
                    expected.append(chunk)
                reap_all([], 5.0)
            assert storm.raised > 0
            storm.armed = False
            got: list = []
            for k in range(7):
                chunk = bytes([k]) * 64
                b.send(chunk)
                expected.append(chunk)
            time.sleep(0.05)            # all seven received before any is reaped
            reap_all(got, 5.0)
            ring.prep_async_cancel(rid)
            wait_all(ring, 2)
            assert ring.inflight == 0
    finally:
        a.close()
        b.close()
