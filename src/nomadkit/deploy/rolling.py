"""`nomadkit deploy --rolling`: one canary kit, then the rest in batches, halting on a bad batch.

A bad change then reaches one kit, not the whole fleet. Each batch is one plain
`deploy(..., kit=[...])`, so every kit's doors-open lock is honoured exactly as `nomadkit deploy`
honours it; a refused kit halts the roll like a failed or unreachable one, and the kits after it
are left untouched (and named).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from nomadkit.deploy.runner import KitResult, deploy, select_kits, summary
from nomadkit.errors import UserError
from nomadkit.lab.progress import Progress
from nomadkit.tour import load_tour

DeployBatch = Callable[[list[str]], list[KitResult]]


def plan(kits: list[str], batch: int) -> list[list[str]]:
    """The first kit alone (the canary), then the others `batch` at a time."""
    if batch < 1:
        raise UserError(f"--batch must be at least 1 (got {batch})")
    return [kits[:1], *(kits[i:i + batch] for i in range(1, len(kits), batch))] if kits else []


def label(index: int) -> str:
    return "canary" if index == 0 else f"batch {index}"


@dataclass
class Rollout:
    """The planned batches and the results of those that ran (a roll stops after a bad one)."""

    batches: list[list[str]]
    ran: list[list[KitResult]] = field(default_factory=list)

    @property
    def results(self) -> list[KitResult]:
        return [r for results in self.ran for r in results]

    @property
    def deployed(self) -> list[str]:
        return [r.kit for r in self.results if r.status == "ok"]

    @property
    def failed(self) -> list[KitResult]:
        return [r for r in self.results if r.status != "ok"]

    @property
    def untouched(self) -> list[str]:
        return [kit for batch in self.batches[len(self.ran):] for kit in batch]

    @property
    def ok(self) -> bool:
        return not self.failed and not self.untouched


def roll(batches: list[list[str]], deploy_batch: DeployBatch, progress: Progress) -> Rollout:
    """Deploy batch after batch; stop after the first with a kit that is not ok."""
    rollout = Rollout(batches)
    for index, kits in enumerate(batches):
        progress(f"{label(index)}: {', '.join(kits)}")
        try:
            results = deploy_batch(kits)
        except UserError as exc:  # the batch's deploy stopped as a whole: none of its kits is known good
            results = [KitResult(kit, status="failed", error=str(exc)) for kit in kits]
        rollout.ran.append(results)
        bad = [f"{r.kit} {r.status}" for r in results if r.status != "ok"]
        if bad:
            progress(f"{label(index)}: {', '.join(bad)} — halting, {len(rollout.untouched)} kit(s) "
                     "left untouched")
            break
    return rollout


def rolling_deploy(tour_file: Path, *, stop: str | None = None, kit: str | None = None,
                   batch: int | None = None, force: bool = False, connect_file: Path | None = None,
                   endpoints_file: Path | None = None, progress: Progress | None = None) -> Rollout:
    """The chosen kits, canary first, in batches of `batch` (default: the tour's rollout.batch)."""
    progress = progress or Progress()
    tour = load_tour(tour_file)
    batches = plan(select_kits(tour, stop, kit), batch or tour.rollout.batch)

    def deploy_batch(kits: list[str]) -> list[KitResult]:
        return deploy(tour_file, stop=stop, kit=kits, force=force, connect_file=connect_file,
                      endpoints_file=endpoints_file, progress=progress)

    return roll(batches, deploy_batch, progress)


def report(rollout: Rollout) -> str:
    """Each batch that ran with its summary, then which kits were deployed, failed, left untouched."""
    lines = []
    for index, results in enumerate(rollout.ran):
        lines += [f"{label(index)}: {', '.join(rollout.batches[index])}", summary(results, dry=False), ""]
    lines += [f"deployed:  {', '.join(rollout.deployed) or 'none'}",
              f"failed:    {', '.join(f'{r.kit} ({r.status})' for r in rollout.failed) or 'none'}",
              f"untouched: {', '.join(rollout.untouched) or 'none'}"]
    if rollout.failed:
        last = len(rollout.ran) - 1
        lines.append(f"halted after {'the canary' if last == 0 else label(last)}: fix the failed kit(s) "
                     "and run the same command again (deployed kits then change nothing)")
    return "\n".join(lines)


def as_json(rollout: Rollout) -> str:
    """Every planned batch, with its results if it ran, and the three lists."""
    return json.dumps({
        "ok": rollout.ok,
        "batches": [{"name": label(i), "kits": kits, "ran": i < len(rollout.ran),
                     "results": [asdict(r) for r in rollout.ran[i]] if i < len(rollout.ran) else []}
                    for i, kits in enumerate(rollout.batches)],
        "deployed": rollout.deployed,
        "failed": [r.kit for r in rollout.failed],
        "untouched": rollout.untouched,
    }, indent=2)
