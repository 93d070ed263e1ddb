"""firewall: nftables, inbound default deny; SSH on management only, venue services on the LAN only."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy

from nomadkit.endpoints import CloudEndpoints
from nomadkit.inventory import kit_context
from nomadkit.render import render
from nomadkit.roles import Secret, redacted
from nomadkit.roles.ops import Perm, Puts, changed, interface_present, packages_present, put_all, service
from nomadkit.tour import Kit, Tour

PACKAGES = ("nftables",)

RULESET = "/etc/nftables.conf"


def files(tour: Tour, kit: Kit, endpoints: CloudEndpoints | None,
          secret: Secret = redacted) -> dict[str, str]:
    """The ruleset; it replaces only nomadkit's own table, in one transaction."""
    return {RULESET: render("firewall/nftables.conf.j2", kit=kit, mgmt=kit.management.interface,
                            lan=kit.lan_interface)}


@deploy("firewall: install")
def install() -> None:
    packages_present(name="firewall packages", packages=PACKAGES)


@deploy("firewall: configure")
def configure() -> Puts:
    """Refuse to go on if the management interface is missing: SSH would be locked out."""
    tour, kit, endpoints = kit_context(host.data)
    interface_present(name=f"Management interface {kit.management.interface} exists",
                      interface=kit.management.interface,
                      why="the firewall allows SSH only there; fix kits[].management.interface")
    return put_all(files(tour, kit, endpoints), lambda _path: Perm(mode="755"))


@deploy("firewall: activate")
def activate(ops: Puts) -> None:
    """`reload` (nft -f) swaps the table atomically; a restart would flush every table first."""
    service("nftables", changed(ops, RULESET), reload=True)
