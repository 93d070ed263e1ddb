"""Ansible interop: the exported inventory, read back by Ansible itself, and venue playbooks run
through ansible-runner against a real SSH target.

The SSH target here is a throwaway sshd on 127.0.0.1 (its own host key, its own authorized key,
keys only): real SSH, real Ansible modules, real files changed. The lab test
(tests/lab/test_fleet_ansible.py) runs the same kind of playbook against a lab kit VM.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from nomadkit import ROOT
from nomadkit.cli import main
from nomadkit.errors import UserError
from nomadkit.fleet import ansible
from nomadkit.fleet.hosts import load_fleet

DEMO = ROOT / "tours" / "demo.yaml"
BIN = Path(sys.executable).parent


@pytest.fixture(autouse=True)
def no_cloud(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests see no local cloud endpoints and no lab overrides unless they set them."""
    monkeypatch.setenv("NOMADKIT_ENDPOINTS", str(tmp_path / "no-endpoints.json"))
    monkeypatch.delenv("NOMADKIT_CONNECT", raising=False)


def export(tmp_path: Path, fmt: str) -> Path:
    out = tmp_path / f"inventory.{fmt}"
    result = subprocess.run([BIN / "nomadkit", "ansible", "inventory", str(DEMO), f"--{fmt}"],
                            capture_output=True, text=True, check=True)
    out.write_text(result.stdout)
    return out


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_ansible_reads_the_exported_inventory_as_the_tour_describes_it(tmp_path: Path, fmt: str) -> None:
    listed = json.loads(subprocess.run(
        [BIN / "ansible-inventory", "-i", str(export(tmp_path, fmt)), "--list"],
        capture_output=True, text=True, check=True).stdout)
    assert set(listed["_meta"]["hostvars"]) == {"kit-a", "kit-b"}
    assert set(listed["all"]["children"]) >= {"alfama", "mouraria", "graca", "marvila", "belem"}
    assert listed["alfama"]["hosts"] == ["kit-a", "kit-b"]
    kit_a = listed["_meta"]["hostvars"]["kit-a"]
    assert (kit_a["ansible_host"], kit_a["ansible_port"], kit_a["ansible_user"]) == (
        "kit-a.nightshift.internal", 22, "root")
    assert [u["name"] for u in kit_a["nomadkit_uplinks"]] == ["wwan0", "wwan1", "sat0"]
    assert kit_a["nomadkit_streams"][0]["bitrates_kbps"] == [900, 600, 400]
    venues = {s["name"]: s["venue"] for s in yaml.safe_load(DEMO.read_text())["stops"]}
    details = kit_a["nomadkit_stop_details"]
    assert {name: d["nomadkit_venue"] for name, d in details.items()} == venues


def test_inventory_holds_no_secret_references(tmp_path: Path) -> None:
    text = export(tmp_path, "json").read_text()
    assert "secret:" not in text and "env:" not in text
    assert '"pin"' not in text


