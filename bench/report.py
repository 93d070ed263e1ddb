"""What a benchmark hands back, and the figures helpers every benchmark shares.

A benchmark module `bench/bench_<name>.py` exposes `run(quick: bool) -> Result`. Numbers in a
Result come from that call only; `python -m bench` turns the Results into docs/benchmarks.md.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass
class Table:
    """One markdown table: a title, column names, and rows of already formatted cells."""

    title: str
    columns: Sequence[str]
    rows: list[Sequence[str]] = field(default_factory=list)


@dataclass
class Result:
    """One benchmark's outcome.

    + title: heading in docs/benchmarks.md
    + measured: what was measured and how (a sentence or two)
    + on: what it ran on (TCG/KVM, kit count, namespaces, loopback)
    + summary: one line for the top of the document: where nomadkit stands
    + tables: the figures
    + figures: the raw numbers (for --json)
    + skipped: why it could not run here (then the other fields may be empty)
    """

    title: str
    measured: str = ""
    on: str = ""
    summary: str = ""
    tables: list[Table] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    skipped: str | None = None
    ran_at: str = ""  # UTC, when this benchmark ran (set by `python -m bench`)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Result:
        return cls(**{**data, "tables": [Table(**t) for t in data.get("tables", [])]})


def described(doc: str) -> str:
    """A module docstring's body (after its first paragraph) as one line of prose."""
    return " ".join(doc.split("\n\n", 1)[1].split())


def skipped(title: str, reason: str) -> Result:
    return Result(title=title, summary=f"skipped: {reason}", skipped=reason)


@dataclass(frozen=True)
class Spread:
    """min / median / max of repeated measurements."""

    low: float
    median: float
    high: float
    n: int

    @classmethod
    def of(cls, values: Iterable[float]) -> Spread:
        values = sorted(values)
        if not values:
            raise ValueError("no measurements")
        return cls(values[0], statistics.median(values), values[-1], len(values))

    def cells(self, digits: int = 2) -> list[str]:
        return [f"{v:.{digits}f}" for v in (self.low, self.median, self.high)]


def ratio(a: float, b: float) -> str:
    """a / b as `×N` text; `n/a` when b is zero (nothing to compare against)."""
    return f"×{a / b:.1f}" if b else "n/a"


def timed(fn: Callable[..., T], *args: Any, **kwargs: Any) -> tuple[T, float]:
    """Call fn; return its result and the wall seconds it took."""
    start = time.monotonic()
    result = fn(*args, **kwargs)
    return result, time.monotonic() - start


def percentile(values: Sequence[float], pct: float) -> float:
    """The pct-th percentile (nearest rank) of values."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(pct / 100 * len(ordered)) - 1))]
