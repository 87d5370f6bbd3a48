"""fastio.aio's safety rules on the real kernel, both backends: buffers
pinned until reaped, close and the garbage collector with requests in
flight, threads, fork, EINTR, and the cases found in review (signals and
finalizers inside calls, a second waiter, floats and out-of-range ints,
read_batch beside requests that never complete, max_nr). The fixtures
(ctx, aio_datafile, direct_fd) are in conftest.py."""

from __future__ import annotations

import errno
import gc
import os
import select
import signal
import threading
import time
import warnings
import weakref

import pytest
from support import Interrupted, in_child, interval_timer, raise_interrupted, reap, \
    skip_if_valgrind_serialises_io_submit

import fastio
from fastio import aio

pytestmark = pytest.mark.skipif(not aio.available(), reason=f"Linux AIO unusable: {aio.why_unavailable()}")


# ---- safety ---------------------------------------------------------------

def test_buffer_pinned_until_reaped(ctx, direct_fd):
    fd, data = direct_fd

    class Token:
        pass

    buf = bytearray(4096 + 4096)
    token = Token()
    token_ref = weakref.ref(token)
    ctx.prep_pread(fd, memoryview(buf)[:100], 0, user_data=token)      # buffered-size, pinned while queued
    with pytest.raises(BufferError):
        buf.extend(b"grow")
    ctx.submit()
    with pytest.raises(BufferError):
        buf.extend(b"grow")                  # completed maybe, but not reaped: still pinned
    del token
    gc.collect()
    assert token_ref() is not None
    c = reap(ctx, 1)[0]
    assert c.user_data is token_ref()
    del c
    gc.collect()
    assert token_ref() is None                # released once reaped
    buf.extend(b"free")


def test_buffer_with_no_python_reference_left(ctx, aio_datafile):
    path, data = aio_datafile
    fd = os.open(path, os.O_RDONLY)
    try:
        ctx.prep_pread(fd, bytearray(10), 5, user_data="orphan")
        gc.collect()
        c = reap(ctx, 1)[0]
        assert (c.user_data, c.res) == ("orphan", 10)
    finally:
        os.close(fd)


def test_buffer_released_after_cancel(ctx, sockpair):
    buf = bytearray(4)
    ctx.prep_pread(sockpair[0].fileno(), buf, 0, rw_flags=aio.RWF_NOWAIT)   # pinned
    qid = ctx.prep_poll(sockpair[0], select.POLLIN)
    ctx.cancel(qid)
    reap(ctx, 2)
    buf.extend(b"ok")


def test_close_with_requests_in_flight(backend, sockpair, direct_fd):
    a, b = sockpair
    fd, _ = direct_fd
    c = backend.Context(8)
    bufs = [bytearray(8) for _ in range(3)]
    for i in range(20):
        c.prep_poll(a, select.POLLIN, user_data=i)
    dbuf = fastio.aligned_buffer(4096)
    c.prep_pread(fd, dbuf, 0)
    assert c.submit() == 21
    for buf in bufs:
        c.prep_pread(a.fileno(), buf, 0)       # queued, never submitted: dropped
    assert c.inflight == 24
    t0 = time.monotonic()
    c.close()
    assert time.monotonic() - t0 < 5
    assert c.closed and c.inflight == 0
    for buf in bufs:
        buf.extend(b"free")                    # every pin released
    b.send(b"late")
    assert a.recv(4) == b"late"                # nothing left reading the socket
    with pytest.raises(ValueError, match="closed"):
        c.submit()


def test_gc_with_requests_in_flight(backend, sockpair):
    buf = bytearray(8)
    c = backend.Context(8)
    c.prep_poll(sockpair[0], select.POLLIN)
    c.submit()
    c.prep_pread(sockpair[0].fileno(), buf, 0)    # queued: pinned, never run
    with pytest.warns(ResourceWarning, match="unclosed"):
        del c
        gc.collect()
    buf.extend(b"free")


