"""Ansible interop on booted lab kits, run as a user runs it (`nomadkit ansible …` in its own
process): the exported inventory reaches the lab's kits with the lab's SSH settings, and a venue's
playbook changes kit-a once (its events folded into nomadkit's JSON), then changes nothing.

tests/unit/test_ansible.py tells the same stories against a throwaway sshd on loopback; here the
target is a real kit. The kits are the session's `nomadkit up` of the demo's first stop
(tests/lab/conftest.py); the playbook's file is removed afterwards, so later suites see the kits
as deployed.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from nomadkit.lab.testing import LabTour

pytestmark = [pytest.mark.lab, pytest.mark.extended]

KIT = "kit-a"
STOP = "alfama"
SWITCH = "/etc/nomadkit/venue-switch.conf"
BIN = Path(sys.executable).parent  # ansible's own commands, installed beside nomadkit's

# A venue's playbook as venues write them: one file from the stop's details (extra variables from
# `--stop`), the kit's uplinks (inventory variables) and a fact Ansible gathers on the kit.
PLAYBOOK = f"""
- name: venue switch
  hosts: all
  gather_facts: true
  gather_subset: [min]
  tasks:
    - name: venue switch config
      ansible.builtin.copy:
        dest: {SWITCH}
        mode: "0644"
        content: |
          venue={{{{ nomadkit_venue }}}}
          kit={{{{ inventory_hostname }}}}
          uplink={{{{ nomadkit_uplinks[0].name }}}}
          hostname={{{{ ansible_facts['hostname'] }}}}
          distribution={{{{ ansible_facts['distribution'] }}}}
"""


def test_inventory_lists_the_kits_with_the_labs_ssh_settings(kits: LabTour, tmp_path: Path) -> None:
    """The export carries what reaches a lab kit (loopback port, lab key, no host-key pinning for
    VMs that get fresh keys), and Ansible itself gets through to both kits with it."""
    code, inventory, _ = kits.nomadkit("ansible", "inventory", str(kits.tour_file))
    assert code == 0, inventory
    connect = json.loads(kits.connect.read_text())
    hosts = inventory["all"]["hosts"]
    assert set(hosts) == set(kits.names) == {"kit-a", "kit-b"}
    for name in kits.names:
        host, ssh = hosts[name], connect[name]
        assert (host["ansible_host"], host["ansible_port"], host["ansible_user"]) == (
            "127.0.0.1", kits.lab.kit(name)["ssh_port"], "root")
        assert host["ansible_ssh_private_key_file"] == ssh["ssh_key"]
        assert "StrictHostKeyChecking=no" in host["ansible_ssh_common_args"]
        assert host["ansible_python_interpreter"] == "/usr/bin/python3"
        assert host["nomadkit_endpoints"] == kits.endpoints.model_dump(mode="json")  # as the kits see them
    assert set(inventory["all"]["children"][STOP]["hosts"]) == set(kits.tour.stop(STOP).kits)
    assert "secret:" not in json.dumps(inventory)

    saved = tmp_path / "inventory.json"
    saved.write_text(json.dumps(inventory))
    done = subprocess.run([BIN / "ansible", "-i", str(saved), STOP, "-m", "ansible.builtin.ping", "-o"],
                          capture_output=True, text=True, timeout=600, env=kits.env())
    assert done.returncode == 0, done.stdout + done.stderr
    for name in kits.tour.stop(STOP).kits:
        assert re.search(rf"^{name} \| SUCCESS", done.stdout, re.MULTILINE), done.stdout


@pytest.fixture
def venue_playbook(kits: LabTour, tmp_path: Path) -> Iterator[Path]:
    """The venue's playbook in its own folder (the project ansible-runner is given); its file is
    removed from every kit afterwards, whatever the test did."""
    path = tmp_path / "venue" / "switch.yml"
    path.parent.mkdir()
    path.write_text(PLAYBOOK)
    yield path
    for name in kits.names:
        kits.on(name, f"rm -f {SWITCH}")


def test_a_venue_playbook_changes_kit_a_once_and_nomadkit_reports_it(kits: LabTour,
                                                                      venue_playbook: Path) -> None:
    stop = kits.tour.stop(STOP)
    argv = ("ansible", "run", str(kits.tour_file), str(venue_playbook), "--stop", STOP, "--kit", KIT)
    code, first, progress = kits.nomadkit(*argv, timeout=900)
    assert (code, first["success"], first["status"]) == (0, True, "successful"), first
    assert set(first["hosts"]) == {KIT}, "--kit ran the play on another kit"
    ran = first["hosts"][KIT]
    assert (ran["ok"], ran["changed"], ran["failed"], ran["unreachable"]) == (2, 1, 0, 0), ran
    assert (ran["changed_tasks"], ran["failures"]) == (["venue switch config"], [])
    # ansible-runner's events, as nomadkit says them while the play runs (stderr under --json)
    assert "task: venue switch config" in progress, progress
    assert f"{KIT}: changed  venue switch config" in progress, progress

    uplink = min(kits.tour.kit(KIT).uplinks, key=lambda u: u.priority).name
    hostname = kits.on(KIT, "hostname -s").strip()
    assert kits.on(KIT, f"cat {SWITCH}") == (f"venue={stop.venue}\nkit={KIT}\nuplink={uplink}\n"
                                             f"hostname={hostname}\ndistribution=Debian\n")
    assert kits.on(KIT, f"stat -c '%a %U' {SWITCH}").split() == ["644", "root"]
    for other in (n for n in kits.names if n != KIT):
        assert kits.lab.ssh(other, f"test -e {SWITCH}").returncode == 1, f"the play touched {other}"

    code, second, progress = kits.nomadkit(*argv, timeout=900)
    assert (code, second["success"]) == (0, True), second
    again = second["hosts"][KIT]
    assert (again["ok"], again["changed"], again["changed_tasks"]) == (2, 0, []), again
    assert ": changed " not in progress, progress
