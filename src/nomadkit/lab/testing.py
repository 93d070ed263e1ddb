"""pytest fixtures for suites that need booted lab kits (lab, kit deploy, agent, preflight).

Use in a conftest: `from nomadkit.lab.testing import lab  # noqa: F401`. One lab of two kits
per test session (kit-1, kit-2), resumed from golden snapshots after the first build; a lab
that is already up (a developer's `nomadkit lab up`) is reused and left running.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from nomadkit.lab import net
from nomadkit.lab.lab import Lab, alive, kits_from_count

LAB_KITS = 2


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    """A running lab with `LAB_KITS` kits; torn down (and checked clean) at the session's end."""
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (network namespaces, taps, nftables)")
    lab = Lab()
    if lab.state_file.exists():
        yield lab
        return
    if net.netns_exists():
        lab.down(quiet=True)  # a half-made lab from an interrupted run
    lab.up(kits_from_count(LAB_KITS))
    yield lab
    pids = [k["pid"] for k in lab.state()["kits"].values()]
    lab.down()
    assert not net.netns_exists(), "lab down left the lab namespace behind"
    assert not lab.dir.exists(), f"lab down left {lab.dir} behind"
    assert not any(alive(pid) for pid in pids), "a kit VM is still running"
