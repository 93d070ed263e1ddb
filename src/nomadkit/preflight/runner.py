"""Running preflight checks: the harmless ones in parallel, the drills one at a time.

A check is a function that measures something and returns its evidence, or raises `Failed`,
`Warned` or `Skipped` with a hint. The runner times each one, scrubs secrets from the evidence,
and never lets one broken check stop the others: an unexpected error is a failed check that
says what went wrong.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from nomadkit.endpoints import CloudEndpoints
from nomadkit.preflight.report import CheckResult, Report, scrub
from nomadkit.remote import Remote, Unreachable
from nomadkit.tour import Kit, Stop, Tour

Evidence = dict[str, Any]


class Outcome(Exception):
    """A verdict other than pass, with the hint that tells the operator what to do."""

    verdict: Literal["warn", "fail", "skip"] = "fail"

    def __init__(self, hint: str, **evidence: Any) -> None:
        super().__init__(hint)
        self.hint = hint
        self.evidence = evidence


class Failed(Outcome):
    verdict = "fail"


class Warned(Outcome):
    verdict = "warn"


class Skipped(Outcome):
    verdict = "skip"


@dataclass
class Context:
    """Everything a check may look at: the tour, the stop, how to reach kits and cloud."""

    tour: Tour
    stop: Stop
    endpoints: CloudEndpoints | None  # as this machine reaches the cloud
    remotes: dict[str, Remote]
    kit_endpoints: CloudEndpoints | None = None  # as the kits reach it (differs in the lab)
    links: Any | None = None  # lab link control (cut/restore an uplink), None on real kits
    secrets: list[str] = field(default_factory=list)
    local_cloud: Any | None = None  # the local cloud's control API, None on AWS

    @property
    def kits(self) -> list[Kit]:
        return [self.tour.kit(name) for name in self.stop.kits]


@dataclass(frozen=True)
class Check:
    """One preflight check.

    + id: stable id, e.g. `clock.sync`
    + title: what it proves, in a few words
    + run: `run(ctx, kit)` for per-kit checks, `run(ctx, None)` for tour-wide ones
    + per_kit: run once per kit of the stop
    + exclusive: disturbs the kit or cloud (link cuts, origin stops): runs alone, after the rest
    """

    id: str
    title: str
    run: Callable[[Context, Kit | None], Evidence]
    per_kit: bool = True
    exclusive: bool = False


def run_one(check: Check, ctx: Context, kit: Kit | None) -> CheckResult:
    """Run a check, turning every outcome (including surprises) into a result."""
    start = time.monotonic()
    hint: str | None = None
    try:
        evidence, verdict = check.run(ctx, kit), "pass"
    except Outcome as outcome:
        evidence, verdict, hint = outcome.evidence, outcome.verdict, outcome.hint
    except Unreachable as exc:
        evidence, verdict, hint = {}, "fail", str(exc)
    except Exception as exc:  # a check that breaks is a failed check, never a crashed preflight
        where = traceback.extract_tb(exc.__traceback__)[-1]
        evidence = {"error": f"{type(exc).__name__}: {exc}",
                    "at": f"{Path(where.filename).name}:{where.lineno} ({where.name})"}
        verdict, hint = "fail", "the check itself could not run — see the error and where it was raised"
    return CheckResult(check.id, check.title, kit.name if kit else None, verdict,
                       scrub(evidence, ctx.secrets), round(time.monotonic() - start, 2),
                       scrub(hint, ctx.secrets) if hint else None)


def run_all(checks: list[Check], ctx: Context, report: Report,
            progress: Callable[[CheckResult], None] = lambda r: None) -> Report:
    """Run every check on every kit of the stop; the report keeps the checks' order.

    Calm checks run in parallel across kits but one at a time on each kit (plus the tour-wide
    ones): a kit busy encoding answers one question quickly, not five at once."""
    start = time.monotonic()
    jobs = [(c, k) for c in checks for k in (ctx.kits if c.per_kit else [None])]
    calm = [job for job in jobs if not job[0].exclusive]
    drills = [job for job in jobs if job[0].exclusive]
    results: dict[tuple[str, str | None], CheckResult] = {}

    def record(result: CheckResult) -> None:
        results[(result.id, result.kit)] = result
        progress(result)

    lanes: dict[str | None, list[tuple[Check, Kit | None]]] = {}
    for check, kit in calm:
        lanes.setdefault(kit.name if kit else None, []).append((check, kit))

    def lane(jobs: list[tuple[Check, Kit | None]]) -> None:
        for check, kit in jobs:
            record(run_one(check, ctx, kit))

    with ThreadPoolExecutor(max_workers=max(len(lanes), 1)) as pool:
        list(pool.map(lane, lanes.values()))
    for check, kit in drills:
        record(run_one(check, ctx, kit))
    report.results = [results[(c.id, k.name if k else None)] for c, k in jobs]
    report.duration_s = time.monotonic() - start
    return report
