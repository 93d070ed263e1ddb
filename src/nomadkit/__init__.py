"""nomadkit: one tour file -> a per-tour cloud, configured nomad kits, and a preflight report."""

from pathlib import Path

__version__ = "0.1.0"

# The project's top level (templates/, tours/, deploys/ live there in a checkout).
ROOT = Path(__file__).resolve().parents[2]
