"""The kit's pyinfra roles, in the order a kit is configured.

Every role module exposes the same shape (see /work/shared/STYLE.md, chatmail's deployers):

- `PACKAGES`: Debian packages baked into the kit image (the image build gathers them);
- `files(tour, kit, endpoints, secret=resolve) -> {remote path: content}`: every file the role
  puts, rendered only through `nomadkit.render`; `secret` turns a secret reference into its
  value (`nomadkit render` passes `redacted`, so rendered trees never hold secrets);
- `@deploy` stages `install()` (packages, users, dirs: safe in a chroot), `configure()` (puts
  the files, returns the operations that may change something) and `activate(changed)`
  (enable, start, restart only what `changed` touched).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType

from nomadkit.endpoints import CloudEndpoints
from nomadkit.errors import UserError
from nomadkit.tour import Kit, Tour

ROLES: tuple[str, ...] = ("base", "uplinks", "firewall", "cache", "encoder", "power", "agent", "pull")

Secret = Callable[[str], str]


def redacted(ref: str) -> str:
    """Stand-in for a secret in rendered trees: visibly not the value, still valid config."""
    return "REDACTED-" + ref.partition(":")[2]


def modules() -> list[ModuleType]:
    """The role modules, in deploy order."""
    return [importlib.import_module(f"nomadkit.roles.{name}") for name in ROLES]


def packages() -> list[str]:
    """Every Debian package the roles need, once each, in role order (for the kit image)."""
    return list(dict.fromkeys(p for module in modules() for p in module.PACKAGES))


def kit_files(tour: Tour, kit: Kit, endpoints: CloudEndpoints | None,
              secret: Secret = redacted) -> dict[str, str]:
    """The union of every role's files; two roles claiming one path is a bug, said so."""
    out: dict[str, str] = {}
    owner: dict[str, str] = {}
    for module in modules():
        role = module.__name__.rsplit(".", 1)[1]
        for path, content in module.files(tour, kit, endpoints, secret=secret).items():
            if path in out:
                raise UserError(f"roles {owner[path]} and {role} both write {path} — one file, one role")
            out[path], owner[path] = content, role
    return dict(sorted(out.items()))
