"""A tour as a pyinfra inventory: one host per kit, one group per stop.

Host data carries the validated tour (JSON) and the kit's name, plus the cloud endpoints when
the cloud is up. Roles get their values back with `kit_context(host)`; nothing re-reads YAML.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from nomadkit.endpoints import CloudEndpoints
from nomadkit.errors import UserError
from nomadkit.paths import endpoints_file
from nomadkit.tour import Kit, Tour

HostEntry = tuple[str, dict[str, Any]]


def group_name(stop: str) -> str:
    """Stop names may hold dashes; pyinfra group names are kept identifier-like."""
    return stop.replace("-", "_")


def host_data(tour: Tour, kit: Kit, endpoints: CloudEndpoints | None,
              connect: dict[str, Any] | None = None) -> dict[str, Any]:
    """pyinfra host data for one kit: how to reach it, and what it should be.

    A lab kit (its connection data names `lab_cloud_address`) gets the endpoints as seen from
    inside the lab."""
    connect = connect or {}
    if endpoints and connect.get("lab_cloud_address"):
        endpoints = endpoints.seen_from(connect["lab_cloud_address"])
    data: dict[str, Any] = {
        "ssh_hostname": kit.management.address,
        "ssh_port": kit.management.port,
        "ssh_user": kit.management.user,
        "nomadkit_kit": kit.name,
        "nomadkit_tour": tour.model_dump(mode="json"),
        "nomadkit_endpoints": endpoints.model_dump(mode="json") if endpoints else None,
    }
    data.update(connect)
    return data


def groups(tour: Tour, endpoints: CloudEndpoints | None = None,
           connect: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Every pyinfra group of the tour: `all` with host data, then one per stop."""
    connect = connect or {}
    hosts: list[HostEntry] = [
        (kit.name, host_data(tour, kit, endpoints, connect.get(kit.name))) for kit in tour.kits
    ]
    out: dict[str, Any] = {"all": (hosts, {})}
    for stop in tour.stops:
        out[group_name(stop.name)] = list(stop.kits)
    return out


def from_environment() -> dict[str, Any]:
    """Groups for `inventories/tour.py`, chosen by environment variables.

    NOMADKIT_TOUR     tour file (default tours/demo.yaml)
    NOMADKIT_CONNECT  JSON file of per-kit SSH overrides (the lab writes one)
    NOMADKIT_ENDPOINTS cloud endpoints JSON (default: the local cloud's, if it is up)
    """
    from nomadkit import ROOT
    from nomadkit.tour import load_tour

    tour = load_tour(os.environ.get("NOMADKIT_TOUR", ROOT / "tours" / "demo.yaml"))
    path = endpoints_file(tour.name)
    endpoints = CloudEndpoints.read(path) if path.exists() else None
    connect = read_connect()
    return groups(tour, endpoints, connect)


def read_connect(path: Path | None = None) -> dict[str, Any] | None:
    """Per-kit SSH overrides: `path`, else $NOMADKIT_CONNECT (the lab writes one), else None."""
    path = path or (Path(os.environ["NOMADKIT_CONNECT"]) if "NOMADKIT_CONNECT" in os.environ else None)
    if path is None:
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: cannot read kit connection overrides ({exc})") from None


def kit_context(data: Any) -> tuple[Tour, Kit, CloudEndpoints | None]:
    """From a pyinfra host's data back to typed models (for roles and deploys)."""
    tour = Tour.model_validate(data.nomadkit_tour)
    endpoints = data.nomadkit_endpoints
    return tour, tour.kit(data.nomadkit_kit), (
        CloudEndpoints.model_validate(endpoints) if endpoints else None)
