"""What every part of ``python -m fastio bench`` returns (docs/issue 6).

Conventions all parts follow, so the report can treat them alike:

* ``Row.ratio`` is the row's speed relative to its baseline, > 1 meaning
  better: ``value / baseline`` for rates (``req/s``, ``IOPS``), ``baseline /
  value`` for times (``us``). A part may fill it itself (e.g. a paired ratio,
  round by round); rows it leaves at None get ``value``-based ratios from
  ``report.fill_ratios``.
* ``Row.extra["group"]`` (optional, a str) splits a part into cases that
  each have their own baseline row: the row named ``Part.baseline`` in the
  same group (e.g. "1 connection" / "64 connections", or "page cache" /
  "O_DIRECT"). The table prints one sub-heading per group. Rows without a
  group form one unnamed group.
* ``Row.extra["mean_us"]``: mean latency when measured (``p99_us`` is its
  99th percentile); the part's ``method`` text says what a latency is there.
* ``Row.samples``: the row's measurement in each round, in round order
  (several rounds alternate the rows, so drift of the machine hits every row
  alike); ``value`` is then their median. ``report.fill_spread`` sets
  ``Row.spread`` (the interquartile range of the samples over their median)
  and ``Row.noisy`` (spread above ``report.NOISY_SPREAD``) from them. A row
  with fewer than two samples has no spread.
* A row that could not run here has ``skipped`` set to the reason and
  ``value`` None; that is not a failure. A part reports real failures (a
  wrong result, an exception) in ``Part.extra["problems"]`` (a list of str),
  which makes ``python -m fastio bench`` exit with status 1.
* Every number is a plain int or float (no NaN): the JSON is ``asdict()``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

# Units where a larger value is better; any other unit is a time (smaller is better).
RATE_UNITS = ("req/s", "IOPS", "ops/s", "calls/s", "events/s", "B/s", "MB/s", "MiB/s", "GB/s")
TIME_UNITS = ("ns", "us", "ms", "s")


@dataclass
class Row:
    name: str
    kind: str
    value: Optional[float] = None
    unit: str = ""
    p99_us: Optional[float] = None
    cpu_s: Optional[float] = None
    syscalls_per_op: Optional[float] = None
    ratio: Optional[float] = None
    skipped: Optional[str] = None
    extra: dict[str, Any] = field(default_factory=dict)
    samples: list[float] = field(default_factory=list)
    spread: Optional[float] = None
    noisy: bool = False

    @classmethod
    def skip(cls, name: str, kind: str, reason: str, unit: str = "", **extra: Any) -> Row:
        """A row that could not run here, with the reason."""
        return cls(name, kind, None, unit, skipped=reason, extra=extra)

    @property
    def group(self) -> Optional[str]:
        return self.extra.get("group")


@dataclass
class Part:
    name: str
    title: str
    baseline: str
    rows: list[Row]
    method: str
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Options:
    quick: bool = False
    duration: Optional[float] = None
    rounds: Optional[int] = None
    connections: Optional[list[int]] = None
    models: Optional[list[str]] = None
    cpus: Optional[str] = None  # echo: "shared" (default) or "split"
    parts: list[str] = field(default_factory=list)
    directory: Optional[str] = None
    backend: Optional[str] = None