def test_gc_collects_a_context_in_a_cycle_through_user_data(backend, sockpair):
    """Regression: on the c backend a Context whose in-flight request's
    user_data referred back to it was never collected (the slot held the
    reference where the garbage collector could not see it): its AIO
    context, its pinned buffers and the whole cycle leaked. The user_data
    objects now live in a list the collector traverses."""

    class Token:
        pass

    buf = bytearray(8)
    c = backend.Context(8)
    token = Token()
    token.ctx = c                                   # the cycle: ctx -> request -> token -> ctx
    token_ref = weakref.ref(token)
    c.prep_poll(sockpair[0], select.POLLIN, user_data=token)
    c.submit()
    c.prep_pread(sockpair[0].fileno(), buf, 0, user_data=token)   # queued: pinned, never run
    del c, token
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
    assert token_ref() is None                      # the cycle is gone ...
    buf.extend(b"free")                             # ... and with it the pin


@skip_if_valgrind_serialises_io_submit
def test_event_reaped_while_its_submit_runs_in_another_thread(ctx, aio_datafile):
    """Regression: submit() counted the requests io_submit took only after the
    call returned, and marked their slots submitted by index. A request that
    completed inside io_submit (a buffered read) could be reaped by another
    thread meanwhile: the count of requests in flight went below zero (a
    huge unsigned number), so getevents() no longer lowered min_nr to what
    was in flight and waited for requests that did not exist; and the freed
    slot, reused by a new request, was marked submitted. An early reap is
    now left out of the count, and only slots still being submitted by that
    call (same generation) are marked."""
    path, _ = aio_datafile
    fd = os.open(path, os.O_RDONLY)
    r, w = os.pipe()
    try:
        ctx.prep_pread(fd, bytearray(10), 0, user_data="file")
        ctx.prep_pread(r, bytearray(4), 0, user_data="pipe")   # blocks io_submit until written
        t = threading.Thread(target=ctx.submit)
        t.start()
        got = []
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            got = ctx.getevents(0, timeout=0.01)
        assert [(c.user_data, c.res) for c in got] == [("file", 10)]
        assert t.is_alive()                                    # still inside io_submit
        rid = ctx.prep_pread(fd, bytearray(10), 0, user_data="reused")   # the freed slot
        assert ctx.cancel(rid) is True
        writer = threading.Timer(1.0, os.write, (w, b"data"))
        writer.start()
        try:
            # Nothing is counted in flight yet (the pipe read is still being
            # submitted): min_nr is lowered to 0, no wait. Before the fix
            # this waited, and returned the pipe read once the writer ran.
            assert [c.user_data for c in ctx.getevents(2, timeout=5)] == ["reused"]
        finally:
            writer.join()
            t.join(10)
        assert not t.is_alive()
        events = reap(ctx, 1)
        assert [(c.user_data, c.res) for c in events] == [("pipe", 4)]
        assert ctx.inflight == 0 and ctx.queued == 0
        assert ctx.getevents(0, timeout=0) == []
    finally:
        os.close(fd)
        os.close(r)
        os.close(w)


def test_fork_child_refuses_and_parent_unharmed(ctx, sockpair):
    a, b = sockpair
    ctx.prep_poll(a, select.POLLIN, user_data="parent")
    ctx.submit()
    for call in (lambda: ctx.prep_fsync(0), ctx.submit, lambda: ctx.getevents(0), lambda: ctx.cancel(0)):
        out = in_child(call)
        assert out.startswith("RuntimeError") and "fork" in out, out
    assert in_child(lambda: (ctx.close(), ctx.closed)[1]) == "ok True"
    b.send(b"x")
    c = reap(ctx, 1)[0]
    assert c.user_data == "parent" and c.res & select.POLLIN


def test_threads_share_a_context(ctx, aio_datafile):
    path, data = aio_datafile
    fd = os.open(path, os.O_RDONLY)
    errors = []
    bufs = {}

    def worker(k):
        try:
            for i in range(50):
                buf = bytearray(16)
                bufs[(k, i)] = buf
                ctx.prep_pread(fd, buf, (k * 50 + i) * 16, user_data=(k, i))
                if i % 7 == 0:
                    ctx.submit()
        except BaseException as exc:   # pragma: no cover - reported below
            errors.append(exc)

    try:
        threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not errors
        got = reap(ctx, 200)
        assert sorted(c.user_data for c in got) == sorted((k, i) for k in range(4) for i in range(50))
        for (k, i), buf in bufs.items():
            assert bytes(buf) == data[(k * 50 + i) * 16:(k * 50 + i + 1) * 16]
    finally:
        os.close(fd)


