"""Operations the roles share: putting rendered files (secrets never diffed), packages once.

Written like pyinfra's own operations: read a fact, yield only what closes the difference, so a
second run yields nothing and pyinfra's results say "no change".
"""

from __future__ import annotations

import hashlib
import os
import shlex
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from io import BytesIO
from weakref import WeakKeyDictionary

from pyinfra import host
from pyinfra.api import FactBase, FileUploadCommand, OperationError, StringCommand, operation
from pyinfra.api.operation import OperationMeta
from pyinfra.facts.deb import DebPackages
from pyinfra.facts.files import FileContents
from pyinfra.facts.hardware import NetworkDevices
from pyinfra.operations import apt, systemd


@dataclass(frozen=True)
class Perm:
    """Who owns a put file and its mode; `secret` files are compared by checksum, never diffed."""

    mode: str = "644"
    user: str = "root"
    group: str = "root"
    secret: bool = False


DEFAULT = Perm()


class Puts(dict[str, OperationMeta]):
    """What `configure` did: path -> its operation, plus what was put there (`rendered`)."""

    def __init__(self, rendered: dict[str, str]) -> None:
        super().__init__()
        self.rendered = rendered


# Each host's own put operation -> the path it puts. pyinfra's API mode gives the N-th operation
# of every host one hash and one merged set of names, so the name cannot tell a kit's own path.
_PUT_PATHS: WeakKeyDictionary[OperationMeta, str] = WeakKeyDictionary()


def put_path(meta: OperationMeta) -> str | None:
    """The path on the kit that a `put_all` operation puts (None for any other operation)."""
    return _PUT_PATHS.get(meta)


def put_all(rendered: dict[str, str], perm: Callable[[str], Perm] = lambda _path: DEFAULT) -> Puts:
    """Put every rendered file with its permissions; returns each path's operation.

    The kit's copies are read once for the whole set (`FileStates`: one command, not two per
    file as `files.put` would), when the first of them runs. The result feeds `activate`: a
    service restarts only if one of its files changed.
    """
    ops = Puts(rendered)
    kit_files = KitFiles(tuple(rendered))
    for path, content in rendered.items():
        p = perm(path)
        shown = " (secret, not shown)" if p.secret else ""
        ops[path] = rendered_file(name=f"Put {path}{shown}", path=path, content=content,
                                  mode=p.mode, user=p.user, group=p.group, kit_files=kit_files)
        _PUT_PATHS[ops[path]] = path
    return ops


class FileStates(FactBase):
    """Mode, owner, group and SHA-256 of many files in one command; None for a missing file."""

    def command(self, paths: tuple[str, ...]) -> str:
        return ("for f in " + " ".join(shlex.quote(p) for p in paths) + "; do "
                'if [ -f "$f" ]; then echo "$(stat -c \'%a %U %G\' "$f") '
                '$(sha256sum < "$f" | cut -d" " -f1) $f"; else echo "- - - - $f"; fi; done')

    def process(self, output: Iterable[str]) -> dict[str, tuple[int, str, str, str] | None]:
        states: dict[str, tuple[int, str, str, str] | None] = {}
        for line in output:
            mode, user, group, sha, path = line.split(" ", 4)
            states[path] = None if mode == "-" else (int(mode), user, group, sha)
        return states


class KitFiles:
    """The kit's copies of one role's files, read by the first of their operations to run.

    One instance per `put_all` call, that is per deploy: a later deploy reads afresh.
    """

    def __init__(self, paths: tuple[str, ...]) -> None:
        self.paths = paths
        self.read: dict[str, dict[str, tuple[int, str, str, str] | None]] = {}

    def get(self, path: str) -> tuple[int, str, str, str] | None:
        if host.name not in self.read:
            self.read[host.name] = host.get_fact(FileStates, paths=self.paths)
        return self.read[host.name].get(path)


@operation()
def rendered_file(path: str, content: str, mode: str, user: str, group: str, kit_files: KitFiles):
    """
    Put one rendered file; compared by checksum, so a secret in it is never shown as a diff.

    + path: remote path
    + content: what the file must hold
    + mode, user, group: its permissions and owner
    + kit_files: the kit's copies of this file's role (read once per role)
    """
    want = hashlib.sha256(content.encode()).hexdigest()
    remote = kit_files.get(path)
    upload = remote is None or remote[3] != want
    if remote is None:
        yield StringCommand("mkdir", "-p", os.path.dirname(path))
    if upload:
        yield FileUploadCommand(BytesIO(content.encode()), path,
                                remote_temp_filename=host.get_temp_filename(path + want))
    if upload or (remote[1], remote[2]) != (user, group):
        yield StringCommand("chown", f"{user}:{group}", path)
    if upload or remote[0] != int(mode):
        yield StringCommand("chmod", mode, path)


