"""Kit deploy figures: first apply and no-change re-runs of the whole kit deploy on a lab kit.

    .venv/bin/python -m bench.bench_kit_deploy [--kits 1] [--reruns 1] [--json]

Each case starts from fresh lab kits (`nomadkit lab up`, resumed from golden snapshots) with the
demo tour mapped onto them and a stand-in CDN and relay on loopback (nomadkit.deploy.labtour):
a first apply, then no-change re-runs (which must change nothing). `python -m bench` calls
`run()`; bench_fleet reuses `case()` for 1, 2 kits deployed together. Needs root and no lab
running. Timings are wall seconds on this machine (TCG when KVM is not usable).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.report import Result, Spread, Table, ratio
from nomadkit.deploy.labtour import DEMO, LabTour, standin_cloud
from nomadkit.lab.lab import Lab, kits_from_count
from nomadkit.lab.progress import Progress
from nomadkit.lab.vm import detect_accel
from nomadkit.tour import load_tour

TITLE = "Kit deploy: first apply vs no-change re-run"
NEEDS_LAB = True


def case(kits: int, reruns: int, progress: Progress) -> dict[str, Any]:
    """Fresh lab of `kits` kits: first apply, then `reruns` no-change re-runs; wall and per kit."""
    with tempfile.TemporaryDirectory(prefix="nomadkit-bench-deploy-") as scratch:
        folder = Path(scratch)
        os.environ["NOMADKIT_SECRETS"] = str(folder / "secrets")
        lab = Lab(progress)
        lab.up(kits_from_count(kits))
        try:
            streams = [s.name for k in load_tour(DEMO).kits for s in k.streams]
            with standin_cloud(folder, streams) as cloud:
                tour = LabTour(lab, folder, cloud)
                figures: dict[str, Any] = {"kits": tour.names, "runs": []}
                for run in ["first_apply"] + ["no_change_rerun"] * reruns:
                    start = time.monotonic()
                    results = tour.deploy(progress=progress)
                    figures["runs"].append({
                        "run": run, "wall_s": time.monotonic() - start,
                        "per_kit": {k: {"s": r.seconds, "changed": r.changed, "operations": r.operations,
                                        "status": r.status} for k, r in results.items()}})
                return figures
        finally:
            lab.down(quiet=True)


def check(figures: dict[str, Any]) -> None:
    """A deploy that failed, or a re-run that changed something, is not a figure to publish."""
    for run in figures["runs"]:
        for kit, result in run["per_kit"].items():
            if result["status"] != "ok" or (run["run"] != "first_apply" and result["changed"]):
                raise RuntimeError(f"{run['run']} on {kit}: {result}")


def run(quick: bool) -> Result:
    figures = case(1, 1 if quick else 3, Progress(quiet=True))
    check(figures)
    first = figures["runs"][0]
    reruns = Spread.of(r["wall_s"] for r in figures["runs"][1:])
    [kit] = figures["kits"]
    table = Table("Wall seconds, one lab kit", ["run", "min", "median", "max", "N",
                                                "operations", "changed", "ratio first / re-run"])
    table.rows.append(["first apply", *Spread.of([first["wall_s"]]).cells(1), "1",
                       str(first["per_kit"][kit]["operations"]), str(first["per_kit"][kit]["changed"]), ""])
    table.rows.append(["no-change re-run", *reruns.cells(1), str(reruns.n),
                       str(figures["runs"][1]["per_kit"][kit]["operations"]), "0",
                       ratio(first["wall_s"], reruns.median)])
    table.rows.append(["same work as an Ansible playbook (ansible-runner)", "skipped", "", "", "", "", "",
                       "skipped: no equivalent playbook in bench/ yet"])
    return Result(
        title=TITLE,
        measured=("`nomadkit deploy` (pyinfra API, every role: install, configure, activate) of the "
                  "demo tour's kit onto a freshly resumed lab kit, then no-change re-runs that must "
                  "report zero changes."),
        on=f"QEMU lab, {detect_accel().name.upper()}, 1 kit, stand-in CDN and relay on loopback",
        summary=(f"first apply {first['wall_s']:.0f} s, no-change re-run {reruns.median:.0f} s "
                 f"({ratio(first['wall_s'], reruns.median)}); the Ansible side-by-side is not built yet"),
        tables=[table], figures=figures)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kits", type=int, default=1)
    parser.add_argument("--reruns", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    figures = {"accel": detect_accel().name,
               **case(args.kits, args.reruns, Progress(quiet=args.json))}
    print(json.dumps(figures, indent=2) if args.json else
          "\n".join(f"{k}: {json.dumps(v)}" for k, v in figures.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
