"""For suites that need booted lab kits (lab, kit deploy, agent, preflight): the `lab` fixture
and `LabTour`, a tour brought up on the lab as a user's deploy sees it.

Use in a conftest: `from nomadkit.lab.testing import lab  # noqa: F401`. One lab per test
session with the demo tour's kits (kit-a, kit-b, with the tour's uplink MACs), resumed from
golden snapshots after the first build; a lab that is already up (a developer's
`nomadkit lab up` or `make demo`) is reused and left running.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import pytest

from nomadkit import ROOT
from nomadkit.deploy.runner import KitResult, deploy
from nomadkit.endpoints import CloudEndpoints
from nomadkit.errors import UserError
from nomadkit.lab import net
from nomadkit.lab.lab import Lab, alive, kits_from_tour
from nomadkit.paths import cache_root
from nomadkit.tour import Tour, load_tour

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


@contextmanager
def kept_figures(name: str, what: str, figures: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """`figures`, which a lab suite fills with what it measured, printed and kept for bench/ as
    `~/.cache/nomadkit/bench/<name>.json` when the suite ends (figures are never asserted)."""
    yield figures
    if figures:
        out = cache_root() / "bench" / f"{name}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(figures, indent=2))
        print(f"\n{what} (lab, {out}):\n" + json.dumps(figures, indent=2))


@dataclass
class LabTour:
    """A tour `nomadkit up` brought up on the lab, as files a user's deploy reads (the tour as the
    lab plays it, the lab's SSH overrides, the endpoints as the kits see them), plus a deploy,
    `nomadkit` commands in their own process, and commands on its kits."""

    lab: Lab
    tour_file: Path
    connect: Path
    endpoints_file: Path

    @classmethod
    def of_up(cls, lab: Lab, tour: Tour) -> LabTour:
        from nomadkit.up import state_dir

        folder = state_dir(tour)
        return cls(lab, folder / "tour.yaml", lab.connect_file, folder / "endpoints-kits.json")

    @cached_property
    def tour(self) -> Tour:
        return load_tour(self.tour_file)

    @cached_property
    def endpoints(self) -> CloudEndpoints:
        return CloudEndpoints.read(self.endpoints_file)

    @property
    def names(self) -> list[str]:
        return [k.name for k in self.tour.kits]

    def deploy(self, **kwargs: Any) -> dict[str, KitResult]:
        """`nomadkit deploy` of this tour (kwargs: kit, stop, dry, connect_file, …)."""
        kwargs.setdefault("connect_file", self.connect)
        results = deploy(self.tour_file, endpoints_file=self.endpoints_file, **kwargs)
        return {r.kit: r for r in results}

    def env(self) -> dict[str, str]:
        """How `pyinfra inventories/tour.py deploys/kit.py` is pointed at this tour."""
        return {**os.environ, "NOMADKIT_TOUR": str(self.tour_file), "NOMADKIT_CONNECT": str(self.connect),
                "NOMADKIT_ENDPOINTS": str(self.endpoints_file), "PYTHONUNBUFFERED": "1"}

    def nomadkit(self, *argv: str, timeout: float = 1200) -> tuple[int, dict[str, Any], str]:
        """`nomadkit ARGV --json` in its own process, pointed at this tour as `env()` says: run as a
        user runs it, sharing no state with the test. Its exit code, its JSON and its stderr (where
        the progress lines go)."""
        done = subprocess.run([sys.executable, "-m", "nomadkit.cli", *argv, "--json"],
                              capture_output=True, text=True, timeout=timeout, env=self.env())
        assert done.stdout.strip(), done.stderr[-3000:]
        return done.returncode, json.loads(done.stdout), done.stderr

    def on(self, kit: str, command: str, timeout: float = 120) -> str:
        """Run a command on a kit as root; its output (an error names the kit and command)."""
        done = self.lab.ssh(kit, command, timeout=timeout)
        if done.returncode:
            raise UserError(f"{kit}: `{command}` failed (exit {done.returncode}): {done.stderr.strip()}")
        return done.stdout
