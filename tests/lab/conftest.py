"""Lab fixtures: the session's booted kits, the demo tour brought up on them once, and (per
module) the demo tour on them with a stand-in cloud on loopback and its own secrets folder."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from nomadkit import ROOT
from nomadkit.cloud import local
from nomadkit.deploy.labtour import LabTour, StandinCloud, standin_cloud
from nomadkit.lab.lab import Lab
from nomadkit.lab.progress import Progress
from nomadkit.lab.testing import lab  # noqa: F401  (the session's booted lab kits)
from nomadkit.tour import load_tour
from nomadkit.up import bring_up, state_dir

DEMO = ROOT / "tours" / "demo.yaml"
STOP = "alfama"


@pytest.fixture(scope="session")
def tour_up(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:  # noqa: F811
    """`nomadkit up tours/demo.yaml --stop alfama` on the session lab, once: the local cloud,
    the kits deployed, the first preflight. Secrets live in a throwaway folder; the cloud is
    stopped after the session. Yields the report, its files, the tour and the tour as played."""
    state = tmp_path_factory.mktemp("up")
    patch = pytest.MonkeyPatch()
    patch.setenv("NOMADKIT_SECRETS", str(state / "secrets"))
    patch.setenv("NOMADKIT_CACHE", str(Path.home() / ".cache" / "nomadkit"))  # the lab's cache
    tour = load_tour(DEMO)
    try:
        report, files, phases = bring_up(DEMO, STOP, state / "report", Progress())
        figures = {"phases_s": phases.seconds, "preflight_s": round(report.duration_s, 1),
                   "per_check_s": {f"{r.id}/{r.kit or 'cloud'}": r.duration_s
                                   for r in report.results}}
        print("\nnomadkit up figures:\n" + json.dumps(figures, indent=2))
        yield {"report": report, "files": files, "tour": tour, "figures": figures,
               "played": load_tour(state_dir(tour) / "tour.yaml")}
    finally:
        local.down(tour, None, lambda _c, _m: None)
        patch.undo()


@pytest.fixture(scope="module")
def secrets_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A throwaway secrets folder ($NOMADKIT_SECRETS), so lab runs never touch the user's secrets."""
    folder = tmp_path_factory.mktemp("secrets")
    old = os.environ.get("NOMADKIT_SECRETS")
    os.environ["NOMADKIT_SECRETS"] = str(folder)
    yield folder
    if old is None:
        del os.environ["NOMADKIT_SECRETS"]
    else:
        os.environ["NOMADKIT_SECRETS"] = old


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandinCloud]:
    """The CDN and relay stand-ins the kits' deploy and encoders reach, on this machine's loopback."""
    streams = [s.name for k in load_tour(DEMO).kits for s in k.streams]
    with standin_cloud(tmp_path_factory.mktemp("relay"), streams) as running:
        yield running


@pytest.fixture(scope="module")
def kits(lab: Lab, tmp_path_factory: pytest.TempPathFactory, secrets_dir: Path,  # noqa: F811 (the fixture)
         cloud: StandinCloud) -> LabTour:
    """The demo tour on the lab's kits, as files a user's deploy reads, plus a deploy and SSH."""
    return LabTour(lab, tmp_path_factory.mktemp("kits"), cloud)
