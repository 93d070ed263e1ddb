"""Lab fixtures: the session's booted kits, and (per module) the demo tour on them with a
stand-in cloud on loopback and its own secrets folder."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from nomadkit.deploy.labtour import DEMO, LabTour, StandinCloud, standin_cloud
from nomadkit.lab.lab import Lab
from nomadkit.lab.testing import lab  # noqa: F401  (the session's booted lab kits)
from nomadkit.tour import load_tour


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
