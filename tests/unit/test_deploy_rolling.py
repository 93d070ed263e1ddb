"""`nomadkit deploy --rolling` without kits to reach: the canary goes first, a bad batch halts the
roll, and the kits after it are left untouched and named.

The batches are deployed by a stand-in for `deploy` that records which kits it was asked for (no
SSH), except in the last test, where real SSH attempts fail on closed loopback ports.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from nomadkit import ROOT
from nomadkit.cli import main
from nomadkit.deploy import rolling
from nomadkit.deploy.rolling import plan, roll
from nomadkit.deploy.runner import KitResult
from nomadkit.errors import UserError
from nomadkit.lab.lab import free_port
from nomadkit.lab.progress import Progress

DEMO = ROOT / "tours" / "demo.yaml"
KITS = ["kit-a", "kit-b", "kit-c", "kit-d", "kit-e"]


class FakeFleet:
    """Deploys batches by name: every kit ok unless `bad` gives it another status."""

    def __init__(self, bad: dict[str, str] | None = None) -> None:
        self.bad = bad or {}
        self.calls: list[list[str]] = []
        self.kwargs: list[dict[str, Any]] = []

    def __call__(self, kits: list[str]) -> list[KitResult]:
        self.calls.append(list(kits))
        return [KitResult(k, status=self.bad.get(k, "ok"), changed=1) for k in kits]

    def deploy(self, tour_file: Path, **kwargs: Any) -> list[KitResult]:
        """Stands in for `runner.deploy` (as `rolling` calls it)."""
        self.kwargs.append(kwargs)
        return self(kwargs["kit"])


def test_the_canary_goes_alone_then_batches_of_n() -> None:
    assert plan(KITS, 2) == [["kit-a"], ["kit-b", "kit-c"], ["kit-d", "kit-e"]]
    assert plan(KITS, 3) == [["kit-a"], ["kit-b", "kit-c", "kit-d"], ["kit-e"]]
    assert plan(["kit-a"], 2) == [["kit-a"]]
    assert plan([], 2) == []
    with pytest.raises(UserError, match="at least 1"):
        plan(KITS, 0)


def test_a_failing_canary_halts_and_leaves_every_other_kit_untouched() -> None:
    fleet = FakeFleet({"kit-a": "unreachable"})
    rollout = roll(plan(KITS, 2), fleet, Progress(quiet=True))
    assert fleet.calls == [["kit-a"]]
    assert (rollout.deployed, [r.kit for r in rollout.failed]) == ([], ["kit-a"])
    assert rollout.untouched == ["kit-b", "kit-c", "kit-d", "kit-e"] and not rollout.ok
    text = rolling.report(rollout)
    assert "failed:    kit-a (unreachable)" in text
    assert "untouched: kit-b, kit-c, kit-d, kit-e" in text
    assert "halted after the canary" in text


def test_a_failing_batch_halts_after_itself() -> None:
    """kit-b is refused (doors open): its batch-mate still deploys, the next batch never starts."""
    fleet = FakeFleet({"kit-b": "refused"})
    rollout = roll(plan(KITS, 2), fleet, Progress(quiet=True))
    assert fleet.calls == [["kit-a"], ["kit-b", "kit-c"]]
    assert rollout.deployed == ["kit-a", "kit-c"]
    assert [(r.kit, r.status) for r in rollout.failed] == [("kit-b", "refused")]
    assert rollout.untouched == ["kit-d", "kit-e"]
    report = json.loads(rolling.as_json(rollout))
    assert report["ok"] is False
    assert [(b["name"], b["kits"], b["ran"]) for b in report["batches"]] == [
        ("canary", ["kit-a"], True), ("batch 1", ["kit-b", "kit-c"], True),
        ("batch 2", ["kit-d", "kit-e"], False)]
    assert [r["status"] for r in report["batches"][1]["results"]] == ["refused", "ok"]
    assert report["batches"][2]["results"] == []
    assert (report["deployed"], report["failed"], report["untouched"]) == (
        ["kit-a", "kit-c"], ["kit-b"], ["kit-d", "kit-e"])


def test_a_batch_whose_deploy_stops_counts_as_failed() -> None:
    def stops(kits: list[str]) -> list[KitResult]:
        if kits != ["kit-a"]:
            raise UserError("deploy stopped: connection pool exhausted")
        return [KitResult("kit-a")]

    rollout = roll(plan(KITS, 2), stops, Progress(quiet=True))
    assert rollout.deployed == ["kit-a"] and rollout.untouched == ["kit-d", "kit-e"]
    assert [(r.kit, r.error) for r in rollout.failed] == [
        ("kit-b", "deploy stopped: connection pool exhausted"),
        ("kit-c", "deploy stopped: connection pool exhausted")]


def test_every_batch_ok_deploys_every_kit() -> None:
    fleet = FakeFleet()
    rollout = roll(plan(KITS, 2), fleet, Progress(quiet=True))
    assert len(fleet.calls) == 3 and rollout.deployed == KITS and rollout.ok
    assert "untouched: none" in rolling.report(rollout)


def five_kit_tour(tmp_path: Path, batch: int | None = None) -> Path:
    """The demo tour with kit-b copied as kit-c, kit-d, kit-e (and a rollout batch if given)."""
    data = yaml.safe_load(DEMO.read_text())
    kit_b = next(k for k in data["kits"] if k["name"] == "kit-b")
    extra = [copy.deepcopy(kit_b) for _ in KITS[2:]]
    for name, kit in zip(KITS[2:], extra, strict=True):
        kit["name"] = name
        kit["management"]["address"] = f"{name}.nightshift.internal"
    data["kits"] += extra
    for stop in data["stops"]:
        stop["kits"] = KITS
    if batch is not None:
        data["rollout"] = {"batch": batch}
    data["assets_dir"] = str(ROOT / "tours" / "demo-assets")
    out = tmp_path / "five.yaml"
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return out


@pytest.fixture
def fleet(monkeypatch: pytest.MonkeyPatch) -> Callable[..., FakeFleet]:
    def make(bad: dict[str, str] | None = None) -> FakeFleet:
        fake = FakeFleet(bad)
        monkeypatch.setattr(rolling, "deploy", fake.deploy)
        return fake
    return make


def test_batch_size_comes_from_the_tour_unless_given(tmp_path: Path, fleet: Callable[..., FakeFleet]) -> None:
    fake = fleet()
    rolling.rolling_deploy(five_kit_tour(tmp_path), progress=Progress(quiet=True))
    assert fake.calls == [["kit-a"], ["kit-b", "kit-c"], ["kit-d", "kit-e"]]  # the model's default, 2
    fake = fleet()
    rolling.rolling_deploy(five_kit_tour(tmp_path, batch=4), progress=Progress(quiet=True))
    assert fake.calls == [["kit-a"], ["kit-b", "kit-c", "kit-d", "kit-e"]]
    fake = fleet()
    rolling.rolling_deploy(five_kit_tour(tmp_path, batch=4), batch=1, progress=Progress(quiet=True))
    assert fake.calls == [["kit-a"], ["kit-b"], ["kit-c"], ["kit-d"], ["kit-e"]]


def test_each_batch_is_a_plain_deploy_that_honours_the_doors_lock(
        tmp_path: Path, fleet: Callable[..., FakeFleet], capsys: pytest.CaptureFixture[str]) -> None:
    """Without --force the batches are deployed unforced (the agent's lock applies), and a kit
    refused by it halts the roll; --force is passed on to every batch."""
    tour = five_kit_tour(tmp_path)
    fake = fleet({"kit-c": "refused"})
    assert main(["deploy", str(tour), "--rolling", "--json"]) == 1
    assert [kw["force"] for kw in fake.kwargs] == [False, False]
    report = json.loads(capsys.readouterr().out)
    assert (report["failed"], report["untouched"]) == (["kit-c"], ["kit-d", "kit-e"])
    fake = fleet()
    assert main(["deploy", str(tour), "--rolling", "--batch", "4", "--force", "--stop", "alfama"]) == 0
    assert [kw["force"] for kw in fake.kwargs] == [True, True]
    assert [kw["stop"] for kw in fake.kwargs] == ["alfama", "alfama"]
    assert "deployed:  kit-a, kit-b, kit-c, kit-d, kit-e" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--rolling", "--dry"], "use `nomadkit drift`"),
    (["--batch", "2"], "--batch goes with --rolling"),
])
def test_contradicting_flags_are_refused(argv: list[str], message: str,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["deploy", str(DEMO), *argv]) == 1
    assert message in capsys.readouterr().err


def test_batch_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["deploy", str(DEMO), "--rolling", "--batch", "0"])
    assert exited.value.code == 2
    assert "must be a whole number of at least 1" in capsys.readouterr().err


def test_an_unreachable_canary_halts_a_real_rolling_deploy(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Real SSH attempts on closed loopback ports: kit-a (the canary) is unreachable, kit-b is
    never tried."""
    connect = tmp_path / "connect.json"
    connect.write_text(json.dumps({k: {"ssh_hostname": "127.0.0.1", "ssh_port": free_port(),
                                       "ssh_connect_timeout": 3} for k in ("kit-a", "kit-b")}))
    assert main(["deploy", str(DEMO), "--rolling", "--connect", str(connect), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert [(b["kits"], b["ran"]) for b in report["batches"]] == [(["kit-a"], True), (["kit-b"], False)]
    assert report["batches"][0]["results"][0]["status"] == "unreachable"
    assert (report["deployed"], report["failed"], report["untouched"]) == ([], ["kit-a"], ["kit-b"])
