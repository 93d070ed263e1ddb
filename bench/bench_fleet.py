"""Fleet deploy: wall time to configure 1, 2 and 4 lab kits together, and how it scales.

Each size starts from a fresh lab (`bench.bench_kit_deploy.case`, first apply only). The lab
kits play the demo tour's kits in turn (4 kits: kit-a, kit-b, kit-a, kit-b), so every kit does
a real kit's full deploy. The 1-kit figure is the kit deploy benchmark's first apply when it ran
earlier in the same run (the same deploy on the same fresh kit: measuring it twice cost ~7
minutes on TCG). `--quick` stops at 2 kits.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from bench.bench_kit_deploy import case, check, first_apply_ok
from bench.report import Result, Table
from nomadkit.lab.progress import Progress
from nomadkit.lab.vm import detect_accel

TITLE = "Fleet deploy: 1, 2 and 4 kits together"
NEEDS_LAB = True
SIZES = (1, 2, 4)
QUICK_SIZES = (1, 2)


REUSES = ("kit_deploy",)


def one_kit_from(earlier: Mapping[str, Result]) -> dict[str, float]:
    """The kit deploy benchmark's first applies on one fresh kit, if it ran in this run and they
    succeeded: nomadkit's ("pyinfra") and the same work through ansible-runner ("ansible")."""
    kit_deploy = earlier.get("kit_deploy")
    if not kit_deploy or kit_deploy.skipped:
        return {}
    return {tool: runs[0]["wall_s"] for tool in ("pyinfra", "ansible")
            if first_apply_ok(runs := kit_deploy.figures.get(tool, []))}


def run(quick: bool, earlier: Mapping[str, Result]) -> Result:
    reused = one_kit_from(earlier)
    walls: dict[int, float] = {1: reused["pyinfra"]} if "pyinfra" in reused else {}
    with tempfile.TemporaryDirectory(prefix="nomadkit-bench-fleet-") as scratch:
        os.environ["NOMADKIT_SECRETS"] = str(Path(scratch) / "secrets")
        for kits in [n for n in (QUICK_SIZES if quick else SIZES) if n not in walls]:
            (Path(scratch) / str(kits)).mkdir()
            figures = case(kits, 0, Progress(quiet=True), Path(scratch) / str(kits))
            check(figures["runs"])
            walls[kits] = figures["runs"][0]["wall_s"]
    table = Table("First apply, wall seconds (one run each)",
                  ["kits", "wall s", "s per kit", "scaling vs 1 kit (wall ratio)"])
    for kits, wall in walls.items():
        table.rows.append([str(kits), f"{wall:.0f}", f"{wall / kits:.0f}", f"×{wall / walls[1]:.2f}"])
    if quick:
        table.rows.append(["4", "skipped", "", "skipped: --quick"])
    if "ansible" in reused:  # the same first apply's work as an Ansible playbook, same run
        table.rows.append(["1, by ansible-runner (same work)", f"{reused['ansible']:.0f}",
                           f"{reused['ansible']:.0f}", f"×{reused['ansible'] / walls[1]:.2f}"])
    return Result(
        title=TITLE,
        measured=("first apply of `nomadkit deploy` to N freshly resumed lab kits at once "
                  "(pyinfra in parallel)" + ("; the 1-kit rows are the kit deploy benchmark's first "
                                             "applies in this run" if reused else "")),
        on=f"QEMU lab, {detect_accel().name.upper()}, 1 vCPU per kit on a {os.cpu_count()}-core machine",
        summary=", ".join(f"{n} kits take ×{walls[n] / walls[1]:.2f} the wall time of 1" for n in walls
                          if n > 1) + " (ideal parallel: ×1.0; serial: ×N)"
                + (f"; 1 kit's work by ansible-runner takes ×{reused['ansible'] / walls[1]:.2f}"
                   if "ansible" in reused else ""),
        tables=[table], figures={"wall_s": walls})
