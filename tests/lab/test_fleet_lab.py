"""Fleet operations on booted lab kits, run as a user runs them (`nomadkit drift`, `nomadkit deploy
--rolling` in their own process): a file changed by hand on one kit is named by drift, kit and
path; the next deploy repairs it; a rolling deploy whose canary cannot be reached halts before
the other kit, which keeps its drift.

The kits are the session's `nomadkit up` of the demo's first stop (tests/lab/conftest.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from nomadkit.lab.lab import free_port
from nomadkit.lab.testing import LabTour

pytestmark = [pytest.mark.lab, pytest.mark.extended]

CHRONY = "/etc/chrony/chrony.conf"
BY_HAND = "# tuned by hand at the venue"


def nomadkit(kits: LabTour, *argv: str) -> tuple[int, dict[str, Any]]:
    """`nomadkit ARGV TOUR --endpoints … --json` on the lab tour (`LabTour.nomadkit`); exit code and JSON."""
    code, report, _ = kits.nomadkit(*argv, str(kits.tour_file), "--endpoints", str(kits.endpoints_file))
    return code, report


@pytest.fixture(scope="module")
def converged(kits: LabTour) -> LabTour:
    """Both kits deployed, so the only drift is the one each test makes."""
    results = kits.deploy()
    assert all(r.status == "ok" for r in results.values()), {k: r.error for k, r in results.items()}
    return kits


def test_a_file_changed_by_hand_is_named_by_drift_and_repaired_by_deploy(converged: LabTour) -> None:
    kits = converged
    drifted, clean = kits.names
    kits.on(drifted, f"echo '{BY_HAND}' >> {CHRONY}")
    code, report = nomadkit(kits, "drift", "--connect", str(kits.connect))
    assert code == 1, report
    assert report["drifted"] == [drifted] and report["unchecked"] == []
    by_kit = {k["kit"]: k for k in report["kits"]}
    assert by_kit[drifted]["status"] == "drifted"
    assert CHRONY in by_kit[drifted]["files"], by_kit[drifted]
    assert (by_kit[clean]["status"], by_kit[clean]["files"]) == ("in-sync", [])
    assert BY_HAND in kits.on(drifted, f"cat {CHRONY}"), "drift changed the kit"

    repaired = kits.deploy()
    assert repaired[drifted].status == "ok" and CHRONY in repaired[drifted].files
    assert BY_HAND not in kits.on(drifted, f"cat {CHRONY}")
    code, report = nomadkit(kits, "drift", "--connect", str(kits.connect))
    assert (code, report["in_sync"]) == (0, True), report


def test_rolling_deploy_halts_after_an_unreachable_canary(converged: LabTour, tmp_path: Path) -> None:
    """The second kit is drifted on purpose: still drifted afterwards proves nobody deployed it."""
    kits = converged
    canary, other = kits.names
    kits.on(other, f"echo '{BY_HAND}' >> {CHRONY}")
    connect = json.loads(kits.connect.read_text())
    connect[canary] |= {"ssh_port": free_port(), "ssh_connect_timeout": 5}
    broken = tmp_path / "connect-canary-gone.json"
    broken.write_text(json.dumps(connect))

    code, report = nomadkit(kits, "deploy", "--rolling", "--batch", "1", "--connect", str(broken))
    assert code == 1, report
    assert [(b["name"], b["kits"], b["ran"]) for b in report["batches"]] == [
        ("canary", [canary], True), ("batch 1", [other], False)]
    assert report["batches"][0]["results"][0]["status"] == "unreachable"
    assert (report["deployed"], report["failed"], report["untouched"]) == ([], [canary], [other])
    assert BY_HAND in kits.on(other, f"cat {CHRONY}"), "the halted roll touched the kit after the canary"

    code, report = nomadkit(kits, "deploy", "--rolling", "--connect", str(kits.connect))
    assert code == 0 and report["deployed"] == [canary, other], report
    assert BY_HAND not in kits.on(other, f"cat {CHRONY}")
