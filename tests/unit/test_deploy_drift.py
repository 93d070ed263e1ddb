"""`nomadkit drift` without kits to reach: per-kit status from the dry run's results, the exit
codes, the JSON, and a hand-edited file named by its path.

The file naming runs pyinfra's real dry run of `put_all` on this machine (`@local`, temporary
files only: a dry run reads, it never writes).
"""

from __future__ import annotations

import grp
import json
import os
import pwd
from pathlib import Path

import pytest
from pyinfra.api import Config, Inventory, State
from pyinfra.api import deploy as pyinfra_deploy
from pyinfra.api.connect import connect_all, disconnect_all
from pyinfra.api.deploy import add_deploy

from nomadkit import ROOT
from nomadkit.cli import main
from nomadkit.deploy.drift import as_json, drift_of, exit_code, report
from nomadkit.deploy.runner import KitResult, collect
from nomadkit.lab.lab import free_port
from nomadkit.roles.ops import Perm, put_all

DEMO = ROOT / "tours" / "demo.yaml"

IN_SYNC = KitResult("kit-a", operations=80)
DRIFTED = KitResult("kit-b", operations=80, changed=2, conditional=1,
                    changes=["nomadkit kit | Put /etc/chrony/chrony.conf",
                             "nomadkit kit | nginx: enabled, running"],
                    files=["/etc/chrony/chrony.conf"])
UNREACHABLE = KitResult("kit-c", status="unreachable", error="cannot connect to kit-c: timed out")
REFUSED = KitResult("kit-d", status="refused", error="kit-d: doors are open")


def test_each_kit_gets_a_status_from_its_dry_run() -> None:
    drifts = [drift_of(r) for r in (IN_SYNC, DRIFTED, UNREACHABLE, REFUSED,
                                    KitResult("kit-e", status="failed", error="fact failed"))]
    assert [(d.kit, d.status, d.count) for d in drifts] == [
        ("kit-a", "in-sync", 0), ("kit-b", "drifted", 2), ("kit-c", "unreachable", 0),
        ("kit-d", "failed", 0), ("kit-e", "failed", 0)]
    assert drifts[1].files == ["/etc/chrony/chrony.conf"] and drifts[1].conditional == 1


@pytest.mark.parametrize("results, code", [
    ([IN_SYNC], 0),
    ([IN_SYNC, DRIFTED], 1),
    ([IN_SYNC, UNREACHABLE], 2),
    ([DRIFTED, UNREACHABLE], 2),  # an unchecked kit may have drifted too
    ([IN_SYNC, REFUSED], 2),
])
def test_exit_code_is_0_in_sync_1_drift_2_unchecked(results: list[KitResult], code: int) -> None:
    assert exit_code([drift_of(r) for r in results]) == code


def test_json_names_the_drifted_kit_and_its_file() -> None:
    out = json.loads(as_json([drift_of(r) for r in (IN_SYNC, DRIFTED, UNREACHABLE)]))
    assert (out["in_sync"], out["drifted"], out["unchecked"]) == (False, ["kit-b"], ["kit-c"])
    kit_b = out["kits"][1]
    assert set(kit_b) == {"kit", "status", "count", "changes", "files", "conditional", "error"}
    assert (kit_b["status"], kit_b["count"], kit_b["files"]) == ("drifted", 2, ["/etc/chrony/chrony.conf"])
    assert out["kits"][2]["error"] == "cannot connect to kit-c: timed out"


def test_the_report_lists_each_change_under_its_kit() -> None:
    text = report([drift_of(r) for r in (IN_SYNC, DRIFTED)])
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("kit-b"))
    assert "drifted" in lines[at] and "Put /etc/chrony/chrony.conf" in lines[at + 1]
    assert "drifted: kit-b" in text
    assert "every kit is as the tour says" in report([drift_of(IN_SYNC)])


def dry_put(files: dict[str, str]) -> KitResult:
    """pyinfra's dry run of `put_all(files)` on this machine, collected as `nomadkit deploy --dry` does."""
    me, group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name

    @pyinfra_deploy("nomadkit kit")
    def put() -> None:
        put_all(files, lambda path: Perm(user=me, group=group, secret=path.endswith(".secret")))

    os.environ.setdefault("PYINFRA_PROGRESS", "off")
    state = State(Inventory((["@local"], {})), Config(), check_for_changes=True)
    try:
        connect_all(state)
        add_deploy(state, put)
    finally:
        disconnect_all(state)
    host = next(iter(state.inventory))
    # another kit whose N-th operation puts another file shares its hash, so its names
    for meta in state.op_meta.values():
        meta.names.add("nomadkit kit | Put /etc/somewhere/else.conf")
    result = KitResult("kit-a")
    collect(state, host, result, dry=True)
    return result


def test_a_hand_edited_file_is_named_by_its_path(tmp_path: Path) -> None:
    same, edited, secret, missing = (tmp_path / n for n in ("same.conf", "edited.conf", "pin.secret",
                                                            "new.conf"))
    for path, text in ((same, "as rendered\n"), (edited, "changed by hand\n"), (secret, "1234\n")):
        path.write_text(text)
        path.chmod(0o644)
    result = dry_put({str(same): "as rendered\n", str(edited): "as rendered\n",
                      str(secret): "5678\n", str(missing): "as rendered\n"})
    assert edited.read_text() == "changed by hand\n" and not missing.exists(), "a dry run wrote"
    assert result.operations == 4
    assert result.files == [str(edited), str(secret), str(missing)]
    assert result.changes == [f"nomadkit kit | Put {edited}",
                              f"nomadkit kit | Put {secret} (secret, not shown)",
                              f"nomadkit kit | Put {missing}"]
    out = json.loads(as_json([drift_of(result)]))
    assert out["drifted"] == ["kit-a"] and out["kits"][0]["files"] == result.files


def test_drift_of_unreachable_kits_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Real SSH attempts on closed loopback ports: both kits unchecked, named, exit 2."""
    connect = tmp_path / "connect.json"
    connect.write_text(json.dumps({k: {"ssh_hostname": "127.0.0.1", "ssh_port": free_port(),
                                       "ssh_connect_timeout": 3} for k in ("kit-a", "kit-b")}))
    assert main(["drift", str(DEMO), "--connect", str(connect), "--json"]) == 2
    out = json.loads(capsys.readouterr().out)
    assert out["unchecked"] == ["kit-a", "kit-b"] and out["in_sync"] is False
    assert [k["status"] for k in out["kits"]] == ["unreachable", "unreachable"]


def test_a_check_that_cannot_start_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["drift", str(DEMO), "--stop", "lisbon"]) == 2
    assert "no stop 'lisbon'" in capsys.readouterr().err


@pytest.mark.parametrize("command, expect", [
    ("drift", "2 = some kit could not be"),
    ("deploy", "--rolling"),
])
def test_help_explains(command: str, expect: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == 0
    assert expect in capsys.readouterr().out
