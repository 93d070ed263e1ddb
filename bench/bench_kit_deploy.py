"""Kit deploy figures: first apply and no-change re-run per kit, and 1 vs 2 kits deployed together.

    .venv/bin/python bench/bench_kit_deploy.py [--json]

Each case starts from fresh lab kits (`nomadkit lab up`, resumed from golden snapshots) with the
demo tour mapped onto them and a stand-in CDN and relay on loopback (nomadkit.deploy.labtour):
  1. both kits deployed together: first apply, then a no-change re-run;
  2. one kit alone on a fresh lab: first apply, then a no-change re-run.
Needs root and no lab running. Prints the figures (JSON with --json); docs/benchmarks.md
collects them. Timings are wall seconds on this machine (TCG when KVM is not usable).
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

from nomadkit.deploy.labtour import DEMO, LabTour, standin_cloud
from nomadkit.lab.lab import Lab, kits_from_count
from nomadkit.lab.progress import Progress
from nomadkit.lab.vm import detect_accel
from nomadkit.tour import load_tour


def case(folder: Path, kits: int, progress: Progress) -> dict[str, Any]:
    """Fresh lab of `kits` kits: first apply and no-change re-run, per kit and wall."""
    lab = Lab(progress)
    lab.up(kits_from_count(kits))
    try:
        streams = [s.name for k in load_tour(DEMO).kits for s in k.streams]
        with standin_cloud(folder, streams) as cloud:
            tour = LabTour(lab, folder, cloud)
            figures: dict[str, Any] = {}
            for run in ("first_apply", "no_change_rerun"):
                start = time.monotonic()
                results = tour.deploy(progress=progress)
                figures[f"{run}_wall_s"] = round(time.monotonic() - start, 1)
                figures[f"{run}_per_kit"] = {k: {"s": round(r.seconds, 1), "changed": r.changed,
                                                 "operations": r.operations, "status": r.status}
                                             for k, r in results.items()}
            return figures
    finally:
        lab.down(quiet=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    progress = Progress(quiet=args.json)
    figures: dict[str, Any] = {"accel": detect_accel().name}
    with tempfile.TemporaryDirectory(prefix="nomadkit-bench-") as scratch:
        os.environ["NOMADKIT_SECRETS"] = str(Path(scratch) / "secrets")
        for kits in (2, 1):
            folder = Path(scratch) / f"{kits}-kits"
            folder.mkdir()
            figures[f"{kits}_kit{'s' if kits > 1 else ''}_together"] = case(folder, kits, progress)
    print(json.dumps(figures, indent=2) if args.json else
          "\n".join(f"{k}: {json.dumps(v)}" for k, v in figures.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
