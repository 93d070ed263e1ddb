"""The whole kit deploy, one function: what `deploys/kit.py` and `nomadkit deploy` both run."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy

from nomadkit.roles import modules
from nomadkit.roles.agent import assert_deploy_allowed


@deploy("nomadkit kit")
def configure_kit() -> None:
    """Every role in order, each install -> configure -> activate, on the current host.

    Refused while the kit's doors are open (the agent's lock) unless host data
    `nomadkit_force` is set (`nomadkit deploy --force`, or `--data nomadkit_force=1`).
    """
    assert_deploy_allowed(force=bool(host.data.get("nomadkit_force")))
    for role in modules():
        role.install()
        role.activate(role.configure())
