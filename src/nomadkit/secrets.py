"""Resolving secret references (`env:NAME`, `secret:NAME`) at the moment they are used.

Secrets never live in the tour file, the repo, logs or reports; only references do.
"""

from __future__ import annotations

import os
from pathlib import Path

from nomadkit.errors import UserError


def secrets_dir() -> Path:
    """Where `secret:NAME` files live (mode 0600): $NOMADKIT_SECRETS or ~/.config/nomadkit/secrets."""
    default = Path.home() / ".config" / "nomadkit" / "secrets"
    return Path(os.environ.get("NOMADKIT_SECRETS", default))


def resolve(ref: str) -> str:
    """Return the secret a reference points at, or say how to provide it."""
    scheme, _, name = ref.partition(":")
    if scheme == "env":
        value = os.environ.get(name)
        if value is None:
            raise UserError(f"secret {ref}: environment variable {name} is not set — export it")
        return value
    if scheme == "secret":
        path = secrets_dir() / name
        try:
            return path.read_text().strip()
        except FileNotFoundError:
            raise UserError(
                f"secret {ref}: {path} does not exist — write the secret there (chmod 600)"
            ) from None
    raise UserError(f"'{ref}' is not a secret reference — write env:NAME or secret:NAME")


def store(ref: str, value: str) -> None:
    """Write a `secret:NAME` file readable only by its owner (used by the local cloud)."""
    scheme, _, name = ref.partition(":")
    if scheme != "secret":
        raise UserError(f"{ref}: only secret:NAME references can be stored by nomadkit")
    path = secrets_dir() / name
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.touch(mode=0o600)
    path.write_text(value)