@dataclass(frozen=True)
class Changed:
    """The put files (paths or prefixes) a service or a command depends on.

    Called, it says whether one of their operations changes something (an `_if` condition);
    `digest()` fingerprints their rendered content, which `applied` records on the kit.
    """

    ops: dict[str, OperationMeta]
    prefixes: tuple[str, ...]

    def picked(self) -> list[str]:
        return [path for path in self.ops if any(path.startswith(p) for p in self.prefixes)]

    def __call__(self) -> bool:
        return any(self.ops[path].changed for path in self.picked())

    def digest(self) -> str:
        rendered = getattr(self.ops, "rendered", {})
        text = "\0".join(f"{path}\0{rendered.get(path, '')}" for path in sorted(self.picked()))
        return hashlib.sha256(text.encode()).hexdigest()


def changed(ops: dict[str, OperationMeta], *paths_or_prefixes: str) -> Changed:
    """The files matching these paths (or prefixes), for `service`, `apply` or an `_if`."""
    return Changed(ops, paths_or_prefixes)


APPLIED = "/var/lib/nomadkit/applied"


@operation()
def applied(key: str, digest: str, commands: list[str], changed_now: Callable[[], bool]):
    """
    Run commands once for each new version of the files they apply, and record it on the kit.

    `_if=op.did_change` alone loses a restart when a deploy is killed between putting a file
    and restarting its service: the next run sees the file in place and changes nothing. Here
    the kit keeps a record (`/var/lib/nomadkit/applied/KEY`: a digest of the files last
    applied), written after the commands succeed; a run that finds an old record applies again.

    + key: what is applied (a unit name, "systemd-units", ...)
    + digest: fingerprint of the files the commands apply
    + commands: shell commands (restart, reload, ...)
    + changed_now: true when this run's operations changed one of those files

    **Example:**

    .. code:: python

        applied(key="nginx", digest=files.digest(), commands=["systemctl reload nginx"],
                changed_now=files)
    """
    record = host.get_fact(FileContents, path=f"{APPLIED}/{key}")
    if record and record[0].strip() == digest and not changed_now():
        host.noop(f"{key}: files already applied")
        return
    yield from commands
    yield StringCommand(f"mkdir -p -m 700 {APPLIED} && echo {digest} > {APPLIED}/{key}")


def apply(name: str, key: str, depends: Changed, commands: list[str]) -> OperationMeta:
    """`applied` for a set of put files: `commands` run when they are new on this kit."""
    return applied(name=name, key=key, digest=depends.digest(), commands=commands, changed_now=depends)


class Account(FactBase):
    """One user's shell, home and groups from `getent` and `id` (pyinfra's `Users` fact reads
    every account with several processes each: minutes on a slow kit)."""

    def command(self, user: str) -> str:
        name = shlex.quote(user)
        return f"getent passwd {name} && id -Gn {name} || true"

    def process(self, output: Iterable[str]) -> dict[str, object] | None:
        lines = list(output)
        if len(lines) < 2:
            return None
        fields = lines[0].split(":")
        return {"home": fields[5], "shell": fields[6], "groups": set(lines[1].split())}


@operation()
def account(user: str, shell: str, home: str, groups: Iterable[str] = (), system: bool = False,
            create_home: bool = True):
    """
    A local account with this shell, home and (at least) these groups; no password, so SSH keys
    are the only way in. Reads one account (`Account`), never the whole user list.

    + user: the account name
    + shell, home: its login shell and home folder (created with the account)
    + groups: supplementary groups it must belong to
    + system: a system account (no ageing, uid below 1000)
    + create_home: make the home folder with the account (else a later operation owns it)
    """
    have = host.get_fact(Account, user=user)
    if have is None:
        yield StringCommand("useradd", *(["--system"] if system else []),
                            "--create-home" if create_home else "--no-create-home",
                            "--home-dir", home, "--shell", shell,
                            *(["--groups", ",".join(groups)] if groups else []), user)
        return
    if have["shell"] != shell:
        yield StringCommand("usermod", "--shell", shell, user)
    if have["home"] != home:
        yield StringCommand("usermod", "--home", home, "--move-home", user)
    missing = [g for g in groups if g not in have["groups"]]
    if missing:
        yield StringCommand("usermod", "--append", "--groups", ",".join(missing), user)


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


def service(unit: str, config: Changed | None, *, reload: bool = False,
            running: bool | None = True, enabled: bool = True) -> None:
    """A unit enabled (or not) and running (None: left as it is); restarted (or reloaded) when
    its config files are new on this kit, even if an earlier deploy was killed before it could."""
    state = {True: "running", False: "stopped", None: "left as it is"}[running]
    systemd.service(name=f"{unit}: {'enabled' if enabled else 'disabled'}, {state}",
                    service=unit, running=running, enabled=enabled)
    if running and config is not None:
        verb = "reload" if reload else "restart"
        apply(f"{unit}: {verb}ed with its new config", f"unit-{unit}", config,
              [f"systemctl {verb} {unit}"])
