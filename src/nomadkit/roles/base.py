"""base: the kit's name, who may log in (SSH keys only), logs, time, kernel buffers, identity."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import server
from pyinfra.operations.files import directory

from nomadkit.endpoints import CloudEndpoints
from nomadkit.inventory import kit_context
from nomadkit.render import render
from nomadkit.roles import Secret, redacted
from nomadkit.roles.ops import Perm, Puts, account, apply, changed, packages_present, put_all, service
from nomadkit.tour import Kit, Tour

PACKAGES = ("openssh-server", "sudo", "chrony", "procps", "curl", "ca-certificates")

SSHD = "/etc/ssh/sshd_config.d/nomadkit.conf"
SUDOERS = "/etc/sudoers.d/nomadkit"
JOURNALD = "/etc/systemd/journald.conf.d/nomadkit.conf"
CHRONY = "/etc/chrony/chrony.conf"
SYSCTL = "/etc/sysctl.d/60-nomadkit.conf"
IDENTITY = "/etc/nomadkit/kit.json"
HOSTS = "/etc/hosts"
SERVICE_USER = "nomadkit"  # runs the encoder and the agent; owns recordings


def admin_home(kit: Kit) -> str:
    return f"/home/{kit.management.admin}"


def files(tour: Tour, kit: Kit, endpoints: CloudEndpoints | None,
          secret: Secret = redacted) -> dict[str, str]:
    """sshd, sudo, journald, chrony, sysctl, /etc/hosts, the kit identity (with the capture
    defaults the consent policy sets), and the crew's keys if given."""
    identity = {"tour": tour.name, "kit": kit.name, "hardware": kit.hardware,
                "stops": [s.name for s in tour.stops if kit.name in s.kits],
                "consent": tour.consent.model_dump(mode="json")}
    out = {
        SSHD: render("base/sshd.conf.j2", kit=kit),
        SUDOERS: render("base/sudoers.j2", kit=kit),
        JOURNALD: render("base/journald.conf.j2", kit=kit),
        CHRONY: render("base/chrony.conf.j2", kit=kit),
        SYSCTL: render("base/sysctl.conf.j2"),
        IDENTITY: render("base/kit.json.j2", identity=identity),
        # A minimal image has no /etc/hosts: `localhost` would not resolve (upsc spins on it).
        HOSTS: render("base/hosts.j2", kit=kit),
    }
    if kit.management.authorized_keys:
        keys = render("base/authorized_keys.j2", keys=kit.management.authorized_keys)
        out["/root/.ssh/authorized_keys"] = keys
        out[f"{admin_home(kit)}/.ssh/authorized_keys"] = keys
    return out


def perm(kit: Kit, path: str) -> Perm:
    if path == SUDOERS:
        return Perm(mode="440")
    if path.startswith(admin_home(kit)):
        return Perm(mode="600", user=kit.management.admin, group=kit.management.admin)
    if path.endswith("authorized_keys"):
        return Perm(mode="600")
    return Perm()


@deploy("base: install")
def install() -> None:
    """Packages, the admin (no password: key only), the service user, nomadkit's folders."""
    _, kit, _ = kit_context(host.data)
    packages_present(name="base packages", packages=PACKAGES)
    account(name=f"Admin user {kit.management.admin} (SSH key only, sudo)",
            user=kit.management.admin, shell="/bin/bash", groups=["sudo"], home=admin_home(kit))
    directory(name="Admin's .ssh", path=f"{admin_home(kit)}/.ssh", mode="700",
                    user=kit.management.admin, group=kit.management.admin)
    account(name=f"Service user {SERVICE_USER} (encoder, agent; may capture video and audio)",
            user=SERVICE_USER, system=True, shell="/usr/sbin/nologin", home="/var/lib/nomadkit",
            groups=["video", "audio"], create_home=False)
    directory(name="/etc/nomadkit", path="/etc/nomadkit", mode="755")
    directory(name="/var/lib/nomadkit", path="/var/lib/nomadkit", mode="755",
                    user=SERVICE_USER, group=SERVICE_USER)


@deploy("base: configure")
def configure() -> Puts:
    """Name the kit and put the base files (the whole /etc/hosts, which names the kit too)."""
    tour, kit, endpoints = kit_context(host.data)
    ops = put_all(files(tour, kit, endpoints), lambda path: perm(kit, path))
    ops["/etc/hostname"] = server.hostname(name=f"Hostname {kit.name}", hostname=kit.name)
    return ops


@deploy("base: activate")
def activate(ops: Puts) -> None:
    """Reload sshd (never a restart: the deploy's own SSH session stays), journald, chrony, sysctl."""
    service("ssh", changed(ops, SSHD), reload=True)
    service("systemd-journald", changed(ops, JOURNALD))
    service("chrony", changed(ops, CHRONY))
    apply("Streaming sysctls applied", "sysctl", changed(ops, SYSCTL), [f"sysctl -q -p {SYSCTL}"])
