"""Uplink health from probes: RTT, loss, carrier, and the healthy / degraded / dead states.

The states have hysteresis on purpose: a link turns degraded or dead at once, but is trusted
again only after it has met stricter thresholds (half the loss, three quarters of the RTT)
for `recover_after_s`. A flapping link therefore cannot cause flapping traffic.
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass, field

HEALTHY, DEGRADED, DEAD = "healthy", "degraded", "dead"


@dataclass(frozen=True)
class Thresholds:
    """When an uplink counts as degraded or dead (from `nomadkit.tour.AgentSettings`)."""

    window: int
    dead_after_lost: int
    degraded_loss_pct: float
    degraded_rtt_ms: int
    recover_after_s: float


@dataclass
class Health:
    """What the agent knows about one uplink, updated by every probe result."""

    name: str
    limits: Thresholds
    state: str = HEALTHY  # optimistic start: a dead link is found within dead_after_lost probes
    carrier: bool = True
    lost_in_row: int = 0
    since: float = 0.0  # when the state last changed
    good_since: float | None = None
    results: deque[float | None] = field(default_factory=deque)

    def observe(self, rtt_ms: float | None) -> None:
        """Record one probe: its round trip in ms, or None when it was lost."""
        self.results.append(rtt_ms)
        while len(self.results) > self.limits.window:
            self.results.popleft()
        self.lost_in_row = 0 if rtt_ms is not None else self.lost_in_row + 1

    @property
    def loss_pct(self) -> float:
        if not self.results:
            return 0.0
        return 100.0 * sum(r is None for r in self.results) / len(self.results)

    @property
    def rtt_ms(self) -> float | None:
        answered = [r for r in self.results if r is not None]
        return statistics.median(answered) if answered else None

    def _dead(self) -> bool:
        return not self.carrier or self.lost_in_row >= self.limits.dead_after_lost

    def _bad(self) -> bool:
        rtt = self.rtt_ms
        return self.loss_pct > self.limits.degraded_loss_pct or (
            rtt is not None and rtt > self.limits.degraded_rtt_ms)

    def _good(self) -> bool:
        rtt = self.rtt_ms
        return (self.loss_pct <= self.limits.degraded_loss_pct / 2 and rtt is not None
                and rtt <= self.limits.degraded_rtt_ms * 0.75 and self.lost_in_row == 0)

    def evaluate(self, now: float) -> str:
        """Move to the state the evidence supports; return it."""
        good = not self._dead() and self._good()
        if not good:
            self.good_since = None
        elif self.good_since is None:
            self.good_since = now
        if self._dead():
            new = DEAD
        elif self.state == HEALTHY:
            new = DEGRADED if self._bad() else HEALTHY
        elif self.good_since is not None and now - self.good_since >= self.limits.recover_after_s:
            new = HEALTHY
        else:
            new = DEGRADED
        if new != self.state:
            self.state, self.since = new, now
        return new

    def as_dict(self) -> dict[str, object]:
        rtt = self.rtt_ms
        return {"state": self.state, "carrier": self.carrier,
                "rtt_ms": None if rtt is None else round(rtt, 1),
                "loss_pct": round(self.loss_pct, 1), "lost_in_row": self.lost_in_row}