def test_lab_overrides_become_ansible_connection_vars(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    connect = tmp_path / "connect.json"
    connect.write_text(json.dumps({"kit-b": {
        "ssh_hostname": "127.0.0.1", "ssh_port": 2299, "ssh_key": "/tmp/lab_key",
        "ssh_known_hosts_file": "/dev/null", "ssh_strict_host_key_checking": "no"}}))
    monkeypatch.setenv("NOMADKIT_CONNECT", str(connect))
    hosts = ansible.inventory(load_fleet(DEMO))["all"]["hosts"]
    assert hosts["kit-b"]["ansible_host"] == "127.0.0.1"
    assert hosts["kit-b"]["ansible_port"] == 2299
    assert hosts["kit-b"]["ansible_ssh_private_key_file"] == "/tmp/lab_key"
    assert "StrictHostKeyChecking=no" in hosts["kit-b"]["ansible_ssh_common_args"]
    assert "ansible_ssh_common_args" not in hosts["kit-a"]  # real kits keep host-key checking


@pytest.mark.parametrize(("stop", "kit", "expected"), [
    (None, None, None), ("alfama", None, "alfama"), (None, "kit-b", "kit-b"), ("belem", "kit-a", "kit-a")])
def test_limit_pattern(stop: str | None, kit: str | None, expected: str | None) -> None:
    assert ansible.limit_pattern(load_fleet(DEMO).tour, stop, kit) == expected


@pytest.mark.parametrize(("stop", "kit", "says"), [
    ("porto", None, "no stop named 'porto'"), (None, "kit-z", "no kit named 'kit-z'")])
def test_unknown_stop_or_kit_is_named(stop: str | None, kit: str | None, says: str) -> None:
    with pytest.raises(UserError, match=says):
        ansible.limit_pattern(load_fleet(DEMO).tour, stop, kit)


# --- a real SSH target on loopback -------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[dict[str, object]]:
    """A throwaway sshd on 127.0.0.1: temp host key, one authorized key, keys only; always stopped."""
    if not Path("/usr/sbin/sshd").exists():
        pytest.skip("openssh-server is not installed (make setup installs it)")
    d = tmp_path / "sshd"
    d.mkdir()
    for name in ("host_key", "client_key"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", d / name], check=True)
    (d / "authorized_keys").write_text((d / "client_key.pub").read_text())
    port = free_port()
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d / 'host_key'}\nPidFile {d / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {d / 'authorized_keys'}\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nUsePAM no\n"
        "StrictModes no\nSubsystem sftp internal-sftp\n")
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation directory
    with open(d / "sshd.log", "w") as log:
        proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", d / "sshd_config"], stderr=log)
    try:
        deadline = time.monotonic() + 15
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert proc.poll() is None, (d / "sshd.log").read_text()
            assert time.monotonic() < deadline, "sshd did not listen within 15 s"
            time.sleep(0.1)
        yield {"ssh_hostname": "127.0.0.1", "ssh_port": port, "ssh_user": os.environ.get("USER", "root"),
               "ssh_key": str(d / "client_key"), "ssh_known_hosts_file": "/dev/null",
               "ssh_strict_host_key_checking": "no"}
    finally:
        proc.terminate()
        proc.wait(timeout=10)


PLAYBOOK = """
- name: venue gear
  hosts: all
  gather_facts: false
  tasks:
    - name: venue file
      ansible.builtin.copy:
        dest: "{{ target_dir }}/{{ inventory_hostname }}.conf"
        content: "venue={{ nomadkit_venue }} uplink={{ nomadkit_uplinks[0].name }}\\n"
    - name: switch config reachable
      ansible.builtin.command: "test ! -e {{ target_dir }}/{{ inventory_hostname }}.broken"
      changed_when: false
"""


@pytest.fixture
def venue(tmp_path: Path, sshd: dict[str, object], monkeypatch: pytest.MonkeyPatch) -> Path:
    """Both demo kits pointed at the throwaway sshd, and a playbook that writes into a temp folder."""
    connect = tmp_path / "connect.json"
    connect.write_text(json.dumps({"kit-a": sshd, "kit-b": sshd}))
    monkeypatch.setenv("NOMADKIT_CONNECT", str(connect))
    target = tmp_path / "target"
    target.mkdir()
    playbook = tmp_path / "venue.yml"
    playbook.write_text(PLAYBOOK.replace("{{ target_dir }}", str(target)))
    return playbook


def test_venue_playbook_changes_kits_over_ssh_then_changes_nothing(
        venue: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = venue.parent / "target"
    assert main(["ansible", "run", str(DEMO), str(venue), "--stop", "alfama", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["success"] is True
    assert {h: (r["changed"], r["failed"]) for h, r in first["hosts"].items()} == {
        "kit-a": (1, 0), "kit-b": (1, 0)}
    assert first["hosts"]["kit-a"]["changed_tasks"] == ["venue file"]
    assert (target / "kit-a.conf").read_text() == "venue=Casa do Fado Velho uplink=wwan0\n"

    assert main(["ansible", "run", str(DEMO), str(venue), "--stop", "alfama", "--json"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert {h: r["changed"] for h, r in second["hosts"].items()} == {"kit-a": 0, "kit-b": 0}


def test_a_failing_kit_is_reported_with_its_task_and_the_run_fails(venue: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    (venue.parent / "target" / "kit-b.broken").touch()
    assert main(["ansible", "run", str(DEMO), str(venue), "--stop", "graca"]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out
    assert "kit-a      ok=2 changed=1 failed=0" in out
    assert "kit-b      ok=1 changed=1 failed=1" in out
    assert "! switch config reachable:" in out


def test_only_the_chosen_kit_is_touched(venue: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ansible", "run", str(DEMO), str(venue), "--stop", "belem", "--kit", "kit-b",
                 "--json"]) == 0
    assert set(json.loads(capsys.readouterr().out)["hosts"]) == {"kit-b"}
    assert sorted(p.name for p in (venue.parent / "target").iterdir()) == ["kit-b.conf"]


def test_unreachable_kit_is_reported_not_hung(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    connect = tmp_path / "connect.json"
    connect.write_text(json.dumps({"kit-a": {"ssh_hostname": "127.0.0.1", "ssh_port": free_port(),
                                             "ssh_strict_host_key_checking": "no"}}))
    monkeypatch.setenv("NOMADKIT_CONNECT", str(connect))
    playbook = tmp_path / "ping.yml"
    playbook.write_text("- hosts: all\n  gather_facts: false\n  tasks:\n    - ansible.builtin.ping:\n")
    assert main(["ansible", "run", str(DEMO), str(playbook), "--kit", "kit-a", "--json"]) == 1
    result = json.loads(capsys.readouterr().out)
    assert result["hosts"]["kit-a"]["unreachable"] == 1
    assert "Connection refused" in result["hosts"]["kit-a"]["failures"][0]


def test_a_run_stopped_at_its_timeout_says_how_far_it_got(venue: Path) -> None:
    """A slow kit is not a dead one: the error names the task it was on (the kit deploy benchmark's
    Ansible run met its 30-minute timeout on a TCG kit at task 41 of 43)."""
    slow = venue.parent / "slow.yml"
    slow.write_text("- hosts: all\n  gather_facts: false\n  tasks:\n"
                    "    - name: quick one\n      ansible.builtin.ping:\n"
                    "    - name: long one\n      ansible.builtin.command: sleep 60\n")
    with pytest.raises(ansible.PlaybookStopped, match="during task 2, 'long one'") as stopped:
        ansible.run_playbook(slow, load_fleet(DEMO), kit="kit-a", say=lambda _line: None, timeout_s=8)
    assert (stopped.value.tasks_started, stopped.value.timed_out) == (2, True)
    assert "at its 8 s timeout" in str(stopped.value) and "longer --timeout" in str(stopped.value)


def test_a_cancelled_run_is_not_reported_as_a_timeout() -> None:
    """A Ctrl-C ended a benchmark's Ansible run after 10 minutes; it was reported as "canceled after
    1800 s" and published as a ≥ 30-minute lower bound. A cancelled run says how long it really ran."""
    folder = ansible.EventFolder(say=lambda _line: None)
    folder({"event": "playbook_on_task_start", "event_data": {"task": "Files"}})
    stopped = ansible.PlaybookStopped.of("kit.yml", "canceled", 1800, 612.4, folder)
    assert not stopped.timed_out and "1800" not in str(stopped)
    assert "cancelled after 612 s during task 1, 'Files'" in str(stopped)


LOOP_PLAYBOOK = """
- hosts: all
  gather_facts: false
  tasks:
    - name: conf files
      ansible.builtin.copy:
        dest: "{{ target_dir }}/{{ item.name }}"
        content: "{{ item.name[0] }}\\n"
      loop: [{name: a.conf}, {name: b.conf}]
      loop_control: {label: "{{ item.name }}"}
"""


def test_a_loop_says_which_of_its_items_changed(venue: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A loop task changes as a whole; the report names the item, so a re-run that is not idempotent
    says which file to look at (the kit deploy benchmark's re-run changed 'Files' and nothing more)."""
    target = venue.parent / "target"
    (target / "b.conf").write_text("b\n")
    loop = venue.parent / "loop.yml"
    loop.write_text(LOOP_PLAYBOOK.replace("{{ target_dir }}", str(target)))
    assert main(["ansible", "run", str(DEMO), str(loop), "--kit", "kit-a"]) == 0
    assert "      ~ conf files: a.conf\n" in capsys.readouterr().out
    ran = ansible.run_playbook(loop, load_fleet(DEMO), kit="kit-a", say=lambda _line: None)
    assert ran.hosts["kit-a"].changes() == []
    (target / "b.conf").write_text("drifted\n")
    ran = ansible.run_playbook(loop, load_fleet(DEMO), kit="kit-a", say=lambda _line: None)
    assert (ran.hosts["kit-a"].changed_tasks, ran.hosts["kit-a"].changes()) == (["conf files"],
                                                                               ["conf files: b.conf"])
