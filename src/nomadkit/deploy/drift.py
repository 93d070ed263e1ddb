"""`nomadkit drift`: what a deploy would change on each kit, i.e. how far the kits have drifted.

The check is `deploy(..., dry=True)`: pyinfra reads each kit's state and compares it with the tour,
changing nothing. Its per-kit results are summarised here: in-sync, drifted (with each change
and the paths of the files that differ), unreachable, or failed.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from nomadkit.deploy.runner import KitResult
from nomadkit.errors import UserError

IN_SYNC, DRIFTED, UNREACHABLE, FAILED = "in-sync", "drifted", "unreachable", "failed"


class CouldNotCheck(UserError):
    """The drift check could not run at all (no such stop, bad endpoints): exit 2, like an
    unreachable kit, so a script never reads it as drift found."""

    exit_code = 2


@dataclass
class KitDrift:
    """One kit's drift: its status, what a deploy would change, and the files among that."""

    kit: str
    status: str  # in-sync | drifted | unreachable | failed
    count: int = 0
    changes: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    conditional: int = 0  # would change only if an earlier change happens (restarts, reloads)
    error: str = ""


def drift_of(result: KitResult) -> KitDrift:
    """A dry run's result as drift; a refused kit counts as failed (the check never refuses)."""
    if result.status == "ok":
        status = DRIFTED if result.changed else IN_SYNC
    else:
        status = UNREACHABLE if result.status == "unreachable" else FAILED
    return KitDrift(result.kit, status, result.changed, list(result.changes), list(result.files),
                    result.conditional, result.error)


def exit_code(drifts: list[KitDrift]) -> int:
    """0 every kit in sync, 1 drift found, 2 some kit could not be checked (it may drift too)."""
    if any(d.status in (UNREACHABLE, FAILED) for d in drifts):
        return 2
    return 1 if any(d.status == DRIFTED for d in drifts) else 0


def report(drifts: list[KitDrift]) -> str:
    """A line per kit, each change of a drifted kit under it, and what to do."""
    lines = [f"{'kit':<10} {'status':<12} {'changes':>7}"]
    for d in drifts:
        lines.append(f"{d.kit:<10} {d.status:<12} {d.count:>7}")
        lines += [f"{'':<10} {change}" for change in d.changes]
        if d.conditional:
            lines.append(f"{'':<10} +{d.conditional} conditional (restarts, reloads that follow the above)")
        if d.error:
            lines.append(f"{'':<10} {d.error}")
    drifted = [d.kit for d in drifts if d.status == DRIFTED]
    unchecked = [d.kit for d in drifts if d.status in (UNREACHABLE, FAILED)]
    if drifted:
        lines.append(f"drifted: {', '.join(drifted)} — `nomadkit deploy` puts them back as the tour says")
    if unchecked:
        lines.append(f"not checked: {', '.join(unchecked)} — reach the kit (see the error) and check again")
    if not drifted and not unchecked:
        lines.append("every kit is as the tour says")
    return "\n".join(lines)


def as_json(drifts: list[KitDrift]) -> str:
    """The drift of every kit, plus the lists a script acts on."""
    return json.dumps({
        "in_sync": exit_code(drifts) == 0,
        "drifted": [d.kit for d in drifts if d.status == DRIFTED],
        "unchecked": [d.kit for d in drifts if d.status in (UNREACHABLE, FAILED)],
        "kits": [asdict(d) for d in drifts],
    }, indent=2)
