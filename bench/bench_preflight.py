"""Preflight: total and per-check duration of the preflight for one stop with 2 kits.

`nomadkit up tours/demo.yaml --stop alfama` on this machine (local cloud, lab kits, deploy), then
the preflight's own timings: the whole run (calm checks in parallel, drills one at a time) and
each check on each kit. The local cloud and the lab are taken down after: a lab left up would make
the next `make bench` wait for it and then skip every lab benchmark.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from bench.report import Result, Table, described
from nomadkit import ROOT
from nomadkit.lab.progress import Progress
from nomadkit.lab.vm import detect_accel
from nomadkit.up import bring_up, take_down

TITLE = "Preflight: one stop, 2 kits"
NEEDS_LAB = True
DEMO = ROOT / "tours" / "demo.yaml"
GOAL_S = 600  # the design's promise: the whole preflight for a stop with two kits in 10 minutes


def run(quick: bool) -> Result:
    with tempfile.TemporaryDirectory(prefix="nomadkit-bench-preflight-") as scratch:
        os.environ["NOMADKIT_SECRETS"] = str(Path(scratch) / "secrets")
        try:
            report, _, phases = bring_up(DEMO, "alfama", Path(scratch) / "report", Progress(quiet=True))
        finally:
            take_down(DEMO, Progress(quiet=True))
    per_check = Table("Per check (seconds; drills run alone after the parallel checks)",
                      ["check", "kit", "verdict", "seconds"])
    for r in sorted(report.results, key=lambda r: -r.duration_s):
        per_check.rows.append([r.id, r.kit or "cloud", r.verdict, f"{r.duration_s:.1f}"])
    phase_table = Table("`nomadkit up` phases (seconds)", ["phase", "seconds"],
                        [[name, f"{s:.0f}"] for name, s in phases.seconds.items()])
    verdict = "GO" if report.go else "NO-GO"
    return Result(
        title=TITLE, measured=described(__doc__),
        on=f"QEMU lab, {detect_accel().name.upper()}, 2 kits, 1 vCPU each, local cloud on loopback",
        summary=(f"{verdict} in {report.duration_s:.0f} s for 2 kits "
                 f"({report.duration_s / GOAL_S:.2f} of the 10-minute budget)"),
        tables=[phase_table, per_check],
        figures={"preflight_s": report.duration_s, "phases_s": phases.seconds, "verdict": verdict})
