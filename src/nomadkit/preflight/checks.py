"""Every preflight check, and the context they run in (kits, cloud, lab link control)."""

from __future__ import annotations

from nomadkit import tickets
from nomadkit.cloud import local
from nomadkit.cloud.local import LocalCloud
from nomadkit.endpoints import CloudEndpoints
from nomadkit.errors import UserError
from nomadkit.inventory import groups
from nomadkit.paths import endpoints_file
from nomadkit.preflight.cloud_checks import CLOUD_CHECKS
from nomadkit.preflight.kit_checks import KIT_CHECKS
from nomadkit.preflight.network_checks import NETWORK_CHECKS
from nomadkit.preflight.report import Report
from nomadkit.preflight.runner import Context
from nomadkit.remote import Remote
from nomadkit.secrets import resolve
from nomadkit.tour import Tour

ALL_CHECKS = [*KIT_CHECKS, *CLOUD_CHECKS, *NETWORK_CHECKS]


def build_context(tour: Tour, stop: str) -> Context:
    """Reach the stop's kits (lab VMs when the lab runs them) and the tour's cloud."""
    from nomadkit.lab.lab import Lab

    path = endpoints_file(tour.name)
    endpoints = CloudEndpoints.read(path) if path.exists() else None
    lab = Lab()
    lab_state = lab.state() if lab.state_file.exists() else {"kits": {}}
    in_lab = all(name in lab_state["kits"] for name in tour.stop(stop).kits)
    connect = lab.connect_overrides(lab_state) if in_lab else None
    hosts = dict(groups(tour, endpoints, connect)["all"][0])
    remotes = {name: Remote.from_host_data(name, data) for name, data in hosts.items()}
    cloud = LocalCloud.for_tour(tour, None)
    local_up = endpoints is not None and all(local.status(tour, None).values())
    return Context(
        tour=tour, stop=tour.stop(stop), endpoints=endpoints, remotes=remotes,
        kit_endpoints=endpoints.seen_from(lab_state["cloud_address"]) if endpoints and in_lab
        else endpoints,
        links=lab if in_lab else None, local_cloud=cloud if local_up else None)


def sign_report(tour: Tour, report: Report) -> str | None:
    """Sign with the tour key when this machine holds it; unsigned reports say so."""
    try:
        key = resolve(tour.commerce.ticket_key)
    except UserError:
        return None
    return tickets.sign_document(key, report.canonical())
