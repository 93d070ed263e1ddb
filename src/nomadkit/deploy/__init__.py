"""Kit deploys: `nomadkit render` (every file a kit gets, checked by real tools) and `nomadkit deploy`."""

from __future__ import annotations

from pathlib import Path

from nomadkit.endpoints import CloudEndpoints
from nomadkit.errors import UserError
from nomadkit.paths import endpoints_file
from nomadkit.roles import kit_files
from nomadkit.tour import Kit, Tour


def find_kit(tour: Tour, name: str) -> Kit:
    """The named kit, or an error that lists the tour's kits."""
    for kit in tour.kits:
        if kit.name == name:
            return kit
    raise UserError(f"tour '{tour.name}' has no kit '{name}' — kits: {', '.join(k.name for k in tour.kits)}")


def cloud_endpoints(tour: Tour, path: Path | None = None) -> CloudEndpoints | None:
    """The cloud endpoints given, else the local cloud's if it is up, else None (cloud not up)."""
    if path is not None:
        return CloudEndpoints.read(path)
    default = endpoints_file(tour.name)
    return CloudEndpoints.read(default) if default.exists() else None


def write_tree(tour: Tour, kit: Kit, endpoints: CloudEndpoints | None, out: Path) -> list[str]:
    """Write every file the deploy would put on the kit under `out` (secrets redacted).

    Files whose content starts with `#!` are made executable, as on the kit.
    """
    rendered = kit_files(tour, kit, endpoints)
    for path, content in rendered.items():
        target = out / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
        target.chmod(0o755 if content.startswith("#!") else 0o644)
    return list(rendered)
