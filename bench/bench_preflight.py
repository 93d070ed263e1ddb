"""Preflight: total and per-check duration of `nomadkit preflight` for one stop with 2 kits.

It needs the whole tour up on this machine (`nomadkit up`: local cloud + lab kits deployed);
until that command exists the benchmark reports itself skipped, saying so.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench.report import Result, skipped

TITLE = "Preflight: one stop, 2 kits"
NEEDS_LAB = False  # until it brings the tour up (then True: it boots the lab)


def has_up_command() -> bool:
    nomadkit = Path(sys.executable).parent / "nomadkit"
    return subprocess.run([nomadkit, "up", "--help"], capture_output=True).returncode == 0


def run(quick: bool) -> Result:
    if not has_up_command():
        return skipped(TITLE, "`nomadkit up` (cloud + kits for the preflight) is not in the CLI yet")
    return skipped(TITLE, "`nomadkit up` exists now: wire its run into bench/bench_preflight.py")
