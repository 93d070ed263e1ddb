"""pull: lets a kit behind carrier NAT deploy itself from signed bundles (see nomadkit.fleet.bundle).

- A systemd timer runs `nomadkit.fleet.pullkit` (Debian's python3 + python3-cryptography only):
  fetch `bundles/<kit>/latest` through the CDN, verify it with the tour's public deploy key,
  apply it with pyinfra's @local connector, write the outcome where the agent's heartbeat reads it.
- The applying needs pyinfra, pydantic and jinja2, which Debian 12 does not ship (or ships too
  old), so the kit gets a pull runtime: a venv at /opt/nomadkit/pull/venv installed offline from
  wheels the operator's machine downloads once from PyPI and pushes here, pinned to the operator's
  versions. Why pushed wheels rather than pip on the kit: kits have metered links and lab kits no
  route to PyPI; why not wheels in every bundle: a bundle stays ~170 KB instead of ~15 MB over
  satellite. The runtime changes only with a push deploy.
- Bundles carry no secrets: this role copies the secrets the other roles use into
  /etc/nomadkit/secrets (root only) during push deploys; applied bundles resolve them there.
- Tours without a `pull` section get nothing from this role.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from io import StringIO
from pathlib import Path
from typing import Any

from pyinfra import host
from pyinfra.api import StringCommand, deploy, operation
from pyinfra.api.operation import OperationMeta
from pyinfra.facts.files import File
from pyinfra.operations import files as file_ops
from pyinfra.operations import server

from nomadkit import ROOT
from nomadkit.endpoints import CloudEndpoints
from nomadkit.errors import UserError
from nomadkit.fleet.bundle import latest_key, runtime_versions
from nomadkit.inventory import kit_context
from nomadkit.paths import cache_root
from nomadkit.render import render
from nomadkit.roles import Secret, modules, redacted
from nomadkit.roles.ops import Perm, applied, changed, packages_present, put_all, service
from nomadkit.secrets import resolve
from nomadkit.tour import Kit, Tour

PACKAGES = ("python3", "python3-venv", "python3-cryptography")

PREFIX = "/opt/nomadkit"
RUNTIME = f"{PREFIX}/pull"
VENV = f"{RUNTIME}/venv"
WHEELS = f"{RUNTIME}/wheels"
REQUIREMENTS = f"{RUNTIME}/requirements.txt"
CONFIG = "/etc/nomadkit/pull.json"
SECRETS = "/etc/nomadkit/secrets"
STATE_DIR = "/var/lib/nomadkit/pull"
STATUS = f"{STATE_DIR}/status.json"  # pullkit's outcome; the agent's heartbeat carries it
SERVICE = "/etc/systemd/system/nomadkit-pull.service"
TIMER = "/etc/systemd/system/nomadkit-pull.timer"
SOURCES = ROOT / "src"
SHIPPED = ("nomadkit/fleet/__init__.py", "nomadkit/fleet/pullkit.py")
# The kit's platform, for the wheels: Debian 12 on x86_64 runs CPython 3.11.
PLATFORM = ("--platform", "manylinux2014_x86_64", "--python-version", "3.11", "--implementation", "cp")


def pull_config(tour: Tour, kit: Kit, endpoints: CloudEndpoints | None) -> dict[str, Any]:
    """What the kit-side puller reads (nomadkit.fleet.pullkit.Config); no secrets."""
    assert tour.pull is not None
    url = f"{endpoints.cdn_url.rstrip('/')}/{latest_key(kit.name)}" if endpoints else None
    return {"kit": kit.name, "url": url, "public_key": tour.pull.public_key, "state_dir": STATE_DIR,
            "venv": VENV, "secrets_dir": SECRETS}


def requirements(kit: Kit) -> str:
    return render("pull/requirements.txt.j2", kit=kit, versions=runtime_versions())


def secret_refs(tour: Tour, kit: Kit, endpoints: CloudEndpoints | None) -> list[str]:
    """Every secret reference the other roles resolve for this kit (found by rendering them)."""
    seen: list[str] = []

    def record(ref: str) -> str:
        seen.append(ref)
        return redacted(ref)

    for module in modules():
        if module.__name__ != __name__:
            module.files(tour, kit, endpoints, secret=record)
    return list(dict.fromkeys(seen))


def sources() -> dict[str, str]:
    """The puller's Python files, remote path -> content, copied verbatim."""
    return {f"{PREFIX}/{name}": (SOURCES / name).read_text() for name in SHIPPED}