def test_close_while_another_thread_waits_is_refused(ctx, sockpair):
    ctx.prep_poll(sockpair[0], select.POLLIN)
    ctx.submit()
    started = threading.Event()
    result = []

    def waiter():
        started.set()
        result.append(ctx.getevents(1, timeout=5))

    t = threading.Thread(target=waiter)
    t.start()
    started.wait(5)
    time.sleep(0.1)
    with pytest.raises(RuntimeError, match="another thread"):
        ctx.close()
    sockpair[1].send(b"wake")
    t.join(10)
    assert not t.is_alive() and len(result[0]) == 1


def test_eintr_retried_and_handler_exception_propagates(ctx, sockpair):
    ctx.prep_poll(sockpair[0], select.POLLIN)
    calls = []
    with interval_timer(lambda *a: calls.append(1)):
        t0 = time.monotonic()
        assert ctx.getevents(1, timeout=0.3) == []       # retried after each signal, deadline kept
        assert 0.29 <= time.monotonic() - t0 < 3
    assert calls
    with interval_timer(raise_interrupted, 0.05):
        with pytest.raises(Interrupted):
            ctx.getevents(1, timeout=5)


# ---------------------------------------------------------------- found in review


def test_a_signal_does_not_end_getevents_early(ctx, aio_datafile):
    """Regression: io_getevents cut short by a signal returns what it had (not
    EINTR), which getevents() took for its timeout: min_nr was not honoured."""
    path, data = aio_datafile
    fd = os.open(path, os.O_RDONLY)
    r, w = os.pipe()
    old = signal.signal(signal.SIGALRM, lambda *a: None)
    try:
        ctx.prep_pread(fd, bytearray(16), 0, user_data="read")
        ctx.prep_poll(r, select.POLLIN, user_data="poll")
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        start = time.monotonic()
        got = ctx.getevents(min_nr=2, timeout=0.5)
        elapsed = time.monotonic() - start
        assert [c.user_data for c in got] == ["read"]
        assert elapsed >= 0.45  # waited out its timeout, not just until the signal
        os.write(w, b"x")
        assert [c.user_data for c in ctx.getevents(1, timeout=5)] == ["poll"]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        os.close(fd)
        os.close(r)
        os.close(w)


def test_completions_survive_a_handler_exception_in_getevents(ctx):
    """Regression: completions already reaped (here a refused request's) were
    lost when a signal handler raised during the wait."""
    r, w = os.pipe()
    old = signal.signal(signal.SIGALRM, raise_interrupted)
    try:
        ctx.prep_pread(12345, bytearray(8), 0, user_data="refused")  # EBADF at submit
        ctx.prep_poll(r, select.POLLIN, user_data="poll")
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        with pytest.raises(Interrupted):
            ctx.getevents(min_nr=2, timeout=None)
        signal.setitimer(signal.ITIMER_REAL, 0)
        os.write(w, b"x")
        got = ctx.getevents(min_nr=2, timeout=5)
        assert sorted(c.user_data for c in got) == ["poll", "refused"]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        os.close(r)
        os.close(w)


def test_close_or_a_second_waiter_inside_a_call_is_refused(ctx):
    """Regression: close() from a signal handler (or another thread, or a
    buffer exporter) inside a call freed what the call was using; and a batch
    beside another waiter could wait forever for events the other reaped."""
    r, w = os.pipe()
    refused = []

    def handler(*args):
        try:
            ctx.close()
        except RuntimeError as exc:
            refused.append(str(exc))
        try:
            ctx.read_batch(r, bytearray(8), [0], 8)
        except RuntimeError as exc:
            refused.append(str(exc))
        os.write(w, b"x")

    old = signal.signal(signal.SIGALRM, handler)
    try:
        ctx.prep_poll(r, select.POLLIN, user_data="poll")
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        got = ctx.getevents(1, timeout=5)
        assert [c.user_data for c in got] == ["poll"]
        assert len(refused) == 2
        assert "while a call on this context is running" in refused[0]
        assert "needs the context to itself" in refused[1]
        assert not ctx.closed
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        os.close(r)
        os.close(w)


