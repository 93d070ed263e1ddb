"""The fleet of one tour file: its kits with the same host data the pyinfra inventory gives them.

Every fleet command (Ansible, bundles, drift, rolling deploys) starts here, so they all reach a kit
the way `inventories/tour.py` does, lab overrides (NOMADKIT_CONNECT) and cloud endpoints included.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nomadkit.deploy import cloud_endpoints
from nomadkit.endpoints import CloudEndpoints
from nomadkit.errors import UserError
from nomadkit.inventory import HostEntry, groups, read_connect
from nomadkit.tour import Tour, load_tour


@dataclass(frozen=True)
class Fleet:
    """A validated tour, its cloud endpoints (None while the cloud is down) and its pyinfra hosts."""

    tour: Tour
    endpoints: CloudEndpoints | None
    hosts: list[HostEntry]

    def host(self, kit: str) -> dict[str, Any]:
        """One kit's host data, or a message naming the kits there are."""
        for name, data in self.hosts:
            if name == kit:
                return data
        raise UserError(f"no kit named '{kit}' in tour {self.tour.name} — known: "
                        f"{', '.join(name for name, _ in self.hosts)}")


def load_fleet(path: str | Path) -> Fleet:
    """Read a tour file and put together what every fleet command needs."""
    tour = load_tour(path)
    endpoints = cloud_endpoints(tour)
    hosts, _ = groups(tour, endpoints, read_connect())["all"]
    return Fleet(tour, endpoints, hosts)
