"""uplinks: every path to the internet as a NetworkManager connection, with policy routing.

- Real modems are `gsm` connections (APN, PIN from the tour's secret reference, resolved at
  deploy time and put without a diff); the satellite terminal and every uplink of a lab kit
  are `ethernet` connections.
- Interfaces keep their names by MAC (systemd `.link`), whatever port they are plugged into.
- Routing contract with the agent: table `nk-<uplink>` = 100 + position in priority order holds
  that uplink's routes (copied by a dispatcher script); rule 900 `lookup main
  suppress_prefixlength 0` keeps connected/management routes first; the agent owns rule 1000.
  Main-table metrics follow the same order, the fallback when the agent is not running.
- The management interface is never touched.
"""

from __future__ import annotations

import uuid

from pyinfra import host
from pyinfra.api import deploy

from nomadkit.endpoints import CloudEndpoints
from nomadkit.inventory import kit_context
from nomadkit.render import render
from nomadkit.roles import Secret, redacted
from nomadkit.roles.ops import Perm, Puts, apply, changed, packages_present, put_all, service
from nomadkit.secrets import resolve
from nomadkit.tour import Kit, Tour, Uplink

PACKAGES = ("network-manager", "modemmanager", "iproute2")

CONNECTIONS = "/etc/NetworkManager/system-connections/"
NM_CONF = "/etc/NetworkManager/conf.d/nomadkit.conf"
RT_TABLES = "/etc/iproute2/rt_tables.d/nomadkit.conf"
DISPATCHER = "/etc/NetworkManager/dispatcher.d/50-nomadkit-uplinks"
POLICY_UNIT = "/etc/systemd/system/nomadkit-policy-routing.service"
LINKS = "/etc/systemd/network/"


def tables(kit: Kit) -> dict[str, int]:
    """Uplink name -> routing table (and main-table metric): 100 + position in priority order."""
    ordered = sorted(kit.uplinks, key=lambda u: u.priority)
    return {u.name: 100 + i for i, u in enumerate(ordered, start=1)}


def connection_path(uplink: Uplink) -> str:
    return f"{CONNECTIONS}nk-{uplink.name}.nmconnection"


def is_gsm(kit: Kit, uplink: Uplink) -> bool:
    """A modem on real hardware; lab modems are plain virtio NICs."""
    return uplink.kind == "modem" and kit.hardware != "lab"


def connection(tour: Tour, kit: Kit, uplink: Uplink, table: int, secret: Secret) -> str:
    """One NetworkManager keyfile; its uuid is stable so NetworkManager never sees a new profile."""
    gsm = is_gsm(kit, uplink)
    return render("uplinks/connection.nmconnection.j2", uplink=uplink, table=table, gsm=gsm,
                  pin=secret(uplink.pin) if gsm and uplink.pin else None,
                  uuid=uuid.uuid5(uuid.NAMESPACE_URL, f"nomadkit:{tour.name}:{kit.name}:{uplink.name}"))


def files(tour: Tour, kit: Kit, endpoints: CloudEndpoints | None,
          secret: Secret = redacted) -> dict[str, str]:
    """Keyfiles, .link files, the routing tables, the dispatcher and the policy-rule unit."""
    numbers = tables(kit)
    out = {connection_path(u): connection(tour, kit, u, numbers[u.name], secret) for u in kit.uplinks}
    out |= {f"{LINKS}20-nomadkit-{u.name}.link": render("uplinks/link.j2", uplink=u)
            for u in kit.uplinks if u.mac}
    out[NM_CONF] = render("uplinks/NetworkManager.conf.j2", kit=kit)
    out[RT_TABLES] = render("uplinks/rt_tables.conf.j2", tables=numbers)
    out[DISPATCHER] = render("uplinks/dispatcher.sh.j2", tables=numbers)
    out[POLICY_UNIT] = render("uplinks/policy-routing.service.j2")
    return out


def perm(path: str) -> Perm:
    """NetworkManager ignores keyfiles others can read; its dispatcher runs only root's 0755 scripts."""
    if path.startswith(CONNECTIONS):
        return Perm(mode="600", secret=True)
    if path == DISPATCHER:
        return Perm(mode="755")
    return Perm()


@deploy("uplinks: install")
def install() -> None:
    packages_present(name="uplink packages", packages=PACKAGES)


@deploy("uplinks: configure")
def configure() -> Puts:
    """Put the files; the PINs are resolved here, on the operator's machine, at deploy time."""
    tour, kit, endpoints = kit_context(host.data)
    return put_all(files(tour, kit, endpoints, secret=resolve), perm)


@deploy("uplinks: activate")
def activate(ops: Puts) -> None:
    """Policy rule, ModemManager (real kits), NetworkManager; a changed connection is re-upped."""
    _, kit, _ = kit_context(host.data)
    apply("systemd: units reloaded (policy routing unit)", "units-uplinks", changed(ops, POLICY_UNIT),
          ["systemctl daemon-reload"])
    service("nomadkit-policy-routing", changed(ops, POLICY_UNIT))
    apply("udev: .link files reloaded (names apply to NICs plugged in from now on)", "links",
          changed(ops, LINKS), ["udevadm control --reload"])
    if kit.hardware != "lab":  # lab kits have no modems; ModemManager is left as the image has it
        service("ModemManager", None)
    service("NetworkManager", changed(ops, NM_CONF), reload=True)
    apply("NetworkManager: connection files re-read", "nm-connections", changed(ops, CONNECTIONS),
          ["nmcli connection reload"])
    for uplink in kit.uplinks:
        # An uplink with no carrier or no DHCP yet is not an error: NetworkManager keeps trying.
        apply(f"NetworkManager: nk-{uplink.name} brought up with its new connection",
              f"nm-up-{uplink.name}", changed(ops, connection_path(uplink)),
              [f"nmcli --wait 20 connection up id nk-{uplink.name} || true"])
