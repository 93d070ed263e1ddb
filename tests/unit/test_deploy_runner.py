"""`nomadkit deploy` without kits to reach: selection errors and unreachable kits, named; a kit's
seconds are its own deploy's."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from nomadkit import ROOT
from nomadkit.cli import main
from nomadkit.deploy.runner import KitResult, Reporter, deploy, select_kits
from nomadkit.errors import UserError
from nomadkit.lab.lab import free_port
from nomadkit.lab.progress import Progress
from nomadkit.tour import load_tour

DEMO = ROOT / "tours" / "demo.yaml"


def test_kits_are_chosen_by_stop_and_kit() -> None:
    tour = load_tour(DEMO)
    assert select_kits(tour, None, None) == ["kit-a", "kit-b"]
    assert select_kits(tour, "alfama", "kit-b") == ["kit-b"]
    with pytest.raises(UserError, match="no stop 'lisbon' — stops: alfama, mouraria"):
        select_kits(tour, "lisbon", None)
    with pytest.raises(UserError, match="no kit 'kit-c' — kits: kit-a, kit-b"):
        select_kits(tour, None, "kit-c")
    assert select_kits(tour, "alfama", ["kit-b", "kit-a"]) == ["kit-a", "kit-b"]  # a rolling batch
    with pytest.raises(UserError, match="no kit 'kit-c'"):
        select_kits(tour, None, ["kit-a", "kit-c"])
    with pytest.raises(UserError, match="no kit chosen"):
        select_kits(tour, None, [])


def test_unreachable_kits_are_named_each_with_why(tmp_path: Path, capsys) -> None:
    """Closed loopback ports: every kit is reported unreachable, by name, and the exit code is 1."""
    connect = tmp_path / "connect.json"
    connect.write_text(json.dumps({k: {"ssh_hostname": "127.0.0.1", "ssh_port": free_port(),
                                       "ssh_connect_timeout": 3} for k in ("kit-a", "kit-b")}))
    results = deploy(DEMO, connect_file=connect, endpoints_file=None)
    assert [(r.kit, r.status) for r in results] == [("kit-a", "unreachable"), ("kit-b", "unreachable")]
    assert all(r.kit in r.error and "Could not connect" in r.error for r in results)
    assert main(["deploy", str(DEMO), "--kit", "kit-b", "--connect", str(connect), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and [k["kit"] for k in report["kits"]] == ["kit-b"]


def test_a_kits_seconds_count_from_its_own_deploy_not_the_progress_clock() -> None:
    """The benchmarks time a first apply and its re-runs with one Progress: each re-run's kit
    seconds read 470 and 558 for 90-second runs until the deploy kept its own start."""
    progress = Progress(quiet=True)
    progress.start -= 1000  # a clock that has timed earlier deploys
    results = {"kit-a": KitResult(kit="kit-a")}
    reporter = Reporter(results, progress)
    reporter.operation_host_success(None, SimpleNamespace(name="kit-a"), "op")
    assert results["kit-a"].seconds < 5
