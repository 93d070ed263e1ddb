"""Lab figures: kit image build (cached; from scratch with --scratch), lab up/boot-to-SSH, memory.

    .venv/bin/python bench/bench_lab.py [--scratch] [--kits 2] [--json]

`--scratch` removes the cached image (and the debootstrap root, and golden snapshots) first,
so it measures what CI's clean machine pays; without it the image figure is the cache hit.
Prints the figures (JSON with --json); docs/benchmarks.md collects them.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time

from nomadkit.lab.image import build_image, images_dir
from nomadkit.lab.lab import Lab, kits_from_count
from nomadkit.lab.progress import Progress
from nomadkit.lab.vm import detect_accel
from nomadkit.paths import cache_root


def timed(fn, *args, **kwargs):
    start = time.monotonic()
    result = fn(*args, **kwargs)
    return result, round(time.monotonic() - start, 1)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scratch", action="store_true", help="measure a build from scratch")
    parser.add_argument("--kits", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    figures: dict[str, object] = {"accel": detect_accel().name,
                                  "accel_reason": detect_accel().reason}
    if args.scratch:
        for d in images_dir().glob("*"):
            shutil.rmtree(d) if d.is_dir() else d.unlink()
        shutil.rmtree(cache_root() / "lab" / "golden", ignore_errors=True)
        _, figures["image_build_scratch_s"] = timed(build_image, Progress())
    _, figures["image_build_cached_s"] = timed(build_image, Progress(quiet=True))

    lab = Lab()
    lab.down(quiet=True)
    golden_existed = (cache_root() / "lab" / "golden").exists()
    status, figures["lab_up_s"] = timed(lab.up, kits_from_count(args.kits))
    figures["lab_up_kind"] = "resume from golden snapshots" if golden_existed else \
        "first boot: cold boot + golden snapshot + resume"
    figures["kits"] = {name: {"boot_to_ssh_s": k["boot_s"], "rss_mb": k["rss_mb"]}
                       for name, k in status["kits"].items()}
    for golden in (cache_root() / "lab" / "golden").glob("*/boot.json"):
        figures.setdefault("cold_boots", []).append(json.loads(golden.read_text()))
    _, figures["lab_down_s"] = timed(lab.down, quiet=True)
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        for key, value in figures.items():
            print(f"{key:>24}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
