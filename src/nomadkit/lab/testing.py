"""pytest fixtures for suites that need booted lab kits (lab, kit deploy, agent, preflight).

Use in a conftest: `from nomadkit.lab.testing import lab  # noqa: F401`. One lab per test
session with the demo tour's kits (kit-a, kit-b, with the tour's uplink MACs), resumed from
golden snapshots after the first build; a lab that is already up (a developer's
`nomadkit lab up` or `make demo`) is reused and left running.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from nomadkit import ROOT
from nomadkit.lab import net
from nomadkit.lab.lab import Lab, alive, kits_from_tour
from nomadkit.tour import load_tour

DEMO = ROOT / "tours" / "demo.yaml"


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    """A running lab with the demo tour's kits; torn down (and checked clean) at the end."""
    if os.geteuid() != 0:
        pytest.skip("the lab needs root (network namespaces, taps, nftables)")
    lab = Lab()
    if lab.state_file.exists():
        yield lab
        return
    if net.netns_exists():
        lab.down(quiet=True)  # a half-made lab from an interrupted run
    lab.up(kits_from_tour(load_tour(DEMO)))
    yield lab
    pids = [k["pid"] for k in lab.state()["kits"].values()]
    lab.down()
    assert not net.netns_exists(), "lab down left the lab namespace behind"
    assert not lab.dir.exists(), f"lab down left {lab.dir} behind"
    assert not any(alive(pid) for pid in pids), "a kit VM is still running"
