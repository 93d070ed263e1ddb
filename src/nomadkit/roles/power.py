"""power: NUT for the kit's UPS / battery (usbhid-ups on real kits, dummy-ups in the lab).

The agent reads battery runtime with `upsc <kit.agent.ups> battery.runtime`; upsmon shuts the
kit down cleanly when the battery runs out. upsd listens on loopback only. Its one account's
password is a per-kit secret (`secret:<tour>_<kit>_ups`), made on the operator's machine at the
first deploy and put without a diff.
"""

from __future__ import annotations

import secrets as random

from pyinfra import host
from pyinfra.api import deploy

from nomadkit.endpoints import CloudEndpoints
from nomadkit.errors import UserError
from nomadkit.inventory import kit_context
from nomadkit.render import render
from nomadkit.roles import Secret, redacted
from nomadkit.roles.ops import Perm, Puts, apply, changed, packages_present, put_all, service
from nomadkit.secrets import resolve, store
from nomadkit.tour import Kit, Tour

PACKAGES = ("nut-server", "nut-client")

NUT = "/etc/nut/"
DRIVER_FILES = (f"{NUT}ups.conf", f"{NUT}nut.conf", f"{NUT}lab-battery.dev")
SERVER_FILES = (f"{NUT}upsd.conf", f"{NUT}upsd.users")
MONITOR_FILES = (f"{NUT}upsmon.conf",)
# NUT's path unit re-enumerates the driver units whenever ups.conf changes: it drops and re-adds
# the instance (100 s on a TCG kit), and a restart racing it left the driver stopped. Starting the
# oneshot joins that run and returns when it is done.
ENUMERATE = "systemctl start nut-driver-enumerator.service"


def ups_name(kit: Kit) -> str:
    """The UPS name the agent asks `upsc` about (kit.agent.ups is NAME@HOST)."""
    return kit.agent.ups.split("@", 1)[0]


def password_ref(tour: Tour, kit: Kit) -> str:
    return f"secret:{tour.name}_{kit.name}_ups".replace("-", "_")


def ensure_password(ref: str) -> None:
    """Make the kit's upsd password once, in the operator's secrets folder, if it is missing."""
    try:
        resolve(ref)
    except UserError:
        store(ref, random.token_urlsafe(24))


def files(tour: Tour, kit: Kit, endpoints: CloudEndpoints | None,
          secret: Secret = redacted) -> dict[str, str]:
    ref = password_ref(tour, kit)
    password = secret(ref)
    ups, dev = ups_name(kit), "lab-battery.dev"
    out = {
        f"{NUT}nut.conf": render("power/nut.conf.j2"),
        f"{NUT}ups.conf": render("power/ups.conf.j2", kit=kit, ups=ups, dev=dev),
        f"{NUT}upsd.conf": render("power/upsd.conf.j2"),
        f"{NUT}upsd.users": render("power/upsd.users.j2", ref=ref, password=password),
        f"{NUT}upsmon.conf": render("power/upsmon.conf.j2", ref=ref, ups=ups, password=password),
    }
    if kit.hardware == "lab":
        out[f"{NUT}{dev}"] = render("power/dummy.dev.j2")
    return out


def perm(path: str) -> Perm:
    """NUT daemons run as `nut`: they read their files through the group, nobody else may."""
    return Perm(mode="640", group="nut", secret=path in (f"{NUT}upsd.users", f"{NUT}upsmon.conf"))


@deploy("power: install")
def install() -> None:
    packages_present(name="power packages", packages=PACKAGES)


@deploy("power: configure")
def configure() -> Puts:
    tour, kit, endpoints = kit_context(host.data)
    ensure_password(password_ref(tour, kit))
    return put_all(files(tour, kit, endpoints, secret=resolve), perm)


@deploy("power: activate")
def activate(ops: Puts) -> None:
    """Driver, upsd, upsmon: each restarted only when its own files changed."""
    _, kit, _ = kit_context(host.data)
    for target in ("nut.target", "nut-driver.target"):  # what brings the units up at boot
        service(target, None, running=None)
    driver_files = changed(ops, *DRIVER_FILES)
    apply("nut-driver units re-enumerated from ups.conf", "nut-enumerate", driver_files, [ENUMERATE])
    service(f"nut-driver@{ups_name(kit)}", driver_files)
    service("nut-server", changed(ops, *DRIVER_FILES, *SERVER_FILES))
    service("nut-monitor", changed(ops, *SERVER_FILES, *MONITOR_FILES))
