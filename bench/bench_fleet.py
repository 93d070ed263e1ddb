"""Fleet deploy: wall time to configure 1, 2 and 4 lab kits together, and how it scales.

Each size starts from a fresh lab (`bench.bench_kit_deploy.case`, first apply only). The lab
kits play the demo tour's kits in turn (4 kits: kit-a, kit-b, kit-a, kit-b), so every kit does
a real kit's full deploy. `--quick` stops at 2 kits.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from bench.bench_kit_deploy import case, check
from bench.report import Result, Table
from nomadkit.lab.progress import Progress
from nomadkit.lab.vm import detect_accel

TITLE = "Fleet deploy: 1, 2 and 4 kits together"
NEEDS_LAB = True
SIZES = (1, 2, 4)
QUICK_SIZES = (1, 2)


def run(quick: bool) -> Result:
    walls: dict[int, float] = {}
    with tempfile.TemporaryDirectory(prefix="nomadkit-bench-fleet-") as scratch:
        os.environ["NOMADKIT_SECRETS"] = str(Path(scratch) / "secrets")
        for kits in QUICK_SIZES if quick else SIZES:
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
    return Result(
        title=TITLE,
        measured=("first apply of `nomadkit deploy` to N freshly resumed lab kits at once "
                  "(pyinfra in parallel)"),
        on=f"QEMU lab, {detect_accel().name.upper()}, 1 vCPU per kit on a {os.cpu_count()}-core machine",
        summary=", ".join(f"{n} kits take ×{walls[n] / walls[1]:.2f} the wall time of 1" for n in walls
                          if n > 1) + " (ideal parallel: ×1.0; serial: ×N)",
        tables=[table], figures={"wall_s": walls})
