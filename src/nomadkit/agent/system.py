"""What the status reports besides the network: battery (NUT), disk, clock (chrony), pull mode."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any


def _run(*argv: str) -> str | None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def battery(ups: str) -> dict[str, Any]:
    """Charge, runtime and status from `upsc` (NUT), or why they are unknown."""
    out = _run("upsc", ups)
    if out is None:
        return {"ok": False, "error": f"upsc {ups} gave no answer — is the power role's NUT running?"}
    values = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)

    def number(key: str) -> float | None:
        try:
            return float(values[key])
        except (KeyError, ValueError):
            return None

    return {"ok": True, "charge_pct": number("battery.charge"),
            "runtime_s": number("battery.runtime"), "status": values.get("ups.status")}


def disk(path: str) -> dict[str, Any]:
    """Free space where the recordings go."""
    try:
        usage = shutil.disk_usage(path)
    except OSError as error:
        return {"ok": False, "error": str(error)}
    return {"ok": True, "path": path, "free_mb": usage.free // 2**20, "total_mb": usage.total // 2**20,
            "used_pct": round(100 * usage.used / usage.total, 1) if usage.total else None}


def clock() -> dict[str, Any]:
    """Whether chrony has the clock in sync, and how far off it is."""
    out = _run("chronyc", "-c", "tracking")
    if out is None:
        return {"ok": False, "error": "chronyc tracking gave no answer — is chrony running?"}
    fields = out.strip().split(",")
    try:
        offset = float(fields[4])
    except (IndexError, ValueError):
        return {"ok": False, "error": f"cannot read chronyc output: {out.strip()[:80]}"}
    leap = fields[-1]
    return {"ok": leap != "Not synchronised", "offset_ms": round(offset * 1000, 3), "leap": leap,
            "stratum": fields[2]}


def pull(status_file: str | None) -> dict[str, Any] | None:
    """Pull mode's last outcome (applied, refused and why), or None on a kit without pull mode."""
    if status_file is None:
        return None
    try:
        return json.loads(Path(status_file).read_text())
    except FileNotFoundError:
        return {"state": "never-run"}
    except (OSError, ValueError) as error:
        return {"state": "unreadable", "error": str(error)}
