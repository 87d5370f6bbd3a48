"""Signal-driven IO against epoll and the textbook SIGIO handler, in one run.

Workloads (AF_UNIX stream socket pairs, one thread, 1-byte messages):

* ping-pong: one pair, both ends in the set. A sends, wait, B reads and
  answers, wait, A reads and sends again. Two events per round trip.
* fan-in: N pairs; each round sends one byte into every pair's far end, then
  waits until all N near ends were reported readable and reads each.
* one ready of M: M pairs in the set, one byte into one of them (in turn) per
  wait: the textbook handler's poll over every fd costs O(M) per event here.

The sender runs in the same thread, so every wait finds its events already
queued (a send into a Unix socket queues the signal or the epoll item before
it returns): this measures the per-event cost of each mechanism (the wait
call, the dispatch into Python, the result list), not wake-up latency.

Candidates: ``SignalIO`` on the c and pure backends, ``TextbookSignalIO``
(a Python SIGIO handler plus a poll over every fd) on both, fastio's
``Epoll`` (c) and the stdlib ``select.epoll``, all level of detail equal: the
loop asks each for ``(fd, mask)`` pairs and reads the fds whose mask has bit 1
(POLLIN == EPOLLIN). Every wait has a 1 s timeout; a wait that returns nothing
aborts the run (a stall), so every loop is bounded in count and time.

Each repeat runs every candidate once, in turn (interleaved, so drift hits all
alike); the table gives the median and the best events per second over the
repeats, and the cost per event relative to fastio's epoll (c) for each. On a
shared or loaded machine the best run is the steadier figure.

    python bench/sigio_bench.py [--repeats 7] [--rounds 20000] [--fds 64] [--fan-rounds 400]
        [--sparse-fds 256] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import select
import socket
import statistics
import sys
import time

from fastio._c import epoll as c_epoll
from fastio._c import sigio as c_sigio
from fastio._pure import sigio as pure_sigio

POLLIN = 1
WAIT_TIMEOUT = 1.0


class Stall(RuntimeError):
    pass


def make_sigio(cls):
    def setup(fds):
        sio = cls()
        for fd in fds:
            sio.add(fd)
        while sio.wait(0):  # the writable state add() reports
            pass
        return sio.wait, sio.close

    return setup


def make_textbook(cls):
    def setup(fds):
        tb = cls()
        for fd in fds:
            tb.add(fd, POLLIN)
        tb.wait(0)
        return tb.wait, tb.close

    return setup


def make_epoll(cls):
    def setup(fds):
        ep = cls()
        for fd in fds:
            ep.register(fd, POLLIN)
        return ep.poll, ep.close

    return setup


CANDIDATES = {
    "SignalIO (c)": make_sigio(c_sigio.SignalIO),
    "SignalIO (pure)": make_sigio(pure_sigio.SignalIO),
    "TextbookSignalIO (c)": make_textbook(c_sigio.TextbookSignalIO),
    "TextbookSignalIO (pure)": make_textbook(pure_sigio.TextbookSignalIO),
    "Epoll (fastio c)": make_epoll(c_epoll.Epoll),
    "select.epoll (stdlib)": make_epoll(select.epoll),
}
BASELINE = "Epoll (fastio c)"


def ping_pong(setup, rounds: int) -> float:
    """Events per second of `rounds` round trips (2 events each)."""
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    fa, fb = a.fileno(), b.fileno()
    wait, close = setup([fa, fb])
    try:
        a_recv, b_recv, a_send, b_send = a.recv, b.recv, a.send, b.send
        start = time.perf_counter()
        a_send(b"x")
        for _ in range(rounds):
            for want, recv, send, msg in ((fb, b_recv, b_send, b"y"), (fa, a_recv, a_send, b"x")):
                for _spin in range(100):
                    ready = [fd for fd, mask in wait(WAIT_TIMEOUT) if mask & POLLIN]
                    if not ready:
                        raise Stall("a wait returned nothing within 1 s")
                    if want in ready:
                        break
                else:
                    raise Stall("the peer's event never came")
                recv(16)
                send(msg)
        elapsed = time.perf_counter() - start
    finally:
        close()
        a.close()
        b.close()
    return 2 * rounds / elapsed


def fan_in(setup, nfds: int, rounds: int) -> float:
    """Events per second of `rounds` rounds of one byte into each of nfds pairs."""
    pairs = [socket.socketpair() for _ in range(nfds)]
    for a, b in pairs:
        a.setblocking(False)
    near = {a.fileno(): a.recv for a, _ in pairs}
    far = [b.send for _, b in pairs]
    wait, close = setup(list(near))
    try:
        start = time.perf_counter()
        for _ in range(rounds):
            for send in far:
                send(b"x")
            left = nfds
            for _spin in range(10 * nfds):
                events = wait(WAIT_TIMEOUT)
                if not events:
                    raise Stall("a wait returned nothing within 1 s")
                for fd, mask in events:
                    if mask & POLLIN:
                        try:
                            near[fd](64)
                            left -= 1
                        except BlockingIOError:
                            pass  # a stale report: already read
                if left <= 0:
                    break
            else:
                raise Stall("not every fd was reported")
        elapsed = time.perf_counter() - start
    finally:
        close()
        for a, b in pairs:
            a.close()
            b.close()
    return nfds * rounds / elapsed


def one_of_many(setup, nfds: int, rounds: int) -> float:
    """Events per second when nfds pairs are in the set but only one, in
    turn, becomes ready per wait: the case a poll over every fd pays for."""
    pairs = [socket.socketpair() for _ in range(nfds)]
    for a, b in pairs:
        a.setblocking(False)
    near = [a for a, _ in pairs]
    wait, close = setup([a.fileno() for a in near])
    try:
        start = time.perf_counter()
        for i in range(rounds):
            k = i % nfds
            pairs[k][1].send(b"x")
            want = near[k].fileno()
            for _spin in range(100):
                events = wait(WAIT_TIMEOUT)
                if not events:
                    raise Stall("a wait returned nothing within 1 s")
                if any(fd == want and mask & POLLIN for fd, mask in events):
                    break
            else:
                raise Stall("the event never came")
            near[k].recv(64)
        elapsed = time.perf_counter() - start
    finally:
        close()
        for a, b in pairs:
            a.close()
            b.close()
    return rounds / elapsed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--rounds", type=int, default=20000, help="ping-pong round trips per repeat")
    parser.add_argument("--fds", type=int, default=64, help="socket pairs in the fan-in")
    parser.add_argument("--fan-rounds", type=int, default=400, help="fan-in rounds per repeat")
    parser.add_argument("--sparse-fds", type=int, default=256, help="socket pairs in the one-of-many workload")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)

    workloads = {
        "ping-pong": lambda setup: ping_pong(setup, args.rounds),
        f"fan-in ({args.fds} fds)": lambda setup: fan_in(setup, args.fds, args.fan_rounds),
        f"one ready of {args.sparse_fds} fds": lambda setup: one_of_many(setup, args.sparse_fds, args.rounds),
    }
    results: dict[str, dict[str, list[float]]] = {w: {c: [] for c in CANDIDATES} for w in workloads}
    for name, run in workloads.items():
        for setup in CANDIDATES.values():  # warm-up
            run(setup)
        for _ in range(args.repeats):
            for cand, setup in CANDIDATES.items():
                results[name][cand].append(run(setup))

    medians = {w: {c: statistics.median(v) for c, v in r.items()} for w, r in results.items()}
    bests = {w: {c: max(v) for c, v in r.items()} for w, r in results.items()}
    meta = {
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "kernel": platform.release(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "loadavg_at_end": os.getloadavg()[0],
        "repeats": args.repeats,
        "rounds": args.rounds,
        "fds": args.fds,
        "fan_rounds": args.fan_rounds,
        "sparse_fds": args.sparse_fds,
    }
    if args.json:
        print(json.dumps({"meta": meta, "median_events_per_s": medians, "best_events_per_s": bests,
                          "runs": results}, indent=2))
        return 0
    print(f"# sigio_bench: {meta['python']}, Linux {meta['kernel']} {meta['machine']}, {meta['cpus']} CPUs, "
          f"{args.repeats} repeats, load average {meta['loadavg_at_end']:.2f} at the end")
    for w in medians:
        med, best = medians[w], bests[w]
        print(f"\n## {w}\n")
        print("| candidate | events/s, median | events/s, best | cost per event vs Epoll (fastio c), "
              "median / best |")
        print("|---|---:|---:|---:|")
        for cand in med:
            print(f"| {cand} | {med[cand]:,.0f} | {best[cand]:,.0f} | "
                  f"{med[BASELINE] / med[cand]:.2f}x / {best[BASELINE] / best[cand]:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
