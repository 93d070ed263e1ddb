"""Where nomadkit keeps state on the operator's machine (never inside the repo)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """~/.cache/nomadkit, or $NOMADKIT_CACHE: images, the lab, the local cloud."""
    return Path(os.environ.get("NOMADKIT_CACHE", Path.home() / ".cache" / "nomadkit"))


def cloud_state(tour: str) -> Path:
    """State of one tour's local cloud: pids, logs, endpoints.json."""
    return cache_root() / "cloud" / tour


def endpoints_file(tour: str) -> Path:
    """Where `nomadkit cloud up` writes the tour's CloudEndpoints."""
    return Path(os.environ.get("NOMADKIT_ENDPOINTS", cloud_state(tour) / "endpoints.json"))