def files(tour: Tour, kit: Kit, endpoints: CloudEndpoints | None,
          secret: Secret = redacted) -> dict[str, str]:
    """pull.json, the timer and its service, the puller's code, the runtime's pins, the secrets."""
    if tour.pull is None:
        return {}
    units = {"tour": tour, "kit": kit, "prefix": PREFIX, "config_path": CONFIG,
             "status_file": f"{STATE_DIR}/status.json"}
    out = {
        CONFIG: render("pull/pull.json.j2", config=pull_config(tour, kit, endpoints)),
        SERVICE: render("pull/nomadkit-pull.service.j2", **units),
        TIMER: render("pull/nomadkit-pull.timer.j2", **units),
        REQUIREMENTS: requirements(kit),
    }
    for ref in secret_refs(tour, kit, endpoints):
        scheme, _, name = ref.partition(":")
        if scheme != "secret":
            raise UserError(f"{ref}: pull-mode kits keep their secrets as files — use secret:NAME "
                            "references in a tour with a pull section")
        out[f"{SECRETS}/{name}"] = secret(ref) + "\n"
    return out | sources()


def perm(path: str) -> Perm:
    return Perm(mode="600", secret=True) if path.startswith(SECRETS + "/") else Perm()


def wheels(text: str) -> Path:
    """The runtime's wheels on this (the operator's) machine, downloaded once per set of pins."""
    folder = cache_root() / "pull-wheels" / hashlib.sha256(text.encode()).hexdigest()[:16]
    if not (folder / ".complete").exists():
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "requirements.txt").write_text(text)
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:",
                               *PLATFORM, "-d", str(folder), "-r", str(folder / "requirements.txt")],
                              capture_output=True, text=True)
        if done.returncode:
            raise UserError(f"cannot download the kits' pull runtime from PyPI into {folder}: "
                            f"{done.stderr.strip()[-400:]} — check this machine's access to PyPI")
        (folder / ".complete").touch()
    return folder


@deploy("pull: install")
def install() -> None:
    """Packages, folders and the pull runtime (pushed wheels, installed offline into a venv)."""
    tour, kit, _ = kit_context(host.data)
    if tour.pull is None:
        pull_mode_off(name="Pull mode off (the tour has no pull section)")
        return
    packages_present(name="pull packages", packages=PACKAGES)
    for path in (f"{PREFIX}/nomadkit/fleet", WHEELS, STATE_DIR):
        file_ops.directory(name=f"Directory {path}", path=path, mode="755")
    file_ops.directory(name=f"Directory {SECRETS}", path=SECRETS, mode="700")
    if host.data.get("nomadkit_pull"):
        return  # a bundle applying itself runs in the runtime it would replace: leave it be
    text = requirements(kit)
    wanted = []
    for wheel in sorted(wheels(text).glob("*.whl")):
        wanted.append(wheel.name)
        file_ops.put(name=f"Wheel {wheel.name}", src=str(wheel), dest=f"{WHEELS}/{wheel.name}")
    put = file_ops.put(name=f"Put {REQUIREMENTS}", src=StringIO(text), dest=REQUIREMENTS)
    applied(name="pull runtime: venv from the pushed wheels", key="pull-runtime",
            digest=hashlib.sha256((text + "".join(wanted)).encode()).hexdigest(),
            commands=[f"rm -rf {VENV}", f"python3 -m venv {VENV}",
                      f"{VENV}/bin/pip install --quiet --no-index --find-links {WHEELS} -r {REQUIREMENTS}"],
            changed_now=lambda: put.changed)


@operation()
def pull_mode_off():
    """
    No pull mode: a timer left by an earlier tour file that had it is stopped, and its units,
    config and secrets are removed, so a kit never applies bundles the tour no longer asks for.
    """
    if not host.get_fact(File, path=TIMER):
        host.noop("pull mode is off")
        return
    yield "systemctl disable --now nomadkit-pull.timer"
    yield StringCommand("rm", "-rf", TIMER, SERVICE, CONFIG, SECRETS)
    yield "systemctl daemon-reload"


@deploy("pull: configure")
def configure() -> dict[str, OperationMeta]:
    """Put pull.json, the units, the puller and the secrets it applies bundles with."""
    tour, kit, endpoints = kit_context(host.data)
    return put_all(files(tour, kit, endpoints, secret=resolve), perm)


@deploy("pull: activate")
def activate(ops: dict[str, OperationMeta]) -> None:
    """Enable and start the timer (the service itself runs only when the timer fires)."""
    if not ops:
        return
    server.shell(name="systemd: reload units (pull units changed)", commands=["systemctl daemon-reload"],
                 _if=changed(ops, SERVICE, TIMER))
    service("nomadkit-pull.timer", changed(ops, TIMER))