def test_close_from_a_buffer_finalizer_inside_submit_or_cancel_is_refused(ctx, aio_datafile):
    """Regression (issue 8): a request's buffer is released inside submit()
    (the kernel refused the request) and cancel() (a queued request); when
    the request held its last reference, its finalizer could close the
    context, and the compiled backend then released the slot a second time
    (``inflight`` wrapped to 2**32 - 1, the free list looped). close() there
    is a RuntimeError now, as on the pure backend."""
    refused = []

    class Buf(bytearray):
        def __del__(self):
            try:
                ctx.close()
            except RuntimeError as exc:
                refused.append(str(exc))

    path, _ = aio_datafile
    fd = os.open(path, os.O_RDONLY)
    try:
        bad = os.open(path, os.O_RDONLY)
        os.close(bad)                                      # EBADF at io_submit
        ctx.prep_pread(bad, Buf(8), 0, user_data="refused")
        assert ctx.submit() == 0
        request = ctx.prep_pread(fd, Buf(8), 0, user_data="cancelled")
        assert ctx.cancel(request) is True
        assert len(refused) == 2
        assert all("while a call on this context is running" in m for m in refused)
        assert not ctx.closed and ctx.inflight == 0 and ctx.queued == 0
        got = {c.user_data: c.res for c in ctx.getevents(0, timeout=0)}
        assert got == {"refused": -errno.EBADF, "cancelled": -errno.ECANCELED}
        ctx.prep_pread(fd, bytearray(8), 0, user_data="after")
        assert [c.user_data for c in reap(ctx, 1)] == ["after"]
    finally:
        os.close(fd)


def test_a_buffer_finalizer_using_the_context_inside_close_fails_cleanly(backend, aio_datafile):
    """Regression (issue 8): close() releases queued requests' buffers; a
    finalizer run then that used the context deadlocked the pure backend (its
    lock is not re-entrant) and, on the compiled one, could queue or submit
    into the table being torn down. The call fails now: ValueError (closed)
    on the compiled backend, RuntimeError (re-entrant) on the pure one."""
    ctx = backend.Context(8)
    errors = []

    class Buf(bytearray):
        def __del__(self):
            for call in (lambda: ctx.prep_pread(fd, bytearray(8), 0), ctx.submit):
                try:
                    call()
                except (ValueError, RuntimeError) as exc:
                    errors.append(type(exc).__name__)

    path, _ = aio_datafile
    fd = os.open(path, os.O_RDONLY)
    try:
        ctx.prep_pread(fd, Buf(8), 0)        # queued: close() drops it, releasing Buf
        ctx.close()
        assert ctx.closed
        assert errors == ["ValueError"] * 2 or errors == ["RuntimeError"] * 2
    finally:
        ctx.close()
        os.close(fd)


@pytest.mark.parametrize("call", [
    lambda c, fd: c.prep_pread(fd, bytearray(8), 1.9),
    lambda c, fd: c.prep_pread(fd, bytearray(8), 0, rw_flags=8.5),
    lambda c, fd: c.prep_poll(fd, 1.5),
    lambda c, fd: c.read_batch(fd, bytearray(1024), [0], 512.7),
    lambda c, fd: c.read_batch(fd, bytearray(1024), [1.5], 512),
], ids=["offset", "rw_flags", "poll events", "batch size", "batch offset"])
def test_int_arguments_refuse_floats(ctx, aio_datafile, call):
    """Regression: the compiled backend truncated floats where the pure one
    raised TypeError."""
    path, _ = aio_datafile
    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(TypeError):
            call(ctx, fd)
        assert ctx.getevents(0, timeout=0) == []
    finally:
        os.close(fd)


