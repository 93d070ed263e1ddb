"""Lab figures: kit image build from scratch vs cached, lab up / boot-to-SSH, memory.

    .venv/bin/python -m bench.bench_lab [--scratch] [--kits 2] [--json]

`--scratch` builds the image from nothing in a throwaway cache ($NOMADKIT_CACHE pointed at a
temporary directory, so the shared cache and its golden snapshots stay untouched), then asks
the same throwaway cache again (the cache hit); that is what CI's clean machine pays. The lab
figures use the normal cache. `python -m bench` calls `run()` (scratch unless --quick).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from typing import Any

from bench.report import Result, Table, ratio, timed
from nomadkit.lab.image import build_image
from nomadkit.lab.lab import Lab, kits_from_count
from nomadkit.lab.progress import Progress
from nomadkit.lab.vm import detect_accel
from nomadkit.paths import cache_root

TITLE = "Lab: kit image and boot"
NEEDS_LAB = True


def image_figures() -> dict[str, float]:
    """Build from scratch in a throwaway cache, then the cache hit of that same cache."""
    saved = os.environ.get("NOMADKIT_CACHE")
    with tempfile.TemporaryDirectory(prefix="nomadkit-bench-image-") as scratch:
        os.environ["NOMADKIT_CACHE"] = scratch
        try:
            _, built = timed(build_image, Progress(quiet=True))
            _, cached = timed(build_image, Progress(quiet=True))
        finally:
            if saved is None:
                os.environ.pop("NOMADKIT_CACHE")
            else:
                os.environ["NOMADKIT_CACHE"] = saved
    return {"image_build_scratch_s": built, "image_build_cached_s": cached}


def lab_figures(kits: int) -> dict[str, Any]:
    lab = Lab(Progress(quiet=True))
    golden_existed = (cache_root() / "lab" / "golden").exists()
    status, up_s = timed(lab.up, kits_from_count(kits))
    try:
        figures: dict[str, Any] = {
            "lab_up_s": up_s,
            "lab_up_kind": "resume from golden snapshots" if golden_existed else
                           "first boot: cold boot + golden snapshot + resume",
            "kits": {name: {"boot_to_ssh_s": k["boot_s"], "rss_mb": k["rss_mb"]}
                     for name, k in status["kits"].items()}}
        for golden in (cache_root() / "lab" / "golden").glob("*/boot.json"):
            figures.setdefault("cold_boots", []).append(json.loads(golden.read_text()))
    finally:
        _, figures["lab_down_s"] = timed(lab.down, quiet=True)
    return figures


def run(quick: bool) -> Result:
    accel = detect_accel().name.upper()
    figures: dict[str, Any] = {} if quick else image_figures()
    figures |= lab_figures(2)
    tables = []
    if quick:
        image = "image from scratch not measured (--quick)"
    else:
        built, cached = figures["image_build_scratch_s"], figures["image_build_cached_s"]
        image = f"image from scratch {built:.0f} s vs cached {cached:.2f} s ({ratio(built, cached)})"
        tables.append(Table("Kit image (one run each)", ["build", "s", "ratio scratch / cached"], [
            ["from scratch (debootstrap, packages of every role, image, initrd)", f"{built:.0f}", ""],
            ["cached (same inputs)", f"{cached:.2f}", ratio(built, cached)]]))
    kits = Table(f"Lab up with 2 kits: {figures['lab_up_s']:.0f} s ({figures['lab_up_kind']})",
                 ["kit", "boot to SSH s", "QEMU RSS MB"],
                 [[n, f"{k['boot_to_ssh_s']}", f"{k['rss_mb']}"] for n, k in figures["kits"].items()])
    tables.append(kits)
    return Result(
        title=TITLE,
        measured="kit image build from scratch vs the cache hit; lab up with 2 kits; memory per VM",
        on=f"QEMU {accel}, 2 kits, 1 vCPU each, on this machine",
        summary=f"{image}; lab of 2 kits up in {figures['lab_up_s']:.0f} s",
        tables=tables, figures=figures)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scratch", action="store_true", help="measure a build from scratch")
    parser.add_argument("--kits", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    accel = detect_accel()
    figures: dict[str, Any] = {"accel": accel.name, "accel_reason": accel.reason}
    if args.scratch:
        figures |= image_figures()
    figures |= lab_figures(args.kits)
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        for key, value in figures.items():
            print(f"{key:>24}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
