"""Operations the roles share: putting rendered files, secrets without diffs, packages once.

Written like pyinfra's own operations: read a fact, yield only what closes the difference, so a
second run yields nothing and pyinfra's results say "no change".
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from io import BytesIO, StringIO

from pyinfra import host
from pyinfra.api import FileUploadCommand, OperationError, StringCommand, operation
from pyinfra.api.operation import OperationMeta
from pyinfra.facts.deb import DebPackages
from pyinfra.facts.files import File, Sha256File
from pyinfra.facts.hardware import NetworkDevices
from pyinfra.operations import apt, files, systemd


@dataclass(frozen=True)
class Perm:
    """Who owns a put file and its mode; `secret` files are compared by checksum, never diffed."""

    mode: str = "644"
    user: str = "root"
    group: str = "root"
    secret: bool = False


DEFAULT = Perm()


def put_all(rendered: dict[str, str], perm: Callable[[str], Perm] = lambda _path: DEFAULT,
            ) -> dict[str, OperationMeta]:
    """Put every rendered file with its permissions; returns each path's operation.

    The result feeds `activate`: a service restarts only if one of its files changed.
    """
    ops: dict[str, OperationMeta] = {}
    for path, content in rendered.items():
        p = perm(path)
        if p.secret:
            ops[path] = secret_file(name=f"Put {path} (secret, not shown)", path=path,
                                    content=content, mode=p.mode, user=p.user, group=p.group)
        else:
            ops[path] = files.put(name=f"Put {path}", src=StringIO(content), dest=path,
                                  mode=p.mode, user=p.user, group=p.group)
    return ops


def changed(ops: dict[str, OperationMeta], *paths_or_prefixes: str) -> Callable[[], bool]:
    """An `_if` condition: did any put file matching these paths (or prefixes) change?"""
    picked = [op for path, op in ops.items() if any(path.startswith(p) for p in paths_or_prefixes)]
    return lambda: any(op.did_change() for op in picked)


@operation()
def secret_file(path: str, content: str, mode: str = "600", user: str = "root", group: str = "root"):
    """
    Put a file that holds a secret (a modem PIN, a NUT password) without ever showing it.

    `files.put` prints a diff of the old and new content under `--diff`; this compares
    SHA-256 checksums only, so the secret never reaches the terminal or a log.

    + path: remote path
    + content: the file's content (holding the secret)
    + mode, user, group: ownership, set after every upload

    **Example:**

    .. code:: python

        secret_file(path="/etc/nut/upsd.users", content=text, mode="640", group="nut")
    """
    want = hashlib.sha256(content.encode()).hexdigest()
    remote = host.get_fact(File, path=path)
    uploaded = host.get_fact(Sha256File, path=path) != want
    if uploaded:
        yield FileUploadCommand(BytesIO(content.encode()), path,
                                remote_temp_filename=host.get_temp_filename(path + want))
    if uploaded or not remote or remote["user"] != user or remote["group"] != group:
        yield StringCommand("chown", f"{user}:{group}", path)
    if uploaded or not remote or remote["mode"] != int(mode):
        yield StringCommand("chmod", mode, path)


@operation()
def packages_present(packages: Iterable[str]):
    """
    Install the Debian packages that are missing, and touch apt only then.

    `apt.packages(update=True)` refreshes the lists on every run (a change each time, and
    traffic to the archive from kits whose packages are all baked into the image); this
    reads the installed packages first and does nothing when none are missing.

    + packages: Debian package names

    **Example:**

    .. code:: python

        packages_present(packages=["nginx", "curl"])
    """
    installed = host.get_fact(DebPackages)
    missing = [p for p in packages if p not in installed]
    if missing:
        yield from apt.packages._inner(packages=missing, update=True, no_recommends=True)


@operation()
def interface_present(interface: str, why: str):
    """
    Fail this host (only this one) when a network interface it depends on does not exist.

    Used before a firewall that allows SSH on one interface only: on a kit where that
    interface is missing, applying it would lock the crew out.

    + interface: interface name (e.g. mgmt0)
    + why: what would go wrong, for the error message
    """
    if interface not in host.get_fact(NetworkDevices):
        raise OperationError(f"{host.name}: interface {interface} does not exist — {why}")
    yield from ()


def service(unit: str, config_changed: Callable[[], bool], *, reload: bool = False,
            running: bool | None = True, enabled: bool = True) -> None:
    """A unit enabled (or not) and running (None: left as it is), restarted or reloaded only if
    its config changed and it is meant to run."""
    state = {True: "running", False: "stopped", None: "left as it is"}[running]
    systemd.service(name=f"{unit}: {'enabled' if enabled else 'disabled'}, {state}",
                    service=unit, running=running, enabled=enabled)
    if running:
        systemd.service(name=f"{unit}: {'reloaded' if reload else 'restarted'} (its config changed)",
                        service=unit, reloaded=reload, restarted=not reload, _if=config_changed)