@pytest.mark.parametrize("request_id, exc", [(1.0, TypeError), (-1, OverflowError), (2**64, OverflowError)])
def test_cancel_request_id_must_be_an_int_in_range(ctx, request_id, exc):
    """Regression (found writing tests/state/test_state_aio.py): the c backend took
    a float id (cancel(1.5) returned False) and the pure one masked a
    negative or too large id into range; ids are ints 0 .. 2**64 - 1."""
    with pytest.raises(exc):
        ctx.cancel(request_id)


def test_read_batch_offset_beyond_int64_is_an_overflow_error(ctx, aio_datafile):
    """Regression: the pure backend sent an offset of 2**63 to the kernel
    (the read came back -EINVAL); the compiled one raised OverflowError."""
    path, _ = aio_datafile
    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(OverflowError):
            ctx.read_batch(fd, bytearray(8), [0, 2**63], 4)
        assert ctx.inflight == 0
    finally:
        os.close(fd)


def test_read_batch_on_a_context_full_of_other_requests_does_not_wait_for_them(backend, aio_datafile):
    """Regression (found writing tests/state/test_state_aio.py): read_batch on a
    context full of requests that never complete (polls of an empty pipe)
    waited for one of them to complete, forever, before it could submit a
    read. The reads it cannot submit now come back -EAGAIN."""
    path, data = aio_datafile
    fd = os.open(path, os.O_RDONLY)
    r, w = os.pipe()
    ctx = backend.Context(1)
    rescue = threading.Timer(10, os.write, (w, b"x"))     # unblocks a regression in 10 s
    rescue.start()
    try:
        for _ in range(100000):
            ctx.prep_poll(r, select.POLLIN)
            if ctx.submit() == 0:
                break                                  # the kernel takes no more
        assert ctx.queued == 1
        results = ctx.read_batch(fd, bytearray(16), [0, 8], 8)
        assert rescue.is_alive(), "read_batch waited for the polls"
        assert results == [-errno.EAGAIN, -errno.EAGAIN]
    finally:
        rescue.cancel()
        ctx.close()
        os.close(fd)
        os.close(r)
        os.close(w)


def test_getevents_never_returns_more_than_max_nr(ctx, aio_datafile):
    """Regression (found by tests/state/test_state_aio.py): completions already
    held by the context (requests refused at submission, or cancelled while
    queued) were all returned at once, past max_nr; the rest now waits for
    the next call, in order."""
    path, _ = aio_datafile
    fd = os.open(path, os.O_RDONLY)
    try:
        ids = [ctx.prep_pread(2**31 - 1, bytearray(1), 0, user_data=i) for i in range(3)]   # refused: EBADF
        ctx.prep_pread(fd, bytearray(1), 0, user_data=3)
        ctx.cancel(ctx.prep_pread(fd, bytearray(1), 0, user_data=4))                          # -ECANCELED
        assert ctx.submit() == 1
        got = []
        for _ in range(5):
            batch = ctx.getevents(0, 2, timeout=1)
            assert len(batch) <= 2
            got += batch
        assert sorted(c.user_data for c in got) == [0, 1, 2, 3, 4]
        assert [c.user_data for c in got if c.user_data in (0, 1, 2)] == [0, 1, 2]     # in order
        assert ids
    finally:
        os.close(fd)


def test_read_batch_of_a_bad_fd_beside_a_poll_in_flight(backend):
    """Regression (found by tests/state/test_state_aio.py, a hang): after the
    kernel refused a batch's first read outright (EBADF), read_batch waited
    for an event before submitting the next one whenever any request of the
    context was in flight; a poll that never fires made that wait endless.
    It now waits only for its own reads."""
    r, w = os.pipe()
    ctx = backend.Context(8)
    rescue = threading.Timer(10, os.write, (w, b"x"))     # unblocks a regression in 10 s
    rescue.start()
    try:
        ctx.prep_poll(r, select.POLLIN, user_data="poll")
        assert ctx.submit() == 1
        assert ctx.read_batch(2**31 - 1, bytearray(16), [0, 8], 8) == [-errno.EBADF, -errno.EBADF]
        assert rescue.is_alive(), "read_batch waited for the poll"
    finally:
        rescue.cancel()
        ctx.close()
        os.close(r)
        os.close(w)


