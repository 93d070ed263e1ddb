"""Every preflight check, and the context they run in (kits, cloud, lab link control)."""

from __future__ import annotations

from nomadkit import tickets
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
    lab_kits = lab.state().get("kits", {}) if lab.state_file.exists() else {}
    in_lab = all(name in lab_kits for name in tour.stop(stop).kits)
    connect = lab.connect_overrides() if in_lab else None
    hosts = dict(groups(tour, endpoints, connect)["all"][0])
    remotes = {name: Remote.from_host_data(name, data) for name, data in hosts.items()}
    return Context(tour=tour, stop=tour.stop(stop), endpoints=endpoints, remotes=remotes,
                   links=lab if in_lab else None)


def sign_report(tour: Tour, report: Report) -> str | None:
    """Sign with the tour key when this machine holds it; unsigned reports say so."""
    try:
        key = resolve(tour.commerce.ticket_key)
    except UserError:
        return None
    return tickets.sign_document(key, report.canonical())
