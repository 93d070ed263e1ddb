"""Lab fixtures: the session's booted kits, and the demo tour brought up on them once.

Every lab suite shares ONE `nomadkit up` of the demo's first stop (the local cloud, the kits
deployed against it, the first preflight), so the kits are in one known state and the session
pays for one first deploy.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from nomadkit import ROOT
from nomadkit.cloud import local
from nomadkit.lab.lab import Lab
from nomadkit.lab.progress import Progress
from nomadkit.lab.testing import (
    LabTour,
    lab,  # noqa: F401  (the session's booted lab kits)
)
from nomadkit.tour import load_tour
from nomadkit.up import bring_up

DEMO = ROOT / "tours" / "demo.yaml"
STOP = "alfama"


@pytest.fixture(scope="session")
def tour_up(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:  # noqa: F811
    """`nomadkit up tours/demo.yaml --stop alfama` on the session lab, once. Secrets live in a
    throwaway folder; the cloud is stopped after the session. Yields the report, its files, the
    tour, the tour as played, the deploy's per-kit results and the figures."""
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
        played = LabTour.of_up(lab, tour)
        yield {"report": report, "files": files, "tour": tour, "figures": figures,
               "played": played.tour, "kits": played,
               "deploy": {r.kit: r for r in phases.results["deploy"]},
               "deploy_s": phases.seconds["deploy"]}
    finally:
        local.down(tour, None, lambda _c, _m: None)
        patch.undo()


@pytest.fixture(scope="session")
def kits(tour_up: dict) -> LabTour:
    """The demo tour as the lab's kits play it, deployed by `nomadkit up`."""
    return tour_up["kits"]


# The order the suites run in on the one shared lab: the preflight's verdict and the deploy's
# zero-change re-run while the kits are as the first deploy left them; what cuts links, power
# and files on them, redeploys them in pull mode or runs venue playbooks on them after (each puts
# the kits back as deployed when it ends).
ORDER = ("test_image", "test_up", "test_kit_deploy", "test_agent_lab", "test_fleet_lab",
         "test_fleet_pull", "test_fleet_ansible", "test_lab")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Reorder the lab's tests among themselves, in the slots they hold in the session."""
    here = Path(__file__).parent
    slots = [i for i, item in enumerate(items) if item.path.parent == here]

    def rank(item: pytest.Item) -> int:
        return ORDER.index(item.path.stem) if item.path.stem in ORDER else len(ORDER)

    for slot, item in zip(slots, sorted((items[i] for i in slots), key=rank), strict=True):
        items[slot] = item