# ---- a storm of raising signal handlers ------------------------------------

def _reap_aio_storm(ctx, storm, got, limit=10.0):
    """getevents (the storm on) until nothing is in flight or limit seconds."""
    deadline = time.monotonic() + limit
    while ctx.inflight and time.monotonic() < deadline:
        out = storm.call(ctx.getevents, 1, 16, timeout=0.05)
        if out:
            got += out


def test_a_raising_signal_handler_loses_and_doubles_no_aio_request(storm_backend, datafile, storm):
    """Regression (pure backend): under a handler raising in the middle of
    calls, a raise just after io_submit returned lost its count (the
    requests went back to the queue and were submitted twice), one in a
    prep_* after the slot was taken left it taken for ever, and one in
    getevents after io_getevents dropped the events it had taken. Under a
    storm of raising signals every request queued comes back exactly once
    with the file's bytes, the context ends with nothing in flight, and it
    is usable."""
    fd, data = datafile
    rounds = 0
    t0 = time.monotonic()
    while rounds < 100 and time.monotonic() - t0 < 3:
        with storm_backend.Context(16) as ctx:
            bufs = {i: bytearray(3000) for i in range(48)}
            queued, got = set(), []
            for i, buf in bufs.items():
                if storm.call(ctx.prep_pread, fd, buf, i * 1000, user_data=i) is not None:
                    queued.add(i)
                if i % 8 == 7:
                    storm.call(ctx.submit)
                    got += storm.call(ctx.getevents, 0, 16, timeout=0) or []
            _reap_aio_storm(ctx, storm, got)
            got += ctx.getevents(0, 64, timeout=0)   # what a raising getevents gave back
            ids = [c.user_data for c in got]
            assert ctx.inflight == 0 and ctx.queued == 0, \
                f"round {rounds}: {ctx.inflight} requests never came back"
            assert len(ids) == len(set(ids)), f"round {rounds}: completions handed out twice"
            assert queued <= set(ids)    # a prep cut after it queued still completes
            for c in got:
                assert c.res == 3000 and bufs[c.user_data] == data[c.user_data * 1000:][:3000]
            after = bytearray(10)
            ctx.prep_pread(fd, after, 5, user_data="after")
            assert [(c.user_data, c.res) for c in reap(ctx, 1)] == [("after", 10)]
            assert after == data[5:15]
        rounds += 1
    assert storm.raised > 0 and rounds > 0


def test_a_raising_signal_handler_inside_read_batch_leaves_the_context_usable(storm_backend, datafile, storm):
    """Regression (pure backend): a handler raising as read_batch took or
    gave back the context left it refusing getevents() ("a read_batch ...
    is running") for ever, or its reads counted in flight with nobody to
    reap them. Under the storm, short batches on one context each either
    return every block's bytes or raise StormRaised; after each, once
    drained, nothing is in flight and getevents() serves; a batch after the
    storm reads right."""
    fd, data = datafile
    rounds = cut = 0
    t0 = time.monotonic()
    with storm_backend.Context(16) as ctx:
        while rounds < 3000 and time.monotonic() - t0 < 3:
            offsets = [(rounds * 7 + i * 7919) % 4096 * 16 for i in range(4)]
            buf = bytearray(4 * 16)
            res = storm.call(ctx.read_batch, fd, buf, offsets, 16, depth=2)
            if res is None:
                cut += 1
            else:
                assert res == [16] * 4
                assert all(buf[i * 16:][:16] == data[o:][:16] for i, o in enumerate(offsets))
            _reap_aio_storm(ctx, storm, [])
            assert ctx.inflight == 0, f"round {rounds}: {ctx.inflight} requests left in flight"
            assert ctx.getevents(0, 16, timeout=0) == []
            rounds += 1
        storm.armed = False
        buf2 = bytearray(32)
        assert ctx.read_batch(fd, buf2, [0, 100], 16) == [16, 16]
        assert buf2 == data[:16] + data[100:116]
    assert cut > 0 and rounds > 0
